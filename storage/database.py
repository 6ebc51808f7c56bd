"""Opening the SQLite file: connection settings, WAL, foreign keys and the schema version."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from storage.schema import SCHEMA_VERSION, Base

# Seconds a writer waits for another writer's lock before failing. Writes take milliseconds, so
# reaching this means something is stuck; until then a save should wait rather than fail.
BUSY_TIMEOUT_S = 30.0

# The statements that take a file from schema version N to N + 1, keyed on N.
MIGRATIONS: dict[int, list[str]] = {
    # The whole document beside its page texts; rows stored before it keep NULL.
    1: ["ALTER TABLE documents ADD COLUMN content TEXT"],
    # What kind of message each is, and the citations and support checks of an answer or summary.
    2: [
        "ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat'",
        "ALTER TABLE messages ADD COLUMN citations JSON NOT NULL DEFAULT '[]'",
        "ALTER TABLE messages ADD COLUMN grounding JSON",
    ],
}


class Database:
    """One SQLite file and the short-lived sessions the storage functions open on it."""

    def __init__(self, path: Path, engine: Engine) -> None:
        self.path = path
        self.engine = engine
        self._reader = sessionmaker(engine)
        self._writer = sessionmaker(engine.execution_options(sqlite_begin="IMMEDIATE"))

    def reading(self) -> Session:
        """A session for reads; use it as a context manager so it closes."""
        return self._reader()

    def writing(self) -> AbstractContextManager[Session]:
        """A session that holds the write lock from its start and commits on a clean exit."""
        return self._writer.begin()

    def close(self) -> None:
        self.engine.dispose()


def open_database(path: str | Path) -> Database:
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        # URL.create rather than an f-string, so a path with '?' or '#' is not read as URL syntax.
        URL.create("sqlite", database=str(path)),
        # Gradio runs handlers in worker threads, and pooled connections move between them.
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
        # Keeps clinical text readable in the file and unicode pages at their real size.
        json_serializer=lambda obj: json.dumps(obj, ensure_ascii=False),
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    _enable_wal(engine, path)
    _create_schema(engine, path)
    return Database(path, engine)


def _on_connect(dbapi_connection: sqlite3.Connection, connection_record: ConnectionPoolEntry) -> None:
    # pysqlite would BEGIN only before the first INSERT/UPDATE/DELETE, leaving reads outside the
    # transaction; turning that off leaves BEGIN to _on_begin.
    dbapi_connection.isolation_level = None
    # SQLite starts every connection with foreign keys off, and the cascades depend on them.
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _on_begin(conn: Connection) -> None:
    # Writers BEGIN IMMEDIATE: under WAL, a deferred transaction that reads and then writes fails at
    # once with SQLITE_BUSY when another writer got in first, instead of waiting out the busy timeout.
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")


def _enable_wal(engine: Engine, path: Path) -> None:
    # WAL is a property of the file, so setting it once covers every later connection. It cannot be
    # switched inside a transaction, hence the raw connection, which _on_connect left in autocommit.
    # Two connections switching a new file at once both hold a read lock and both want the exclusive
    # one; SQLite fails one of them at once rather than wait on a deadlock, so that one tries again.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = _set_wal(engine)
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode != "wal":
        raise RuntimeError(f"SQLite refused WAL mode for {path} (journal_mode is {mode!r}); keep it on a local disk.")


def _set_wal(engine: Engine) -> str:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        [(mode,)] = cursor.fetchall()
        return mode
    finally:
        raw.close()


def _create_schema(engine: Engine, path: Path) -> None:
    # One IMMEDIATE transaction, so several processes or threads opening a new file at once
    # cannot both decide the tables are missing.
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        version = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path} has schema version {version}, newer than this Clinidoc's {SCHEMA_VERSION}; upgrade Clinidoc."
            )
        # Version 0 is a new file, which create_all makes whole. An older file is brought up to date step by
        # step first, since create_all adds missing tables but never a missing column.
        for step in range(version, SCHEMA_VERSION) if version else ():
            for statement in MIGRATIONS[step]:
                conn.exec_driver_sql(statement)
        Base.metadata.create_all(conn)
        conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
