"""storage against a real SQLite file: no mocks, each test gets its own file under tmp_path."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

import storage
from storage import SessionNotFound, open_database
from storage.schema import SCHEMA_VERSION

DISCLAIMER = "Not a substitute for clinical judgement."


def _doc(
    name: str = "note.txt", sha256: str = "0" * 64, kind: str = "txt", page_texts: list[str] | None = None,
    tokens: int = 3, content: str | None = None,
) -> storage.NewDocument:
    return storage.NewDocument(
        name=name, sha256=sha256, kind=kind, page_texts=page_texts or ["A note."], tokens=tokens, content=content
    )


def _session(db: storage.Database, user: str, title: str) -> storage.SessionInfo:
    """A session whose one document does not matter to the test."""
    return storage.create_session(db, user, title, [_doc()])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "clinidoc.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[storage.Database]:
    database = open_database(db_path)
    yield database
    database.close()


def _raw(path: Path) -> sqlite3.Connection:
    """A connection that shares nothing with storage, to see what is really in the file."""
    return sqlite3.connect(path)


def test_open_creates_parent_dirs_and_records_schema_version(db_path: Path) -> None:
    db = open_database(str(db_path))
    assert db.path == db_path
    assert db_path.is_file()
    with _raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "sessions", "documents", "messages", "audit_events"} <= tables
    db.close()


def test_open_twice_is_idempotent(db_path: Path) -> None:
    first = open_database(db_path)
    session = _session(first, "local", "Discharge summary")
    second = open_database(db_path)
    assert storage.list_sessions(second, "local") == [session]
    first.close()
    second.close()


def test_open_from_several_threads_at_once(db_path: Path) -> None:
    barrier = threading.Barrier(8)
    opened: list[storage.Database] = []
    errors: list[Exception] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(open_database(db_path))
        except Exception as exc:  # collected so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(opened) == 8
    for db in opened:
        db.close()


def test_refuses_a_file_from_a_newer_schema(db_path: Path) -> None:
    open_database(db_path).close()
    with _raw(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        open_database(db_path)


def test_wal_is_on_for_a_fresh_connection(db: storage.Database, db_path: Path) -> None:
    with _raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_foreign_keys_are_on_for_every_pooled_connection(db: storage.Database) -> None:
    connections = [db.engine.connect() for _ in range(3)]
    try:
        for conn in connections:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        for conn in connections:
            conn.close()


def test_foreign_keys_are_enforced(db: storage.Database) -> None:
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), db.writing() as s:
        s.execute(
            text(
                "INSERT INTO documents (session_id, name, sha256, kind, pages, tokens, page_texts, created_at)"
                " VALUES (999, 'a.pdf', 'x', 'pdf', 0, 0, '[]', '2025-01-01')"
            )
        )


def test_round_trip(db: storage.Database) -> None:
    documents = [
        _doc("letter.pdf", "a" * 64, "pdf", ["page one", "page two"], 120), _doc("labs.docx", "b" * 64, "docx", ["K+ 4.1"], 12)
    ]
    session = storage.create_session(db, "dr.jones", "Mrs Smith, cardiology", documents)
    assert session.user == "dr.jones"
    assert session.created_at == session.updated_at
    assert session.created_at.utcoffset() == timedelta(0)
    letter, labs = storage.list_documents(db, "dr.jones", session.id)
    assert (letter.name, letter.pages, labs.name, labs.pages) == ("letter.pdf", 2, "labs.docx", 1)

    question = storage.add_message(db, "dr.jones", session.id, "user", "What is the potassium?")
    answer = storage.add_message(
        db,
        "dr.jones",
        session.id,
        "assistant",
        "Potassium is 4.1 mmol/L.",
        disclaimer=DISCLAIMER,
        model="smollm2-135m",
        prompt_version="qa-v1",
        stats={"prompt_tokens": 140, "ttft_s": 0.05, "finish_reason": "stop"},
    )

    assert storage.get_session(db, "dr.jones", session.id) == storage.list_sessions(db, "dr.jones")[0]
    assert storage.list_documents(db, "dr.jones", session.id) == [letter, labs]
    assert storage.list_messages(db, "dr.jones", session.id) == [question, answer]
    stored = storage.list_messages(db, "dr.jones", session.id)[1]
    assert stored.role == "assistant"
    assert stored.disclaimer == DISCLAIMER
    assert (stored.model, stored.prompt_version) == ("smollm2-135m", "qa-v1")
    assert stored.stats == {"prompt_tokens": 140, "ttft_s": 0.05, "finish_reason": "stop"}
    assert storage.list_messages(db, "dr.jones", session.id)[0].stats is None
    assert storage.list_documents(db, "dr.jones", session.id)[0].page_texts == ["page one", "page two"]
    assert all(m.created_at.utcoffset() == timedelta(0) for m in storage.list_messages(db, "dr.jones", session.id))


def test_get_session_unknown_is_none(db: storage.Database) -> None:
    assert storage.get_session(db, "local", 999) is None


@pytest.mark.parametrize("disclaimer", [None, "", "   \n"])
def test_assistant_message_without_disclaimer_is_rejected(db: storage.Database, disclaimer: str | None) -> None:
    session = _session(db, "local", "s")
    with pytest.raises(ValueError, match="disclaimer"):
        storage.add_message(db, "local", session.id, "assistant", "An answer.", disclaimer=disclaimer)
    assert storage.list_messages(db, "local", session.id) == []


def test_the_file_itself_rejects_an_assistant_message_without_disclaimer(db: storage.Database, db_path: Path) -> None:
    session = _session(db, "local", "s")
    with _raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO messages (session_id, role, text, created_at) VALUES (?, 'assistant', 'x', '2025-01-01')",
            (session.id,),
        )


def test_unknown_role_is_rejected(db: storage.Database) -> None:
    session = _session(db, "local", "s")
    with pytest.raises(ValueError, match="role"):
        storage.add_message(db, "local", session.id, "system", "You are a helpful assistant.")


def test_adding_bumps_updated_at_and_orders_sessions(db: storage.Database) -> None:
    older = _session(db, "local", "older")
    newer = _session(db, "local", "newer")
    assert [s.id for s in storage.list_sessions(db, "local")] == [newer.id, older.id]

    message = storage.add_message(db, "local", older.id, "user", "hello")
    bumped = storage.get_session(db, "local", older.id)
    assert bumped is not None
    assert bumped.updated_at == message.created_at > older.updated_at
    assert bumped.created_at == older.created_at
    assert [s.id for s in storage.list_sessions(db, "local")] == [older.id, newer.id]

    document = storage.add_documents(db, "local", newer.id, [_doc("a.txt", "c" * 64, "txt", ["text"], 1)])[0]
    assert storage.list_sessions(db, "local")[0].updated_at == document.created_at
    assert [s.id for s in storage.list_sessions(db, "local")] == [newer.id, older.id]


def test_a_session_is_found_only_by_its_owner(db: storage.Database) -> None:
    """Another user's session is not found, whatever the call: the same answer as an id that never existed."""
    alices = storage.create_session(db, "alice", "Mrs Smith", [_doc("a.txt", "a" * 64, "txt", ["Warfarin 5 mg"], 3)])
    _session(db, "bob", "Mr Jones")

    assert storage.get_session(db, "bob", alices.id) is None
    for call in (
        lambda: storage.list_documents(db, "bob", alices.id),
        lambda: storage.list_messages(db, "bob", alices.id),
        lambda: storage.add_documents(db, "bob", alices.id, [_doc("b.txt", "b" * 64, "txt", ["x"], 1)])[0],
        lambda: storage.add_message(db, "bob", alices.id, "user", "What does she take?"),
        lambda: storage.rename_session(db, "bob", alices.id, "mine now"),
        lambda: storage.delete_session(db, "bob", alices.id),
    ):
        with pytest.raises(SessionNotFound):
            call()
    assert [d.name for d in storage.list_documents(db, "alice", alices.id)] == ["a.txt"]
    assert storage.list_messages(db, "alice", alices.id) == []
    assert storage.get_session(db, "alice", alices.id).title == "Mrs Smith"


