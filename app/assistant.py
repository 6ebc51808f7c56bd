"""The assistant's pipelines: uploaded files become a session, questions become stored, streamed answers.

No Gradio here. The browser UI and the command line both call these functions and only render what
they return or yield.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from pydantic import BaseModel

from app.settings import Settings
from documents import AssembledRecord, Document, DocumentError, Page, assemble, load
from engine import ChatMessage, Engine, GenerationParams, PromptTooLong, Stats, TextDelta
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


class FileFailure(BaseModel):
    """A file of an upload that could not be read, and why, in words a clinician can act on."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class Upload(BaseModel):
    """The files of one upload, read: the documents that loaded and the files that did not."""

    documents: list[Document]
    failures: list[FileFailure]


class RecordStatus(BaseModel):
    """How much of the model's context the session's record takes."""

    tokens: int
    budget: int  # what is left for the record once the answer and the prompt's own words are reserved
    context_window: int
    fits: bool


class SessionView(BaseModel):
    session: SessionInfo
    documents: list[DocumentInfo]
    messages: list[MessageInfo]
    record: RecordStatus


class AnswerDelta(BaseModel):
    """The next piece of the answer being generated."""

    text: str


class Answer(BaseModel):
    """The finished answer, as stored."""

    text: str
    disclaimer: str
    model: str
    prompt_version: str
    stats: Stats


class Notice(BaseModel):
    """Why the question was not put to the model. Nothing is stored for it."""

    text: str


AskEvent = AnswerDelta | Answer | Notice


def read_upload(files: Sequence[tuple[str | Path, str]], max_bytes: int) -> Upload:
    """Load each (path, original name); one unreadable file does not stop the others.

    Needs no model, so a caller can reject a bad upload before paying for loading one.
    """
    documents: list[Document] = []
    failures: list[FileFailure] = []
    for path, name in files:
        try:
            documents.append(load(path, name=name, max_bytes=max_bytes))
        except DocumentError as err:
            failures.append(FileFailure(name=err.name, reason=err.reason))
    return Upload(documents=documents, failures=failures)


class Assistant:
    """One engine, one database, one user: everything the UI and the CLI ask of Clinidoc."""

    def __init__(self, engine: Engine, db: Database, settings: Settings) -> None:
        self.engine = engine
        self.db = db
        self.user = settings.user
        self.params = GenerationParams(max_new_tokens=settings.max_new_tokens)
        bare = render(ANSWER_TEMPLATE, record="", question="")
        self.record_budget = engine.context_window - self.params.max_new_tokens - self._prompt_tokens(bare)

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
        for document in upload.documents:
            tokens = assemble([document], self.record_budget, self.engine.count_tokens).tokens
            pages = [page.text for page in document.pages]
            add_document(self.db, session.id, document.name, document.sha256, document.kind, pages, tokens)
            record_event(
                self.db, self.user, "upload", session.id, detail=f"{document.kind} sha256:{document.sha256}"
            )
        return self._view(session.id)

    def open_session(self, session_id: int) -> SessionView:
        view = self._view(session_id)
        record_event(self.db, self.user, "session_open", session_id)
        return view

    def delete_session(self, session_id: int) -> None:
        delete_session(self.db, session_id)
        record_event(self.db, self.user, "session_delete", session_id)

    def ask(self, session_id: int, question: str) -> Iterator[AskEvent]:
        """Stream the answer to `question`, then store the question and the answer together.

        Yields AnswerDelta pieces and then one Answer, or a single Notice when the question cannot
        be put to the model. An answer abandoned mid-stream is not stored.
        """
        record_event(self.db, self.user, "question", session_id)
        record = self._assemble(list_documents(self.db, session_id))
        if not record.fits:
            yield Notice(
                text=f"This record has {record.tokens:,} tokens; the model can read {record.budget:,} at once. "
                "Retrieval for long records is not available yet."
            )
            record_event(self.db, self.user, "question_unanswered", session_id, detail="record too long")
            return
        prompt = self._fit_history(record.text, list_messages(self.db, session_id), question)
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
        assert stats is not None, "the engine ends every generation with its Stats"
        answer = Answer(
            text="".join(pieces).strip(),
            disclaimer=disclaimer(),
            model=self.engine.info.model_name,
            prompt_version=prompt.version,
            stats=stats,
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
        )
        record_event(self.db, self.user, "answer", session_id, detail=f"{answer.model} {answer.prompt_version}")
        yield answer

    def _view(self, session_id: int) -> SessionView:
        session = get_session(self.db, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        documents = list_documents(self.db, session_id)
        return SessionView(
            session=session,
            documents=documents,
            messages=list_messages(self.db, session_id),
            record=self._status(self._assemble(documents)),
        )

    def _assemble(self, documents: list[DocumentInfo]) -> AssembledRecord:
        return assemble([_document(info) for info in documents], self.record_budget, self.engine.count_tokens)

    def _status(self, record: AssembledRecord) -> RecordStatus:
        return RecordStatus(
            tokens=record.tokens, budget=record.budget, context_window=self.engine.context_window, fits=record.fits
        )

    def _fit_history(self, record: str, history: list[MessageInfo], question: str) -> RenderedPrompt:
        """The answer prompt with as much of the conversation as fits, dropping the oldest turns first."""
        turns = [PromptMessage(role=message.role, content=message.text) for message in history]
        while True:
            prompt = render(ANSWER_TEMPLATE, record=record, question=question, history=turns)
            if not turns or self._prompt_tokens(prompt) + self.params.max_new_tokens <= self.engine.context_window:
                return prompt
            turns = turns[2:]  # a question and its answer leave together

    def _prompt_tokens(self, prompt: RenderedPrompt) -> int:
        return self.engine.count_prompt_tokens(_chat(prompt))


def _chat(prompt: RenderedPrompt) -> list[ChatMessage]:
    return [ChatMessage(role=message.role, content=message.content) for message in prompt.messages]


def _document(info: DocumentInfo) -> Document:
    pages = [Page(number=number, text=text) for number, text in enumerate(info.page_texts, start=1)]
    return Document(name=info.name, sha256=info.sha256, kind=info.kind, pages=pages)


def _title(documents: list[Document]) -> str:
    first = documents[0].name
    return first if len(documents) == 1 else f"{first} + {len(documents) - 1} more"
