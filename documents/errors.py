"""The one exception the documents package raises for a file it cannot read."""


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
        return DocumentError, (self.name, self.reason)
