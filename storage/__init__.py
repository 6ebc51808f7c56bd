"""Clinidoc's SQLite store: sessions, their documents and messages, and the audit log."""

from storage.database import Database, open_database
from storage.models import AuditEvent, DocumentInfo, MessageInfo, NewMessage, SessionInfo
from storage.queries import (
    SessionNotFound,
    add_document,
    add_message,
    add_messages,
    create_session,
    delete_session,
    get_session,
    list_documents,
    list_events,
    list_messages,
    list_sessions,
    record_event,
    rename_session,
)

__all__ = [
    "AuditEvent",
    "Database",
    "DocumentInfo",
    "MessageInfo",
    "NewMessage",
    "SessionInfo",
    "SessionNotFound",
    "add_document",
    "add_message",
    "add_messages",
    "create_session",
    "delete_session",
    "get_session",
    "list_documents",
    "list_events",
    "list_messages",
    "list_sessions",
    "open_database",
    "record_event",
    "rename_session",
]
