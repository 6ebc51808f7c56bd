"""Facts benchmark (issue 13): recall and precision of the summary's lists on the corpus, with no model at all.

    python -m bench.facts [--corpus ../shared/corpus] [--json FILE] [--misses]

Each corpus document is read and summarised with an empty draft, so every listed item comes from a structured
entry or from the free-text extractor (documents.text_facts), exactly as the app lists them before the model adds
anything. Compared with the truth by `clinidoc eval`'s own rule (app.evaluation.compare_facts). Prints recall and
precision per category and per format, the count of negated, hypothetical, family or other people's mentions that
reached a list, the time to read each document, and with --misses, for free-text documents, every truth fact not listed and
every listed item that the truth does not hold.
"""

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from app.evaluation import CATEGORIES, Counts, _format, compare_facts, fact_matches
from app.summary import SECTIONS, SummaryDraft, build_summary
from bench import markdown
from documents import load

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
FREE_TEXT = ("txt", "pdf", "docx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--misses", action="store_true", help="list every miss and every false item of the free-text documents")
    args = parser.parse_args()

    overall: dict[str, Counts] = defaultdict(Counts)
    by_format: dict[str, dict[str, Counts]] = defaultdict(lambda: defaultdict(Counts))
    unlisted_reached = 0
    rows = []
    misses: list[str] = []
    load(args.corpus / "mtsamples_allergic_rhinitis.txt")  # the dictionaries load once, before any timing
    for truth_path in sorted((args.corpus / "truth").glob("*.json")):
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        path = args.corpus / truth["doc"]
        started = time.perf_counter()
        document = load(path)
        read_s = time.perf_counter() - started
        summary = build_summary([document], SummaryDraft())
        counts = compare_facts(summary, truth["facts"])
        fmt = _format(path)
        for category, c in counts.items():
            overall[category] = overall[category].add(c)
            by_format[fmt][category] = by_format[fmt][category].add(c)
        # An item of the fact's own section that names it, when no listable mention of that name exists.
        shown = [(SECTIONS[key][1], item.text) for key, item in summary.shown_as_fact()]
        unlisted_reached += sum(
            1 for fact in document.facts if not fact.listable and fact.origin == "text"
            and any(category == fact.category and fact.name in text for category, text in shown)
            and not any(other.listable and other.name == fact.name for other in document.facts)
        )
        rows.append([path.name, fmt, f"{read_s:.2f}", str(sum(f.origin == "text" for f in document.facts))])
        if args.misses and fmt != "fhir":
            misses += _misses(path.name, summary, truth["facts"])
    print(_table(["category", "truth", "found", "recall", "shown", "correct", "precision"], [
        [category, str(c.truth), str(c.found), _pct(c.recall), str(c.shown), str(c.correct), _pct(c.precision)]
        for category, c in overall.items()
    ]))
    print()
    # The targets are on free text: the formats whose facts the extractor alone reads.
    free_text: dict[str, Counts] = defaultdict(Counts)
    for fmt in FREE_TEXT:
        for category, c in by_format.get(fmt, {}).items():
            free_text[category] = free_text[category].add(c)
    print(_table(["format", *(f"{c} R / P" for c in CATEGORIES)], [
        [fmt, *(f"{_pct(counts[c].recall)} / {_pct(counts[c].precision)}" if c in counts else "–" for c in CATEGORIES)]
        for fmt, counts in [*sorted(by_format.items()), (f"free text ({', '.join(FREE_TEXT)})", free_text)]
    ]))
    print()
    print(f"Negated, hypothetical, family or other people's mentions that reached a list: {unlisted_reached}")
    print()
    print(_table(["document", "format", "read s", "facts from text"], rows))
    if misses:
        print()
        print("\n".join(misses))
    if args.json:
        args.json.write_text(json.dumps({
            "recall": {k: c.recall for k, c in overall.items()}, "precision": {k: c.precision for k, c in overall.items()},
            "by_format": {f: {k: [c.recall, c.precision] for k, c in v.items()} for f, v in by_format.items()},
            "free_text": {k: [c.recall, c.precision] for k, c in free_text.items()},
            "unlisted_reached": unlisted_reached,
        }, indent=1))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join([markdown.table(headers), *(markdown.row(row) for row in rows)])


def _misses(name: str, summary, truth: dict) -> list[str]:
    lines = []
    shown: dict[str, list[str]] = defaultdict(list)
    for key, item in summary.shown_as_fact():
        shown[key].append(item.text)
    for category, key in CATEGORIES.items():
        if category not in truth:
            continue  # the truth does not annotate this category here; nothing shown is counted
        for fact in truth[category]:
            if not any(fact_matches(fact, item) for item in shown[key]):
                lines.append(f"MISS  {name} {category}: {fact if isinstance(fact, str) else fact.get('name')}")
        also = [f for n, v in truth.items() if category.rstrip("s") in n and isinstance(v, list) for f in v]
        for item in shown[key]:
            if not any(fact_matches(fact, item) for fact in also) and not item.startswith("No known"):
                lines.append(f"FALSE {name} {category}: {item}")
    return lines


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    main()
