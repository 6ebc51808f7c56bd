"""Evidence benchmark: how often the record lines found without a model hold a question's accepted answer.

    python -m bench.evidence [--corpus ../shared/corpus] [--json]

Every corpus document with ground truth (`truth/<stem>.json`) is loaded, and each of its questions is asked of it
alone with `app.evidence.find_evidence`. A question is found at k when an accepted answer is inside one of the first
k quotes, case-insensitive and whitespace-normalised (the corpus's rule). Yes/no questions accept only "yes" or "no",
a word the record does not hold, so they are counted apart.

Prints recall@1 and recall@3 over all other questions, by format, by document and by question type; the time per
question, on the corpus and on one record of 500,000 characters; then every miss, with its first quotes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from app.evidence import find_evidence
from documents import Document, load
from bench import markdown

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
FORMATS = {".json": "FHIR", ".xml": "C-CDA", ".txt": "TXT", ".pdf": "PDF", ".docx": "DOCX"}
LONG_RECORD_CHARS = 500_000
YES_NO = (["yes"], ["no"])


@dataclass(frozen=True)
class Outcome:
    document: str
    format: str
    question: str
    answers: list[str]
    question_type: str
    rank: int | None  # the position (from 1) of the first quote holding an accepted answer; None if none does
    quotes: list[str]
    seconds: float

    @property
    def yes_no(self) -> bool:
        return self.answers in YES_NO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the folder of documents and truth/")
    parser.add_argument("--json", action="store_true", help="print the figures and every question's outcome as JSON")
    args = parser.parse_args()
    documents = corpus_documents(args.corpus)
    outcomes = evaluate(documents, args.corpus)
    long_record = long_record_seconds(list(documents.values()), [outcome.question for outcome in outcomes][:20])
    if args.json:
        print(json.dumps({"summary": _summary(outcomes), "long_record": long_record,
                          "outcomes": [asdict(outcome) for outcome in outcomes]}, indent=2))
        return
    _print_report(outcomes, long_record)


def corpus_documents(corpus: Path) -> dict[str, Document]:
    """The corpus's documents that have ground truth, by file name."""
    truths = sorted((corpus / "truth").glob("*.json"))
    return {truth["doc"]: load(corpus / truth["doc"]) for truth in map(_read_json, truths)}


def evaluate(documents: dict[str, Document], corpus: Path) -> list[Outcome]:
    """Each truth question asked of its document alone, in corpus order."""
    outcomes = []
    for truth in map(_read_json, sorted((corpus / "truth").glob("*.json"))):
        document = documents[truth["doc"]]
        for qa in truth["qa"]:
            started = time.perf_counter()
            search = find_evidence(qa["q"], [document])
            seconds = time.perf_counter() - started
            quotes = [evidence.quote for evidence in search.evidence]
            outcomes.append(Outcome(
                document=document.name,
                format=FORMATS[Path(document.name).suffix],
                question=qa["q"],
                answers=qa["answers"],
                question_type=search.question_type,
                rank=_rank(quotes, qa["answers"]),
                quotes=quotes,
                seconds=seconds,
            ))
    return outcomes


def recall(outcomes: Iterable[Outcome], k: int) -> float:
    """The share of the questions (yes/no left out) with an accepted answer in one of the first k quotes."""
    asked = [outcome for outcome in outcomes if not outcome.yes_no]
    return sum(outcome.rank is not None and outcome.rank <= k for outcome in asked) / len(asked)


def long_record_seconds(documents: list[Document], questions: list[str]) -> dict[str, float]:
    """Seconds to answer each question from one record of copies of the documents, LONG_RECORD_CHARS long at least."""
    record: list[Document] = []
    while sum(document.char_count for document in record) < LONG_RECORD_CHARS:
        copy = documents[len(record) % len(documents)]
        record.append(copy.model_copy(update={"name": f"{len(record)}-{copy.name}"}))
    seconds = [_timed(lambda: find_evidence(question, record)) for question in questions]
    return {
        "characters": sum(document.char_count for document in record),
        "median_seconds": statistics.median(seconds),
        "max_seconds": max(seconds),
    }


def _rank(quotes: list[str], answers: list[str]) -> int | None:
    wanted = [_normalised(answer) for answer in answers]
    for position, quote in enumerate(quotes, start=1):
        if any(answer in _normalised(quote) for answer in wanted):
            return position
    return None


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# --- Report ----------------------------------------------------------------------------------------------------------


def _summary(outcomes: list[Outcome]) -> dict[str, object]:
    asked = [outcome for outcome in outcomes if not outcome.yes_no]
    yes_no = [outcome for outcome in outcomes if outcome.yes_no]
    return {
        "questions": len(asked),
        "recall@1": recall(asked, 1),
        "recall@3": recall(asked, 3),
        "yes_no_questions": len(yes_no),
        "yes_no_with_evidence": sum(bool(outcome.quotes) for outcome in yes_no),
        "seconds_per_question": statistics.mean(outcome.seconds for outcome in outcomes),
    }


def _print_report(outcomes: list[Outcome], long_record: dict[str, float]) -> None:
    summary = _summary(outcomes)
    print("## Evidence recall (yes/no questions left out)\n")
    print(f"{summary['questions']} questions: recall@1 {summary['recall@1']:.1%}, recall@3 {summary['recall@3']:.1%}. "
          f"Yes/no questions: {summary['yes_no_with_evidence']} of {summary['yes_no_questions']} have evidence "
          "(their answer word is not in the text, so it cannot be found).\n")
    for title, key in (("format", "format"), ("document", "document"), ("question type", "question_type")):
        print(f"### By {title}\n")
        print(markdown.table([title, "questions", "recall@1", "recall@3"]))
        groups: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            if not outcome.yes_no:
                groups.setdefault(getattr(outcome, key), []).append(outcome)
        for name, group in groups.items():
            print(markdown.row([name, len(group), f"{recall(group, 1):.0%}", f"{recall(group, 3):.0%}"]))
        print()
    print("## Time\n")
    print(f"Corpus: {summary['seconds_per_question'] * 1000:.1f} ms per question, one document at a time.")
    print(f"One record of {long_record['characters']:,} characters: median {long_record['median_seconds']:.3f} s, "
          f"slowest {long_record['max_seconds']:.3f} s per question.\n")
    misses = [outcome for outcome in outcomes if not outcome.yes_no and (outcome.rank is None or outcome.rank > 3)]
    print(f"## Misses at 3 ({len(misses)})\n")
    for outcome in misses:
        print(f"- {outcome.document} [{outcome.question_type}] {outcome.question}")
        print(f"  accepted: {outcome.answers}")
        for position, quote in enumerate(outcome.quotes[:3], start=1):
            print(f"  {position}. {' '.join(quote.split())}")
        if not outcome.quotes:
            print("  (no evidence)")



if __name__ == "__main__":
    main()
