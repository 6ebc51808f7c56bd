"""The storage operations the app calls. Each runs in its own short-lived session and returns
pydantic snapshots, so no ORM object or open transaction leaks into a Gradio handler.

Every operation on a session takes the user who asks, and finds only that user's sessions: another user's
session is "not found", the same answer as a session that never existed, so ids reveal nothing. The UI is an
untrusted client (Gradio exposes every event as an API), so this is where isolation is enforced."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage import audit
from storage.database import Database
from storage.models import (
    AuditCheck, AuditEvent, DocumentInfo, MessageInfo, NewDocument, NewMessage, SessionInfo, TurnState, UserInfo,
    UserRole,
)
from storage.schema import AuditEventRow, DocumentRow, MessageRow, SessionRow, UserRow, utc_now


class SessionNotFound(KeyError):
    def __init__(self, session_id: int) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        # KeyError's own __str__ would print just the quoted id.
        return f"No session with id {self.session_id}"


class DocumentNotFound(KeyError):
    def __str__(self) -> str:
        return f"No document with id {self.args[0]} in this session"


class UserExists(ValueError):
    pass


class UserNotFound(KeyError):
    def __str__(self) -> str:
        return f"No user named {self.args[0]!r}"


def create_session(db: Database, user: str, title: str, documents: Sequence[NewDocument]) -> SessionInfo:
    """A new session owned by `user`, holding `documents`: the session and its documents are written in one
    transaction, so a session without its record never exists, even after a crash. A user the database does not
    know yet (the command line's own) becomes a clinician account without a password, which cannot sign in through
    the browser."""
    if not documents:
        raise ValueError("A session starts with the documents of its record; none were given.")
    now = utc_now()
    with db.writing() as s:
        owner = s.scalar(select(UserRow).where(UserRow.name == user))
        if owner is None:
            owner = UserRow(name=user, role="clinician", source="local", created_at=now)
        if owner.role != "clinician" or owner.disabled:
            raise PermissionError(f"{user} is not an active clinician and cannot hold patients' records.")
        row = SessionRow(owner=owner, title=title, created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        _add_documents(s, row.id, documents, now)
        return _session_info(row)


def add_documents(db: Database, user: str, session_id: int, documents: Sequence[NewDocument]) -> list[DocumentInfo]:
    """Adds `documents` to the user's session, all of them or, if anything fails, none."""
    with db.writing() as s:
        now = _touch(s, user, session_id)
        return _add_documents(s, session_id, documents, now)


def _add_documents(s: Session, session_id: int, documents: Sequence[NewDocument], now: datetime) -> list[DocumentInfo]:
    rows = [
        DocumentRow(session_id=session_id, pages=len(document.page_texts), created_at=now, **document.model_dump())
        for document in documents
    ]
    s.add_all(rows)
    s.flush()
    # Validated before the commit, so a value the model rejects is never stored.
    return [DocumentInfo.model_validate(row) for row in rows]


def add_message(db: Database, user: str, session_id: int, role: str, text: str, **fields: Any) -> MessageInfo:
    """One message; `fields` as `NewMessage` has them. An answer goes with the end of its turn (`end_turn`)."""
    message = _with_disclaimer(NewMessage(role=role, text=text, **fields))
    with db.writing() as s:
        now = _touch(s, user, session_id)
        row = MessageRow(session_id=session_id, created_at=now, **message.model_dump())
        s.add(row)
        s.flush()
        return MessageInfo.model_validate(row)


def end_turn(
    db: Database, user: str, session_id: int, question_id: int, state: TurnState, answer: NewMessage | None = None,
    reason: str | None = None,
) -> MessageInfo | None:
    """Ends the turn of an "answering" question with `state`, and stores its answer (if any) in the same
    transaction: an answer is never kept under a question still marked as being answered, nor the reverse. A turn
    that ends without an answer may say why (`reason`, kept with the question)."""
    if answer is not None:
        _with_disclaimer(answer)
    with db.writing() as s:
        now = _touch(s, user, session_id)
        stmt = (update(MessageRow)
                .where(MessageRow.id == question_id, MessageRow.session_id == session_id,
                       MessageRow.role == "user", MessageRow.state == "answering")
                .values(state=state, grounding=None if reason is None else {"reason": reason}))
        if s.connection().execute(stmt).rowcount == 0:
            raise ValueError(f"Question {question_id} of session {session_id} is not being answered.")
        if answer is None:
            return None
        row = MessageRow(session_id=session_id, created_at=now, **answer.model_dump())
        s.add(row)
        s.flush()
        return MessageInfo.model_validate(row)


def interrupt_turns(db: Database) -> list[tuple[str, int, str]]:
    """At start-up: every turn still "answering" was cut off by the process ending; marks them "interrupted" and
    returns (owner, session id, message kind) of each, for the audit log."""
    stmt = (select(UserRow.name, SessionRow.id, MessageRow.kind).join(SessionRow.owner)
            .join(MessageRow, MessageRow.session_id == SessionRow.id).where(MessageRow.state == "answering"))
    with db.writing() as s:
        cut = [(name, session_id, kind) for name, session_id, kind in s.execute(stmt)]
        s.connection().execute(update(MessageRow).where(MessageRow.state == "answering").values(state="interrupted"))
        return cut


def get_session(db: Database, user: str, session_id: int) -> SessionInfo | None:
    """The session, when `user` owns it."""
    with db.reading() as s:
        row = s.scalar(_owned(user, session_id))
        return None if row is None else _session_info(row)


def list_sessions(db: Database, user: str) -> list[SessionInfo]:
    """The user's own sessions, most recently updated first."""
    stmt = (select(SessionRow).where(SessionRow.owner.has(UserRow.name == user))
            .order_by(SessionRow.updated_at.desc(), SessionRow.id.desc()))
    with db.reading() as s:
        return [_session_info(row) for row in s.scalars(stmt)]


def list_documents(db: Database, user: str, session_id: int) -> list[DocumentInfo]:
    """In upload order. Raises SessionNotFound unless `user` owns the session."""
    stmt = select(DocumentRow).where(DocumentRow.session_id == session_id).order_by(DocumentRow.id)
    with db.reading() as s:
        _check_owner(s, user, session_id)
        return [DocumentInfo.model_validate(row) for row in s.scalars(stmt)]


def list_messages(db: Database, user: str, session_id: int) -> list[MessageInfo]:
    """In conversation order. Raises SessionNotFound unless `user` owns the session."""
    stmt = select(MessageRow).where(MessageRow.session_id == session_id).order_by(MessageRow.id)
    with db.reading() as s:
        _check_owner(s, user, session_id)
        return [MessageInfo.model_validate(row) for row in s.scalars(stmt)]


def rename_session(db: Database, user: str, session_id: int, title: str) -> SessionInfo:
    """Leaves updated_at alone, so renaming does not move a session up the list."""
    with db.writing() as s:
        row = _check_owner(s, user, session_id)
        row.title = title
        s.flush()
        return _session_info(row)


def delete_session(db: Database, user: str, session_id: int) -> None:
    """Deletes the session with its documents and messages, overwriting their bytes in the file; its audit events
    stay."""
    with db.writing() as s:
        _check_owner(s, user, session_id)
        s.connection().execute(delete(SessionRow).where(SessionRow.id == session_id))
    db.checkpoint()


def delete_document(db: Database, user: str, session_id: int, document_id: int) -> None:
    """Removes one document from the user's session, overwriting its bytes in the file."""
    with db.writing() as s:
        _touch(s, user, session_id)
        stmt = delete(DocumentRow).where(DocumentRow.id == document_id, DocumentRow.session_id == session_id)
        if s.connection().execute(stmt).rowcount == 0:
            raise DocumentNotFound(document_id)
    db.checkpoint()


def delete_sessions_before(db: Database, cutoff: datetime) -> list[int]:
    """Retention: deletes every session last updated before `cutoff`, whoever owns it, and returns their ids."""
    with db.writing() as s:
        ids = list(s.scalars(select(SessionRow.id).where(SessionRow.updated_at < cutoff)))
        if ids:
            s.connection().execute(delete(SessionRow).where(SessionRow.id.in_(ids)))
    if ids:
        db.checkpoint()
    return ids


def record_event(
    db: Database, user: str, action: str, session_id: int | None = None, detail: str | None = None,
    address: str | None = None,
) -> None:
    """Appends a sealed row to the audit log (storage/audit.py)."""
    with db.writing() as s:
        audit.append(s, db.audit_key, user, action, session_id, detail, address, utc_now())


def list_events(
    db: Database, session_id: int | None = None, user: str | None = None, action: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> list[AuditEvent]:
    """Oldest first; every event, or those matching the filters given (a deleted session's events too). Who may
    read the log is the app's decision: storage serves the auditor's role."""
    stmt = select(AuditEventRow).order_by(AuditEventRow.id)
    for column, value in ((AuditEventRow.session_id, session_id), (AuditEventRow.user, user),
                          (AuditEventRow.action, action)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEventRow.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditEventRow.created_at < until)
    with db.reading() as s:
        return [AuditEvent.model_validate(row) for row in s.scalars(stmt)]


def verify_events(db: Database) -> AuditCheck:
    """Whether the audit log is as it was written: no row changed, removed or inserted."""
    with db.reading() as s:
        return audit.verify(s, db.audit_key)


# --- Accounts ---------------------------------------------------------------------------------------------------


def add_user(
    db: Database, name: str, role: UserRole, password_hash: str | None, source: str = "local"
) -> UserInfo:
    with db.writing() as s:
        if s.scalar(select(UserRow).where(UserRow.name == name)) is not None:
            raise UserExists(f"A user named {name!r} exists already.")
        row = UserRow(name=name, role=role, password_hash=password_hash, source=source, created_at=utc_now())
        s.add(row)
        s.flush()
        return _user_info(row)


def get_user(db: Database, name: str) -> UserInfo | None:
    with db.reading() as s:
        row = s.scalar(select(UserRow).where(UserRow.name == name))
        return None if row is None else _user_info(row)


def password_hash(db: Database, name: str) -> str | None:
    """The stored hash, for the sign-in check only; UserInfo never carries it."""
    with db.reading() as s:
        return s.scalar(select(UserRow.password_hash).where(UserRow.name == name))


def list_users(db: Database) -> list[UserInfo]:
    with db.reading() as s:
        return [_user_info(row) for row in s.scalars(select(UserRow).order_by(UserRow.name))]


def update_user(db: Database, name: str, **changes: Any) -> UserInfo:
    """Sets the given columns of a user: role, password_hash, disabled, failed_signins, locked_until."""
    allowed = {"role", "password_hash", "disabled", "failed_signins", "locked_until"}
    if not changes.keys() <= allowed:
        raise ValueError(f"Cannot change {sorted(changes.keys() - allowed)} of a user.")
    with db.writing() as s:
        row = s.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise UserNotFound(name)
        for column, value in changes.items():
            setattr(row, column, value)
        s.flush()
        return _user_info(row)


def _with_disclaimer(message: NewMessage) -> NewMessage:
    if message.role == "assistant" and not (message.disclaimer and message.disclaimer.strip()):
        raise ValueError("Every assistant answer is stored with its disclaimer; none was given.")
    return message


def _owned(user: str, session_id: int):
    return select(SessionRow).where(SessionRow.id == session_id, SessionRow.owner.has(UserRow.name == user))


def _check_owner(s: Session, user: str, session_id: int) -> SessionRow:
    row = s.scalar(_owned(user, session_id))
    if row is None:
        raise SessionNotFound(session_id)
    return row


def _touch(s: Session, user: str, session_id: int) -> datetime:
    """Bumps the session's updated_at to now, which also proves the session exists, and returns that time. It is
    read under the write lock, so writes' times follow the order they land in: the session's updated_at is always
    its latest write's, however threads interleave."""
    now = utc_now()
    owner = select(UserRow.id).where(UserRow.name == user).scalar_subquery()
    # Run on the connection rather than through the ORM: it reports the rowcount and loads nothing.
    stmt = update(SessionRow).where(SessionRow.id == session_id, SessionRow.user_id == owner).values(updated_at=now)
    if s.connection().execute(stmt).rowcount == 0:
        raise SessionNotFound(session_id)
    return now


def _user_info(row: UserRow) -> UserInfo:
    return UserInfo(
        name=row.name, role=row.role, source=row.source, disabled=row.disabled, failed_signins=row.failed_signins,
        locked_until=row.locked_until, created_at=row.created_at, has_password=row.password_hash is not None,
    )


def _session_info(row: SessionRow) -> SessionInfo:
    return SessionInfo(
        id=row.id, title=row.title, user=row.owner.name, created_at=row.created_at, updated_at=row.updated_at
    )
