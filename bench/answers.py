"""What a clinician waits for: a complete follow-up answer about a record already read, and the first complete
structured summary of a discharge summary, with the model held in fp32 and in int4 in the same run.

    python -m bench.answers [--quantize none int4] [--follow-ups 4] [--summary mtsamples_tka_discharge_summary.pdf]

For every free-text document of the corpus that has questions in `truth/`, a session is opened and its first
question asked (the record is read into the prefix cache then); the next questions are the follow-ups, each timed
from the question to the stored, checked answer. Then a new session summarises the summary document, timed from the
request to the stored summary. Each precision gets the same documents and questions; the last column of each table
is the ratio of its time to the first precision's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from app.accounts import User
from app.assistant import Answer, Assistant, Summary, read_upload
from app.settings import Settings
from bench import markdown
from engine import load_engine
from storage import open_database

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# The benchmark's sessions go to a scratch database, under this user.
BENCH_USER = User(name="bench")
FREE_TEXT = (".txt", ".pdf", ".docx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantize", nargs="+", default=["none", "int4"], help="precisions to compare, in order")
    parser.add_argument("--follow-ups", type=int, default=4, help="follow-up questions per document")
    parser.add_argument("--summary", default="mtsamples_tka_discharge_summary.pdf", help="the document to summarise")
    args = parser.parse_args()

    results = {quantize: _run(quantize, args.follow_ups, args.summary) for quantize in args.quantize}
    first = results[args.quantize[0]]
    print("### Follow-up answers on a record already read\n")
    print(markdown.table(["precision", "answers", "median s", "90th percentile s", "slowest s", "median vs first"]))
    for quantize, result in results.items():
        times = sorted(result["follow_ups"])
        median = statistics.median(times)
        print(markdown.row([
            quantize, len(times), f"{median:.2f}", f"{times[int(0.9 * (len(times) - 1))]:.2f}", f"{times[-1]:.2f}",
            f"{median / statistics.median(first['follow_ups']):.2f}x",
        ]))
    print(f"\n### First structured summary of {args.summary}\n")
    print(markdown.table(["precision", "seconds", "draft tokens", "tokens/s", "vs first"]))
    for quantize, result in results.items():
        print(markdown.row([
            quantize, f"{result['summary_s']:.1f}", result["summary_tokens"], f"{result['summary_tok_s']:.1f}",
            f"{result['summary_s'] / first['summary_s']:.2f}x",
        ]))


def _run(quantize: str, follow_ups: int, summary_document: str) -> dict:
    engine = load_engine(quantize=quantize)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), quantize=quantize)
        assistant = Assistant(engine, open_database(settings.db_path), settings)
        times: list[float] = []
        for truth_path in sorted((CORPUS / "truth").glob("*.json")):
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            if not truth["doc"].endswith(FREE_TEXT) or len(truth.get("qa", [])) < 2:
                continue
            session = _session(assistant, truth["doc"])
            questions = [qa["q"] for qa in truth["qa"]]
            _last(assistant.ask(BENCH_USER, session, questions[0]))  # reads the record into the prefix cache
            for question in questions[1 : 1 + follow_ups]:
                started = time.perf_counter()
                answer = _last(assistant.ask(BENCH_USER, session, question))
                if isinstance(answer, Answer):
                    times.append(time.perf_counter() - started)
        started = time.perf_counter()
        summary = _last(assistant.summarize(BENCH_USER, _session(assistant, summary_document)))
        summary_s = time.perf_counter() - started
        assert isinstance(summary, Summary), summary
        stats = summary.turn.stats
    return {
        "follow_ups": times, "summary_s": summary_s, "summary_tokens": stats.generated_tokens if stats else 0,
        "summary_tok_s": stats.decode_tok_s if stats else 0.0,
    }


def _session(assistant: Assistant, name: str) -> int:
    view = assistant.start_session(BENCH_USER, read_upload([(CORPUS / name, name)], 1 << 28))
    assert view is not None, f"{name} did not load"
    return view.session.id


def _last(events):  # type: ignore[no-untyped-def]
    last = None
    for last in events:
        pass
    return last


if __name__ == "__main__":
    main()
