"""A model that is slow or fails, as a clinician meets it: waiting said out loud, failures in plain words with what
to do next, the operator's detail in the log and never on the screen."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest

from app.assistant import FileFailure, Upload, not_stored
from app.failures import told
from app.ui.documents_panel import _failures
from app.ui.plain_errors import NOT_YOURS, UNEXPECTED, plainly
from app.waiting import Waiting, with_waiting
from documents import load
from engine import EngineError, ModelBrokeOff, ModelTimedOut, ModelUnreachable, PromptTooLong
from storage import SessionNotFound

URL = "http://gpu-node:8000/v1"


def held(released: threading.Event, closed: threading.Event) -> Iterator[str]:
    """A model that says nothing until `released`, then one word; `closed` once it has been closed."""
    try:
        released.wait()
        yield "word"
        released.wait()
        yield "more"
    finally:
        closed.set()


def test_silence_is_said_each_time_it_lasts_and_the_words_come_through_after_it() -> None:
    released, closed = threading.Event(), threading.Event()
    events = with_waiting(held(released, closed), every_s=0.01, remote=True)

    first = next(events)
    assert isinstance(first, Waiting) and first.text.startswith("waiting for the model server, ")
    released.set()  # the model speaks only once the clinician has been told it is waited for
    assert [event for event in events if not isinstance(event, Waiting)] == ["word", "more"]
    assert closed.is_set()


def test_a_stream_closed_while_waiting_frees_its_reader_and_closes_the_model_once_it_speaks() -> None:
    released, closed = threading.Event(), threading.Event()
    events = with_waiting(held(released, closed), every_s=0.01, remote=False)
    assert isinstance(next(events), Waiting)

    events.close()  # returns while the model is still silent

    assert not closed.is_set()
    released.set()
    assert closed.wait(timeout=60)


def test_an_error_of_the_model_reaches_the_reader_as_it_was_raised() -> None:
    def failing() -> Iterator[str]:
        yield "word"
        raise ModelBrokeOff("The model server at x broke off the answer: Connection reset.")

    events = with_waiting(failing(), every_s=60, remote=True)
    assert next(events) == "word"
    with pytest.raises(ModelBrokeOff, match="Connection reset"):
        next(events)


@pytest.mark.parametrize(
    "error, said",
    [
        (ModelUnreachable(f"The model server at {URL} could not be reached: Connection refused."),
         "Clinidoc could not reach its model server, so this question was not answered. Ask it again in a few "
         "minutes"),
        (ModelTimedOut(f"The model server at {URL} gave no answer within 300 s."),
         "The model server did not answer in time"),
        (ModelBrokeOff(f"The model server at {URL} broke off the answer: Connection reset by peer."),
         "The model server stopped in the middle of its work, so this question was not answered; nothing it had "
         "written is kept."),
        (EngineError(f"The model server at {URL} answered HTTP 500: CUDA out of memory"), "The model failed"),
    ],
)
def test_a_failure_is_said_in_plain_words_and_its_detail_goes_to_the_log(
    error: EngineError, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="clinidoc"):
        text = told(error, "question")

    assert text.startswith(said) and "tell your IT service desk" in text
    assert URL not in text and "HTTP" not in text
    assert URL in caplog.text  # where the operator looks


def test_a_question_too_long_says_what_to_do() -> None:
    text = told(PromptTooLong(9_000, 384, 8_192), "question")

    assert "9,000 tokens" in text and "reads 7,808" in text and "Ask a shorter question" in text


class Handlers:
    """Page handlers as the UI writes them: methods, one of them streaming."""

    @plainly("session")
    def open(self, session_id: int) -> str:
        raise SessionNotFound(session_id)

    @plainly("upload")
    def count(self) -> str:
        raise ModelUnreachable(f"The model server at {URL} could not be reached: Connection refused.")

    @plainly("check")
    def broken(self) -> str:
        return {}["missing"]

    @plainly("question")
    def stream(self, fail: bool) -> Iterator[str]:
        yield "evidence"
        if fail:
            raise ModelBrokeOff(f"The model server at {URL} broke off the answer.")
        yield "answer"


def test_page_handlers_show_failures_in_plain_words_never_in_an_operators(caplog: pytest.LogCaptureFixture) -> None:
    handlers = Handlers()

    with pytest.raises(gr.Error) as refused:
        handlers.open(7)
    assert refused.value.message == NOT_YOURS
    with pytest.raises(gr.Error) as unreachable:
        handlers.count()
    assert unreachable.value.message.startswith("Clinidoc could not reach its model server, so this upload")
    with caplog.at_level(logging.ERROR, logger="clinidoc"), pytest.raises(gr.Error) as unexpected:
        handlers.broken()
    assert unexpected.value.message == UNEXPECTED and "KeyError: 'missing'" in caplog.text

    assert list(handlers.stream(fail=False)) == ["evidence", "answer"]
    stream = handlers.stream(fail=True)
    assert next(stream) == "evidence"
    with pytest.raises(gr.Error, match="stopped in the middle"):
        next(stream)


def test_a_refused_file_says_what_to_do_and_an_upload_the_model_could_not_count_says_to_try_again(
    corpus: Path,
) -> None:
    refused = FileFailure(name="tool.exe", reason="not a supported document type")
    assert "upload it again, or ask for another copy" in _failures([refused])

    note = load(corpus / "mtsamples_allergic_rhinitis.txt")
    uncounted = not_stored(Upload(documents=[note], failures=[refused]),
                           ModelTimedOut(f"The model server at {URL} gave no answer within 300 s."))

    kept, failure = uncounted.failures
    assert kept == refused and uncounted.documents == []
    assert not failure.refused and failure.reason.startswith("The model server did not answer in time")
    assert "another copy" not in _failures([failure])
