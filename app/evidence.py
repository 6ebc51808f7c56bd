"""Evidence first: the record's lines most likely to answer a question, found without a model.

Before the model answers, the clinician sees, and the model is given, a few quoted lines of the record, each with
its document and page. They are found here by BM25 over short candidates, weighted by what the question asks for.

A candidate is short enough to quote:
- a sentence, which a printed page (PDF) may wrap over several lines; one too long to quote is cut into pieces, and
  one that refers back ("She was given this diagnosis.") is quoted with the sentence before it;
- a line, as structured files (FHIR, C-CDA) and Word tables write one entry a line;
- a table row that a PDF spreads over consecutive short lines, a cell a line ("Triglycerides", "122.42", "mg/dL",
  "1987-09-19"). Rows are not marked: a row is taken to run from a short line until the next line that starts
  with a capital after a line with a digit, which is where the next row's name starts.

A candidate is read with the title of its section and the column names of its table, which say what it is.
Words are compared as `app.words` reads them: stems, common clinical abbreviations as what they mean ("BP" as "blood
pressure", "NKDA" as "no known drug allergies", "b.i.d." as "twice daily"), dates in ISO form.

What the question asks for (a date, a value, a medication, an allergy, a count, ...) adds weight to the candidates
that hold such a thing: a date, a number, a dose, an allergy, a line of the fitting section or coded fact. So does
naming: a question that names a coded fact, or quotes a phrase, favours the lines that hold it.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel

from app.words import Word, fold_spaces, read, read_page, spelled_out
from documents import Document, Page, Section
from documents.document import FactCategory, SectionKind
from documents.sections import find_sections
from documents.sentences import sentence_spans, trim

QuestionType = Literal["date", "value", "medication", "allergy", "count", "procedure", "diagnosis", "yes_no", "other"]


class Evidence(BaseModel):
    """A quoted line of the record: `quote` is `text[start:end]` of page `page` of the document named `document`."""

    document: str
    page: int
    start: int
    end: int
    quote: str
    score: float
    source: Literal["line", "fact"]  # a line of text, or the line a coded fact (FHIR, C-CDA) was written into


class EvidenceSearch(BaseModel):
    question_type: QuestionType  # what the question asks for
    terms: list[str]  # what was searched for, to show the clinician when nothing is found
    evidence: list[Evidence]  # best first


def find_evidence(question: str, documents: Sequence[Document] | EvidenceIndex, limit: int = 3) -> EvidenceSearch:
    """The lines of `documents` most likely to answer `question`, best first; none when none shares a word with it
    (or, for a question whose type says what it is about, lies where such things are written)."""
    question_type = question_type_of(question)
    query = _query(question)
    search = EvidenceSearch(question_type=question_type, terms=_terms(question, query), evidence=[])
    if not query:
        return search
    record = documents if isinstance(documents, EvidenceIndex) else EvidenceIndex(documents)
    if not record.candidates:
        return search
    scores = _scores(question, question_type, query, record)
    # A stable sort keeps equal scores in record order.
    for index in np.argsort(-scores, kind="stable"):
        if scores[index] <= 0 or len(search.evidence) == limit:
            break
        evidence = record.evidence(int(index), round(float(scores[index]), 4))
        if not any(_repeats(evidence, chosen) for chosen in search.evidence):
            search.evidence.append(evidence)
    return search


def question_type_of(question: str) -> QuestionType:
    """What the question asks for: the first type in `_QUESTION_TYPES` whose words it uses, or "other"."""
    keys = set(_keys_of(question))
    measured = any(_key_set(measurement) <= keys for measurement in _MEASUREMENTS)
    for question_type, pattern in _QUESTION_TYPES:
        if pattern.search(question) or (question_type == "value" and measured):
            return question_type
    return "other"


# --- What the question asks for --------------------------------------------------------------------------------------

# In order of precedence. Counts and dates come first, as "How many allergies..." and "When was the medication
# started?" ask for a number and a date; yes/no comes last, as "Does she have any drug allergies?" is answered from
# the allergy lines.
_QUESTION_TYPES: list[tuple[QuestionType, re.Pattern[str]]] = [
    ("count", re.compile(r"\bhow\s+many\b|\bnumber\s+of\b", re.I)),
    ("date", re.compile(
        r"\bwhen\b|\b(?:what|which)\s+(?:date|day|year|month|time)\b|\bdate\s+of\b|\bhow\s+long\s+ago\b|\bonset\b",
        re.I)),
    ("allergy", re.compile(r"\ballerg|\breaction|\bintoleran|\bnkda\b|\banaphyla", re.I)),
    ("medication", re.compile(
        r"\bmedicat|\bmedicine|\bmeds\b|\bdrugs?\b|\bdos(?:e|es|age|ing)\b|\bprescri|\brx\b|\btaking\b|\bstatins?\b"
        r"|\bantihistamine|\bantibiotic|\bcontraceptive|\binhaler|\bspray|\bcream\b|\bointment|\btablet|\bpills?\b"
        r"|\binjection|\binsulin",
        re.I)),
    ("value", re.compile(
        r"\bvalues?\b|\blevels?\b|\bresults?\b|\breadings?\b|\bhow\s+(?:much|old|high|low|tall|heavy)\b|\bcount\b"
        r"|\bscore\b",
        re.I)),
    ("procedure", re.compile(r"\bprocedures?\b|\bsurger|\boperation|\bperformed\b|\bunderwent\b", re.I)),
    ("diagnosis", re.compile(r"\bdiagnos|\bassessment\b|\bimpression\b|\bproblems?\b|\bconditions?\b", re.I)),
    ("yes_no", re.compile(
        r"^\s*(?:is|are|was|were|does|do|did|has|have|had|can|could|should|will|would)\b|\byes\s+or\s+no\b", re.I)),
]

# A question that names one of these measurements asks for its value, even without the word "value".
_MEASUREMENTS = (
    "blood pressure", "pulse", "respiratory rate", "temperature", "oxygen saturation", "weight", "height",
    "body mass index", "age", "hemoglobin", "hematocrit", "platelets", "white blood cells", "red blood cells",
    "urea nitrogen", "creatinine", "sodium", "potassium", "glucose", "hemoglobin a1c", "cholesterol", "inr",
)

# Words that frame a question ("On what date...", "the most recent value of...") rather than say what it is about;
# its type weighs what they ask for.
_FRAME = ("date", "day", "time", "year", "value", "level", "dose", "dosage", "most", "recent")


def _query(question: str) -> list[str]:
    """The keys searched for: the question's, less its framing words."""
    framing = set().union(*map(_key_set, _FRAME))
    return list(dict.fromkeys(key for key in _keys_of(question) if key not in framing))