def test_only_an_active_clinician_holds_sessions(db: storage.Database) -> None:
    storage.add_user(db, "audrey", "auditor", "hash")
    storage.add_user(db, "carl", "clinician", "hash")
    storage.update_user(db, "carl", disabled=True)
    for name in ("audrey", "carl"):
        with pytest.raises(PermissionError):
            _session(db, name, "s")


def test_a_deleted_session_leaves_no_text_in_the_file(db: storage.Database, db_path: Path) -> None:
    marker = "Zebulon Quixote-Farnsworth"
    session = _session(db, "local", marker)
    storage.add_documents(db, "local", session.id, [_doc("n.txt", "c" * 64, "txt", [f"Patient {marker}, warfarin"], 5)])[0]
    storage.add_message(db, "local", session.id, "user", f"Does {marker} take warfarin?")
    storage.delete_session(db, "local", session.id)
    db.close()
    for path in db_path.parent.iterdir():
        assert marker.encode() not in path.read_bytes(), path.name


def test_retention_deletes_only_sessions_untouched_since_the_cutoff(db: storage.Database) -> None:
    old = _session(db, "alice", "old")
    new = _session(db, "bob", "new")
    cutoff = new.updated_at
    assert storage.delete_sessions_before(db, cutoff) == [old.id]
    assert storage.list_sessions(db, "alice") == []
    assert storage.list_sessions(db, "bob") == [new]


