"""Summary benchmark (issue 6): how long a full structured summary of a corpus record takes, and where the time goes.

    python -m bench.summary [--documents NAME ...] [--summary-tokens N] [--quantize none|int4]

For each record (by default the largest of the corpus by tokens, and the largest free-text note) it prints a
markdown row: the record's tokens, the time to read the file, to draft under the JSON grammar (prefill, then each
drafted token), to check the draft and build the summary, and the total; and what the summary shows: items read
from entries, items drafted and tied to the record, items not found. The peer for the draft is the same engine
generating the same number of tokens from the same prompt without a grammar, in the same process: the ratio is the
draft's decoding speed over the peer's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from app.accounts import User
from app.assistant import Assistant, Summary, read_upload
from app.settings import Settings
from documents import load
from engine import GenerationParams, LocalEngine, Stats, load_engine
from storage import open_database

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# The benchmark's sessions go to a scratch database, under this user.
BENCH_USER = User(name="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", nargs="*", help="corpus file names (default: the largest record and note)")
    parser.add_argument("--summary-tokens", type=int, default=Settings().summary_tokens, help="the model's draft limit")
    parser.add_argument("--quantize", default=Settings().quantize, help="how the model holds its weights")
    args = parser.parse_args()

    engine = load_engine(quantize=args.quantize)
    names = args.documents or _largest(engine)
    print(f"Model: {engine.info.model_name} on {engine.info.device}; draft limit {args.summary_tokens} tokens\n")
    print(
        "| record | tokens | read s | draft s (prefill s, tok/s) | check s | total s | plain tok/s | grammar / plain |"
        " read from entries | drafted, tied | drafted, not found |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), summary_tokens=args.summary_tokens)
        assistant = Assistant(engine, open_database(settings.db_path), settings)
        for name in names:
            print(_row(assistant, engine, name), flush=True)


def _largest(engine: LocalEngine) -> list[str]:
    sizes = {path.name: engine.count_tokens(load(path).pages[0].text) for path in CORPUS.glob("*.*")}
    notes = [name for name in sizes if name.endswith((".txt", ".pdf", ".docx"))]
    return [max(sizes, key=sizes.__getitem__), max(notes, key=sizes.__getitem__)]


def _row(assistant: Assistant, engine: LocalEngine, name: str) -> str:
    started = time.perf_counter()
    upload = read_upload([(CORPUS / name, name)], 1 << 28)
    view = assistant.start_session(BENCH_USER, upload)
    assert view is not None, f"{name} did not load"
    read_s = time.perf_counter() - started

    started = time.perf_counter()
    *_, summary = assistant.summarize(BENCH_USER, view.session.id)
    total_s = read_s + time.perf_counter() - started
    assert isinstance(summary, Summary), summary
    stats = summary.turn.stats
    assert stats is not None
    draft_s = stats.ttft_s + stats.generated_tokens / max(stats.decode_tok_s, 1e-9)
    check_s = total_s - read_s - draft_s

    plain = _plain_decode(engine, assistant, view.session.id, stats.generated_tokens)
    chart = summary.turn.summary
    items = [item for patient in chart.patients for section in patient.sections for item in section.items]
    read_from_entries = sum(item.origin == "record" for item in items)
    tied = sum(item.origin == "model" for item in items)
    not_found = len(chart.unverified)
    return (
        f"| {name} | {view.record.tokens:,} | {read_s:.1f} | {draft_s:.1f} ({stats.ttft_s:.1f}, "
        f"{stats.decode_tok_s:.1f}) | {check_s:.1f} | {total_s:.1f} | {plain.decode_tok_s:.1f} | "
        f"{stats.decode_tok_s / plain.decode_tok_s:.2f}x | {read_from_entries} | {tied} | {not_found} |"
    )


def _plain_decode(engine: LocalEngine, assistant: Assistant, session_id: int, tokens: int) -> Stats:
    """The same prompt, decoding as many tokens with no grammar: the draft's speed without the token masks."""
    params = GenerationParams(max_new_tokens=max(tokens, 1), ignore_eos=True)
    *_, stats = engine.generate(assistant.summary_messages(BENCH_USER, session_id), params)
    assert isinstance(stats, Stats)
    return stats


if __name__ == "__main__":
    main()