def _terms(question: str, query: list[str]) -> list[str]:
    """What was searched for: the question's words as written whose keys were searched, and its dates."""
    asked = set(query)
    written = [question[word.start : word.end] for word in read(question) if word.key in asked]
    terms = [term.lower() if not term[:1].isdigit() else term for term in written] + spelled_out(question)
    return list(dict.fromkeys(terms))


# What answers each type of question: what a candidate's text holds (see _FEATURE_WORDS), the sections it lies in,
# the categories of the coded facts written into it.
_WANTED_FEATURES: dict[QuestionType, str] = {
    "date": "date",
    "value": "number",
    "medication": "dose",
    "allergy": "allergy",
    "count": "number",
    "procedure": "procedure",
    "diagnosis": "diagnosis",
}
_WANTED_SECTIONS: dict[QuestionType, frozenset[SectionKind]] = {
    "value": frozenset({"vital_signs", "labs", "physical_exam"}),
    "medication": frozenset({"medications"}),
    "allergy": frozenset({"allergies"}),
    "procedure": frozenset({"procedures", "past_surgical_history"}),
    "diagnosis": frozenset({"diagnoses", "problems", "assessment", "assessment_and_plan", "past_medical_history"}),
}
_WANTED_FACTS: dict[QuestionType, frozenset[FactCategory]] = {
    "value": frozenset({"lab", "vital"}),
    "medication": frozenset({"medication"}),
    "allergy": frozenset({"allergy"}),
    "procedure": frozenset({"procedure"}),
    "diagnosis": frozenset({"condition"}),
}
# Words that say which kind of coded fact a question is about, whatever it asks of it: "How many allergies...",
# "When was the medication started?".
_TOPIC_WORDS: dict[str, FactCategory] = {
    "allergy": "allergy", "intolerance": "allergy", "medication": "medication", "prescription": "medication",
    "condition": "condition", "problem": "condition", "diagnosis": "condition", "procedure": "procedure",
    "surgery": "procedure", "immunization": "immunization", "vaccine": "immunization", "laboratory": "lab",
    "test": "lab", "vital": "vital", "encounter": "encounter", "visit": "encounter",
}
_LATEST = re.compile(r"\b(?:most\s+recent|latest|last|newest|current(?:ly)?)\b", re.I)
# A phrase quoted from the record: 'Allergy to nut', "Viral sinusitis (disorder)". An opening quote follows a space
# or a bracket, so that the apostrophe of "patient's" opens none.
_QUOTED = re.compile(r"(?:^|(?<=[\s(\[]))['\"‘“]([^'\"‘’“”]{3,}?)['\"’”](?=[\s?.,;:)\]!]|$)")