def test_the_audit_log_shows_an_edited_or_deleted_row(db_path: Path) -> None:
    db = open_database(db_path, audit_key=b"k" * 32)
    for action in ("signin", "upload", "question", "answer"):
        storage.record_event(db, "alice", action, address="10.0.0.7")
    assert storage.verify_events(db).ok and storage.verify_events(db).rows == 4
    db.close()

    def tampered(*statements: str) -> storage.AuditCheck:
        with _raw(db_path) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()
        return storage.verify_events(open_database(db_path, audit_key=b"k" * 32))

    check = tampered("UPDATE audit_events SET user = 'mallory' WHERE id = 2")
    assert not check.ok and "event 2" in check.problem
    check = tampered("UPDATE audit_events SET user = 'alice' WHERE id = 2", "DELETE FROM audit_events WHERE id = 3")
    assert not check.ok and "before event 4" in check.problem
    check = tampered("DELETE FROM audit_events WHERE id >= 3")
    assert not check.ok and "newest" in check.problem
    # A forger who can write the file but not read the key cannot reseal it.
    assert not storage.verify_events(open_database(db_path, audit_key=b"x" * 32)).ok


def test_an_encrypted_database_holds_no_plain_text_and_needs_its_key(db_path: Path) -> None:
    marker = "Zebulon Quixote-Farnsworth"
    db = open_database(db_path, key="correct horse battery staple")
    session = _session(db, "local", marker)
    storage.add_documents(db, "local", session.id, [_doc("n.txt", "c" * 64, "txt", [f"Patient {marker}"], 5)])[0]
    assert db.encrypted
    db.close()
    for path in db_path.parent.iterdir():
        assert marker.encode() not in path.read_bytes(), path.name
    with pytest.raises(storage.DatabaseLocked, match="is encrypted"):
        open_database(db_path)
    with pytest.raises(storage.DatabaseLocked, match="key does not open"):
        open_database(db_path, key="wrong")
    reopened = open_database(db_path, key="correct horse battery staple")
    assert storage.list_sessions(reopened, "local")[0].title == marker
    reopened.close()


def test_a_plain_database_is_encrypted_in_place(db_path: Path) -> None:
    from storage.database import encrypt_file

    marker = "Zebulon Quixote-Farnsworth"
    db = open_database(db_path)
    _session(db, "local", marker)
    db.close()
    with pytest.raises(storage.DatabaseLocked, match="plain SQLite"):
        open_database(db_path, key="k")
    encrypt_file(db_path, "k")
    assert marker.encode() not in db_path.read_bytes()
    assert storage.list_sessions(open_database(db_path, key="k"), "local")[0].title == marker


def test_rename_keeps_position(db: storage.Database) -> None:
    first = _session(db, "local", "first")
    _session(db, "local", "second")
    renamed = storage.rename_session(db, "local", first.id, "Renamed")
    assert renamed.title == "Renamed"
    assert renamed.updated_at == first.updated_at
    assert [s.title for s in storage.list_sessions(db, "local")] == ["second", "Renamed"]


