"""Failures as a clinician reads them: every page handler's error reaches the browser as Gradio's error box in plain
words with what to do next, never as a traceback or an operator's message, whose detail goes to the server log."""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from app.failures import Work, log, told
from engine import EngineError
from storage import SessionNotFound

F = TypeVar("F", bound=Callable[..., Any])

NOT_YOURS = "This session does not exist, or it is not yours: choose one from your list of sessions."
UNEXPECTED = (
    "Something went wrong in Clinidoc; nothing already stored was lost. Try again; if it keeps happening, tell your "
    "IT service desk, who will find the details in Clinidoc's log."
)


def plainly(work: Work) -> Callable[[F], F]:
    """Decorates a Gradio handler (a function or a generator) doing `work`, so that its failures are said plainly."""

    def decorate(handler: F) -> F:
        if inspect.isgeneratorfunction(handler):
            @functools.wraps(handler)
            def streamed(*args: Any, **kwargs: Any) -> Iterator[Any]:
                with _said(work):
                    yield from handler(*args, **kwargs)

            return streamed  # type: ignore[return-value]

        @functools.wraps(handler)
        def returned(*args: Any, **kwargs: Any) -> Any:
            with _said(work):
                return handler(*args, **kwargs)

        return returned  # type: ignore[return-value]

    return decorate


@contextmanager
def _said(work: Work) -> Iterator[None]:
    """Errors leave the handler as gr.Error in the clinician's words; a stopped stream passes as it is."""
    try:
        yield
    except gr.Error:
        raise
    except EngineError as error:
        raise gr.Error(told(error, work)) from None
    except SessionNotFound:
        raise gr.Error(NOT_YOURS) from None
    except Exception as error:
        log.error("A %s failed in Clinidoc", work, exc_info=error)
        raise gr.Error(UNEXPECTED) from None