# What a candidate earns besides its BM25 score, which is scaled so that the best candidate's is 1.
_FITS_TYPE = 0.5  # it holds what the question asks for: a date, a dose, an allergy, ...
_FITS_PLACE = 0.15  # it lies in a section, or a coded fact's line, of the kind the question is about
_NAMED = 0.4  # it holds the coded fact, or the phrase, that the question names
_RECENT = 0.15  # times how late its date is among the candidates', when the question asks for the latest

# BM25's term-frequency saturation, the usual value (bm25s's and Lucene's), and its length normalisation, less than the
# usual 0.75: candidates are already cut to a sentence or a line, so a longer one is not less to the point, and a
# fragment should not win for being short.
_K1 = 1.5
_B = 0.5


def _scores(question: str, question_type: QuestionType, query: list[str], record: EvidenceIndex) -> np.ndarray:
    """Each candidate's score: its BM25 score for the query, scaled so that the best is 1, and what it earns for
    holding what the question asks for; 0 for a candidate that is no evidence."""
    counts = [record.count(key) for key in query]
    text = _bm25(np.column_stack([in_text for in_text, _ in counts]), record.lengths)
    if text.max() > 0:
        text /= text.max()
    asked = set(query)
    sections = _WANTED_SECTIONS.get(question_type, frozenset())
    categories = _WANTED_FACTS.get(question_type, frozenset()) | {
        category for word, category in _TOPIC_WORDS.items() if asked & _key_set(word)
    }
    # A question may not say what its type is about ("Which statin..." asks for a medication): a line of the section
    # or coded fact that its type fits needs no word of it.
    fits_place = np.array([
        candidate.section in sections or bool(categories & record.fact_categories(candidate))
        for candidate in record.candidates
    ])
    # A table row is found by its first cell, which names it; a run of lines starting elsewhere would join the end
    # of one row to the start of the next.
    named_first = np.column_stack([in_head > 0 for _, in_head in counts]).any(axis=1)
    eligible = (~record.is_row | named_first) & ((text > 0) | fits_place)
    bonus = _FITS_PLACE * fits_place
    if question_type in _WANTED_FEATURES:
        bonus += _FITS_TYPE * record.holds(_WANTED_FEATURES[question_type])
    folded = _fold(question)
    quoted = [_fold(phrase) for phrase in _QUOTED.findall(question)]
    for index in np.flatnonzero(eligible):
        candidate = record.candidates[index]
        if any(name in folded for name in record.fact_names(candidate)) or any(
            phrase in _fold(record.text(candidate)) for phrase in quoted
        ):
            bonus[index] += _NAMED
    if _LATEST.search(question):
        bonus += _recency(record, eligible)
    return np.where(eligible, text + bonus, 0.0)


