"""Opening the SQLite file: connection settings, WAL, foreign keys, encryption and the schema version.

With a key the file is SQLCipher's (AES-256 pages, its WAL and temporary files too) through `sqlcipher3`, the
maintained DB-API module SQLAlchemy's `sqlite+pysqlcipher` dialect drives; without one it is plain SQLite, the
default for a single-user workstation.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from storage import audit
from storage.schema import SCHEMA_VERSION, TURN_STATES, Base

# Seconds a writer waits for another writer's lock before failing. Writes take milliseconds, so
# reaching this means something is stuck; until then a save should wait rather than fail.
BUSY_TIMEOUT_S = 30.0

# The first bytes of a plain SQLite file; an encrypted file's first page is ciphertext.
PLAIN_HEADER = b"SQLite format 3\x00"


class DatabaseLocked(RuntimeError):
    """The file cannot be opened as asked: encrypted without a key, opened with a wrong key, or plain with one."""


# The steps that take a file from schema version N to N + 1, keyed on N: SQL statements, or a function for what
# SQL alone cannot do.
MIGRATIONS: dict[int, list[str | Callable[[Connection, bytes], None]]] = {
    # The whole document beside its page texts; rows stored before it keep NULL.
    1: ["ALTER TABLE documents ADD COLUMN content TEXT"],
    # What kind of message each is, and the citations and support checks of an answer or summary.
    2: [
        "ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat'",
        "ALTER TABLE messages ADD COLUMN citations JSON NOT NULL DEFAULT '[]'",
        "ALTER TABLE messages ADD COLUMN grounding JSON",
    ],
    # Accounts that sign in, and an audit log that is append-only.
    3: [
        "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'clinician'",
        "ALTER TABLE users ADD COLUMN password_hash TEXT",
        "ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local'",
        "ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT 0",
        "ALTER TABLE users ADD COLUMN failed_signins INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE users ADD COLUMN locked_until DATETIME",
        "ALTER TABLE audit_events ADD COLUMN address TEXT",
        "ALTER TABLE audit_events ADD COLUMN previous_seal TEXT",
        "ALTER TABLE audit_events ADD COLUMN seal TEXT",
        "CREATE TABLE audit_head (id INTEGER NOT NULL PRIMARY KEY, rows INTEGER NOT NULL, seal TEXT NOT NULL)",
        audit.seal_existing,
    ],
    # The state of each question's turn, so that one interrupted by a crash is known as such.
    4: [f"ALTER TABLE messages ADD COLUMN state TEXT NOT NULL DEFAULT 'answered' CHECK (state IN {TURN_STATES})"],
}


class Database:
    """One SQLite file and the short-lived sessions the storage functions open on it."""

    def __init__(self, path: Path, engine: Engine, encrypted: bool, audit_key: bytes) -> None:
        self.path = path
        self.engine = engine
        self.encrypted = encrypted
        # The secret that seals the audit log's rows (storage/audit.py); kept outside the database.
        self.audit_key = audit_key
        self._reader = sessionmaker(engine)
        self._writer = sessionmaker(engine.execution_options(sqlite_begin="IMMEDIATE"))

    def reading(self) -> Session:
        """A session for reads; use it as a context manager so it closes."""
        return self._reader()

    def writing(self) -> AbstractContextManager[Session]:
        """A session that holds the write lock from its start and commits on a clean exit."""
        return self._writer.begin()

    def checkpoint(self) -> None:
        """Moves the write-ahead log into the file and empties it, so that a deleted row's earlier versions do not
        stay in the log. Readers still open can leave part of the log in place until the next checkpoint."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.engine.dispose()


def open_database(path: str | Path, key: str | None = None, audit_key: bytes = b"") -> Database:
    """Opens (or creates) the file; `key` opens it as SQLCipher. Raises DatabaseLocked, with what to do, when the
    file and the key do not go together."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_key(path, key)
    engine = create_engine(
        # URL.create rather than an f-string, so a path with '?' or '#' is not read as URL syntax.
        URL.create("sqlite+pysqlcipher" if key else "sqlite", password=key or None, database=str(path)),
        # Gradio runs handlers in worker threads, and pooled connections move between them.
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
        # Keeps clinical text readable in the file and unicode pages at their real size.
        json_serializer=lambda obj: json.dumps(obj, ensure_ascii=False),
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    try:
        _enable_wal(engine, path)
    except Exception as error:
        engine.dispose()
        if "not a database" in str(error):
            raise DatabaseLocked(f"The key does not open {path}: check CLINIDOC_DB_KEY or CLINIDOC_DB_KEY_FILE.") from None
        raise
    _create_schema(engine, path, audit_key)
    return Database(path, engine, encrypted=bool(key), audit_key=audit_key)


def encrypt_file(path: Path, key: str) -> None:
    """Turns a plain database file into a SQLCipher one under `key`, in place: SQLCipher's own sqlcipher_export
    copies every table into an encrypted file, which then replaces the plain one. The plain file's bytes are
    overwritten before it is removed, as far as the file system lets a program do so."""
    import sqlcipher3

    path = Path(path)
    encrypted = path.with_name(path.name + ".encrypting")
    encrypted.unlink(missing_ok=True)
    plain = sqlcipher3.connect(str(path))
    try:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        version = plain.execute("PRAGMA user_version").fetchone()[0]
        plain.execute("ATTACH DATABASE ? AS encrypted KEY ?", (str(encrypted), key))
        plain.execute("SELECT sqlcipher_export('encrypted')")
        plain.execute(f"PRAGMA encrypted.user_version = {int(version)}")
        plain.execute("DETACH DATABASE encrypted")
    finally:
        plain.close()
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.write(b"\0" * size)
        file.flush()
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    encrypted.replace(path)


def _check_key(path: Path, key: str | None) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as file:
        plain = file.read(len(PLAIN_HEADER)) == PLAIN_HEADER
    if not plain and not key:
        raise DatabaseLocked(
            f"{path} is encrypted. Set CLINIDOC_DB_KEY, or CLINIDOC_DB_KEY_FILE to a file readable only by this "
            "service's user, to the key it was created with."
        )
    if plain and key:
        raise DatabaseLocked(
            f"{path} is a plain SQLite file, but a key is set. Encrypt it first with `clinidoc db encrypt`, or "
            "unset the key to use it unencrypted."
        )


def _on_connect(dbapi_connection: sqlite3.Connection, connection_record: ConnectionPoolEntry) -> None:
    # pysqlite would BEGIN only before the first INSERT/UPDATE/DELETE, leaving reads outside the
    # transaction; turning that off leaves BEGIN to _on_begin.
    dbapi_connection.isolation_level = None
    # SQLite starts every connection with foreign keys off, and the cascades depend on them.
    dbapi_connection.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten with zeros, not left readable in free pages of the file.
    dbapi_connection.execute("PRAGMA secure_delete=ON")
    if type(dbapi_connection).__module__.startswith("sqlcipher3"):
        # A wrong key is reported as DatabaseLocked; SQLCipher's own log would print it to stderr as well.
        dbapi_connection.execute("PRAGMA cipher_log_level = NONE")


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


def _create_schema(engine: Engine, path: Path, audit_key: bytes) -> None:
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
                if isinstance(statement, str):
                    conn.exec_driver_sql(statement)
                else:
                    statement(conn, audit_key)
        Base.metadata.create_all(conn)
        conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
