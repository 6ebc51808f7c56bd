"""The exceptions the documents package raises for a file it cannot read."""

CANCELLED = "reading was cancelled"


class DocumentError(Exception):
    """A file that cannot be read, with a reason a clinician can act on.

    The app shows `str(err)` as it is, so `reason` is one line of plain English
    that names nothing technical.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason

    def __reduce__(self) -> tuple[type["DocumentError"], tuple[str, str]]:
        # Exceptions pickle through their args, which here hold one joined
        # string; without this an error raised in a worker process could not
        # be sent back.
        return type(self), (self.name, self.reason)


class PasswordRequired(DocumentError):
    """An encrypted PDF that opens only with its password.

    A type of its own, so that the UI can ask for the password and load the
    file again with it instead of only showing the reason.
    """


class Cancelled(DocumentError):
    """Reading stopped because the caller asked it to; not a fault of the file."""

    def __init__(self, name: str, reason: str = CANCELLED) -> None:
        super().__init__(name, reason)
