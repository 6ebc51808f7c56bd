"""Omissions benchmark (issue 18): does checking a text name exactly the facts it leaves out?

    python -m bench.omissions [--corpus ../shared/corpus] [--misses]

For each corpus document, texts are written from its truth file's allergies, medications, conditions and labs,
one statement a line, in two wordings: as the truth writes them ("Lasix 40mg."), and paraphrased (a drug by the
dictionary's other name, a disease by its dictionary heading, a value rounded and its date spelled out). The
complete text states every truth fact; each text with one statement taken out states all but one. Truth facts are
paired with the record's facts by `clinidoc eval`'s own rule (app.evaluation.fact_matches), independently of the
omission check.

- recall of removed facts: of the truth facts that the record's readers found among its weighty facts, the share
  whose removal makes the check list it;
- false omission flags on complete texts: the share of stated truth facts that the check lists as omitted anyway;
- extra flags on removal: facts other than the removed one that its removal makes the check list.

Facts of the record that the truth does not hold (older results, vitals, a reader's extra item) are omitted by every
constructed text and rightly listed; they are counted apart, not as false flags.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from app.evaluation import fact_matches, same_name
from app.omissions import Omission, omissions, weighed_facts
from app.summary import fact_text
from documents import Document, load
from documents.lexicons import diseases, drugs

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# The truth's categories and the kind of record fact each pairs with.
TRUTH_CATEGORIES = {"allergies": "allergy", "medications": "medication", "conditions": "condition", "labs": "lab"}
WORDINGS = ("truth", "paraphrase")

_ALLERGY_WORDS = re.compile(r"\b(?:allerg(?:y|ies|ic)|hypersensitivity)\b(?:\s+to\b)?", re.IGNORECASE)
_TAG = re.compile(r"\s*\([^)]*\)|\s*\[[^\]]*\]")


@dataclass(frozen=True)
class Statement:
    category: str  # a TRUTH_CATEGORIES key
    fact: Any  # the truth's fact: a name, or a lab's {name, value, unit, date}
    line: str


def statements(truth: dict[str, Any], wording: str) -> list[Statement]:
    """One line for each truth fact of the four categories, in the given wording."""
    write = {"truth": _as_written, "paraphrase": _paraphrased}[wording]
    return [
        Statement(category, fact, write(category, fact))
        for category in TRUTH_CATEGORIES
        for fact in truth["facts"].get(category, [])
    ]


def _as_written(category: str, fact: Any) -> str:
    if category == "labs":
        unit = f" {fact['unit']}" if fact.get("unit") else ""
        when = f" ({fact['date']})" if fact.get("date") else ""
        return f"{fact['name']}: {fact['value']}{unit}{when}."
    return f"{fact}."


def _paraphrased(category: str, fact: Any) -> str:
    if category == "allergies":
        return f"Allergic to {_ALLERGY_WORDS.sub('', fact).strip(' ,.') or fact}."
    if category == "medications":
        drug = " and ".join(dict.fromkeys(mention.term.name for mention in drugs().find(fact))) or fact
        doses = re.findall(r"(\d+(?:\.\d+)?)\s*(?:mg|mcg|ml|g|units?)\b", fact, re.IGNORECASE)
        return f"She takes {drug}{' ' + doses[-1] + ' mg' if doses else ''}."
    if category == "conditions":
        return f"Diagnosed with {_headings(_TAG.sub('', fact))}."
    value = fact["value"]
    value = round(value, 1) if isinstance(value, float) else value
    unit = f" {fact['unit']}" if fact.get("unit") else ""
    when = f" on {_spelled(fact['date'])}" if fact.get("date") else ""
    return f"Her {_TAG.sub('', fact['name']).lower()} was {value}{unit}{when}."


def _headings(name: str) -> str:
    """A disease name with each dictionary name in it replaced by the dictionary's heading, inverted as said
    ("Rhinitis, Allergic" → "allergic rhinitis")."""
    out, position = [], 0
    for mention in diseases().find(name):
        head, _, tail = mention.term.name.partition(", ")
        out += [name[position : mention.start], f"{tail} {head}".strip().lower()]
        position = mention.end
    return ("".join(out) + name[position:]).strip()


def _spelled(iso: str) -> str:
    try:
        return date.fromisoformat(iso).strftime("%B %-d, %Y")
    except ValueError:
        return iso


def _key(omission: Omission) -> tuple[str, int, int, int, str]:
    return (omission.citation.document, omission.citation.page, omission.citation.start, omission.citation.end,
            omission.fact)


def counterparts(document: Document, statement: Statement) -> set[tuple[str, int, int, int, str]]:
    """The record's weighty facts that a truth fact is, keyed as omissions are: those of the same name, else those
    of the same concept ("Acute asthma" is the record's "Asthma", not its "Mixed asthma"), by the evaluation's rules."""
    kind = TRUTH_CATEGORIES[statement.category]
    candidates = [
        ((weighed.document.name, weighed.fact.span.page, weighed.fact.span.start, weighed.fact.span.end,
          fact_text(weighed.fact)), weighed.fact.name)
        for weighed in weighed_facts([document])
        if weighed.fact.category == kind and fact_matches(statement.fact, fact_text(weighed.fact))
    ]
    if isinstance(statement.fact, str):
        named = {key for key, name in candidates if same_name(statement.fact, name)}
        if named:
            return named
    return {key for key, _ in candidates}


@dataclass
class Tally:
    removed: int = 0  # truth facts with a counterpart, each removed once
    found: int = 0  # ... that the check then listed
    stated: int = 0  # truth facts with a counterpart, stated in a complete text
    falsely_flagged: int = 0  # ... that the check listed as omitted anyway
    extra: int = 0  # facts other than the removed one that a removal made the check list
    not_read: int = 0  # truth facts with no counterpart among the record's weighty facts
    beyond_truth: int = 0  # record facts listed for a complete text that no truth fact pairs with
    misses: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("removed", "found", "stated", "falsely_flagged", "extra", "not_read", "beyond_truth"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.misses += other.misses

    @property
    def recall(self) -> float:
        return self.found / self.removed if self.removed else 1.0

    @property
    def false_rate(self) -> float:
        return self.falsely_flagged / self.stated if self.stated else 0.0


def measure(document: Document, truth: dict[str, Any], wording: str) -> Tally:
    """The check of each constructed text of one document, in one wording."""
    tally = Tally()
    lines = statements(truth, wording)
    pairs = [(statement, counterparts(document, statement)) for statement in lines]
    complete = {_key(omission) for omission in omissions("\n".join(s.line for s in lines), [document])}
    paired = set().union(*(found for _, found in pairs))
    tally.beyond_truth = len(complete - paired)
    for index, (statement, found) in enumerate(pairs):
        if not found:
            tally.not_read += 1
            continue
        tally.stated += 1
        if found & complete:
            tally.falsely_flagged += 1
            tally.misses.append(f"{document.name}: flagged though stated: {statement.line}")
        rest = "\n".join(s.line for i, s in enumerate(lines) if i != index)
        new = {_key(omission) for omission in omissions(rest, [document])} - complete
        tally.removed += 1
        if new & found:
            tally.found += 1
        else:
            tally.misses.append(f"{document.name}: not listed when removed: {statement.line}")
        if extra := new - found:
            tally.extra += len(extra)
            tally.misses.append(f"{document.name}: removing {statement.line!r} also listed {sorted(e[4] for e in extra)}")
    return tally


def corpus_truths(corpus: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((corpus / "truth").glob("*.json")):
        truth = json.loads(path.read_text(encoding="utf-8"))
        yield corpus / truth["doc"], truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--misses", action="store_true", help="list every missed, falsely flagged or extra omission")
    args = parser.parse_args()
    started = time.perf_counter()
    totals = {wording: Tally() for wording in WORDINGS}
    for path, truth in corpus_truths(args.corpus):
        document = load(path)
        for wording in WORDINGS:
            tally = measure(document, truth, wording)
            totals[wording].add(tally)
            print(f"{path.name:45} {wording:10} recall {tally.found}/{tally.removed}  "
                  f"false flags {tally.falsely_flagged}/{tally.stated}  extra {tally.extra}  "
                  f"not read {tally.not_read}  beyond truth {tally.beyond_truth}")
    for wording, tally in totals.items():
        print(f"\n{wording}: recall of removed facts {tally.recall:.1%} ({tally.found}/{tally.removed}); "
              f"false omission flags on complete texts {tally.false_rate:.1%} ({tally.falsely_flagged}/{tally.stated}); "
              f"extra flags on removal {tally.extra}; truth facts the readers did not find {tally.not_read}; "
              f"record facts beyond the truth listed {tally.beyond_truth}")
        if args.misses:
            print("\n".join(f"  {miss}" for miss in tally.misses))
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
