"""The assistant's pipelines: uploaded files become a session, questions become stored, streamed answers.

No Gradio here. The browser UI and the command line both call these functions and only render what
they return or yield.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

from pydantic import BaseModel

from app.grounding import GroundedAnswer, ground
from app.safety import patient_mismatch, scope_boundary
from app.settings import Settings
from app.summary import (
    SUMMARY_QUERY,
    ChartSummary,
    SummaryDraft,
    build_summary,
    draft_schema,
    parse_draft,
    summary_text,
)
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
    MessageInfo,
    SessionInfo,
    SessionNotFound,
    add_document,
    add_message,
    create_session,
    delete_session,
    get_session,
    list_documents,
    list_messages,
    list_sessions,
    record_event,
)

ANSWER_TEMPLATE = "answer"
SUMMARY_TEMPLATE = "summary"
# What the stored conversation shows for the request of a summary.
SUMMARY_REQUEST = "Summarise this record."
# Said under an answer none of whose statements the record supports: it reads as fluently as a true one.
UNSUPPORTED_ANSWER = (
    "Nothing this answer states could be found in the record: treat it as unsupported and check the record itself."
)


class FileFailure(BaseModel):
    """A file of an upload that could not be read, and why, in words a clinician can act on."""

    name: str
    reason: str
    # An encrypted PDF: the UI offers to read it again with its password.
    needs_password: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class Upload(BaseModel):
    """The files of one upload, read: the documents that loaded and the files that did not."""

    documents: list[Document]
    failures: list[FileFailure]
    # The user stopped the reading: nothing of the upload is kept, not even the files read before the stop.
    cancelled: bool = False


class RecordStatus(BaseModel):
    """How much of the model's context the session's record takes."""

    tokens: int
    budget: int  # what is left for the record once the answer and the prompt's own words are reserved
    context_window: int
    fits: bool


class SessionView(BaseModel):
    session: SessionInfo
    documents: list[DocumentInfo]
    # By document id; absent for documents stored before coverage was kept.
    coverage: dict[int, Coverage]
    messages: list[MessageInfo]
    record: RecordStatus
    # Said before anything else: the documents may be about different patients.
    warnings: list[str] = []

    def page_texts(self) -> dict[tuple[str, int], str]:
        """Each page's text by (document name, page number): what citations point into."""
        return {(info.name, page.number): page.text for info in self.documents for page in _document(info).pages}


class AnswerDelta(BaseModel):
    """The next piece of the answer being generated."""

    text: str


class Answer(BaseModel):
    """The finished answer, as stored."""

    text: str  # ends with its notes
    disclaimer: str
    model: str
    prompt_version: str
    stats: Stats
    # Each sentence labelled supported or not by the spans of the record it cites.
    grounding: GroundedAnswer
    # What the model did not read: the part of the record or the oldest turns of the conversation left out.
    notes: list[str] = []


class SummaryProgress(BaseModel):
    """The model's draft of a summary is this many tokens long so far."""

    tokens: int


class Summary(BaseModel):
    """The finished structured summary, as stored."""

    summary: ChartSummary
    disclaimer: str
    model: str
    prompt_version: str
    stats: Stats


class Notice(BaseModel):
    """Why the question was not put to the model. Nothing is stored for it."""

    text: str


AskEvent = AnswerDelta | Answer | Notice
SummaryEvent = SummaryProgress | Summary | Notice


# Called after each page with (file's name, pages read, pages in the file, position of the file, files in the upload).
UploadProgress = Callable[[str, int, int, int, int], None]


def read_upload(
    files: Sequence[tuple[str | Path, str]],
    max_bytes: int,
    *,
    password: str | None = None,
    progress: UploadProgress | None = None,
    cancel: threading.Event | None = None,
) -> Upload:
    """Load each (path, original name); one unreadable file does not stop the others.

    Needs no model, so a caller can reject a bad upload before paying for loading one. `password` is tried on
    encrypted PDFs; `cancel`, once set, ends the reading before the next page and drops the whole upload.
    """
    documents: list[Document] = []
    failures: list[FileFailure] = []
    for position, (path, name) in enumerate(files, start=1):
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
    return Upload(documents=documents, failures=failures)


