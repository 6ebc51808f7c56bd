"""What storage hands back: snapshots of stored rows, detached from the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["user", "assistant"]
MessageKind = Literal["chat", "summary"]
TurnState = Literal["answering", "answered", "stopped", "interrupted", "failed"]


class _Record(BaseModel):
    # Frozen because changing a snapshot would not change what is stored.
    model_config = ConfigDict(from_attributes=True, frozen=True)


class SessionInfo(_Record):
    id: int
    title: str
    user: str
    created_at: datetime
    updated_at: datetime


class DocumentInfo(_Record):
    id: int
    session_id: int
    name: str
    sha256: str
    kind: str
    pages: int
    tokens: int
    page_texts: list[str]
    content: str | None  # the caller's serialised document; None for rows older than schema version 2
    created_at: datetime


class NewDocument(BaseModel):
    """A document to store; `create_session` and `add_documents` write all of an upload's documents in one
    transaction, so a session never holds half an upload."""

    name: str
    sha256: str
    kind: str
    page_texts: list[str]
    tokens: int
    content: str | None = None  # the whole document as the caller serialised it, kept as the string it is


class MessageInfo(_Record):
    id: int
    session_id: int
    role: Role
    text: str
    disclaimer: str | None
    model: str | None
    prompt_version: str | None
    stats: dict[str, Any] | None
    kind: MessageKind
    citations: list[dict[str, Any]]
    grounding: dict[str, Any] | None
    created_at: datetime
    state: TurnState


class NewMessage(BaseModel):
    """A message to store; `end_turn` writes an answer in the transaction that ends its question's turn."""

    role: Role
    text: str
    disclaimer: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    stats: dict[str, Any] | None = None
    kind: MessageKind = "chat"
    citations: list[dict[str, Any]] = []
    grounding: dict[str, Any] | None = None
    state: TurnState = "answered"


class AuditEvent(_Record):
    id: int
    user: str
    action: str
    session_id: int | None
    detail: str | None
    created_at: datetime
    address: str | None


class AuditCheck(BaseModel):
    """What `clinidoc audit verify` reports: whether the chain is whole, and where it breaks."""

    ok: bool
    rows: int  # rows walked, up to and including the first that fails
    problem: str | None


UserRole = Literal["clinician", "administrator", "auditor"]


class UserInfo(_Record):
    name: str
    role: UserRole
    source: Literal["local", "directory"]
    disabled: bool
    failed_signins: int
    locked_until: datetime | None
    created_at: datetime
    has_password: bool
