"""The SQLite tables as SQLAlchemy ORM rows. Only storage/ sees these; callers get storage.models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, Dialect, ForeignKey, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Raise together with a migration step in storage/database.py whenever a table changes shape.
SCHEMA_VERSION = 5


# The states of a turn (see MessageRow.state), as SQL's tuple.
TURN_STATES = "('answering', 'answered', 'stopped', 'interrupted', 'failed')"


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """SQLite keeps no timezone, so store naive UTC and hand back timezone-aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('clinician', 'administrator', 'auditor')", name="user_role"),
        CheckConstraint("source IN ('local', 'directory')", name="user_source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    role: Mapped[str] = mapped_column(Text, server_default="clinician")
    # An Argon2 hash; NULL for an account that cannot sign in with a password here (a directory account, or the
    # command line's own user, whose sign-in is the operating system's).
    password_hash: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, server_default="local")
    disabled: Mapped[bool] = mapped_column(Boolean, server_default="0")
    failed_signins: Mapped[int] = mapped_column(server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SessionRow(Base):
    __tablename__ = "sessions"
    # AUTOINCREMENT so a deleted session's id is never handed out again: its audit rows still carry it.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    owner: Mapped[UserRow] = relationship(lazy="joined", innerjoin=True)


# The session_id indexes below matter beyond lookups: SQLite does not index foreign keys itself,
# and without them every cascading delete scans the whole child table.


class DocumentRow(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str]
    kind: Mapped[str]
    pages: Mapped[int]
    tokens: Mapped[int]
    page_texts: Mapped[list[str]] = mapped_column(JSON)
    # The whole document as the caller serialised it (sections, sources, coverage), opaque to storage.
    # NULL for documents stored before schema version 2: their page texts still rebuild them.
    content: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant')", name="message_role"),
        # The disclaimer rule is a clinical-safety invariant, so the file enforces it too, not only queries.py.
        CheckConstraint(
            "role = 'user' OR (disclaimer IS NOT NULL AND trim(disclaimer) <> '')",
            name="assistant_has_disclaimer",
        ),
        CheckConstraint(f"state IN {TURN_STATES}", name="turn_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str]
    text: Mapped[str] = mapped_column(Text)
    disclaimer: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None]
    prompt_version: Mapped[str | None]
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # "chat" for questions and answers, "summary" for a structured summary of the record and its request.
    kind: Mapped[str] = mapped_column(Text, server_default="chat")
    # The spans of the record the message cites, and how its statements were checked against them; both
    # are the caller's serialised models, opaque to storage. Empty and NULL for messages before version 3.
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, server_default="[]")
    grounding: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A question's turn: stored as "answering" when asked, then ended with its answer ("answered", "stopped") or
    # without one ("stopped", "failed"), or found "answering" at start-up and marked "interrupted". Answers, and
    # rows older than schema version 5, are "answered".
    state: Mapped[str] = mapped_column(Text, server_default="answered")


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user: Mapped[str]
    action: Mapped[str]
    # A plain integer, not a foreign key: the audit trail has to outlive the session it describes.
    session_id: Mapped[int | None] = mapped_column(index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    address: Mapped[str | None] = mapped_column(Text)  # where the request came from; NULL for the command line
    # The chain that makes the log append-only (storage/audit.py): each row's seal covers its fields and the
    # seal of the row before it.
    previous_seal: Mapped[str | None] = mapped_column(Text)
    seal: Mapped[str | None] = mapped_column(Text)


class AuditHeadRow(Base):
    """The last seal and the count of rows, so that removing the newest rows breaks the chain too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    rows: Mapped[int]
    seal: Mapped[str]
