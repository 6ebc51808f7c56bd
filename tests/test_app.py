"""The assistant end to end: real files, a real SQLite file and the real SmolLM2 engine."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import pytest

from app.assistant import Answer, AnswerDelta, Assistant, Notice, Upload, read_upload
from app.settings import Settings
from engine import ChatMessage, Event, GenerationParams, LocalEngine
from prompts import disclaimer
from storage import add_message, list_messages, open_database

RHINITIS = "mtsamples_allergic_rhinitis.txt"
MAX_BYTES = 50 * 1024 * 1024


class RecordingEngine:
    """The real engine, noting each prompt it is asked to answer."""

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine
        self.info = engine.info
        self.prompts: list[list[ChatMessage]] = []

    @property
    def context_window(self) -> int:
        return self._engine.context_window

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self._engine.count_prompt_tokens(messages)

    def generate(self, prompt: Sequence[ChatMessage], params: GenerationParams) -> Iterator[Event]:
        self.prompts.append(list(prompt))
        return self._engine.generate(prompt, params)


@pytest.fixture
def engine(local_engine: LocalEngine) -> RecordingEngine:
    return RecordingEngine(local_engine)


def make_assistant(engine: RecordingEngine, tmp_path: Path, max_new_tokens: int = 32) -> Assistant:
    settings = Settings(data_dir=tmp_path, max_new_tokens=max_new_tokens)
    return Assistant(engine, open_database(settings.db_path), settings)


@pytest.fixture
def assistant(engine: RecordingEngine, tmp_path: Path) -> Assistant:
    return make_assistant(engine, tmp_path)


def read(*paths: Path) -> Upload:
    return read_upload([(path, path.name) for path in paths], MAX_BYTES)


@pytest.fixture
def damaged_pdf(tmp_path: Path) -> Path:
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"%PDF-1.7\nthe rest of this file was lost")
    return path


def test_a_question_streams_an_answer_and_stores_it_with_the_question(
    assistant: Assistant, corpus: Path, local_engine: LocalEngine
) -> None:
    view = assistant.start_session(read(corpus / RHINITIS))
    assert view is not None and view.record.fits and view.record.tokens > 0

    *deltas, answer = assistant.ask(view.session.id, "What medications is she taking?")

    assert deltas and all(isinstance(delta, AnswerDelta) for delta in deltas)
    assert isinstance(answer, Answer) and answer.text
    assert answer.text == "".join(delta.text for delta in deltas).strip()
    question, stored = list_messages(assistant.db, view.session.id)
    assert (question.role, question.text) == ("user", "What medications is she taking?")
    assert (stored.role, stored.text) == ("assistant", answer.text)
    assert stored.disclaimer == disclaimer()
    assert stored.model == local_engine.info.model_name
    assert stored.prompt_version == "answer-v1"
    assert stored.stats is not None
    assert stored.stats["prompt_tokens"] > view.record.tokens
    assert 1 <= stored.stats["generated_tokens"] <= 32
    assert stored.stats["ttft_s"] > 0 and stored.stats["decode_tok_s"] >= 0


def test_a_damaged_file_is_reported_and_the_good_files_of_its_upload_kept(
    assistant: Assistant, corpus: Path, damaged_pdf: Path
) -> None:
    upload = read(damaged_pdf, corpus / RHINITIS)

    assert [failure.name for failure in upload.failures] == ["scan.pdf"]
    assert str(upload.failures[0]).startswith("scan.pdf: ")
    view = assistant.start_session(upload)
    assert view is not None
    assert [document.name for document in view.documents] == [RHINITIS]
    assert view.documents[0].pages == 1 and view.documents[0].tokens > 0


def test_an_upload_with_no_readable_file_starts_no_session(assistant: Assistant, damaged_pdf: Path) -> None:
    assert assistant.start_session(read(damaged_pdf)) is None
    assert assistant.sessions() == []


def test_a_record_too_long_for_the_model_is_answered_plainly_without_the_engine(
    assistant: Assistant, engine: RecordingEngine, corpus: Path, tmp_path: Path
) -> None:
    long_record = tmp_path / "long.txt"
    long_record.write_text(((corpus / RHINITIS).read_text() + "\n") * 200)  # about 40,000 words
    view = assistant.start_session(read(long_record))
    assert view is not None and not view.record.fits

    events = list(assistant.ask(view.session.id, "Summarise the record."))

    assert events == [
        Notice(
            text=f"This record has {view.record.tokens:,} tokens; the model can read {view.record.budget:,} at once. "
            "Retrieval for long records is not available yet."
        )
    ]
    assert engine.prompts == []
    assert list_messages(assistant.db, view.session.id) == []


def test_a_reopened_session_continues_its_conversation(
    assistant: Assistant, engine: RecordingEngine, corpus: Path, tmp_path: Path
) -> None:
    view = assistant.start_session(read(corpus / RHINITIS))
    assert view is not None
    *_, first = assistant.ask(view.session.id, "What is the assessment?")

    restarted = make_assistant(engine, tmp_path)  # a new process on the same database file
    reopened = restarted.open_session(view.session.id)
    assert [message.role for message in reopened.messages] == ["user", "assistant"]
    *_, second = restarted.ask(view.session.id, "And what is the plan?")

    prompt = engine.prompts[-1]
    assert [message.role for message in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1].content == "What is the assessment?"
    assert prompt[2].content == first.text
    assert prompt[3].content == "And what is the plan?"
    assert isinstance(second, Answer)
    # The follow-up reads the record from the engine's prefix cache instead of prefilling it again.
    assert second.stats.cached_tokens >= first.stats.prompt_tokens - 2
    assert len(list_messages(restarted.db, view.session.id)) == 4


def test_the_oldest_turns_leave_the_prompt_first_when_the_conversation_outgrows_it(
    engine: RecordingEngine, corpus: Path, tmp_path: Path
) -> None:
    # Reserving most of the window for the answer leaves room for the record and about one turn.
    assistant = make_assistant(engine, tmp_path, max_new_tokens=7000)
    view = assistant.start_session(read(corpus / RHINITIS))
    assert view is not None
    for turn in range(3):
        add_message(assistant.db, view.session.id, "user", f"Question {turn}?")
        add_message(
            assistant.db, view.session.id, "assistant", f"Answer {turn}: " + "Allegra 180 mg daily. " * 40,
            disclaimer=disclaimer(),
        )

    answering = assistant.ask(view.session.id, "Question 3?")
    next(answering)  # the prompt is fixed once the answer starts
    answering.close()

    prompt = engine.prompts[-1]
    assert [message.content.split(":")[0] for message in prompt[1:]] == ["Question 2?", "Answer 2", "Question 3?"]
    assert engine.count_prompt_tokens(prompt) + 7000 <= engine.context_window
