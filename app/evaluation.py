"""`clinidoc eval`: how well summaries and answers agree with a corpus's ground truth.

A corpus is a folder of documents with `truth/<document stem>.json` beside them (see the shared corpus's README):
the facts each document states and questions with accepted answers. Each document gets its own session, a
structured summary and an answer to each question, through whichever engine the assistant was given, so larger
models and remote servers are measured the same way.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from app.accounts import User
from app.assistant import Answer, Assistant, Notice, Summary, read_upload
from app.citations import Citation, verify
from app.summary import ChartSummary, SectionKey
from documents import lexicons

# The evaluation's sessions go to a scratch database of their own, under this user.
EVALUATOR = User(name="eval")

Format = Literal["fhir", "ccda", "pdf", "docx", "txt"]

# The truth's fact categories and the summary section each is compared with.
CATEGORIES: dict[str, SectionKey] = {
    "medications": "medications",
    "allergies": "allergies",
    "conditions": "problems",
    "labs": "labs",
    "vitals": "vitals",
    "procedures": "procedures",
}

# Two names are the same thing at this token-set similarity: "Proventil 0.09 MG/ACTUAT inhalant solution
# (albuterol)" and "Proventil 0.09 MG/ACTUAT inhalant solution" score 100, "Atenolol" and "Albuterol" 59.
SAME_NAME = 90


class Counts(BaseModel):
    truth: int = 0  # facts in the truth
    found: int = 0  # of them, shown as facts by the summary
    shown: int = 0  # items the summary shows as facts
    correct: int = 0  # of them, matching a fact of the truth

    def add(self, other: Counts) -> Counts:
        return Counts(**{key: getattr(self, key) + getattr(other, key) for key in Counts.model_fields})

    @property
    def recall(self) -> float | None:
        return self.found / self.truth if self.truth else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.shown if self.shown else None


class QuestionResult(BaseModel):
    question: str
    answer: str
    correct: bool
    seconds: float


class DocumentResult(BaseModel):
    document: str
    format: Format
    facts: dict[str, Counts]
    citations: int
    valid_citations: int
    questions: list[QuestionResult]
    read_s: float
    summary_s: float
    answer_s: float  # mean per question
    problems: list[str] = []  # why a part could not be measured: a file that did not load, a summary refused

    def row(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "format": self.format,
            "fact_recall": {key: counts.recall for key, counts in self.facts.items()},
            "fact_precision": {key: counts.precision for key, counts in self.facts.items()},
            "citations": self.citations,
            "valid_citations": self.valid_citations,
            "qa_correct": sum(q.correct for q in self.questions),
            "qa_total": len(self.questions),
            "read_s": round(self.read_s, 2),
            "summary_s": round(self.summary_s, 2),
            "answer_s": round(self.answer_s, 2),
            "problems": self.problems,
        }


class Evaluation(BaseModel):
    model: str
    documents: list[DocumentResult] = Field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """One JSON object: the rates over the whole corpus, per category and per format, and a row per document."""
        citations = sum(d.citations for d in self.documents)
        questions = [q for d in self.documents for q in d.questions]
        by_format: dict[str, dict[str, Counts]] = defaultdict(dict)
        overall: dict[str, Counts] = {}
        for document in self.documents:
            for key, counts in document.facts.items():
                overall[key] = overall.get(key, Counts()).add(counts)
                by_format[document.format][key] = by_format[document.format].get(key, Counts()).add(counts)
        return {
            "model": self.model,
            "citation_validity": sum(d.valid_citations for d in self.documents) / citations if citations else None,
            "citations": citations,
            "fact_recall": _rates(overall, "recall"),
            "fact_precision": _rates(overall, "precision"),
            "by_format": {
                fmt: {"fact_recall": _rates(counts, "recall"), "fact_precision": _rates(counts, "precision")}
                for fmt, counts in sorted(by_format.items())
            },
            "qa_accuracy": sum(q.correct for q in questions) / len(questions) if questions else None,
            "qa_total": len(questions),
            "documents": [d.row() for d in self.documents],
        }


def _rates(counts: dict[str, Counts], which: str) -> dict[str, float | None]:
    return {key: _round(getattr(c, which)) for key, c in counts.items()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


Progress = Callable[[str], None]


def evaluate(assistant: Assistant, corpus: Path, max_bytes: int, progress: Progress | None = None) -> Evaluation:
    """Summarise every document of `corpus` that has a truth file and ask it the truth's questions."""
    evaluation = Evaluation(model=assistant.engine.info.model_name)
    for truth_path in sorted((corpus / "truth").glob("*.json")):
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        path = corpus / truth["doc"]
        if progress is not None:
            progress(path.name)
        try:
            evaluation.documents.append(_evaluate_document(assistant, path, truth, max_bytes))
        except Exception as err:  # one document's failure is a finding of the run, not the end of it
            evaluation.documents.append(_failed(path, repr(err)))
    return evaluation