def test_list_sessions_by_user(db: storage.Database) -> None:
    mine = _session(db, "alice", "mine")
    theirs = _session(db, "bob", "theirs")
    _session(db, "alice", "mine too")
    assert [s.title for s in storage.list_sessions(db, "alice")] == ["mine too", "mine"]
    assert storage.list_sessions(db, "bob") == [theirs]
    assert storage.list_sessions(db, "nobody") == []
    assert mine.user == "alice"


def test_delete_cascades_but_keeps_audit_events(db: storage.Database, db_path: Path) -> None:
    doomed = storage.create_session(db, "local", "doomed", [_doc("d.pdf", "d" * 64, "pdf", ["p"], 1)])
    kept = storage.create_session(db, "local", "kept", [_doc("d.pdf", "d" * 64, "pdf", ["p"], 1)])
    for session in (doomed, kept):
        storage.add_message(db, "local", session.id, "user", "q")
        storage.add_message(db, "local", session.id, "assistant", "a", disclaimer=DISCLAIMER)
    storage.record_event(db, "local", "upload", session_id=doomed.id, detail="d.pdf")

    storage.delete_session(db, "local", doomed.id)
    storage.record_event(db, "local", "delete_session", session_id=doomed.id)

    assert storage.get_session(db, "local", doomed.id) is None
    with pytest.raises(SessionNotFound):
        storage.list_documents(db, "local", doomed.id)
    with _raw(db_path) as conn:
        for table in ("documents", "messages"):
            count = conn.execute(f"SELECT count(*) FROM {table} WHERE session_id = ?", (doomed.id,)).fetchone()[0]
            assert count == 0, table
    assert [e.action for e in storage.list_events(db, session_id=doomed.id)] == ["upload", "delete_session"]
    assert len(storage.list_documents(db, "local", kept.id)) == 1
    assert len(storage.list_messages(db, "local", kept.id)) == 2

    # A new session must not inherit the deleted one's id, or it would inherit its audit trail.
    assert _session(db, "local", "after").id > kept.id


def test_audit_events(db: storage.Database) -> None:
    session = _session(db, "local", "s")
    storage.record_event(db, "local", "open_app")
    storage.record_event(db, "local", "ask", session_id=session.id, detail="question 1")
    events = storage.list_events(db)
    assert [(e.action, e.session_id, e.detail) for e in events] == [
        ("open_app", None, None),
        ("ask", session.id, "question 1"),
    ]
    assert events[0].user == "local"
    assert events[0].created_at.utcoffset() == timedelta(0)
    assert [e.action for e in storage.list_events(db, session_id=session.id)] == ["ask"]


def test_unknown_session_ids_raise_session_not_found(db: storage.Database) -> None:
    with pytest.raises(SessionNotFound, match="42") as excinfo:
        storage.add_message(db, "local", 42, "user", "hello")
    assert excinfo.value.session_id == 42
    assert isinstance(excinfo.value, LookupError)
    with pytest.raises(SessionNotFound):
        storage.add_documents(db, "local", 42, [_doc("a.pdf", "e" * 64, "pdf", ["p"], 1)])[0]
    with pytest.raises(SessionNotFound):
        storage.rename_session(db, "local", 42, "x")
    with pytest.raises(SessionNotFound):
        storage.delete_session(db, "local", 42)
    with pytest.raises(SessionNotFound):
        storage.list_messages(db, "local", 42)
    with pytest.raises(SessionNotFound):
        storage.list_documents(db, "local", 42)


