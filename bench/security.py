"""What encryption at rest costs a clinician: upload, session-open and answer times with a SQLCipher database
against plain SQLite, on the same corpus documents, the same questions and the same model, in one run.

    python -m bench.security [--documents 6] [--repeats 3]

For each store (plain, then encrypted) a fresh data directory: every free-text and structured document of the
corpus that has questions is uploaded (read, counted, stored), its session opened again (read back from the
database and rebuilt), and its first question answered (evidence, the model's answer, the check, the store). Each
time is the median over `--repeats` runs; the last column is encrypted / plain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from app.accounts import User
from app.assistant import Assistant, read_upload
from app.settings import Settings
from app.store import open_store
from bench import markdown
from engine import load_engine

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
BENCH_USER = User(name="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    truths = [json.loads(path.read_text()) for path in sorted((CORPUS / "truth").glob("*.json"))]
    truths = [truth for truth in truths if truth.get("qa")][: args.documents]
    engine = load_engine(None, "cpu", "int4", None, 1 << 30)
    times: dict[str, dict[str, list[float]]] = {}
    for store in ("plain", "encrypted"):
        times[store] = {"upload": [], "open": [], "answer": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="clinidoc-bench-") as scratch:
                settings = Settings(data_dir=Path(scratch), max_new_tokens=48,
                                    db_key="bench key" if store == "encrypted" else None)
                assistant = Assistant(engine, open_store(settings), settings)
                for truth in truths:
                    engine.forget()  # each answer reads its record from the start, in both stores alike
                    started = time.perf_counter()
                    view = assistant.start_session(BENCH_USER, read_upload([(CORPUS / truth["doc"], truth["doc"])],
                                                                           1 << 28))
                    uploaded = time.perf_counter()
                    # Another assistant holds nothing in memory: the session is read back from the database.
                    reopened = Assistant(engine, assistant.db, settings)
                    started_open = time.perf_counter()
                    reopened.open_session(BENCH_USER, view.session.id)
                    opened = time.perf_counter()
                    started_answer = time.perf_counter()
                    for _event in assistant.ask(BENCH_USER, view.session.id, truth["qa"][0]["q"]):
                        pass
                    answered = time.perf_counter()
                    times[store]["upload"].append(uploaded - started)
                    times[store]["open"].append(opened - started_open)
                    times[store]["answer"].append(answered - started_answer)
    print(f"{len(truths)} documents × {args.repeats} runs, SmolLM2-135M int4, this machine\n")
    print(markdown.table(["step", "plain median s", "encrypted median s", "encrypted / plain"]))
    for step in ("upload", "open", "answer"):
        plain, encrypted = (statistics.median(times[store][step]) for store in ("plain", "encrypted"))
        print(markdown.row([step, f"{plain:.3f}", f"{encrypted:.3f}", f"{encrypted / plain:.2f}"]))


if __name__ == "__main__":
    main()
