"""The assistant end to end: real files, a real SQLite file and the real SmolLM2 engine."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pypdf import PdfWriter

from app.accounts import User
from app.assistant import (
    Answer,
    AnswerDelta,
    Assistant,
    EvidenceFound,
    Notice,
    Upload,
    read_upload,
    wholly_unsupported,
    UNSUPPORTED_ANSWER,
    evidence_text,
)
from app.evidence import find_evidence
from app.citations import verify
from app.claims import check_text
from app.safety import DECISION_BOUNDARY
from app import turns
from app.render import turn_html
from app.settings import Settings
from app.waiting import Waiting
from documents import Document
from conftest import RecordingEngine
from engine import EngineError, LocalEngine
from prompts import PromptMessage, disclaimer, render
from storage import SessionNotFound, add_message, list_events, list_messages, open_database
from conftest import CLINICIAN

RHINITIS = "mtsamples_allergic_rhinitis.txt"
FHIR = "synthea_fhir_dennis_durgan.json"
CCDA = "ccda_progress_note_adam_everyman.xml"
TKA_PDF = "mtsamples_tka_discharge_summary.pdf"
MAX_BYTES = 50 * 1024 * 1024


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
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    assert view is not None and view.record.fits and view.record.tokens > 0

    evidence, *deltas, answer = assistant.ask(CLINICIAN, view.session.id, "What medications is she taking?")

    # The record's own lines come first, before the model writes.
    assert isinstance(evidence, EvidenceFound)
    assert "Ortho Tri-Cyclen" in evidence.turn.checked.citations[0].quote
    deltas = [delta for delta in deltas if not isinstance(delta, Waiting)]  # a slow machine's reading is said
    assert deltas and all(isinstance(delta, AnswerDelta) for delta in deltas)
    assert isinstance(answer, Answer) and answer.turn.text
    assert answer.turn.text == "".join(delta.text for delta in deltas).strip()
    question, stored = list_messages(assistant.db, CLINICIAN.name, view.session.id)
    assert (question.role, question.text) == ("user", "What medications is she taking?")
    assert (stored.role, stored.text) == ("assistant", answer.turn.text)
    assert stored.disclaimer == disclaimer()
    assert stored.model == local_engine.info.model_name
    assert stored.prompt_version == "answer-v2"
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
    view = assistant.start_session(CLINICIAN, upload)
    assert view is not None
    assert [document.name for document in view.documents] == [RHINITIS]
    assert view.documents[0].pages == 1 and view.documents[0].tokens > 0


def test_an_upload_with_no_readable_file_starts_no_session(assistant: Assistant, damaged_pdf: Path) -> None:
    assert assistant.start_session(CLINICIAN, read(damaged_pdf)) is None
    assert assistant.sessions(CLINICIAN) == []


def test_a_record_too_long_for_the_model_is_answered_from_its_best_passages_and_says_so(
    local_engine: LocalEngine, corpus: Path, tmp_path: Path
) -> None:
    engine = RecordingEngine(local_engine, context_window=2048)
    assistant = make_assistant(engine, tmp_path)
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS, corpus / FHIR, corpus / CCDA))
    assert view is not None and not view.record.fits

    *_, answer = assistant.ask(CLINICIAN, view.session.id, "What medications is she taking for allergic rhinitis?")

    assert isinstance(answer, Answer)
    [note] = [note for note in answer.turn.notes if note.startswith("Only part of the record was used")]
    prompt = engine.prompts[-1]
    assert engine.count_prompt_tokens(prompt) + 32 <= engine.context_window
    assert "Allegra" in prompt[0].content + prompt[-1].content  # the rhinitis note's medication made the cut
    # The note is kept beside the model's words, not in them: a reopened session still says it.
    _, stored = list_messages(assistant.db, CLINICIAN.name, view.session.id)
    assert stored.text == answer.turn.text and note not in stored.text
    assert assistant.view(CLINICIAN, view.session.id).turns[-1].notes == answer.turn.notes


def test_a_record_too_long_even_for_its_best_passage_is_not_put_to_the_model(
    local_engine: LocalEngine, corpus: Path, tmp_path: Path
) -> None:
    # A window barely bigger than the answer and the prompt's own words leaves a few tokens: no passage fits.
    engine = RecordingEngine(local_engine, context_window=190)
    assistant = make_assistant(engine, tmp_path)
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    assert view is not None

    [notice] = assistant.ask(CLINICIAN, view.session.id, "Summarise the record.")

    assert isinstance(notice, Notice)
    assert engine.prompts == []
    # The question is kept, its turn ended "failed" with what the clinician was told.
    [question] = list_messages(assistant.db, CLINICIAN.name, view.session.id)
    assert (question.state, question.grounding) == ("failed", {"reason": notice.text})


def test_structured_files_keep_their_sections_and_coverage_when_the_session_is_reopened(
    engine: RecordingEngine, corpus: Path, tmp_path: Path
) -> None:
    view = make_assistant(engine, tmp_path).start_session(CLINICIAN, read(corpus / FHIR, corpus / CCDA))
    assert view is not None

    reopened = make_assistant(engine, tmp_path).open_session(CLINICIAN, view.session.id)

    fhir, ccda = reopened.documents
    assert (fhir.kind, ccda.kind) == ("fhir", "ccda")
    coverage = reopened.coverage[fhir.id]
    assert coverage.tokens is not None and coverage.tokens > 1000
    assert {skipped.what for skipped in coverage.skipped} >= {"Claim"}
    assert reopened.coverage == view.coverage
    assert Document.model_validate_json(ccda.content or "").sections


def test_an_encrypted_pdf_asks_for_its_password_and_joins_its_session_once_opened(
    assistant: Assistant, corpus: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked.pdf"
    writer = PdfWriter(clone_from=corpus / TKA_PDF)
    writer.encrypt(user_password="secret", algorithm="AES-256")
    writer.write(locked)
    upload = read(locked, corpus / RHINITIS)
    [failure] = upload.failures
    assert failure.needs_password and failure.name == "locked.pdf"
    view = assistant.start_session(CLINICIAN, upload)
    assert view is not None

    wrong = read_upload([(locked, "locked.pdf")], MAX_BYTES, password="guess")
    assert wrong.failures[0].needs_password and "not correct" in wrong.failures[0].reason
    opened = read_upload([(locked, "locked.pdf")], MAX_BYTES, password="secret")
    view = assistant.add_documents(CLINICIAN, view.session.id, opened.documents)

    assert [document.name for document in view.documents] == [RHINITIS, "locked.pdf"]
    assert view.coverage[view.documents[1].id].pages == 2


def test_reading_reports_each_page_and_a_cancel_drops_the_whole_upload(corpus: Path) -> None:
    seen: list[tuple[str, int, int, int, int]] = []
    cancel = threading.Event()

    def progress(name: str, read: int, total: int, position: int, files: int) -> None:
        seen.append((name, read, total, position, files))
        cancel.set()  # as if the user clicked Cancel while the first file was read

    whole = read_upload([(corpus / TKA_PDF, TKA_PDF)], MAX_BYTES, progress=lambda *report: seen.append(report))
    assert [report[1:3] for report in seen] == [(1, 2), (2, 2)] and whole.documents
    seen.clear()
    files = [(corpus / TKA_PDF, TKA_PDF), (corpus / RHINITIS, RHINITIS)]
    upload = read_upload(files, MAX_BYTES, progress=progress, cancel=cancel)

    assert upload.cancelled and upload.documents == [] and upload.failures == []
    assert seen == [(TKA_PDF, 1, 2, 1, 2)]


def test_a_reopened_session_continues_its_conversation(
    assistant: Assistant, engine: RecordingEngine, corpus: Path, tmp_path: Path
) -> None:
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    assert view is not None
    *_, first = assistant.ask(CLINICIAN, view.session.id, "What is the assessment?")

    restarted = make_assistant(engine, tmp_path)  # a new process on the same database file
    reopened = restarted.open_session(CLINICIAN, view.session.id)
    assert [turn.question for turn in reopened.turns] == ["What is the assessment?"]
    *_, second = restarted.ask(CLINICIAN, view.session.id, "And what is the plan?")

    prompt = engine.prompts[-1]
    assert [message.role for message in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1].content == "What is the assessment?"
    assert prompt[2].content == first.turn.text
    assert prompt[3].content.endswith("Question: And what is the plan?")
    assert isinstance(second, Answer)
    # The follow-up reads the record from the engine's prefix cache instead of prefilling it again (the first
    # question's evidence lines, which the history leaves out, are read anew).
    assert second.turn.stats.cached_tokens >= engine.count_prompt_tokens(prompt[:1]) - 2
    assert len(list_messages(restarted.db, CLINICIAN.name, view.session.id)) == 4


def test_the_oldest_turns_leave_the_prompt_first_when_the_conversation_outgrows_it(
    local_engine: LocalEngine, corpus: Path, tmp_path: Path
) -> None:
    turns = [(f"Question {turn}?", f"Answer {turn}: " + "Allegra 180 mg daily. " * 40) for turn in range(3)]
    # A window with room for the record, the question, a 32-token answer and one earlier exchange.
    sizing = make_assistant(RecordingEngine(local_engine), tmp_path / "sizing")
    record = sizing._assemble([read(corpus / RHINITIS).documents[0]]).text
    last = [PromptMessage(role="user", content=turns[2][0]), PromptMessage(role="assistant", content=turns[2][1])]
    evidence = evidence_text(find_evidence("Question 3?", read(corpus / RHINITIS).documents))
    one_exchange = sizing._prompt_tokens(
        render("answer", record=record, evidence=evidence, question="Question 3?", history=last)
    )
    engine = RecordingEngine(local_engine, context_window=one_exchange + 32 + 10)
    assistant = make_assistant(engine, tmp_path)
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    assert view is not None
    for question, answer in turns:
        add_message(assistant.db, CLINICIAN.name, view.session.id, "user", question)
        add_message(assistant.db, CLINICIAN.name, view.session.id, "assistant", answer, disclaimer=disclaimer())

    *_, answer = assistant.ask(CLINICIAN, view.session.id, "Question 3?")

    prompt = engine.prompts[-1]
    assert [message.content.split(":")[0] for message in prompt[1:3]] == ["Question 2?", "Answer 2"]
    assert prompt[3].content.endswith("Question: Question 3?")
    assert engine.count_prompt_tokens(prompt) + 32 <= engine.context_window
    # The answer says what the model did not read, and so does the stored turn.
    assert isinstance(answer, Answer)
    dropped = (
        "The 2 oldest of the 3 earlier exchanges did not fit beside the record and were left out of what the model "
        "read."
    )
    assert dropped in answer.turn.notes
    assert dropped in assistant.view(CLINICIAN, view.session.id).turns[-1].notes

def test_an_answer_is_checked_sentence_by_sentence_and_stored_with_its_citations(
    assistant: Assistant, corpus: Path
) -> None:
    upload = read(corpus / RHINITIS)
    view = assistant.start_session(CLINICIAN, upload)
    assert view is not None

    *_, answer = assistant.ask(CLINICIAN, view.session.id, "What medications has she tried?")

    assert isinstance(answer, Answer)
    checked = answer.turn.checked
    assert checked.sentences, "every answer is split into labelled sentences"
    assert {sentence.label for sentence in checked.sentences} <= {"supported", "contradicted", "not_found"}
    assert all(verify(citation, upload.documents) for citation in checked.citations)
    stored = list_messages(assistant.db, CLINICIAN.name, view.session.id)[-1]
    assert stored.citations == [citation.model_dump() for citation in checked.citations]
    assert assistant.view(CLINICIAN, view.session.id).turns[-1] == answer.turn


def test_a_question_outside_the_record_gets_a_boundary_without_asking_the_model(
    engine: RecordingEngine, assistant: Assistant, corpus: Path
) -> None:
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    assert view is not None

    events = list(assistant.ask(CLINICIAN, view.session.id, "Should I increase her Allegra dose?"))

    assert events == [Notice(text=DECISION_BOUNDARY)]
    assert engine.prompts == []
    [question] = list_messages(assistant.db, CLINICIAN.name, view.session.id)
    assert (question.state, question.grounding) == ("failed", {"reason": DECISION_BOUNDARY})


def test_a_stored_summary_stays_out_of_the_conversation_the_model_reads(
    engine: RecordingEngine, assistant: Assistant, corpus: Path
) -> None:
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    assert view is not None
    add_message(assistant.db, CLINICIAN.name, view.session.id, "user", "Summarise this record.", kind="summary")
    add_message(assistant.db, CLINICIAN.name, view.session.id, "assistant", "**Problems** ...", disclaimer=disclaimer(), kind="summary")

    *_, answer = assistant.ask(CLINICIAN, view.session.id, "What medications has she tried?")

    assert [message.role for message in engine.prompts[-1]] == ["system", "user"]


def test_documents_about_different_patients_are_flagged_when_the_session_opens(
    assistant: Assistant, corpus: Path
) -> None:
    view = assistant.start_session(CLINICIAN, read(corpus / "ccda_ccd_eve_betterhalf.xml", corpus / CCDA))

    assert view is not None
    [warning] = view.warnings
    assert "different patients" in warning and "ccda_ccd_eve_betterhalf.xml" in warning


@pytest.mark.parametrize(
    ("answer", "flagged"),
    [
        ("The patient's reaction to codeine is a positive one. She takes warfarin.", True),
        ("She currently takes Ortho Tri-Cyclen and Allegra. She takes warfarin.", False),
        ("The record does not say.", True),
    ],
)
def test_an_answer_none_of_whose_statements_the_record_supports_is_flagged_as_a_whole(
    corpus: Path, answer: str, flagged: bool
) -> None:
    assert wholly_unsupported(check_text(answer, read(corpus / RHINITIS).documents)) is flagged


def test_three_questions_get_three_answers_and_the_model_reads_only_questions_and_its_own_words(
    engine: RecordingEngine, corpus: Path, tmp_path: Path
) -> None:
    assistant = make_assistant(engine, tmp_path, max_new_tokens=48)
    view = assistant.start_session(CLINICIAN, read(corpus / TKA_PDF))
    assert view is not None
    questions = [
        "What medications was the patient discharged on?",
        "Does the patient have any drug allergies?",
        "When is the follow-up appointment?",
    ]
    answers = []
    for question in questions:
        *_, answer = assistant.ask(CLINICIAN, view.session.id, question)
        assert isinstance(answer, Answer)
        answers.append(answer.turn)

    # Each answer starts from the record's lines about its own question.
    first_lines = [turn.checked.citations[0].quote for turn in answers]
    assert "Celebrex" in first_lines[0] and "NKDA" in first_lines[1] and "follow" in first_lines[2].lower()
    # The third question's prompt holds the two earlier questions and the model's words alone.
    prompt = engine.prompts[-1]
    assert [message.content for message in prompt[1:5]] == [
        questions[0], answers[0].text, questions[1], answers[1].text
    ]
    app_words = [UNSUPPORTED_ANSWER, "Each sentence checked", "From the record", "not found in the record"]
    assert not any(words in message.content for message in prompt[1:5] for words in app_words)


def test_another_clinician_cannot_list_open_ask_check_summarise_export_or_delete_a_session(
    assistant: Assistant, corpus: Path
) -> None:
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    other = User(name="dr.other", address="10.1.2.3")
    assert assistant.sessions(other) == []
    refused = [
        lambda: assistant.open_session(other, view.session.id),
        lambda: assistant.view(other, view.session.id),
        lambda: assistant.pages(other, view.session.id),
        lambda: list(assistant.ask(other, view.session.id, "What medications does she take?")),
        lambda: list(assistant.summarize(other, view.session.id)),
        lambda: assistant.check(other, view.session.id, "She takes Allegra."),
        lambda: assistant.export(other, view.session.id),
        lambda: assistant.delete_session(other, view.session.id),
    ]
    for call in refused:
        with pytest.raises(SessionNotFound):
            call()
    # Nothing of the owner's session changed, and nothing was logged as the other user's access to it.
    assert assistant.view(CLINICIAN, view.session.id).turns == []
    assert not [event for event in list_events(assistant.db, session_id=view.session.id) if event.user == other.name]


def test_retention_deletes_old_sessions_and_forgets_their_cached_record(
    assistant: Assistant, engine: RecordingEngine, corpus: Path
) -> None:
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    list(assistant.ask(CLINICIAN, view.session.id, "What medications does she take?"))
    assert len(engine._engine.prefix_cache) > 0
    assert assistant.apply_retention(days=30) == []
    with assistant.db.writing() as s:  # as if the session had not been touched for 31 days
        s.connection().exec_driver_sql("UPDATE sessions SET updated_at = datetime('now', '-31 days')")
    assert assistant.apply_retention(days=30) == [view.session.id]
    assert assistant.sessions(CLINICIAN) == []
    assert len(engine._engine.prefix_cache) == 0
    [deleted] = list_events(assistant.db, action="session_delete")
    assert (deleted.session_id, deleted.detail) == (view.session.id, "retention: 30 days")


def test_a_record_too_large_is_refused_before_it_is_read_and_says_what_to_do(tmp_path: Path, corpus: Path) -> None:
    note = (corpus / RHINITIS).read_text(encoding="utf-8")
    huge = tmp_path / "thirty_megabytes.txt"
    with huge.open("w", encoding="utf-8") as file:
        while file.tell() < 30 * 2**20:
            file.write(note)
    reported: list[str] = []
    upload = read_upload([(huge, huge.name), (corpus / RHINITIS, RHINITIS)], 50 * 2**20, max_tokens=1_000_000,
                         progress=lambda name, *_: reported.append(name))
    # Refused from its size alone, never read (a read reports its pages), and the small file beside it is read.
    assert huge.name not in reported and RHINITIS in reported
    [failure] = upload.failures
    assert failure.name == huge.name and "CLINIDOC_MAX_RECORD_TOKENS" in failure.reason
    assert [document.name for document in upload.documents] == [RHINITIS]
    # A file whose size says nothing of its text (a PDF, a Word file) is refused once read, if its text is too long.
    [pdf_failure] = read_upload([(corpus / TKA_PDF, TKA_PDF)], 50 * 2**20, max_tokens=100).failures
    assert "at least" in pdf_failure.reason


def test_a_record_grows_and_shrinks_and_answers_read_what_it_holds_now(
    assistant: Assistant, engine: RecordingEngine, corpus: Path
) -> None:
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    grown = assistant.add_upload(CLINICIAN, view.session.id, read(corpus / TKA_PDF))
    assert [document.name for document in grown.documents] == [RHINITIS, TKA_PDF]
    assert grown.record.tokens > view.record.tokens
    list(assistant.ask(CLINICIAN, view.session.id, "What medications was the patient discharged on?"))
    assert "Coumadin" in " ".join(message.content for message in engine.prompts[-1])  # the added document is read

    rhinitis = grown.documents[0]
    shrunk = assistant.remove_document(CLINICIAN, view.session.id, rhinitis.id)
    assert [document.name for document in shrunk.documents] == [TKA_PDF]
    list(assistant.ask(CLINICIAN, view.session.id, "Does the patient have allergies?"))
    assert "Seattle" not in " ".join(message.content for message in engine.prompts[-1])  # the removed one is not
    with pytest.raises(SessionNotFound):
        assistant.remove_document(User(name="dr.other"), view.session.id, shrunk.documents[0].id)
    assert [event.action for event in list_events(assistant.db, session_id=view.session.id)].count("upload") == 2


class CountingFails(RecordingEngine):
    """The real engine, whose token counting fails after `working` calls: a remote server gone mid-upload."""

    def __init__(self, engine: LocalEngine, working: int) -> None:
        super().__init__(engine)
        self.working = working

    def count_tokens(self, text: str) -> int:
        self.working -= 1
        if self.working < 0:
            raise EngineError("The model server did not answer.")
        return super().count_tokens(text)


def test_an_upload_that_fails_midway_stores_nothing_and_an_empty_session_is_never_answered(
    local_engine: LocalEngine, tmp_path: Path, corpus: Path
) -> None:
    """Counting a record's tokens fails after its first document: no session appears, and adding to an open session
    adds none of the upload. A session that holds no document (an earlier version's half-stored upload) is refused
    with what to do, not answered from nothing."""
    failing = CountingFails(local_engine, working=1)
    assistant = make_assistant(failing, tmp_path)
    with pytest.raises(EngineError):
        assistant.start_session(CLINICIAN, read(corpus / RHINITIS, corpus / FHIR))
    assert assistant.sessions(CLINICIAN) == []
    failing.working = 10**6
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    failing.working = 1
    with pytest.raises(EngineError):
        assistant.add_upload(CLINICIAN, view.session.id, read(corpus / FHIR, corpus / CCDA))
    failing.working = 10**6
    assert [d.name for d in assistant.view(CLINICIAN, view.session.id).documents] == [RHINITIS]

    assistant.remove_document(CLINICIAN, view.session.id, assistant.view(CLINICIAN, view.session.id).documents[0].id)
    events = list(assistant.ask(CLINICIAN, view.session.id, "What medications does the patient take?"))
    assert [type(e).__name__ for e in events] == ["Notice"] and "no document" in events[0].text
    assert list(assistant.summarize(CLINICIAN, view.session.id))[0].text == events[0].text
    assert failing.prompts == []


def test_a_stopped_answer_and_one_cut_off_by_a_crash_are_kept_as_unanswered_turns(
    assistant: Assistant, engine: RecordingEngine, corpus: Path
) -> None:
    """The question is stored when asked. Closing the stream mid-answer ends the turn "stopped", without the
    unchecked words; a turn left "answering" by a process that died is marked interrupted at the next start. Neither
    reaches the model as an exchange, and every question's audit event has its outcome."""
    view = assistant.start_session(CLINICIAN, read(corpus / RHINITIS))
    session_id = view.session.id
    stream = assistant.ask(CLINICIAN, session_id, "What medications does the patient take?")
    next(event for event in stream if type(event).__name__ == "AnswerDelta")
    stream.close()
    crashed = turns.begin(assistant.db, CLINICIAN.name, session_id, "What did the examination find?")
    assert assistant.recover_interrupted() == 1

    stopped, interrupted = assistant.view(CLINICIAN, session_id).turns
    assert (stopped.kind, stopped.state, interrupted.state) == ("unanswered", "stopped", "interrupted")
    assert "Interrupted — not answered" in turn_html(interrupted, {})
    asked = [m for m in list_messages(assistant.db, CLINICIAN.name, session_id) if m.role == "user"]
    assert [m.id for m in asked][-1] == crashed and all(m.state != "answering" for m in asked)
    list(assistant.ask(CLINICIAN, session_id, "Does she have allergies?"))
    assert "What medications" not in "".join(m.content for m in engine.prompts[-1])
    actions = [e.action for e in list_events(assistant.db, session_id=session_id)]
    # The crash was simulated below `ask`, so its question has no event of its own; its outcome has one.
    assert actions == ["upload", "question", "question_stopped", "question_interrupted", "question", "answer"]