def _bm25(counts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The Okapi BM25 score of each candidate, from the count of each query key in it (a column per key) and its length.

    Computed here for the question's keys alone: indexing every word of a long record (with bm25s, as
    documents.retrieval does for passages) costs more than all the rest of a search.
    """
    candidates = len(lengths)
    frequency = np.count_nonzero(counts, axis=0)
    idf = np.log(1 + (candidates - frequency + 0.5) / (frequency + 0.5))
    normalised = _K1 * (1 - _B + _B * lengths / max(lengths.mean(), 1.0))
    return (idf * counts * (_K1 + 1) / (counts + normalised[:, None])).sum(axis=1)


def _recency(record: EvidenceIndex, eligible: np.ndarray) -> np.ndarray:
    """A bonus growing with a candidate's latest date: none for the earliest among them, _RECENT for the latest."""
    latest = {index: record.latest_date(record.candidates[index]) for index in np.flatnonzero(eligible)}
    dates = sorted({date for date in latest.values() if date})
    rank = {date: position / max(1, len(dates) - 1) for position, date in enumerate(dates)}
    bonus = np.zeros(len(record.candidates))
    for index, date in latest.items():
        if date:
            bonus[index] = _RECENT * rank[date]
    return bonus


def _repeats(evidence: Evidence, chosen: Evidence) -> bool:
    """Whether the evidence says nothing that evidence already chosen does not: it lies within it, holds it whole
    (a table row and its first line), or says the same words elsewhere. Sentences quoted with the one they refer
    back to may overlap."""
    if _fold(evidence.quote) == _fold(chosen.quote):
        return True
    if (evidence.document, evidence.page) != (chosen.document, chosen.page):
        return False
    within = chosen.start <= evidence.start and evidence.end <= chosen.end
    holds = evidence.start <= chosen.start and chosen.end <= evidence.end
    return within or holds


def _fold(text: str) -> str:
    return fold_spaces(text).lower()


# --- Words -----------------------------------------------------------------------------------------------------------

_YEAR = re.compile(r"(?:19|20)\d\d")


def _positioned_keys(text: str, words: Sequence[Word] | None = None) -> list[tuple[int, str]]:
    """Each key of `text` (as `app.words` reads it, or as `words` already read) with where it starts; a date's year
    as well ("@2007"), and a year written alone as one, so that "in 2007" finds the lines dated in it."""
    keys = []
    for word in read(text) if words is None else words:
        keys.append((word.start, word.key))
        if word.kind == "date":
            keys.append((word.start, "@" + word.value[:4]))
        elif word.kind == "number" and _YEAR.fullmatch(word.value):
            keys.append((word.start, "@" + word.value))
    return keys


def _keys_of(text: str) -> list[str]:
    return [key for _, key in _positioned_keys(text)]


@lru_cache(maxsize=4096)
def _key_set(text: str) -> frozenset[str]:
    return frozenset(_keys_of(text))


# --- Candidates ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Candidate:
    """Text `start:end` of page `page` of the `document`-th document; its keys are those of the record from `first`
    to `last`."""

    document: int
    page: int
    start: int
    end: int
    first: int
    last: int
    head_last: int  # where the keys of a table row's first line end; `last` for any other candidate
    is_row: bool
    context: int  # the keys of its section's title and its table's column names, as an index in EvidenceIndex.contexts
    section: SectionKind | None
    fact_line: int  # the coded facts' line it lies in, or the text facts in it, as an index in fact_lines; -1 if none


@dataclass(frozen=True)
class _FactLine:
    categories: frozenset[FactCategory]
    names: tuple[str, ...]  # folded


