"""The assistant's pipelines: uploaded files become a session, questions become stored, streamed answers.

No Gradio here. The browser UI and the command line both call these functions and only render what
they return or yield.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from app.accounts import User
from app.citations import CitationNumbers, Located
from app.claims import CheckedText, Record, check_text
from app.evidence import Evidence, EvidenceIndex, EvidenceSearch, QuestionType, find_evidence
from app.export import ExportFormat, session_markdown, session_pdf
from app.failures import told
from app.loop_guard import LoopGuard
from app.omissions import ReviewedText, review
from app.safety import patient_mismatch, scope_boundary
from app.settings import Settings
from app.summary import SUMMARY_QUERY, SummaryDraft, build_summary, draft_schema, parse_draft
from app.trends import Trends, trends
from app.turns import AnswerTurn, Ending, SummaryTurn, Turn
from app.waiting import Waiting, with_waiting
from app import turns
from documents import (
    AssembledRecord,
    Cancelled,
    Coverage,
    Document,
    DocumentError,
    Page,
    PasswordRequired,
    assemble,
    identify,
    load,
    with_tokens,
)
from engine import ChatMessage, Engine, EngineError, GenerationParams, PromptTooLong, Stats, TextDelta
from prompts import PromptMessage, RenderedPrompt, disclaimer, render
from storage import (
    Database,
    DocumentInfo,
    NewDocument,
    SessionInfo,
    SessionNotFound,
    add_documents,
    create_session,
    delete_document,
    delete_session,
    delete_sessions_before,
    get_session,
    interrupt_turns,
    list_documents,
    list_sessions,
    record_event,
)

ANSWER_TEMPLATE = "answer"
SUMMARY_TEMPLATE = "summary"
# Said under an answer none of whose statements the record supports: it reads as fluently as a true one.
UNSUPPORTED_ANSWER = (
    "Nothing this answer states could be found in the record: rely on the lines quoted from the record above, and "
    "check the record itself."
)
# What was asked of a turn, and the audit event of each that ends without an answer (its other outcomes are named
# "{asked}_stopped" and "{asked}_interrupted").
Asked = Literal["question", "summary"]
_FAILED: dict[str, str] = {"question": "question_unanswered", "summary": "summary_failed"}
# What a clinician can do about a record the model cannot read even in part.
TOO_LONG_NEXT = (
    "Start a new session with fewer or shorter documents; if records like this one are common, ask your IT service "
    "desk for a model that reads more at once."
)
# Said when a session holds no document, so that nothing is answered from nothing.
NO_RECORD = "This session holds no document, so there is nothing to answer from: upload the patient's record."
# The evidence lines given to the model beside the question are kept out of the record's budget.
EVIDENCE_TOKENS = 256
# How many tokens an answer may take, by what the question asks for: a date or a value is a sentence, a list of
# medications a few lines. Never more than the settings' limit.
ANSWER_TOKENS: dict[QuestionType, int] = {
    "yes_no": 128, "date": 128, "value": 128, "count": 160, "allergy": 192, "diagnosis": 256, "procedure": 256,
    "medication": 320, "other": 256,
}
# Sessions whose documents and checking index stay in memory, so a follow-up does not read them again.
CACHED_SESSIONS = 8


class FileFailure(BaseModel):
    """A file of an upload that could not be read, and why, in words a clinician can act on."""

    name: str
    reason: str
    # An encrypted PDF: the UI offers to read it again with its password.
    needs_password: bool = False
    # The file itself was refused (damaged, empty, of a kind not read, too large), not the model's counting of it.
    refused: bool = True

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class Upload(BaseModel):
    """The files of one upload, read: the documents that loaded and the files that did not."""

    documents: list[Document]
    failures: list[FileFailure]
    # The user stopped the reading: nothing of the upload is kept, not even the files read before the stop.
    cancelled: bool = False


def not_stored(upload: Upload, error: EngineError) -> Upload:
    """The upload as the clinician should see it when the model could not count it: every document it read listed
    as not kept, with why and what to do."""
    reason = told(error, "upload")
    failures = [FileFailure(name=document.name, reason=reason, refused=False) for document in upload.documents]
    return Upload(documents=[], failures=upload.failures + failures)


class RecordStatus(BaseModel):
    """How much of the model's context the session's record takes."""

    tokens: int
    budget: int  # what is left for the record once the answer and the prompt's own words are reserved
    context_window: int
    fits: bool


class SessionView(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: SessionInfo
    documents: list[DocumentInfo]
    # By document id; absent for documents stored before coverage was kept.
    coverage: dict[int, Coverage]
    turns: list[Turn]
    record: RecordStatus
    # Each page's text by (document name, page number): what citations point into.
    pages: dict[tuple[str, int], str]
    # Said before anything else: the documents may be about different patients.
    warnings: list[str] = []


class EvidenceFound(BaseModel):
    """The record's lines found for the question, before the model writes: shown first."""

    turn: AnswerTurn  # the answer as it stands, with its evidence and no words yet