def _evaluate_document(assistant: Assistant, path: Path, truth: dict[str, Any], max_bytes: int) -> DocumentResult:
    started = time.perf_counter()
    upload = read_upload([(path, path.name)], max_bytes)
    read_s = time.perf_counter() - started
    if upload.failures or not upload.documents:
        return _failed(path, str(upload.failures[0]) if upload.failures else "nothing was read", read_s)
    view = assistant.start_session(EVALUATOR, upload)
    assert view is not None, "a readable file always starts a session"
    documents = upload.documents
    problems: list[str] = []

    started = time.perf_counter()
    summary = _last(assistant.summarize(EVALUATOR, view.session.id))
    summary_s = time.perf_counter() - started
    citations: list[Citation] = []
    facts: dict[str, Counts] = {}
    if isinstance(summary, Summary):
        citations += summary.turn.summary.citations
        facts = compare_facts(summary.turn.summary, truth["facts"])
    else:
        problems.append(f"no summary: {summary.text if isinstance(summary, Notice) else 'nothing returned'}")

    questions = []
    for qa in truth.get("qa", []):
        started = time.perf_counter()
        answer = _last(assistant.ask(EVALUATOR, view.session.id, qa["q"]))
        text = answer.turn.text if isinstance(answer, Answer) else answer.text if isinstance(answer, Notice) else ""
        if isinstance(answer, Answer):
            citations += answer.turn.checked.citations
        questions.append(
            QuestionResult(
                question=qa["q"], answer=text, correct=answer_is_correct(text, qa["answers"]),
                seconds=time.perf_counter() - started,
            )
        )
    return DocumentResult(
        document=path.name,
        format=_format(path),
        facts=facts,
        citations=len(citations),
        valid_citations=sum(verify(citation, documents) for citation in citations),
        questions=questions,
        read_s=read_s,
        summary_s=summary_s,
        answer_s=sum(q.seconds for q in questions) / len(questions) if questions else 0.0,
        problems=problems,
    )


def _failed(path: Path, reason: str, read_s: float = 0.0) -> DocumentResult:
    return DocumentResult(
        document=path.name, format=_format(path), facts={}, citations=0, valid_citations=0, questions=[],
        read_s=read_s, summary_s=0.0, answer_s=0.0, problems=[reason],
    )


def _last(events: Iterable[Any]) -> Any:
    last = None
    for last in events:
        pass
    return last


def _format(path: Path) -> Format:
    if path.suffix.lower() == ".json":
        return "fhir"
    if path.suffix.lower() == ".xml":
        return "ccda"
    return {".pdf": "pdf", ".docx": "docx"}.get(path.suffix.lower(), "txt")  # type: ignore[return-value]