# A PDF, or a text file, whose longest line is at most this long is printed: its lines wrap its sentences, and its
# tables may be written a cell a line. Word files and structured records write a paragraph or an entry a line.
_WRAPPING_KINDS = frozenset({"pdf", "txt", "md"})
_PRINTED_WIDTH = 200
# A printed line at least this share of the document's longest runs on into the next: it was wrapped, not ended.
_FULL_LINE = 0.7
# The lines of a table that a PDF writes a cell a line are this short.
_CELL_CHARS = 40
# A table row made of such lines has at most this many lines and characters.
_ROW_LINES = 6
_ROW_CHARS = 120
# A sentence longer than this is cut into pieces short enough to quote (see _SEPARATORS).
_LONGEST_SENTENCE = 300

# What a candidate may hold, by the words that say so; "date" and "number" are read from its keys apart.
_FEATURE_WORDS: dict[str, tuple[str, ...]] = {
    "dose": ("mg", "mcg", "gm", "ml", "unit", "units", "iu", "meq", "tab", "tablet", "capsule", "puff", "drop",
             "spray", "patch", "cream", "daily", "twice", "three times", "four times", "as needed", "at bedtime",
             "by mouth", "every"),
    "allergy": ("allergy", "nkda", "intolerance", "reaction", "anaphylaxis"),
    "procedure": ("procedure", "surgery", "surgical", "operation", "operated", "biopsy", "fusion", "replacement",
                  "repair", "bypass", "underwent", "performed", "implant", "graft"),
    "diagnosis": ("diagnosis", "impression", "assessment", "disorder", "disease", "syndrome", "condition"),
}
# Names of procedures end so: "appendectomy", "colonoscopy", "arthroplasty", as their stems do.
_PROCEDURE_ENDINGS = ("ectomi", "otomi", "ostomi", "plasti", "scopi", "pexi", "desi")

_LINE = re.compile(r"[^\n]+")
# Words by which a sentence refers back to the one before: "She was given this diagnosis." ("It" and "they" refer
# back within their sentence as often.)
_REFERS_BACK = re.compile(r"\b(?:this|these|those|the latter|the former)\b", re.I)
# Where a sentence too long to quote is cut: at its semicolons, then its commas, then between its words.
_SEPARATORS = [re.compile(r";\s"), re.compile(r",\s"), re.compile(r"\s")]
_TABLE_CELLS = " | "
_DIGIT = re.compile(r"\d")


