"""`clinidoc serve` killed with SIGKILL at three moments, in a real browser, and restarted on the same data: what it
stored survives whole, what it was doing is marked, and the page says what was lost and takes the clinician back.

The model is the test's OpenAI-compatible server (tests/model_server.py) on the real SmolLM2 engine, which stalls
on request: an answer after its first pieces, a count in the middle of an upload. So each kill falls exactly in its
moment, and a restart loads no model. Run with `pytest -m slow tests/test_crash.py -s` to print the kill table.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from conftest import CLINICIAN
from engine import LocalEngine
from model_server import ModelServer
from prompts import disclaimer
from serving import CHROMIUM_ARGS, CLINIDOC, add_accounts, answered, free_port, sign_in, wait_until_serving
from storage import list_documents, list_events, list_messages, list_sessions, open_database

RHINITIS = "mtsamples_allergic_rhinitis.txt"
CCDA = "ccda_ccd_eve_betterhalf.xml"
FIRST = "What medications is she taking?"
SECOND = "Does she have any allergies?"


class Clinidoc:
    """`clinidoc serve` on one data directory and port, started again after each kill."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.url, self.log = env, f"http://127.0.0.1:{port}/", log
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Starts the server; returns the seconds until it serves its sign-in page."""
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(CLINIDOC), "serve", "--port", str(self.port)], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)
        wait_until_serving(self.url, self.process, self.log)
        return time.monotonic() - started

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def integrity(db_path: Path) -> str:
    with sqlite3.connect(db_path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.slow
def test_killed_during_an_answer_a_summary_and_an_upload_clinidoc_keeps_what_it_stored_and_marks_the_rest(
    local_engine: LocalEngine, corpus: Path, tmp_path: Path
) -> None:
    hold, hold_counts = threading.Event(), threading.Event()
    hold.set()
    hold_counts.set()
    model = ModelServer(local_engine, hold=hold, pieces_before_hold=3, hold_counts=hold_counts)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    data_dir = tmp_path / "data"
    env = {
        **os.environ, "CLINIDOC_DATA_DIR": str(data_dir), "CLINIDOC_BACKEND": "remote",
        "CLINIDOC_REMOTE_URL": model.url, "CLINIDOC_MAX_NEW_TOKENS": "32", "CLINIDOC_SUMMARY_TOKENS": "32",
    }
    add_accounts(env)
    clinidoc = Clinidoc(env, free_port(), tmp_path / "serve.log")
    db_path = data_dir / "clinidoc.sqlite3"
    table: list[str] = []
    try:
        clinidoc.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.goto(clinidoc.url)
            sign_in(page, CLINICIAN.name)
            page.locator("input[type=file]").set_input_files(corpus / RHINITIS)
            expect(page.locator(".document-list")).to_contain_text(RHINITIS, timeout=60_000)
            ask(page, FIRST)
            answered(page.locator("#chat .message").last)

            # 1. Mid-answer: the partial answer is labelled at once; back, the page reopens the session.
            hold.clear()
            ask(page, SECOND)
            expect(page.locator("#chat .answer.streaming")).to_be_visible(timeout=60_000)
            clinidoc.kill()
            expect(page.locator("#chat .incomplete")).to_contain_text("Incomplete", timeout=15_000)
            expect(page.locator("#chat .answer.streaming + .hint + .disclaimer")).to_be_visible()
            page.screenshot(path=tmp_path / "incomplete.png")
            table.append(row("mid-answer", integrity(db_path), clinidoc.start()))
            hold.set()
            expect(page).to_have_url(re.compile(r"/login\?ended=lapsed"), timeout=30_000)
            sign_in(page, CLINICIAN.name)
            chat = page.locator("#chat")
            expect(chat).to_contain_text("Interrupted — not answered", timeout=60_000)
            expect(chat.get_by_text(FIRST)).to_be_visible()
            expect(chat.locator(".disclaimer")).to_have_count(1)  # the first answer's, whole
            page.screenshot(path=tmp_path / "reopened.png")

            # 2. Mid-summary: the draft's progress is labelled, and the request is marked at the restart.
            hold.clear()
            page.get_by_role("button", name="Summarise the record").click()
            expect(page.locator("#chat .drafting")).to_be_visible(timeout=60_000)
            clinidoc.kill()
            expect(page.locator("#chat .incomplete")).to_be_visible(timeout=15_000)
            table.append(row("mid-summary", integrity(db_path), clinidoc.start()))
            hold.set()
            expect(page).to_have_url(re.compile(r"/login\?ended=lapsed"), timeout=30_000)
            sign_in(page, CLINICIAN.name)
            expect(page.locator("#chat .unanswered")).to_have_count(2, timeout=60_000)

            # 3. Mid-upload, into a new session: read, and held while the model server counts its tokens.
            page.get_by_role("button", name="New session").click()
            # The new session's empty panel first: its redraw would clear a file chosen before it.
            expect(page.get_by_text("Patient record (PDF")).to_be_visible(timeout=30_000)
            hold_counts.clear()
            page.locator("input[type=file]").set_input_files(corpus / CCDA)
            assert model.counts_waiting.wait(timeout=120)
            clinidoc.kill()
            hold_counts.set()
            table.append(row("mid-upload", integrity(db_path), clinidoc.start()))
            browser.close()
    finally:
        clinidoc.stop()
        hold.set()
        hold_counts.set()
        model.shutdown()
        model.server_close()
    print("\n| killed | integrity_check | restart to serving |\n|---|---|---|\n" + "\n".join(table))

    db = open_database(db_path)
    (session,) = list_sessions(db, CLINICIAN.name)  # the upload cut off left no session behind
    assert [document.name for document in list_documents(db, CLINICIAN.name, session.id)] == [RHINITIS]
    messages = list_messages(db, CLINICIAN.name, session.id)
    assert [(m.role, m.state) for m in messages] == [
        ("user", "answered"), ("assistant", "answered"), ("user", "interrupted"), ("user", "interrupted"),
    ]
    assert messages[0].text == FIRST and messages[1].disclaimer == disclaimer() and messages[2].text == SECOND
    actions = [event.action for event in list_events(db, session_id=session.id)]
    assert actions.count("question") == 2 and actions.count("answer") == 1
    assert "question_interrupted" in actions and "summary_interrupted" in actions
    assert list((data_dir / "uploads").rglob("*.*")) == []  # the cut-off upload's file went at the restart


def ask(page: Page, question: str) -> None:
    box = page.get_by_placeholder("Ask a question about this record")
    box.fill(question)
    box.press("Enter")


def row(moment: str, checked: str, restart_s: float) -> str:
    assert checked == "ok"
    return f"| {moment} | {checked} | {restart_s:.1f} s |"
