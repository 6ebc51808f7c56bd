"""No user starves another: how long a second clinician waits to open a session while the first uploads a large
record, against the same open on a quiet server, in one run on one server.

    python -m bench.fairness [--megabytes 3] [--opens 5]

A real server (the web application, the bundled model, uvicorn) runs in this process with two clinicians. B
uploads a small note and opens its session `--opens` times on the quiet server. Then A uploads a text record of
`--megabytes` (corpus notes repeated, under the record-size limit, so it is read in full) and, while A's upload is
read, B opens the session again `--opens` times. Last, A uploads a 30 MB text file, which is refused before it is
read. Each open is timed from the request to its answer, through `gradio_client` as the page makes it.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from gradio_client import Client, handle_file

from app.accounts import Accounts, User
from app.assistant import Assistant
from app.settings import Settings
from app.store import open_store
from app.ui.signins import COOKIE
from app.ui.web import Web
from bench import markdown
from engine import load_engine

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PASSWORD = "a long enough passphrase"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=3.0)
    parser.add_argument("--opens", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinidoc-fairness-") as scratch:
        scratch_dir = Path(scratch)
        settings = Settings(data_dir=scratch_dir / "data")
        db = open_store(settings)
        accounts = Accounts(db, settings)
        for name in ("dr.a", "dr.b"):
            accounts.add(User(name="bench", role="administrator"), name, "clinician", PASSWORD)
        engine = load_engine(None, "cpu", "auto", None, 1 << 30)
        url = _serve(Web(Assistant(engine, db, settings), accounts, settings))
        a, b = _client(url, "dr.a"), _client(url, "dr.b")

        note = "mtsamples_moyamoya.txt"
        b.predict([handle_file(CORPUS / note)], api_name="/_start")
        b.predict(None, api_name="/_list_sessions")  # as the page's load does: B's list holds B's session
        [session] = Assistant(engine, db, settings).sessions(User(name="dr.b"))
        quiet = [_timed(lambda: b.predict(session.id, api_name="/_open")) for _ in range(args.opens)]

        record = scratch_dir / "long_record.txt"
        _write_record(record, int(args.megabytes * 2**20))
        started = time.perf_counter()
        job = a.submit([handle_file(record)], api_name="/_start")
        time.sleep(2)  # A's file has arrived and is being read
        busy = []
        while len(busy) < args.opens and not job.done():
            busy.append(_timed(lambda: b.predict(session.id, api_name="/_open")))
        job.result()
        upload_s = time.perf_counter() - started

        huge = scratch_dir / "huge_record.txt"
        _write_record(huge, 30 * 2**20)
        refused_s = _timed(lambda: a.predict([handle_file(huge)], api_name="/_start"))

    print(f"B opens a one-page session; A's upload: {args.megabytes:g} MB of text, read in {upload_s:.1f} s\n")
    print(markdown.table(["B's open", "opens", "median s", "max s", "ratio to quiet (median)"]))
    for label, times in (("quiet server", quiet), ("during A's upload", busy)):
        print(markdown.row([label, len(times), f"{statistics.median(times):.3f}", f"{max(times):.3f}",
                            f"{statistics.median(times) / statistics.median(quiet):.2f}"]))
    print(f"\nA's 30 MB text file refused before reading in {refused_s:.2f} s")


def _serve(web: Web) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(web.app(), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/"


def _client(url: str, name: str) -> Client:
    signed_in = httpx.post(url + "login", data={"name": name, "password": PASSWORD})
    return Client(url, headers={"Cookie": f"{COOKIE}={signed_in.cookies[COOKIE]}"}, verbose=False,
                  download_files=False)


def _write_record(path: Path, size: int) -> None:
    notes = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("mtsamples_*.txt")))
    with path.open("w", encoding="utf-8") as file:
        written = 0
        while written < size:
            written += file.write(notes + "\n\n")


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
