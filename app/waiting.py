"""Waiting said out loud: the model's stream is read on a thread of its own, so that while nothing comes (a record
being read, a busy or hung server) the clinician hears every few seconds how long it has been, instead of silence.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterator, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Waiting(BaseModel):
    """Nothing has come from the model for `seconds`."""

    seconds: int
    remote: bool  # a model server on another machine, rather than the embedded model

    @property
    def text(self) -> str:
        if self.remote:
            return f"waiting for the model server, {self.seconds} s…"
        return f"waiting for the model, {self.seconds} s…"


def with_waiting(events: Iterator[T], every_s: float, remote: bool) -> Iterator[T | Waiting]:
    """`events` as they come, with a Waiting each time `every_s` passes without one.

    Closing this stream closes `events` on its own thread once its current wait ends (a generator cannot be
    closed from another thread while it runs), so a clinician who stops is free at once; the model's work ends with
    its next token, or at the server's time limit.
    """
    received: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
    stopping = threading.Event()

    def pump() -> None:
        try:
            for event in events:
                received.put(("event", event))
                if stopping.is_set():
                    break
            received.put(("end", None))
        except BaseException as error:  # handed to the reader, who raises it as its own
            received.put(("error", error))
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    threading.Thread(target=pump, name="model-stream", daemon=True).start()
    since = time.monotonic()
    try:
        while True:
            try:
                kind, item = received.get(timeout=every_s)
            except queue.Empty:
                yield Waiting(seconds=round(time.monotonic() - since), remote=remote)
                continue
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(item, BaseException)
                raise item
            since = time.monotonic()
            yield item  # type: ignore[misc]  # an event of `events`
    finally:
        stopping.set()