def test_unicode_round_trips(db: storage.Database, db_path: Path) -> None:
    clinical = "Café patient: digoxin 62.5 µg daily 💊 — naïve ✓ 漢字"
    session = storage.create_session(db, "médecin", clinical, [_doc("lettre é.pdf", "f" * 64, "pdf", [clinical, "µg/L 🩺"], 30)])
    storage.add_message(db, "médecin", session.id, "user", clinical)
    storage.add_message(
        db, "médecin", session.id, "assistant", clinical, disclaimer=f"Avis ⚠️ {clinical}", stats={"note": clinical}
    )
    storage.record_event(db, "médecin", "ask", session.id, detail=clinical)
    db.close()

    reopened = open_database(db_path)
    [stored] = storage.list_sessions(reopened, "médecin")
    assert stored.title == clinical
    [document] = storage.list_documents(reopened, "médecin", session.id)
    assert (document.name, document.page_texts) == ("lettre é.pdf", [clinical, "µg/L 🩺"])
    user_message, answer = storage.list_messages(reopened, "médecin", session.id)
    assert user_message.text == answer.text == clinical
    assert answer.disclaimer == f"Avis ⚠️ {clinical}"
    assert answer.stats == {"note": clinical}
    assert storage.list_events(reopened)[0].detail == clinical
    reopened.close()


def test_concurrent_writes_from_threads_all_land(db: storage.Database) -> None:
    session = _session(db, "local", "busy")
    threads_n, per_thread = 4, 50
    barrier = threading.Barrier(threads_n)
    errors: list[Exception] = []

    def write(worker: int) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                storage.add_message(db, "local", session.id, "user", f"{worker}:{i}")
                storage.record_event(db, f"worker{worker}", "ask", session.id)
        except Exception as exc:  # collected so the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    messages = storage.list_messages(db, "local", session.id)
    assert len(messages) == threads_n * per_thread
    assert len(storage.list_events(db, session_id=session.id)) == threads_n * per_thread
    for worker in range(threads_n):
        mine = [m.text for m in messages if m.text.startswith(f"{worker}:")]
        assert mine == [f"{worker}:{i}" for i in range(per_thread)]
    stored = storage.get_session(db, "local", session.id)
    assert stored is not None
    assert stored.updated_at == max(m.created_at for m in messages)


def test_data_survives_close_and_reopen(db_path: Path) -> None:
    db = open_database(db_path)
    session = storage.create_session(db, "local", "persisted", [_doc("a.pdf", "0" * 64, "pdf", ["one", "two", "three"], 9)])
    [document] = storage.list_documents(db, "local", session.id)
    message = storage.add_message(db, "local", session.id, "assistant", "answer", disclaimer=DISCLAIMER)
    storage.record_event(db, "local", "ask", session.id)
    db.close()

    reopened = open_database(db_path)
    assert reopened.path == db_path
    [stored] = storage.list_sessions(reopened, "local")
    assert (stored.id, stored.title, stored.created_at) == (session.id, "persisted", session.created_at)
    assert stored.updated_at == message.created_at
    assert storage.list_documents(reopened, "local", session.id) == [document]
    assert storage.list_messages(reopened, "local", session.id) == [message]
    assert len(storage.list_events(reopened)) == 1
    reopened.close()


def test_results_are_detached_snapshots(db: storage.Database) -> None:
    session = _session(db, "local", "s")
    assert type(session) is storage.SessionInfo
    with pytest.raises(ValidationError):
        session.title = "changed"
    page_texts = ["original"]
    document = storage.add_documents(db, "local", session.id, [_doc("a.txt", "1" * 64, "txt", page_texts, 1)])[0]
    page_texts.append("added later")
    assert document.page_texts == ["original"]
    assert storage.list_documents(db, "local", session.id)[-1].page_texts == ["original"]


# The tables as schema version 1 made them: documents without their `content`.
_VERSION_1 = """
CREATE TABLE users (id INTEGER NOT NULL, name VARCHAR NOT NULL, created_at DATETIME NOT NULL,
    PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE audit_events (id INTEGER NOT NULL, user VARCHAR NOT NULL, action VARCHAR NOT NULL, session_id INTEGER,
    detail TEXT, created_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE TABLE sessions (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL, title TEXT NOT NULL,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, FOREIGN KEY(user_id) REFERENCES users (id));
CREATE TABLE documents (id INTEGER NOT NULL, session_id INTEGER NOT NULL, name TEXT NOT NULL,
    sha256 VARCHAR NOT NULL, kind VARCHAR NOT NULL, pages INTEGER NOT NULL, tokens INTEGER NOT NULL,
    page_texts JSON NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE);
CREATE TABLE messages (id INTEGER NOT NULL, session_id INTEGER NOT NULL, role VARCHAR NOT NULL, text TEXT NOT NULL,
    disclaimer TEXT, model VARCHAR, prompt_version VARCHAR, stats JSON, created_at DATETIME NOT NULL,
    PRIMARY KEY (id), FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE);
INSERT INTO users VALUES (1, 'local', '2024-01-01 00:00:00');
INSERT INTO sessions VALUES (1, 1, 'old', '2024-01-01 00:00:00', '2024-01-01 00:00:00');
INSERT INTO documents VALUES (1, 1, 'old.txt', '{sha}', 'txt', 2, 5, '["one", "two"]', '2024-01-01 00:00:00');
INSERT INTO messages VALUES (1, 1, 'assistant', 'Rest.', 'Check the record.', 'm', 'answer-v1', NULL,
    '2024-01-01 00:00:00');
PRAGMA user_version = 1;
"""