class AnswerDelta(BaseModel):
    """The next piece of the answer being generated."""

    text: str


class Answer(BaseModel):
    """The finished answer, as stored."""

    turn: AnswerTurn


class SummaryProgress(BaseModel):
    """The model's draft of a summary is this many tokens long so far."""

    tokens: int


class Summary(BaseModel):
    """The finished structured summary, as stored."""

    turn: SummaryTurn


class Notice(BaseModel):
    """Why the question was not put to the model. Nothing is stored for it."""

    text: str


AskEvent = EvidenceFound | AnswerDelta | Waiting | Answer | Notice
SummaryEvent = SummaryProgress | Waiting | Summary | Notice


class _Generated(BaseModel):
    text: str
    stats: Stats
    ending: Ending


class _SessionRecord:
    """A session's documents as read, and their index for checking statements, kept between questions."""

    def __init__(self, documents: list[Document]) -> None:
        self.documents = documents

    # Indexed on the first question or summary, not when the session is merely opened.
    @cached_property
    def record(self) -> Record:
        return Record(self.documents)

    @cached_property
    def evidence(self) -> EvidenceIndex:
        return EvidenceIndex(self.documents)


# Called after each page with (file's name, pages read, pages in the file, position of the file, files in the upload).
UploadProgress = Callable[[str, int, int, int, int], None]


def read_upload(
    files: Sequence[tuple[str | Path, str]],
    max_bytes: int,
    *,
    max_tokens: int | None = None,
    password: str | None = None,
    progress: UploadProgress | None = None,
    cancel: threading.Event | None = None,
) -> Upload:
    """Load each (path, original name); one unreadable file does not stop the others.

    Needs no model, so a caller can reject a bad upload before paying for loading one. A text file too large for
    `max_tokens` is refused before it is read, and any file whose text turns out too large once read. `password` is
    tried on encrypted PDFs; `cancel`, once set, ends the reading before the next page and drops the whole upload.
    """
    documents: list[Document] = []
    failures: list[FileFailure] = []
    for position, (path, name) in enumerate(files, start=1):
        if max_tokens is not None and Path(name).suffix.lower() in PLAIN_TEXT:
            if (too_large := _too_large(Path(path).stat().st_size, max_tokens)) is not None:
                failures.append(FileFailure(name=name, reason=too_large))
                continue
        report = None
        if progress is not None:
            report = _file_progress(progress, name, position, len(files))
        try:
            documents.append(
                load(path, name=name, max_bytes=max_bytes, password=password, progress=report, cancel=cancel)
            )
        except Cancelled:
            return Upload(documents=[], failures=[], cancelled=True)
        except DocumentError as err:
            needs_password = isinstance(err, PasswordRequired)
            failures.append(FileFailure(name=err.name, reason=err.reason, needs_password=needs_password))
            continue
        read = sum(len(page.text) for page in documents[-1].pages)
        if max_tokens is not None and (too_large := _too_large(read, max_tokens)) is not None:
            failures.append(FileFailure(name=name, reason=too_large))
            documents.pop()
    return Upload(documents=documents, failures=failures)