class EvidenceIndex:
    """The candidates of all the documents, in record order, and the keys they are read by, all in one sequence."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.names = [document.name for document in documents]
        self.texts: dict[tuple[int, int], str] = {}
        self.keys: list[str] = []
        self.candidates: list[_Candidate] = []
        self.contexts: dict[tuple[str, ...], int] = {}  # the distinct contexts' keys, by index
        self.fact_lines: list[_FactLine] = []
        for position, document in enumerate(documents):
            # Documents rebuilt from storage carry pages only; their sections, and the dates in them, are found
            # again here.
            sections = document.sections or find_sections(document.pages)
            # The document's longest line, which a wrapped line nearly fills; a page may hold a table alone.
            width = max((len(line.strip()) for page in document.pages for line in page.text.splitlines()), default=0)
            for page in document.pages:
                self.texts[position, page.number] = page.text
                _PageReader(self, document, position, page, sections, width).read()
        self.is_row = np.array([candidate.is_row for candidate in self.candidates], dtype=bool)
        self._first = np.array([candidate.first for candidate in self.candidates], dtype=np.int64)
        self._last = np.array([candidate.last for candidate in self.candidates], dtype=np.int64)
        self._head_last = np.array([candidate.head_last for candidate in self.candidates], dtype=np.int64)
        self._context = np.array([candidate.context for candidate in self.candidates], dtype=np.int64)
        self._context_keys = list(self.contexts)
        context_lengths = np.array([len(keys) for keys in self._context_keys], dtype=np.int64)
        self.lengths = self._last - self._first + context_lengths[self._context]
        self._vocabulary: dict[str, int] = {}
        self._ids = np.array(
            [self._vocabulary.setdefault(key, len(self._vocabulary)) for key in self.keys], dtype=np.int64
        )

    def context_of(self, keys: tuple[str, ...]) -> int:
        return self.contexts.setdefault(keys, len(self.contexts))

    def count(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """How often the key occurs in each candidate with its context, and in its first line (a table row's)."""
        in_context = np.array([keys.count(key) for keys in self._context_keys])[self._context]
        index = self._vocabulary.get(key)
        if index is None:
            return in_context, np.zeros(len(self.candidates))
        occurrences = self._running_count(self._ids == index)
        in_text = occurrences[self._last] - occurrences[self._first]
        return in_text + in_context, occurrences[self._head_last] - occurrences[self._first]

    def holds(self, feature: str) -> np.ndarray:
        """Whether each candidate holds the feature: a date, a number, a dose, ..."""
        by_key = np.array([feature in _features_of(key) for key in self._vocabulary], dtype=bool)
        occurrences = self._running_count(by_key[self._ids])
        return occurrences[self._last] > occurrences[self._first]

    def text(self, candidate: _Candidate) -> str:
        return self.texts[candidate.document, candidate.page][candidate.start : candidate.end]

    def fact_categories(self, candidate: _Candidate) -> frozenset[FactCategory]:
        return self.fact_lines[candidate.fact_line].categories if candidate.fact_line >= 0 else frozenset()

    def fact_names(self, candidate: _Candidate) -> tuple[str, ...]:
        return self.fact_lines[candidate.fact_line].names if candidate.fact_line >= 0 else ()

    def latest_date(self, candidate: _Candidate) -> str | None:
        """The candidate's latest date, ISO."""
        return max((key[1:] for key in self.keys[candidate.first : candidate.last] if key[0] == "@"), default=None)

    def evidence(self, index: int, score: float) -> Evidence:
        candidate = self.candidates[index]
        return Evidence(
            document=self.names[candidate.document],
            page=candidate.page,
            start=candidate.start,
            end=candidate.end,
            quote=self.text(candidate),
            score=score,
            source="fact" if candidate.fact_line >= 0 else "line",
        )

    @staticmethod
    def _running_count(hits: np.ndarray) -> np.ndarray:
        """running[i] = how many of hits[:i] are true."""
        return np.concatenate(([0], np.cumsum(hits)))


class _PageReader:
    """Finds the candidates of a page and adds them, with their keys, to the record."""

    def __init__(
        self, record: EvidenceIndex, document: Document, position: int, page: Page, sections: list[Section], width: int
    ) -> None:
        self.record = record
        self.position = position
        self.page = page
        self.printed = document.kind in _WRAPPING_KINDS and width <= _PRINTED_WIDTH
        self.width = width
        text = page.text
        lines = [trim(text, match.start(), match.end()) for match in _LINE.finditer(text)]
        self.lines = [(start, end) for start, end in lines if start < end]
        keyed = _positioned_keys(text, read_page(text))
        self.key_offset = len(record.keys)
        self.key_starts = [start for start, _ in keyed]
        record.keys += [key for _, key in keyed]
        self.sections = sorted(
            ((span.start, span.end, section.kind, section.title or "")
             for section in sections for span in section.spans if span.page == page.number),
            key=lambda found: found[0],
        )
        self.section_starts = [start for start, _, _, _ in self.sections]
        self.headings = {start: title for start, _, _, title in self.sections}
        self.column_names = self._column_names()
        self.header_starts = {start for start, _ in self.column_names.values()}
        self.contexts: dict[tuple[str, tuple[int, int] | None], int] = {}
        # The lines that coded facts were written into, by where they start: (end, index in record.fact_lines).
        facts: dict[tuple[int, int], list[tuple[FactCategory, str]]] = {}
        # The words that facts of free text were read from (documents.text_facts), by where they start: a
        # candidate holding them holds the fact. Only facts of the patient's lists: a denial is no medication.
        self.text_facts: list[tuple[int, int, FactCategory, str]] = sorted(
            (fact.span.start, fact.span.end, fact.category, _fold(fact.name)) for fact in document.facts
            if fact.span.page == page.number and fact.origin == "text" and fact.listable
        )
        self.text_fact_starts = [start for start, _, _, _ in self.text_facts]
        for fact in document.facts:
            if fact.span.page == page.number and fact.origin == "entry":
                facts.setdefault((fact.span.start, fact.span.end), []).append((fact.category, _fold(fact.name)))
        self.fact_lines: dict[int, tuple[int, int]] = {}
        for (start, end), found in sorted(facts.items()):
            self.fact_lines[start] = (end, len(record.fact_lines))
            record.fact_lines.append(_FactLine(
                categories=frozenset(category for category, _ in found),
                # A shorter name ("K") would be found in questions about other things.
                names=tuple(name for _, name in found if len(name) >= 4),
            ))
        self.fact_starts = sorted(self.fact_lines)

    def read(self) -> None:
        spans = sorted(set(self._sentences()) | set(self._rows()), key=lambda span: span[:2])
        self.record.candidates += [
            self._candidate(start, end, head_end)
            for start, end, head_end in spans
            if not self._heading(start, end) and start not in self.header_starts
        ]

    def _sentences(self) -> Iterator[tuple[int, int, None]]:
        """The sentences of the page's paragraphs: its lines, or on a printed page, runs of wrapped lines."""
        text = self.page.text
        paragraph_start = None
        for index, (start, end) in enumerate(self.lines):
            paragraph_start = start if paragraph_start is None else paragraph_start
            following = self.lines[index + 1][0] if index + 1 < len(self.lines) else None
            runs_on = (
                self.printed
                and following is not None
                and end - start >= _FULL_LINE * self.width
                and text.count("\n", end, following) == 1
                and following not in self.headings
            )
            if runs_on:
                continue
            sentences = list(_sentences(text, paragraph_start, end))
            for previous, (sentence_start, sentence_end) in zip([None] + sentences, sentences):
                # A sentence that refers back is quoted with the one it refers to, when both are short enough.
                if (
                    previous is not None
                    and sentence_end - previous[0] <= _LONGEST_SENTENCE
                    and _REFERS_BACK.search(text, sentence_start, sentence_end)
                ):
                    sentence_start = previous[0]
                yield sentence_start, sentence_end, None
            paragraph_start = None

    def _rows(self) -> Iterator[tuple[int, int, int]]:
        """On a printed page, the table rows: runs of short adjacent lines, each with where its first line ends."""
        if not self.printed:
            return
        text = self.page.text
        for index, (start, head_end) in enumerate(self.lines):
            if not self._cell(start, head_end):
                continue
            end = head_end
            has_value = _has_digit(text, start, head_end)
            for line_start, line_end in self.lines[index + 1 : index + _ROW_LINES]:
                if (
                    not self._cell(line_start, line_end)
                    or text.count("\n", end, line_start) != 1
                    or line_end - start > _ROW_CHARS
                    or (has_value and text[line_start].isupper())  # the next row's name
                ):
                    break
                end = line_end
                has_value = has_value or _has_digit(text, line_start, line_end)
            if end > head_end:
                yield start, end, head_end

    def _cell(self, start: int, end: int) -> bool:
        """Whether the line may be one cell of a table written a cell a line: short, and not a row of cells itself."""
        return end - start <= _CELL_CHARS and _TABLE_CELLS not in self.page.text[start:end]

    def _column_names(self) -> dict[int, tuple[int, int]]:
        """The line of its table's column names, by the start of each row of a table written a row a line with its
        cells between " | " (C-CDA, Word); a table's first row names its columns if it holds no digit."""
        text = self.page.text
        names: dict[int, tuple[int, int]] = {}
        in_table, header = False, None
        for index, (start, end) in enumerate(self.lines):
            if _TABLE_CELLS not in text[start:end]:
                in_table = False
                continue
            if not in_table or text.count("\n", self.lines[index - 1][1], start) != 1:
                in_table, header = True, None if _has_digit(text, start, end) else (start, end)
            elif header is not None:
                names[start] = header
        return names

    def _heading(self, start: int, end: int) -> bool:
        """Whether the span is a section's heading alone, which says where an answer is but is none."""
        title = self.headings.get(start)
        return title is not None and _fold(self.page.text[start:end]).rstrip(":") == _fold(title)

    def _candidate(self, start: int, end: int, head_end: int | None) -> _Candidate:
        kind, title = self._section(start)
        first = self.key_offset + bisect_left(self.key_starts, start)
        last = self.key_offset + bisect_left(self.key_starts, end)
        return _Candidate(
            document=self.position,
            page=self.page.number,
            start=start,
            end=end,
            first=first,
            last=last,
            head_last=last if head_end is None else self.key_offset + bisect_left(self.key_starts, head_end),
            is_row=head_end is not None,
            context=self._context(title, self.column_names.get(start)),
            section=kind,
            fact_line=self._fact_line(start, end),
        )

    def _context(self, title: str, header: tuple[int, int] | None) -> int:
        """The keys of a section's title and of its table's column names (the line at `header`), as an index in the
        record's contexts."""
        if (title, header) not in self.contexts:
            keys = _key_set(title)
            if header is not None:
                keys |= _key_set(self.page.text[header[0] : header[1]])
            self.contexts[title, header] = self.record.context_of(tuple(sorted(keys)))
        return self.contexts[title, header]

    def _section(self, start: int) -> tuple[SectionKind | None, str]:
        index = bisect_right(self.section_starts, start) - 1
        if index < 0 or self.sections[index][1] < start:
            return None, ""
        _, _, kind, title = self.sections[index]
        return kind, title

    def _fact_line(self, start: int, end: int) -> int:
        """The line of coded facts that the span lies in, or the facts of free text that lie in the span, as an
        index in the record's fact lines; -1 if none."""
        index = bisect_right(self.fact_starts, start) - 1
        if index >= 0:
            line_end, line = self.fact_lines[self.fact_starts[index]]
            if end <= line_end:
                return line
        first = bisect_left(self.text_fact_starts, start)
        inside = [(category, name) for fact_start, fact_end, category, name in self.text_facts[first:]
                  if fact_start < end and fact_end <= end]
        if not inside:
            return -1
        self.record.fact_lines.append(_FactLine(
            categories=frozenset(category for category, _ in inside),
            names=tuple(name for _, name in inside if len(name) >= 4),
        ))
        return len(self.record.fact_lines) - 1


@lru_cache(maxsize=1 << 16)
def _features_of(key: str) -> tuple[str, ...]:
    """What a candidate holding the key holds: a date, a number, a dose, ..."""
    if key[0] == "@":
        return ("date",)
    if key[0] == "#":
        return ("number",)
    found = tuple(name for name, keys in _FEATURE_KEYS.items() if key in keys)
    return found + ("procedure",) if key.endswith(_PROCEDURE_ENDINGS) else found


_FEATURE_KEYS = {name: frozenset().union(*map(_key_set, words)) for name, words in _FEATURE_WORDS.items()}


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The sentences of text[start:end], each cut into pieces short enough to quote."""
    for sentence_start, sentence_end in sentence_spans(text, start, end):
        yield from _pieces(text, sentence_start, sentence_end)


def _pieces(
    text: str, start: int, end: int, separators: Sequence[re.Pattern[str]] = _SEPARATORS
) -> Iterator[tuple[int, int]]:
    """The sentence text[start:end], trimmed; if too long to quote, cut at its semicolons, a piece still too long at
    its commas, and so on through `separators`."""
    start, end = trim(text, start, end)
    if end - start <= _LONGEST_SENTENCE or not separators:
        if start < end:
            yield start, end
        return
    # Pieces as long as a quote may be, each ending at a cut.
    piece_start = previous = start
    for cut in [match.end() for match in separators[0].finditer(text, start, end)] + [end]:
        if cut - piece_start > _LONGEST_SENTENCE and previous > piece_start:
            yield from _pieces(text, piece_start, previous, separators[1:])
            piece_start = previous
        previous = cut
    yield from _pieces(text, piece_start, end, separators[1:])


def _has_digit(text: str, start: int, end: int) -> bool:
    return _DIGIT.search(text, start, end) is not None