def test_an_answer_keeps_its_citations_and_support_checks(db: storage.Database) -> None:
    session = _session(db, "local", "s")
    citations = [{"number": 1, "document": "note.txt", "page": 2, "start": 10, "end": 24, "quote": "Allegra 60 mg"}]
    grounding = {"sentences": [{"text": "She takes Allegra.", "label": "supported", "citations": [1]}]}
    stored = storage.add_message(
        db, "local", session.id, "assistant", "She takes Allegra [1].", disclaimer="Check.", citations=citations,
        grounding=grounding,
    )
    summary = storage.add_message(db, "local", session.id, "assistant", "Summary", disclaimer="Check.", kind="summary")

    assert storage.list_messages(db, "local", session.id) == [stored, summary]
    assert (stored.kind, stored.citations, stored.grounding) == ("chat", citations, grounding)
    assert (summary.kind, summary.citations, summary.grounding) == ("summary", [], None)
    with pytest.raises(ValueError, match="kind"):
        storage.add_message(db, "local", session.id, "assistant", "x", disclaimer="Check.", kind="note")


def test_the_whole_document_is_kept_beside_its_page_texts(db: storage.Database) -> None:
    content = '{"name": "a.json", "sections": [{"title": "Allergies"}]}'
    documents = [_doc("a.json", "2" * 64, "fhir", ["page"], 3, content=content), _doc("b.txt", "3" * 64, "txt", ["page"], 1)]
    session = storage.create_session(db, "local", "s", documents)
    stored, without = storage.list_documents(db, "local", session.id)

    assert stored.content == content
    assert without.content is None
    assert [d.content for d in storage.list_documents(db, "local", session.id)] == [content, None]


def test_a_database_of_schema_version_1_is_migrated_and_its_rows_still_read(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with _raw(db_path) as conn:
        conn.executescript(_VERSION_1.replace("{sha}", "4" * 64))
    conn.close()

    db = open_database(db_path)
    [old] = storage.list_documents(db, "local", 1)
    assert (old.name, old.page_texts, old.content) == ("old.txt", ["one", "two"], None)
    new = storage.add_documents(db, "local", 1, [_doc("new.txt", "5" * 64, "txt", ["three"], 1, content="{}")])[0]
    assert storage.list_documents(db, "local", 1) == [old, new]
    [message] = storage.list_messages(db, "local", 1)
    assert (message.text, message.kind, message.citations, message.grounding) == ("Rest.", "chat", [], None)
    db.close()

    with _raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()
    # Opening the migrated file again migrates nothing twice.
    open_database(db_path).close()


def test_a_session_and_its_documents_are_stored_together_or_not_at_all(db: storage.Database) -> None:
    """A document the database refuses (here one without a name) takes the whole upload with it: no session
    without its record, and no half of an upload added to an open session."""
    with pytest.raises(ValueError, match="documents"):
        storage.create_session(db, "local", "empty", [])
    broken = _doc("b.txt", "b" * 64).model_copy(update={"name": None})
    with pytest.raises(IntegrityError):
        storage.create_session(db, "local", "half", [_doc(), broken])
    assert storage.list_sessions(db, "local") == []
    session = _session(db, "local", "whole")
    with pytest.raises(IntegrityError):
        storage.add_documents(db, "local", session.id, [_doc("a.txt", "a" * 64), broken])
    assert [d.name for d in storage.list_documents(db, "local", session.id)] == ["note.txt"]