def compare_facts(summary: ChartSummary, truth: dict[str, Any]) -> dict[str, Counts]:
    """Per truth category: how many truth facts the summary shows, and how many of the items it shows as facts
    are true. Items it marks as not found in the record are not shown as facts and do not count.

    Recall counts the category's main list. An item is true when it matches any of the truth's lists of that
    kind: a medication "stopped" or "on transfer" (`medications_stopped_or_not_restarted`, `medications_on_transfer`)
    is a true medication of the record, though not on its current list. A stated "no known allergies" is a fact
    of the allergy category: the truth says it in `allergy_status`.
    """
    shown: dict[str, list[str]] = defaultdict(list)
    for key, item in summary.shown_as_fact():
        shown[key].append(item.text)
    results = {}
    for category, key in CATEGORIES.items():
        if category not in truth:
            continue
        expected = list(truth[category])
        also_true = [fact for name, values in truth.items() if name != category and _same_kind(name, category)
                     and isinstance(values, list) for fact in values]
        items = shown[key]
        if category == "allergies" and _denies_allergies(truth):
            expected.append(NO_KNOWN_ALLERGIES)
        matches = [[fact_matches(fact, item) for item in items] for fact in expected]
        true_items = [any(row[i] for row in matches) or any(fact_matches(fact, items[i]) for fact in also_true)
                      for i in range(len(items))]
        results[category] = Counts(
            truth=len(expected),
            found=sum(any(row) for row in matches),
            shown=len(items),
            correct=sum(true_items),
        )
    return results


# How the summary lists a stated absence of allergies, as the truth's `allergy_status` says it.
NO_KNOWN_ALLERGIES = "No known drug allergies"


def _denies_allergies(truth: dict[str, Any]) -> bool:
    status = str(truth.get("allergy_status") or "").casefold()
    return bool(status) and "not documented" not in status and not truth.get("allergies")


def _same_kind(name: str, category: str) -> bool:
    """Whether a truth list holds facts of `category`: `active_medications`, `medications_past` for medications."""
    stem = category.rstrip("s")
    return stem in name and not name.endswith(("_status", "_reactions"))


def fact_matches(fact: str | dict[str, Any], item: str) -> bool:
    """Whether a summary item shows a truth fact: the same name, or the same concept, and for a measurement the same value."""
    if isinstance(fact, str):
        name = item.split(";")[0]
        return same_name(fact, name) or _same_disease(fact, name) or _same_drug(fact, name)
    name_part = item.split(";")[0].split(":")[0]
    if not same_name(fact["name"], name_part):
        return False
    value = fact.get("value")
    return value is None or "value" not in fact or _value_in(value, item)


def same_name(truth: str, shown: str) -> bool:
    truth_words, shown_words = _stems(truth), _stems(shown)
    if not truth_words or not shown_words:
        return False
    if set(truth_words) <= set(shown_words) or set(shown_words) <= set(truth_words):
        return True
    return fuzz.token_set_ratio(" ".join(truth_words), " ".join(shown_words)) >= SAME_NAME


def _same_disease(truth: str, shown: str) -> bool:
    """Whether two names name the same diseases by the disease dictionary's concepts: "Diabetes" and "diabetic",
    "High cholesterol" and "hypercholesterolemia". Concept matching, as clinical NLP evaluations normalise names."""
    concepts = [{mention.term.code for mention in lexicons.diseases().find(name)} for name in (truth, shown)]
    return bool(concepts[0]) and concepts[0] == concepts[1]


def _same_drug(truth: str, shown: str) -> bool:
    """Whether two names name one drug by the drug dictionary: a brand and its generic ("Diprosone", "betamethasone"),
    a salt and its base counted as one drug."""
    names = [[mention.term.name for mention in lexicons.drugs().find(name)] for name in (truth, shown)]
    return len(names[0]) == len(names[1]) == 1 and same_name(names[0][0], names[1][0])


def _value_in(value: object, text: str) -> bool:
    if isinstance(value, (int, float)):
        # "278,000" is one number.
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", re.sub(r"(?<=\d),(?=\d{3}\b)", "", text))]
        return any(abs(n - value) <= max(0.01, abs(value) * 0.005) for n in numbers)
    return " ".join(_words(str(value))) in " ".join(_words(text))


def answer_is_correct(answer: str, accepted: list[str]) -> bool:
    """The corpus's rule: correct when the answer contains an accepted string, case- and whitespace-insensitive."""
    normal = " ".join(answer.casefold().split())
    return any(" ".join(option.casefold().split()) in normal for option in accepted)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.casefold())


def _stems(text: str) -> list[str]:
    # Plurals name the same thing: "Eggs" in the truth, "Egg" in the entry.
    return [word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
            for word in _words(text)]