def _file_progress(progress: UploadProgress, name: str, position: int, files: int) -> Callable[[int, int], None]:
    return lambda read, total: progress(name, read, total, position, files)


class Assistant:
    """One engine, one database, one user: everything the UI and the CLI ask of Clinidoc."""

    def __init__(self, engine: Engine, db: Database, settings: Settings) -> None:
        self.engine = engine
        self.db = db
        self.user = settings.user
        self.params = GenerationParams(max_new_tokens=settings.max_new_tokens)
        bare = render(ANSWER_TEMPLATE, record="", question="")
        self.record_budget = engine.context_window - self.params.max_new_tokens - self._prompt_tokens(bare)
        self.summary_tokens = settings.summary_tokens
        bare = render(SUMMARY_TEMPLATE, record="")
        self.summary_budget = engine.context_window - self.summary_tokens - self._prompt_tokens(bare)

    def sessions(self) -> list[SessionInfo]:
        return list_sessions(self.db, user=self.user)

    def start_session(self, upload: Upload) -> SessionView | None:
        """Store the readable documents of `upload` as a new session; None when no file was readable."""
        for failure in upload.failures:
            # Audit events outlive a deleted session, so they carry no file names or text:
            # a file name often names the patient.
            record_event(self.db, self.user, "upload_rejected", detail=failure.reason)
        if not upload.documents:
            return None
        session = create_session(self.db, _title(upload.documents), user=self.user)
        return self.add_documents(session.id, upload.documents)

    def add_documents(self, session_id: int, documents: Sequence[Document]) -> SessionView:
        """Store `documents` in an open session: a PDF opened with its password after the rest of its upload."""
        for document in documents:
            document = with_tokens(document, self.engine.count_tokens)
            tokens = assemble([document], self.record_budget, self.engine.count_tokens).tokens
            pages = [page.text for page in document.pages]
            add_document(
                self.db, session_id, document.name, document.sha256, document.kind, pages, tokens,
                content=document.model_dump_json(),
            )
            record_event(
                self.db, self.user, "upload", session_id, detail=f"{document.kind} sha256:{document.sha256}"
            )
        return self.view(session_id)

    def open_session(self, session_id: int) -> SessionView:
        view = self.view(session_id)
        record_event(self.db, self.user, "session_open", session_id)
        return view

    def record_export(self, session_id: int) -> None:
        """Note in the audit log that the session left Clinidoc as an export (app/export.py)."""
        record_event(self.db, self.user, "export", session_id)

    def delete_session(self, session_id: int) -> None:
        delete_session(self.db, session_id)
        record_event(self.db, self.user, "session_delete", session_id)

    def ask(self, session_id: int, question: str) -> Iterator[AskEvent]:
        """Stream the answer to `question`, then store the question and the answer together.

        Yields AnswerDelta pieces and then one Answer, or a single Notice when the question cannot
        be put to the model. An answer abandoned mid-stream is not stored.
        """
        record_event(self.db, self.user, "question", session_id)
        if (boundary := scope_boundary(question)) is not None:
            yield Notice(text=boundary)
            record_event(self.db, self.user, "question_unanswered", session_id, detail="outside the record's scope")
            return
        # Over the budget, the record is cut to the passages that rank best against the question.
        documents = self._documents(session_id)
        record = self._assemble(documents, query=question)
        # Retrieval always fits the budget, but a budget smaller than every passage leaves the model nothing to read.
        if not record.fits or (record.retrieval is not None and record.retrieval.passages_used == 0):
            yield Notice(
                text=f"This record has {record.record_tokens:,} tokens; the model can read only {record.budget:,} "
                "at once, too few for even one passage of it."
            )
            record_event(self.db, self.user, "question_unanswered", session_id, detail="record too long")
            return
        # A summary restates the record the prompt already holds, at length; the conversation is the questions.
        history = [message for message in list_messages(self.db, session_id) if message.kind == "chat"]
        prompt, dropped = self._fit_history(record.text, history, question)
        notes = [] if record.retrieval is None else [record.retrieval.summary()]
        if dropped:
            notes.append(
                f"The {dropped:,} oldest of the {len(history) // 2:,} earlier exchanges did not fit beside the record "
                "and were left out of what the model read."
            )
        pieces: list[str] = []
        stats: Stats | None = None
        try:
            for event in self.engine.generate(_chat(prompt), self.params):
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                    yield AnswerDelta(text=event.text)
                else:
                    stats = event
        except PromptTooLong as err:
            yield Notice(text=f"{err} Ask a shorter question, or start a new session.")
            record_event(self.db, self.user, "question_unanswered", session_id, detail="prompt too long")
            return
        except EngineError as err:  # a remote server gone, a device out of memory: said, and the session goes on
            yield Notice(text=str(err))
            record_event(self.db, self.user, "question_unanswered", session_id, detail="engine error")
            return
        assert stats is not None, "the engine ends every generation with its Stats"
        text = "".join(pieces).strip()
        grounding = ground(text, documents)
        if wholly_unsupported(grounding):
            notes.insert(0, UNSUPPORTED_ANSWER)
        answer = Answer(
            # The notes are part of the stored text, so a reopened session still says what the model did not read.
            text="\n\n".join([text, *notes]),
            disclaimer=disclaimer(),
            model=self.engine.info.model_name,
            prompt_version=prompt.version,
            stats=stats,
            grounding=grounding,
            notes=notes,
        )
        add_message(self.db, session_id, "user", question)
        add_message(
            self.db,
            session_id,
            "assistant",
            answer.text,
            disclaimer=answer.disclaimer,
            model=answer.model,
            prompt_version=answer.prompt_version,
            stats=stats.model_dump(exclude={"kind"}),
            citations=[citation.model_dump() for citation in answer.grounding.citations],
            grounding=answer.grounding.model_dump(exclude={"citations"}),
        )
        record_event(self.db, self.user, "answer", session_id, detail=f"{answer.model} {answer.prompt_version}")
        yield answer

    def summarize(self, session_id: int) -> Iterator[SummaryEvent]:
        """Draft, check and store the structured summary of the session's record.

        Yields SummaryProgress while the model drafts, then one Summary; a Notice when the record cannot be put to
        the model at all.
        """
        record_event(self.db, self.user, "summary", session_id)
        documents = self._documents(session_id)
        record, prompt = self._summary_prompt(documents)
        if not record.fits or (record.retrieval is not None and record.retrieval.passages_used == 0):
            yield Notice(text=f"The model can read only {record.budget:,} tokens at once, too few for this record.")
            return
        params = GenerationParams(max_new_tokens=self.summary_tokens, json_schema=draft_schema(documents))
        pieces: list[str] = []
        stats: Stats | None = None
        try:
            for event in self.engine.generate(_chat(prompt), params):
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                    yield SummaryProgress(tokens=len(pieces))
                else:
                    stats = event
        except EngineError as err:
            yield Notice(text=str(err))
            record_event(self.db, self.user, "summary_failed", session_id, detail="engine error")
            return
        assert stats is not None, "the engine ends every generation with its Stats"
        notes = []
        if record.retrieval is not None:
            notes.append(
                "The model drafted from part of the record, the passages on problems, medications, results and "
                "plans; lists read from structured entries are complete."
            )
        if stats.finish_reason == "length":
            notes.append(f"The model's draft reached its limit of {self.summary_tokens:,} tokens; later items are missing.")
        draft = parse_draft("".join(pieces))
        if draft is None:
            notes.append("The model's draft could not be read; the summary shows only what coded entries hold.")
        chart = build_summary(documents, draft or SummaryDraft()).model_copy(update={"notes": notes})
        summary = Summary(
            summary=chart, disclaimer=disclaimer(), model=self.engine.info.model_name, prompt_version=prompt.version,
            stats=stats,
        )
        add_message(self.db, session_id, "user", SUMMARY_REQUEST, kind="summary")
        add_message(
            self.db,
            session_id,
            "assistant",
            summary_text(chart),
            disclaimer=summary.disclaimer,
            model=summary.model,
            prompt_version=summary.prompt_version,
            stats=stats.model_dump(exclude={"kind"}),
            kind="summary",
            citations=[citation.model_dump() for citation in chart.citations],
            grounding=chart.model_dump(exclude={"citations"}),
        )
        record_event(self.db, self.user, "summary_done", session_id, detail=f"{summary.model} {prompt.version}")
        yield summary

    def summary_messages(self, session_id: int) -> list[ChatMessage]:
        """What a summary of the session puts to the model; the benchmark decodes it with and without the grammar."""
        return _chat(self._summary_prompt(self._documents(session_id))[1])

    def _summary_prompt(self, documents: list[Document]) -> tuple[AssembledRecord, RenderedPrompt]:
        record = assemble(documents, self.summary_budget, self.engine.count_tokens, query=SUMMARY_QUERY)
        return record, render(SUMMARY_TEMPLATE, record=record.text)

    def view(self, session_id: int) -> SessionView:
        """The session as it is stored now; unlike open_session, not an access to record in the audit log."""
        session = get_session(self.db, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        stored = list_documents(self.db, session_id)
        documents = [_document(info) for info in stored]
        mismatch = patient_mismatch([(document.name, identify(document)) for document in documents])
        return SessionView(
            session=session,
            documents=stored,
            coverage={info.id: doc.coverage for info, doc in zip(stored, documents) if doc.coverage is not None},
            messages=list_messages(self.db, session_id),
            record=self._status(self._assemble(documents)),
            warnings=[] if mismatch is None else [mismatch],
        )

    def _documents(self, session_id: int) -> list[Document]:
        return [_document(info) for info in list_documents(self.db, session_id)]

    def _assemble(self, documents: list[Document], query: str | None = None) -> AssembledRecord:
        return assemble(documents, self.record_budget, self.engine.count_tokens, query=query)

    def _status(self, record: AssembledRecord) -> RecordStatus:
        return RecordStatus(
            tokens=record.tokens, budget=record.budget, context_window=self.engine.context_window, fits=record.fits
        )

    def _fit_history(
        self, record: str, history: list[MessageInfo], question: str
    ) -> tuple[RenderedPrompt, int]:
        """The answer prompt with as much of the conversation as fits, dropping the oldest exchanges first; and how
        many exchanges were dropped."""
        turns = [PromptMessage(role=message.role, content=message.text) for message in history]
        dropped = 0
        while True:
            prompt = render(ANSWER_TEMPLATE, record=record, question=question, history=turns)
            if not turns or self._prompt_tokens(prompt) + self.params.max_new_tokens <= self.engine.context_window:
                return prompt, dropped
            turns = turns[2:]  # a question and its answer leave together
            dropped += 1

    def _prompt_tokens(self, prompt: RenderedPrompt) -> int:
        return self.engine.count_prompt_tokens(_chat(prompt))


def _chat(prompt: RenderedPrompt) -> list[ChatMessage]:
    return [ChatMessage(role=message.role, content=message.content) for message in prompt.messages]


def _document(info: DocumentInfo) -> Document:
    """The stored document as it was read; from its page texts alone when it was stored before whole documents."""
    if info.content is not None:
        return Document.model_validate_json(info.content)
    pages = [Page(number=number, text=text) for number, text in enumerate(info.page_texts, start=1)]
    return Document(name=info.name, sha256=info.sha256, kind=info.kind, pages=pages)


def wholly_unsupported(grounding: GroundedAnswer) -> bool:
    """The answer claims something and the record supports none of it."""
    labels = {sentence.label for sentence in grounding.sentences}
    return "not_supported" in labels and "supported" not in labels


def _title(documents: list[Document]) -> str:
    first = documents[0].name
    return first if len(documents) == 1 else f"{first} + {len(documents) - 1} more"
