"""`clinidoc serve` as a test runs it: a subprocess on a free port, its accounts, and a browser signed in to it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from conftest import CLINICIAN

CLINIDOC = Path(sys.executable).with_name("clinidoc")
# Debian's chromium, as it runs in a container without a display.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The accounts the server is set up with, as an administrator would with `clinidoc users add`.
PASSWORDS = {CLINICIAN.name: "a long enough passphrase", "dr.other": "another long passphrase"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_accounts(env: dict[str, str]) -> None:
    for name, password in PASSWORDS.items():
        subprocess.run([str(CLINIDOC), "users", "add", name, "--password-stdin"], input=f"{password}\n", env=env,
                       check=True, capture_output=True, text=True)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"clinidoc serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail(f"clinidoc serve did not answer within {timeout_s:.0f} s:\n{log.read_text()}")


def sign_in(page: Page, user: str) -> None:
    """Signs `user` in on the sign-in page the browser shows, and waits for the clinicians' page."""
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".signed-in")).to_contain_text(f"Signed in as {user}", timeout=60_000)


def answered(message: Locator) -> None:
    """Wait until the answer in `message` is finished: while the model writes, the disclaimer is already shown under
    words that are still replaced, so only the end of streaming says the answer is there to use."""
    expect(message.locator(".disclaimer")).to_be_visible(timeout=180_000)
    expect(message.locator(".answer.streaming")).to_have_count(0, timeout=180_000)