# Files whose size tells their text's length before they are read.
PLAIN_TEXT = (".txt", ".md", ".text", ".json", ".xml")
# No tokenizer of a model Clinidoc runs spends more than this many characters (or bytes) of text per token, so a
# length over this many times the limit is over the limit whatever the model.
MAX_CHARS_PER_TOKEN = 8


def _too_large(characters: int, max_tokens: int) -> str | None:
    least = characters // MAX_CHARS_PER_TOKEN
    if least <= max_tokens:
        return None
    return (f"holds at least {least:,} tokens of text, more than the {max_tokens:,} one record may hold. Upload the "
            "part of the record this question needs, or ask the administrator to raise CLINIDOC_MAX_RECORD_TOKENS.")


def _file_progress(progress: UploadProgress, name: str, position: int, files: int) -> Callable[[int, int], None]:
    return lambda read, total: progress(name, read, total, position, files)


class Assistant:
    """One engine and one database: everything the UI and the CLI ask of Clinidoc, each call on behalf of a signed-in
    user, who reaches only their own sessions (storage enforces it) and whose every access is audited."""

    def __init__(self, engine: Engine, db: Database, settings: Settings) -> None:
        self.engine = engine
        self.db = db
        self.max_new_tokens = settings.max_new_tokens
        bare = render(ANSWER_TEMPLATE, record="", evidence="", question="")
        self.record_budget = (
            engine.context_window - self.max_new_tokens - EVIDENCE_TOKENS - self._prompt_tokens(bare)
        )
        self.summary_tokens = settings.summary_tokens
        self.waiting_notice_s = settings.waiting_notice_s
        bare = render(SUMMARY_TEMPLATE, record="")
        self.summary_budget = engine.context_window - self.summary_tokens - self._prompt_tokens(bare)
        self._records: OrderedDict[tuple[int, tuple[int, ...]], _SessionRecord] = OrderedDict()
        self._records_lock = threading.Lock()

    def sessions(self, user: User) -> list[SessionInfo]:
        return list_sessions(self.db, user.name)

    def start_session(self, user: User, upload: Upload) -> SessionView | None:
        """Store the readable documents of `upload` as a new session; None when no file was readable. The session
        and its documents are stored together or not at all (a crash or a failing token count leaves nothing)."""
        self._audit_failures(user, upload, None)
        if not upload.documents:
            return None
        stored = self._stored_documents(upload.documents)
        session = create_session(self.db, user.name, _title(upload.documents), stored)
        self._audit_uploads(user, session.id, stored)
        return self.view(user, session.id)

    def add_upload(self, user: User, session_id: int, upload: Upload) -> SessionView:
        """Add the readable documents of `upload` to an open session: a patient's record grows as it arrives."""
        self._audit_failures(user, upload, session_id)
        if upload.documents:
            return self.add_documents(user, session_id, upload.documents)
        return self.view(user, session_id)

    def _audit_failures(self, user: User, upload: Upload, session_id: int | None) -> None:
        for failure in upload.failures:
            # Audit events outlive a deleted session, so they carry no file names or text:
            # a file name often names the patient.
            self._audit(user, "upload_rejected", session_id, detail=failure.reason)

    def add_documents(self, user: User, session_id: int, documents: Sequence[Document]) -> SessionView:
        """Store `documents` in an open session, all of them or none: a PDF opened with its password after the rest
        of its upload."""
        stored = self._stored_documents(documents)
        add_documents(self.db, user.name, session_id, stored)
        self._audit_uploads(user, session_id, stored)
        return self.view(user, session_id)

    def _stored_documents(self, documents: Sequence[Document]) -> list[NewDocument]:
        """The documents as storage keeps them, their tokens counted first: counting may fail (a remote server
        gone), and then nothing of the upload is stored."""
        stored = []
        for document in documents:
            document = with_tokens(document, self.engine.count_tokens)
            tokens = assemble([document], self.record_budget, self.engine.count_tokens).tokens
            stored.append(NewDocument(
                name=document.name, sha256=document.sha256, kind=document.kind,
                page_texts=[page.text for page in document.pages], tokens=tokens, content=document.model_dump_json(),
            ))
        return stored

    def _audit_uploads(self, user: User, session_id: int, stored: list[NewDocument]) -> None:
        for document in stored:
            self._audit(user, "upload", session_id, detail=f"{document.kind} sha256:{document.sha256}")

    def open_session(self, user: User, session_id: int) -> SessionView:
        view = self.view(user, session_id)
        self._audit(user, "session_open", session_id)
        return view

    def export(self, user: User, session_id: int, form: ExportFormat = "markdown") -> bytes:
        """The session as a Markdown or PDF document (app/export.py), made when asked and noted in the audit log,
        since the record then leaves Clinidoc."""
        view = self.view(user, session_id)
        exported = session_pdf(view) if form == "pdf" else session_markdown(view).encode("utf-8")
        self._audit(user, "export", session_id, detail=form)
        return exported

    def remove_document(self, user: User, session_id: int, document_id: int) -> SessionView:
        """Takes one document out of the session's record: later answers and summaries no longer read it, and the
        model's cached keys and values of the record with it are dropped."""
        delete_document(self.db, user.name, session_id, document_id)
        self._forget([session_id])
        self._audit(user, "document_remove", session_id, detail=f"document {document_id}")
        return self.view(user, session_id)

    def delete_session(self, user: User, session_id: int) -> None:
        """Deletes the session's rows (overwritten in the file), its cached record and the model's cached keys and
        values, which hold its text."""
        delete_session(self.db, user.name, session_id)
        self._forget([session_id])
        self._audit(user, "session_delete", session_id)

    def apply_retention(self, days: int) -> list[int]:
        """Deletes every session untouched for `days` days, whoever owns it; returns their ids."""
        deleted = delete_sessions_before(self.db, datetime.now(UTC) - timedelta(days=days))
        if deleted:
            self._forget(deleted)
            for session_id in deleted:
                record_event(self.db, "clinidoc", "session_delete", session_id, detail=f"retention: {days} days")
        return deleted

    def recover_interrupted(self) -> int:
        """At start-up: marks "interrupted" every turn that the last run left being answered (it ended mid-answer),
        each with its outcome in the audit log under the clinician who asked; returns how many."""
        cut = interrupt_turns(self.db)
        for owner, session_id, kind in cut:
            action = "summary_interrupted" if kind == "summary" else "question_interrupted"
            record_event(self.db, owner, action, session_id, detail="found unanswered at start-up")
        return len(cut)

    def _forget(self, session_ids: list[int]) -> None:
        with self._records_lock:
            for key in [key for key in self._records if key[0] in session_ids]:
                del self._records[key]
        self.engine.forget()

    def _audit(self, user: User, action: str, session_id: int | None = None, detail: str | None = None) -> None:
        record_event(self.db, user.name, action, session_id, detail=detail, address=user.address)

    def ask(self, user: User, session_id: int, question: str) -> Iterator[AskEvent]:
        """Store the question, find the record's lines for it, stream the model's answer, check each of its
        sentences against the record, then store the answer in the transaction that ends the question's turn.

        Yields EvidenceFound, AnswerDelta pieces (and Waiting while the model is silent) and then one Answer; or a
        Notice when the question cannot be put to the model (the turn ends "failed", with the notice as its reason).
        An answer abandoned mid-stream ends its turn "stopped", without the unchecked words; one cut off by a crash
        is found "answering" at the next start.
        """
        session = self._session_record(user, session_id)  # first: another user's session is refused unaudited as asked
        self._audit(user, "question", session_id)
        question_id = turns.begin(self.db, user.name, session_id, question)
        with self._turn(user, session_id, question_id, "question"):
            try:
                outcome = yield from self._answer(user, session_id, session, question, question_id)
            except EngineError as err:  # a remote server gone, a device out of memory: said, and the session goes on
                outcome = self._model_failed(user, session_id, question_id, "question", err)
        yield outcome

    @contextmanager
    def _turn(self, user: User, session_id: int, question_id: int, asked: Asked) -> Iterator[None]:
        """Ends a turn the code inside leaves open: "stopped" when the clinician closed the stream, "failed" when an
        error escaped; each with its outcome in the audit log after the `asked` event."""
        try:
            yield
        except GeneratorExit:
            turns.end_unanswered(self.db, user.name, session_id, question_id, "stopped")
            self._audit(user, f"{asked}_stopped", session_id)
            raise
        except Exception:
            turns.end_unanswered(self.db, user.name, session_id, question_id, "failed", reason="an error in Clinidoc")
            self._audit(user, _FAILED[asked], session_id, detail="error")
            raise

    def _failed(self, user: User, session_id: int, question_id: int, asked: Asked, text: str, detail: str) -> Notice:
        """Ends the turn "failed" with what the clinician is told, and notes its outcome in the audit log."""
        turns.end_unanswered(self.db, user.name, session_id, question_id, "failed", reason=text)
        self._audit(user, _FAILED[asked], session_id, detail=detail)
        return Notice(text=text)

    def _model_failed(self, user: User, session_id: int, question_id: int, asked: Asked, error: EngineError) -> Notice:
        """Ends the turn "failed" when the model could not do its part, telling the clinician what to do next."""
        detail = "prompt too long" if isinstance(error, PromptTooLong) else "engine error"
        return self._failed(user, session_id, question_id, asked, told(error, asked), detail)

    def _answer(
        self, user: User, session_id: int, session: _SessionRecord, question: str, question_id: int
    ) -> Iterator[AskEvent] | Answer | Notice:
        """The work of `ask` once the question is stored; returns the event that ends it, its turn ended."""
        if not session.documents:  # left by an upload that an earlier version did not store whole
            return self._failed(user, session_id, question_id, "question", NO_RECORD, "no record")
        if (boundary := scope_boundary(question)) is not None:
            return self._failed(user, session_id, question_id, "question", boundary, "outside the record's scope")
        # Over the budget, the record is cut to the passages that rank best against the question.
        assembled = self._assemble(session.documents, query=question)
        # Retrieval always fits the budget, but a budget smaller than every passage leaves the model nothing to read.
        if not assembled.fits or (assembled.retrieval is not None and assembled.retrieval.passages_used == 0):
            text = (
                f"This record has {assembled.record_tokens:,} tokens; the model can read only "
                f"{assembled.budget:,} at once, too few for even one passage of it. {TOO_LONG_NEXT}"
            )
            return self._failed(user, session_id, question_id, "question", text, "record too long")

        search = find_evidence(question, session.evidence)
        numbers = CitationNumbers()
        evidence_citations = numbers.add_all([_evidence_place(evidence) for evidence in search.evidence])
        turn = AnswerTurn(
            question=question, text="", checked=check_text("", session.record, numbers), evidence=search,
            evidence_citations=evidence_citations, disclaimer=disclaimer(), model=self.engine.info.model_name,
            prompt_version="", stats=None,
        )
        yield EvidenceFound(turn=turn)
        earlier = turns.history(turns.load(self.db, user.name, session_id))
        prompt, dropped = self._fit_history(assembled.text, evidence_text(search), earlier, question)
        notes = [] if assembled.retrieval is None else [assembled.retrieval.summary()]
        if dropped:
            notes.append(
                f"The {dropped:,} oldest of the {len(earlier) // 2:,} earlier exchanges did not fit beside the record "
                "and were left out of what the model read."
            )
        budget = min(self.max_new_tokens, ANSWER_TOKENS[search.question_type])
        generated = yield from self._generate(prompt, GenerationParams(max_new_tokens=budget), stream=True)
        checked = check_text(generated.text, session.record, numbers)
        notes += _ending_notes(generated.ending, budget)
        if wholly_unsupported(checked):
            notes.insert(0, UNSUPPORTED_ANSWER)
        turn = turn.model_copy(
            update={
                "text": generated.text, "checked": checked, "notes": notes, "ending": generated.ending,
                "prompt_version": prompt.version, "stats": generated.stats,
            }
        )
        turn = turns.save(self.db, user.name, session_id, question_id, turn)
        self._audit(user, "answer", session_id, detail=f"{turn.model} {turn.prompt_version}")
        return Answer(turn=turn)

    def check(self, user: User, session_id: int, text: str) -> ReviewedText:
        """Each sentence of a text written elsewhere, checked against the session's record, and what of the record
        the text leaves out; nothing is stored but the fact of the check in the audit log."""
        record = self._session_record(user, session_id).record
        self._audit(user, "check", session_id)
        return review(text, record)

    def trends(self, user: User, session_id: int) -> Trends:
        """The session's results over time and its timeline, from the facts its documents were read for."""
        return trends(self._session_record(user, session_id).documents)

    def summarize(self, user: User, session_id: int) -> Iterator[SummaryEvent]:
        """Draft, check and store the structured summary of the session's record, its request stored first and its
        turn ended as `ask`'s is.

        Yields SummaryProgress while the model drafts (Waiting while it is silent), then one Summary; a Notice when
        the record cannot be put to the model at all.
        """
        session = self._session_record(user, session_id)
        self._audit(user, "summary", session_id)
        request_id = turns.begin(self.db, user.name, session_id, None)
        with self._turn(user, session_id, request_id, "summary"):
            try:
                outcome = yield from self._summary(user, session_id, session, request_id)
            except EngineError as err:
                outcome = self._model_failed(user, session_id, request_id, "summary", err)
        yield outcome

    def _summary(
        self, user: User, session_id: int, session: _SessionRecord, request_id: int
    ) -> Iterator[SummaryEvent] | Summary | Notice:
        """The work of `summarize` once the request is stored; returns the event that ends it, its turn ended."""
        if not session.documents:
            return self._failed(user, session_id, request_id, "summary", NO_RECORD, "no record")
        assembled, prompt = self._summary_prompt(session.documents)
        if not assembled.fits or (assembled.retrieval is not None and assembled.retrieval.passages_used == 0):
            text = (
                f"The model can read only {assembled.budget:,} tokens at once, too few for this record. {TOO_LONG_NEXT}"
            )
            return self._failed(user, session_id, request_id, "summary", text, "record too long")
        params = GenerationParams(max_new_tokens=self.summary_tokens, json_schema=draft_schema(session.documents))
        generated = yield from self._generate(prompt, params, stream=False)
        notes = []
        if assembled.retrieval is not None:
            notes.append(
                "The model drafted from part of the record, the passages on problems, medications, results and "
                "plans; lists read from structured entries are complete."
            )
        if generated.ending == "limit":
            notes.append(
                f"The model's draft reached its limit of {self.summary_tokens:,} tokens; later items are missing."
            )
        draft = parse_draft(generated.text)
        if draft is None:
            notes.append("The model's draft could not be read; the summary shows only what coded entries hold.")
        chart = build_summary(session.documents, draft or SummaryDraft(), session.record)
        chart = chart.model_copy(update={"notes": chart.notes + notes})
        turn = SummaryTurn(
            summary=chart, disclaimer=disclaimer(), model=self.engine.info.model_name, prompt_version=prompt.version,
            stats=generated.stats,
        )
        turn = turns.save(self.db, user.name, session_id, request_id, turn)
        self._audit(user, "summary_done", session_id, detail=f"{turn.model} {prompt.version}")
        return Summary(turn=turn)

    def _generate(
        self, prompt: RenderedPrompt, params: GenerationParams, stream: bool
    ) -> Iterator[AnswerDelta | SummaryProgress | Waiting] | _Generated:
        """The one way the model is asked: its words streamed as AnswerDelta (or counted as SummaryProgress), with a
        Waiting while nothing comes, until it ends, reaches its limit or starts repeating itself; returns what it
        wrote and how it ended."""
        guard = LoopGuard() if stream else None
        pieces: list[str] = []
        times: list[float] = [time.perf_counter()]
        stats: Stats | None = None
        remote = self.engine.info.architecture == "remote"
        events = with_waiting(self.engine.generate(_chat(prompt), params), self.waiting_notice_s, remote)
        try:
            for event in events:
                if isinstance(event, Waiting):
                    yield event
                    continue
                if not isinstance(event, TextDelta):
                    stats = event
                    continue
                if guard is not None and (repeated := guard.add(event.text)) is not None:
                    # What came before the repetition stays; the rest, already shown, is replaced when it is checked.
                    stopped = _measured_stats(times, params)
                    return _Generated(text=guard.text[:repeated].strip(), stats=stopped, ending="loop")
                pieces.append(event.text)
                times.append(time.perf_counter())
                yield AnswerDelta(text=event.text) if stream else SummaryProgress(tokens=len(pieces))
        finally:
            events.close()
        assert stats is not None, "the engine ends every generation with its Stats"
        ending: Ending = "limit" if stats.finish_reason == "length" else "finished"
        return _Generated(text="".join(pieces).strip(), stats=stats, ending=ending)

    def summary_messages(self, user: User, session_id: int) -> list[ChatMessage]:
        """What a summary of the session puts to the model; the benchmark decodes it with and without the grammar."""
        return _chat(self._summary_prompt(self._session_record(user, session_id).documents)[1])

    def _summary_prompt(self, documents: list[Document]) -> tuple[AssembledRecord, RenderedPrompt]:
        record = assemble(documents, self.summary_budget, self.engine.count_tokens, query=SUMMARY_QUERY)
        return record, render(SUMMARY_TEMPLATE, record=record.text)

    def view(self, user: User, session_id: int) -> SessionView:
        """The session as it is stored now; unlike open_session, not an access to record in the audit log."""
        session = get_session(self.db, user.name, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        stored = list_documents(self.db, user.name, session_id)
        documents = self._session_record(user, session_id, stored).documents
        mismatch = patient_mismatch([(document.name, identify(document)) for document in documents])
        return SessionView(
            session=session,
            documents=stored,
            coverage={info.id: doc.coverage for info, doc in zip(stored, documents) if doc.coverage is not None},
            turns=turns.load(self.db, user.name, session_id),
            record=self._status(self._assemble(documents)),
            pages={(document.name, page.number): page.text for document in documents for page in document.pages},
            warnings=[] if mismatch is None else [mismatch],
        )

    def pages(self, user: User, session_id: int) -> dict[tuple[str, int], str]:
        """Each page's text of the session's documents by (document name, page number), read once per session."""
        documents = self._session_record(user, session_id).documents
        return {(document.name, page.number): page.text for document in documents for page in document.pages}

    def _session_record(self, user: User, session_id: int, stored: list[DocumentInfo] | None = None) -> _SessionRecord:
        """The session's documents and their index, read from storage once while the session's documents stay the
        same. Storage's owner check comes first, cached or not."""
        stored = list_documents(self.db, user.name, session_id) if stored is None else stored
        key = (session_id, tuple(info.id for info in stored))
        with self._records_lock:
            if key in self._records:
                self._records.move_to_end(key)
                return self._records[key]
        session = _SessionRecord([_document(info) for info in stored])
        with self._records_lock:
            self._records[key] = session
            while len(self._records) > CACHED_SESSIONS:
                self._records.popitem(last=False)
        return session

    def _assemble(self, documents: list[Document], query: str | None = None) -> AssembledRecord:
        return assemble(documents, self.record_budget, self.engine.count_tokens, query=query)

    def _status(self, record: AssembledRecord) -> RecordStatus:
        return RecordStatus(
            tokens=record.tokens, budget=record.budget, context_window=self.engine.context_window, fits=record.fits
        )

    def _fit_history(
        self, record: str, evidence: str, history: list[PromptMessage], question: str
    ) -> tuple[RenderedPrompt, int]:
        """The answer prompt with as much of the conversation as fits, dropping the oldest exchanges first; and how
        many exchanges were dropped."""
        dropped = 0
        while True:
            prompt = render(ANSWER_TEMPLATE, record=record, evidence=evidence, question=question, history=history)
            if not history or self._prompt_tokens(prompt) + self.max_new_tokens <= self.engine.context_window:
                return prompt, dropped
            history = history[2:]  # a question and its answer leave together
            dropped += 1

    def _prompt_tokens(self, prompt: RenderedPrompt) -> int:
        return self.engine.count_prompt_tokens(_chat(prompt))


def wholly_unsupported(checked: CheckedText) -> bool:
    """The answer states something and the record supports none of it."""
    return bool(checked.sentences) and "supported" not in checked.labels()


def _chat(prompt: RenderedPrompt) -> list[ChatMessage]:
    return [ChatMessage(role=message.role, content=message.content) for message in prompt.messages]


def _evidence_place(evidence: Evidence) -> Located:
    return Located(
        document=evidence.document, page=evidence.page, start=evidence.start, end=evidence.end, quote=evidence.quote,
        match="evidence", score=round(evidence.score, 2),
    )


def evidence_text(search: EvidenceSearch) -> str:
    """The evidence as the model reads it, before the question: each line with the marker of its page."""
    if not search.evidence:
        return ""
    lines = [
        f"- {' '.join(evidence.quote.split())} [Document: {evidence.document} | page {evidence.page}]"
        for evidence in search.evidence
    ]
    return "Lines of the record that may answer the question:\n" + "\n".join(lines) + "\n"


def _ending_notes(ending: Ending, budget: int) -> list[str]:
    if ending == "loop":
        return ["The answer was stopped where it began repeating itself."]
    if ending == "limit":
        return [f"The answer reached its limit of {budget:,} tokens and may be incomplete."]
    return []


def _measured_stats(times: list[float], params: GenerationParams) -> Stats:
    """Stats for an answer stopped before the engine's own came: timed here, a piece of text counted as a token
    (prompt lookup may deliver several in one piece, so the rate is a lower bound)."""
    pieces = len(times) - 1
    decode_s = times[-1] - times[1] if pieces > 1 else 0.0
    return Stats(
        prompt_tokens=0, generated_tokens=pieces, ttft_s=(times[1] - times[0]) if pieces else 0.0,
        decode_tok_s=(pieces - 1) / decode_s if decode_s > 0 else 0.0, finish_reason="stop",
    )


def _document(info: DocumentInfo) -> Document:
    """The stored document as it was read; from its page texts alone when it was stored before whole documents."""
    if info.content is not None:
        return Document.model_validate_json(info.content)
    pages = [Page(number=number, text=text) for number, text in enumerate(info.page_texts, start=1)]
    return Document(name=info.name, sha256=info.sha256, kind=info.kind, pages=pages)


def _title(documents: list[Document]) -> str:
    first = documents[0].name
    return first if len(documents) == 1 else f"{first} + {len(documents) - 1} more"
