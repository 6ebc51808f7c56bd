"""Reporting a file's reading page by page, and stopping it when the caller cancels."""

import threading
from collections.abc import Callable

from documents.errors import Cancelled

# Called after each page with (pages read so far, pages in the file).
ProgressCallback = Callable[[int, int], None]
# Asked before each page; true means stop. A threading.Event counts as set.
CancelCheck = Callable[[], bool] | threading.Event


class Progress:
    """The progress callback and the cancellation check of one file being read."""

    def __init__(self, name: str, report: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> None:
        self._name = name
        self._report = report
        self._cancelled = cancel.is_set if isinstance(cancel, threading.Event) else cancel

    def check(self) -> None:
        """Raise Cancelled if the caller has asked to stop."""
        if self._cancelled is not None and self._cancelled():
            raise Cancelled(self._name)

    def page_read(self, number: int, total: int) -> None:
        if self._report is not None:
            self._report(number, total)
