"""The storage operations the app calls. Each runs in its own short-lived session and returns
pydantic snapshots, so no ORM object or open transaction leaks into a Gradio handler."""

from __future__ import annotations

from datetime import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.database import Database
from storage.models import AuditEvent, DocumentInfo, MessageInfo, NewMessage, SessionInfo
from storage.schema import AuditEventRow, DocumentRow, MessageRow, SessionRow, UserRow, utc_now


class SessionNotFound(KeyError):
    def __init__(self, session_id: int) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        # KeyError's own __str__ would print just the quoted id.
        return f"No session with id {self.session_id}"


def create_session(db: Database, title: str, user: str = "local") -> SessionInfo:
    now = utc_now()
    with db.writing() as s:
        owner = s.scalar(select(UserRow).where(UserRow.name == user))
        if owner is None:
            owner = UserRow(name=user, created_at=now)
        row = SessionRow(owner=owner, title=title, created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        return _session_info(row)


def add_document(
    db: Database,
    session_id: int,
    name: str,
    sha256: str,
    kind: str,
    page_texts: list[str],
    tokens: int,
    content: str | None = None,
) -> DocumentInfo:
    """`content`: the whole document serialised by the caller, kept as the string it is."""
    with db.writing() as s:
        now = _touch(s, session_id)
        row = DocumentRow(
            session_id=session_id,
            name=name,
            sha256=sha256,
            kind=kind,
            pages=len(page_texts),
            tokens=tokens,
            page_texts=page_texts,
            content=content,
            created_at=now,
        )
        s.add(row)
        s.flush()
        # Validated before the commit, so a value the model rejects is never stored.
        return DocumentInfo.model_validate(row)


def add_message(db: Database, session_id: int, role: str, text: str, **fields: Any) -> MessageInfo:
    """One message on its own; `fields` as `NewMessage` has them."""
    return add_messages(db, session_id, [NewMessage(role=role, text=text, **fields)])[0]


def add_messages(db: Database, session_id: int, messages: Sequence[NewMessage]) -> list[MessageInfo]:
    """Stores `messages` together, in one transaction: a question is never kept without its answer."""
    for message in messages:
        if message.role == "assistant" and not (message.disclaimer and message.disclaimer.strip()):
            raise ValueError("Every assistant answer is stored with its disclaimer; none was given.")
    with db.writing() as s:
        now = _touch(s, session_id)
        rows = [MessageRow(session_id=session_id, created_at=now, **message.model_dump()) for message in messages]
        s.add_all(rows)
        s.flush()
        return [MessageInfo.model_validate(row) for row in rows]


def get_session(db: Database, session_id: int) -> SessionInfo | None:
    with db.reading() as s:
        row = s.get(SessionRow, session_id)
        return None if row is None else _session_info(row)


def list_sessions(db: Database, user: str | None = None) -> list[SessionInfo]:
    """Most recently updated first."""
    stmt = select(SessionRow).order_by(SessionRow.updated_at.desc(), SessionRow.id.desc())
    if user is not None:
        stmt = stmt.where(SessionRow.owner.has(UserRow.name == user))
    with db.reading() as s:
        return [_session_info(row) for row in s.scalars(stmt)]


def list_documents(db: Database, session_id: int) -> list[DocumentInfo]:
    """In upload order; empty for an unknown session."""
    stmt = select(DocumentRow).where(DocumentRow.session_id == session_id).order_by(DocumentRow.id)
    with db.reading() as s:
        return [DocumentInfo.model_validate(row) for row in s.scalars(stmt)]


def list_messages(db: Database, session_id: int) -> list[MessageInfo]:
    """In conversation order; empty for an unknown session."""
    stmt = select(MessageRow).where(MessageRow.session_id == session_id).order_by(MessageRow.id)
    with db.reading() as s:
        return [MessageInfo.model_validate(row) for row in s.scalars(stmt)]


def rename_session(db: Database, session_id: int, title: str) -> SessionInfo:
    """Leaves updated_at alone, so renaming does not move a session up the list."""
    with db.writing() as s:
        row = s.get(SessionRow, session_id)
        if row is None:
            raise SessionNotFound(session_id)
        row.title = title
        s.flush()
        return _session_info(row)


def delete_session(db: Database, session_id: int) -> None:
    """Deletes the session with its documents and messages; its audit events stay."""
    with db.writing() as s:
        if s.connection().execute(delete(SessionRow).where(SessionRow.id == session_id)).rowcount == 0:
            raise SessionNotFound(session_id)


def record_event(
    db: Database, user: str, action: str, session_id: int | None = None, detail: str | None = None
) -> None:
    with db.writing() as s:
        s.add(AuditEventRow(user=user, action=action, session_id=session_id, detail=detail, created_at=utc_now()))


def list_events(db: Database, session_id: int | None = None) -> list[AuditEvent]:
    """Oldest first; all events, or those of one session (deleted or not)."""
    stmt = select(AuditEventRow).order_by(AuditEventRow.id)
    if session_id is not None:
        stmt = stmt.where(AuditEventRow.session_id == session_id)
    with db.reading() as s:
        return [AuditEvent.model_validate(row) for row in s.scalars(stmt)]


def _touch(s: Session, session_id: int) -> datetime:
    """Bumps the session's updated_at to now, which also proves the session exists, and returns that time. It is
    read under the write lock, so writes' times follow the order they land in: the session's updated_at is always
    its latest write's, however threads interleave."""
    now = utc_now()
    # Run on the connection rather than through the ORM: it reports the rowcount and loads nothing.
    stmt = update(SessionRow).where(SessionRow.id == session_id).values(updated_at=now)
    if s.connection().execute(stmt).rowcount == 0:
        raise SessionNotFound(session_id)
    return now


def _session_info(row: SessionRow) -> SessionInfo:
    return SessionInfo(
        id=row.id, title=row.title, user=row.owner.name, created_at=row.created_at, updated_at=row.updated_at
    )
