"""Checking statements against the record, without a model: each is supported, contradicted or not found.

A statement (an answer's sentence, a line of a draft discharge summary) is compared with the record's units: its
sentences, its lines, and a few neighbouring short lines, which is how a PDF or Word table's row comes out of the
file (a lab's name on one line, its value, unit and date on the next ones). Words are compared as `app.words`
reads them, so "b.i.d." and "twice daily", "BP" and "blood pressure", "NKDA" and "not allergic to any
medications" say the same.

- **supported**: one unit says what the statement says: most of its meaning by weight (a rare word such as a
  drug's name weighs more than "takes"), every number and date it states, each number next to the same name
  ("hemoglobin 12.1", not the hematocrit's 12.1 two words on), and nothing it affirms denied there or the reverse.
- **contradicted**: a unit speaks of the same thing and states another value, dose or date, or the opposite
  ("denies chest pain" against "has chest pain"; "no known drug allergies" against a listed allergy, and the
  reverse). The citation is what the record states instead.
- **not found**: nothing in the record says it or its opposite: an invented fact, or a statement about
  something the record does not mention ("no history of X" when the record never speaks of X).

A statement that quotes the record in double quotes stands or falls by its quotes. The page markers the answer
prompt asks for, `[Document: note.pdf | page 2]`, are no part of what is checked; a marker pointing to a page other
than the one that says it is reported in the check's note.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from pydantic import BaseModel

from app.citations import Citation, CitationNumbers, Located, located
from app.quotes import MIN_QUOTE_CHARS, Quotes, fold
from app.words import (
    FAMILY,
    PageMarker,
    Word,
    answer_sentences,
    page_markers,
    read,
    read_page,
    without_markers,
)
from documents import Document, Page
from documents.sentences import sentence_spans, trim

Label = Literal["supported", "contradicted", "not_found"]

# A unit supports a statement when it holds this share of the statement's meaning, by weight: two thirds, so a
# paraphrase may put a common word in its own terms ("is on" for "takes") while a statement that adds a fact of
# its own ("for atrial fibrillation") is not supported by a line that lacks it.
SUPPORT_SHARE = 0.65
# A unit speaks of the same thing as a statement when it holds this share: enough that a changed number or a
# denial is about the statement's subject, not about some other line that shares a word.
SUBJECT_SHARE = 0.65
# A word this informative names something: a number next to it is that thing's value.
INFORMATIVE_WEIGHT = 2.0
# A word this rare is a name (a drug, a diagnosis, a test): what supports a statement holds every one it names, so
# "Celebrex, Colace and warfarin" is not supported by a line of the first two.
NAME_WEIGHT = 3.5
# A statement must share words this informative, together, with what supports it: "She is doing well" is supported
# by no line that happens to say "well", while "chest pain" is.
INFORMATIVE_SHARE = 2.5
# Table rows: a run of at most this many consecutive short lines is read as one unit.
ROW_LINES = 4
SHORT_LINE = 60
# A sentence that runs over more lines than this is not one unit; its lines and pairs of lines still are.
SENTENCE_LINES = 4

ALLERGY = next(word.key for word in read("allergy"))


class ClaimCheck(BaseModel):
    """What the record says of one statement."""

    text: str
    label: Label
    # supported: the words that say so; contradicted: what the record states instead; not found: none.
    citations: list[Located]
    # A page marker in the statement that points elsewhere than the words that say it.
    note: str | None = None


class CheckedSentence(BaseModel):
    """A sentence of a checked text, with its label and the numbers of its citations."""

    text: str
    start: int  # into the checked text
    end: int
    label: Label
    citations: list[int]  # Citation.number
    note: str | None = None


class CheckedText(BaseModel):
    """A text's sentences, each labelled, and the citations they point to, numbered in order of first use."""

    sentences: list[CheckedSentence]
    citations: list[Citation]

    def marked(self, text: str, mark: Callable[[CheckedSentence], str], plain: Callable[[str], str] = str) -> str:
        """`text`, whose offsets these sentences point into, with each sentence written by `mark` and what lies
        between and after them (line breaks, list markers) by `plain`."""
        parts: list[str] = []
        position = 0
        for sentence in self.sentences:
            parts += [plain(text[position : sentence.start]), mark(sentence)]
            position = sentence.end
        parts.append(plain(text[position:]))
        return "".join(parts)

    def labels(self) -> list[Label]:
        return [sentence.label for sentence in self.sentences]


def check_claims(claims: Sequence[str], documents: Sequence[Document]) -> list[ClaimCheck]:
    """Each statement of `claims` checked against the record made of `documents`."""
    record = Record(documents)
    return [record.check(claim) for claim in claims]


def check_text(
    text: str, documents: Sequence[Document] | Record, numbers: CitationNumbers | None = None
) -> CheckedText:
    """Every sentence of `text` (an answer, a summary's narrative) checked, its citations numbered after those
    `numbers` already holds (an answer's evidence, a summary's items)."""
    record = documents if isinstance(documents, Record) else Record(documents)
    numbers = numbers or CitationNumbers()
    sentences = []
    for start, end in answer_sentences(text):
        check = record.check(text[start:end])
        sentences.append(
            CheckedSentence(
                text=check.text, start=start, end=end, label=check.label, citations=numbers.add_all(check.citations),
                note=check.note,
            )
        )
    return CheckedText(sentences=sentences, citations=list(numbers.citations))


# --- The record, indexed once for every statement checked against it ------------------------------------------


@dataclass
class _Page:
    document: Document
    page: Page
    words: Sequence[Word]
    starts: list[int]  # of each word


@dataclass(frozen=True)
class _Unit:
    """A stretch of a page that may say what a statement says: a sentence, a line or a few lines."""

    page: int  # index into Record.pages
    start: int
    end: int
    first: int  # its words: pages[page].words[first:last]
    last: int
    # The keys of the title of the section it lies in: a table row under "ALLERGIES" is about allergies.
    context: frozenset[str]
    # It speaks of the patient's family ("her mother has diabetes", a family history section), not the patient.
    family: bool


class Record:
    """The documents of a session, read once into units and an index of which units hold each word."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = list(documents)
        self.pages: list[_Page] = []
        self.units: list[_Unit] = []
        self.postings: defaultdict[str, list[int]] = defaultdict(list)
        for document in self.documents:
            for page in document.pages:
                self._add_page(document, page)

    @cached_property
    def quotes(self) -> Quotes:
        return Quotes(self.documents)

    def _add_page(self, document: Document, page: Page) -> None:
        words = read_page(page.text)
        index = len(self.pages)
        self.pages.append(_Page(document, page, words, [word.start for word in words]))
        spans: set[tuple[int, int]] = set()
        lines = [trim(page.text, *line) for line in _lines(page.text)]
        lines = [line for line in lines if line[0] < line[1]]
        for number, (start, end) in enumerate(lines):
            spans.add((start, end))
            spans.update(sentence_spans(page.text, start, end))
            # A table row that a PDF writes a cell a line: a name with its value, unit and date on the next short
            # lines. (A sentence wrapped over lines is a unit as the page's sentences; longer runs of lines are not
            # units, lest one sentence's date be read as another's.)
            row = lines[number : number + ROW_LINES]
            for length in range(2, len(row) + 1):
                if all(line_end - line_start <= SHORT_LINE for line_start, line_end in row[:length]):
                    spans.add((row[0][0], row[length - 1][1]))
        for start, end in sentence_spans(page.text):
            if page.text.count("\n", start, end) < SENTENCE_LINES:
                spans.add((start, end))
        sections = _sections(document, page)
        for start, end in sorted(spans):
            first, last = bisect_left(self.pages[index].starts, start), bisect_left(self.pages[index].starts, end)
            if first == last:
                continue
            keys = {word.key for word in words[first:last]}
            context, family_section = next(
                ((keys_, family) for (s_start, s_end, keys_, family) in sections if s_start <= start < s_end),
                (frozenset(), False),
            )
            unit = len(self.units)
            self.units.append(_Unit(index, start, end, first, last, context, family_section or bool(keys & FAMILY)))
            for key in keys | context:
                self.postings[key].append(unit)

    def words(self, unit: _Unit) -> list[Word]:
        return self.pages[unit.page].words[unit.first : unit.last]

    def located(self, unit: _Unit, score: float) -> Located:
        page = self.pages[unit.page]
        return located(page.document, page.page, unit.start, unit.end, "claim", round(100 * score, 1))

    def check(self, text: str) -> ClaimCheck:
        """What the record says of the statement `text`."""
        markers = page_markers(text)
        claim = _Claim.read(without_markers(text, markers))
        if claim.quotes:
            return self._check_quotes(text, claim.quotes)
        label, units = self._judge(claim, markers)
        if len(items := claim.items()) > 1:
            # A list ("She takes Celebrex, Colace and Protonix") is true when each item is, whether one line says
            # them all or a line each; one item the record does not hold is not made true by the others.
            judged = [self._judge(item, markers) for item in items]
            if all(item_label == "supported" for item_label, _ in judged):
                if label != "supported":
                    label, units = "supported", [unit for _, item_units in judged for unit in item_units]
            elif contradicted := [item for item in judged if item[0] == "contradicted"]:
                label, units = contradicted[0]
            else:
                label, units = "not_found", []
        citations = [self.located(self.units[unit], share) for unit, share in units]
        note = self._marker_note(markers, [self.units[unit] for unit, _ in units]) if label == "supported" else None
        return ClaimCheck(text=text, label=label, citations=citations, note=note)

    def _judge(self, claim: _Claim, markers: Sequence[PageMarker]) -> tuple[Label, list[tuple[int, float]]]:
        """The claim's label and the units behind it, each with the share of the claim it holds."""
        compared = [
            (unit, _compare(claim, self.words(self.units[unit]), self.units[unit].context))
            for unit in self._candidates(claim)
            # Of the patient's family, a line says nothing about the patient.
            if claim.about_family or not self.units[unit].family
        ]
        supporting = [(unit, c) for unit, c in compared if c.supports]
        if supporting:
            unit, comparison = max(supporting, key=lambda pair: self._rank(pair, markers))
            return "supported", [(unit, comparison.share)]
        contradicting = [(unit, c) for unit, c in compared if c.contradicts] or self._denied_allergy(claim)
        if contradicting:
            unit, comparison = max(contradicting, key=lambda pair: self._rank_contradiction(pair, claim, markers))
            return "contradicted", [(unit, comparison.share)]
        return "not_found", []

    def _candidates(self, claim: _Claim) -> list[int]:
        """The units that share enough of the claim's words to support or contradict it; or, for a claim of
        numbers and dates alone, the units that hold them."""
        if claim.weight == 0:
            keys = [word.key for word in claim.values]
            if not keys:
                return []
            held = set.intersection(*(set(self.postings.get(key, ())) for key in keys))
            return sorted(held)
        held_weight: defaultdict[int, float] = defaultdict(float)
        for key, weight in claim.content.items():
            for unit in self.postings.get(key, ()):
                held_weight[unit] += weight
        least = min(SUPPORT_SHARE, SUBJECT_SHARE) * claim.weight
        return sorted(unit for unit, weight in held_weight.items() if weight >= least)

    def _rank(self, pair: tuple[int, _Comparison], markers: Sequence[PageMarker]) -> tuple:
        """Of several units that qualify: the one on the page a marker names, then the one holding most of the
        claim, then the shortest, then the first."""
        unit, comparison = pair
        on_marked_page = any(self._on_page(self.units[unit], marker) for marker in markers)
        length = self.units[unit].end - self.units[unit].start
        return (on_marked_page, round(comparison.share, 3), -length, -unit)

    def _rank_contradiction(self, pair: tuple[int, _Comparison], claim: _Claim, markers: Sequence[PageMarker]) -> tuple:
        """As `_rank`, but a unit that states something of its own (a listed allergy's substance, a value) comes
        before a bare heading that only repeats the claim's words ("Allergy")."""
        states = any(word.key not in claim.content and word.weight >= INFORMATIVE_WEIGHT or word.kind != "word"
                     for word in self.words(self.units[pair[0]]))
        return (states, *self._rank(pair, markers))

    def _on_page(self, unit: _Unit, marker: PageMarker) -> bool:
        page = self.pages[unit.page]
        named = marker.document is None or fold(marker.document) == fold(page.document.name)
        return named and page.page.number == marker.page

    def _marker_note(self, markers: Sequence[PageMarker], units: Sequence[_Unit]) -> str | None:
        """Why a supported statement's page markers are wrong, when they are: none names a page its words are on."""
        wrong = [marker for marker in markers if not any(self._on_page(unit, marker) for unit in units)]
        if not wrong:
            return None
        found = sorted({(self.pages[u.page].document.name, self.pages[u.page].page.number) for u in units})
        where = "; ".join(f"{name}, page {number}" for name, number in found[:3])
        cited = "; ".join(
            f"{marker.document + ', ' if marker.document else ''}page {marker.page}" for marker in wrong
        )
        return f"Cited as {cited}; the record says this on {where}."

    def _check_quotes(self, text: str, quotes: Sequence[str]) -> ClaimCheck:
        # A sentence that quotes the record stands or falls by its quotes: one quote the record does not hold is
        # a fabricated one.
        found = [self.quotes.locate(quote) for quote in quotes]
        places = [place for place in found if place is not None]
        if len(places) < len(found):
            return ClaimCheck(text=text, label="not_found", citations=[])
        return ClaimCheck(text=text, label="supported", citations=places)

    def _denied_allergy(self, claim: _Claim) -> list[tuple[int, _Comparison]]:
        """A claimed allergy against a record that says there are none: "no known drug allergies" denies every
        allergy it does not list, so it contradicts a claim of one. Only when the record lists no allergy at all:
        a record that lists some and not this one is silent on it."""
        if ALLERGY not in claim.content or claim.negated[ALLERGY] or self._lists_allergies:
            return []
        denials = [
            (unit, _Comparison(share=1.0))
            for unit in self.postings.get(ALLERGY, ())
            if any(word.key == ALLERGY and word.negated for word in self.words(self.units[unit]))
        ]
        return denials

    @cached_property
    def _lists_allergies(self) -> bool:
        """Whether any line names an allergy: mentions the word not as the heading of a denial ("ALLERGIES: NKDA")."""
        for page in self.pages:
            text = page.page.text
            for i, word in enumerate(page.words):
                if word.key != ALLERGY or word.negated:
                    continue
                line_end = text.find("\n", word.end)
                line_end = len(text) if line_end < 0 else line_end
                rest = [other for other in page.words[i + 1 :] if other.start < line_end and other.weight > 0]
                if not rest or not all(other.negated for other in rest):
                    return True
        return False


def _sections(document: Document, page: Page) -> list[tuple[int, int, frozenset[str], bool]]:
    """(start, end, title keys, is a family history) of each section's part of the page."""
    parts = []
    for section in document.sections:
        keys = frozenset(word.key for word in read(section.title or "") if word.kind == "word")
        family = section.kind == "family_history" or bool(keys & FAMILY)
        parts += [(span.start, span.end, keys, family) for span in section.spans if span.page == page.number]
    return parts


def _lines(text: str) -> Iterable[tuple[int, int]]:
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield start, end
        start = end + 1


# --- One claim, read -------------------------------------------------------------------------------------------

_QUOTED = re.compile(r'"([^"\n]+)"|“([^”\n]+)”')
# Where a list's items part: "Celebrex, Colace and Protonix", "fever, chills or cough".
_LIST_SEPARATOR = re.compile(r"[,;]|\b(?:and|or|plus|as\s+well\s+as|along\s+with)\b")
_CLAUSE_OPENING = re.compile(
    r"\s*(?:which|who|whom|whose|that|because|since|as|when|while|so|but|although|though|where|used|given|taken)\b",
    re.IGNORECASE,
)
# "Yes," or "No," opening an answer answers the question; the words after it state the claim.
_ANSWER_WORD = re.compile(r"^\s*(?:yes|no)\b\s*[,.:;—–-]\s*", re.IGNORECASE)


@dataclass
class _Claim:
    words: list[Word]
    content: dict[str, float]  # key -> weight of each content word
    negated: dict[str, bool]  # key -> whether every mention of it in the claim is negated
    values: list[Word]  # numbers and dates
    quotes: list[str]
    # Each number's subject and on which side of it the number stands: the informative word just before it
    # ("hemoglobin 12.1", +1), or else just after it ("two sprays", -1), with no other number between.
    subjects: dict[int, tuple[str, int]] = field(default_factory=dict)
    text: str = ""  # as read, its words' offsets point into it

    @property
    def weight(self) -> float:
        return sum(self.content.values())

    @property
    def about_family(self) -> bool:
        return bool(self.content.keys() & FAMILY)

    @classmethod
    def read(cls, text: str) -> _Claim:
        quoted = [match.group(1) or match.group(2) for match in _QUOTED.finditer(text)]
        # A quoted word or two ("PRN") is emphasis, not a claimed quote.
        quotes = [quote for quote in quoted if len(fold(quote)) >= MIN_QUOTE_CHARS and len(quote.split()) > 2]
        if (answer_word := _ANSWER_WORD.match(text)) is not None:
            text = " " * answer_word.end() + text[answer_word.end() :]
        claim = cls.of(read(text, statement=True))
        claim.quotes = quotes
        claim.text = text
        return claim

    def items(self) -> list[_Claim]:
        """The items of a list the claim makes ("A, B and C"), each read as a claim of its own after the words that
        open the list ("She denies fever, chills or cough" is "She denies chills" too; "a concussion with no loss of
        consciousness and a neoplasm" denies no neoplasm). An item that says too little to check alone ("for one
        month") stays with the one before it. None when the claim is no list."""
        text = self.text
        separators = [
            match for match in _LIST_SEPARATOR.finditer(text)
            # Not inside brackets, nor inside a date or number ("August 21, 2007", "278,000").
            if not _in_brackets(text, match.start())
            and not any(word.start <= match.start() < word.end for word in self.words)
        ]
        # A list joins its last item with a conjunction; commas alone part a sentence's clauses and appositions
        # ("…her physician, Dr. B, on 09/03/2007"), whose facts are one.
        if not any(match.group()[0].isalpha() for match in separators):
            return []
        cuts = [0] + [match.end() for match in separators]
        segments: list[tuple[int, int]] = []
        for start, end in zip(cuts, cuts[1:] + [len(text)]):
            # A clause that says something of the item before it ("…, which treats bronchitis") is no item.
            if segments and (not self._names(start, end) or _CLAUSE_OPENING.match(text, start)):
                segments[-1] = (segments[-1][0], end)
            else:
                segments.append((start, end))
        if len(segments) > 1 and not self._names(*segments[0]):
            segments[:2] = [(segments[0][0], segments[1][1])]
        if len(segments) < 2:
            return []
        # What opens the list, before its first item, opens every item: a label ending in a colon ("Allergies:"),
        # else the words before the first one that names something ("She denies").
        first = text[: segments[0][1]]
        named = next((word.start for word in self.words if word.start < len(first) and word.weight >= INFORMATIVE_WEIGHT), 0)
        opening = first[: first.rfind(":") + 1] if ":" in first[named:] else first[:named]
        return [_Claim.read(text[start:end] if start == 0 else opening + text[start:end]) for start, end in segments]

    def _names(self, start: int, end: int) -> bool:
        """Whether the claim's text from `start` to `end` names something: holds an informative word, or common
        words that together say as much ("chest pain"). A date or a value alone ("On April 19, 2008,") qualifies
        the item beside it."""
        weights = [word.weight for word in self.words if start <= word.start < end]
        return any(weight >= INFORMATIVE_WEIGHT for weight in weights) or sum(weights) >= INFORMATIVE_SHARE

    @classmethod
    def of(cls, words: list[Word]) -> _Claim:
        content: dict[str, float] = {}
        negated: dict[str, bool] = {}
        for word in words:
            if word.kind == "word":
                content[word.key] = max(content.get(word.key, 0.0), word.weight)
                negated[word.key] = negated.get(word.key, True) and word.negated
        values = [word for word in words if word.kind != "word"]
        subjects: dict[int, tuple[str, int]] = {}
        for i, word in enumerate(words):
            if word.kind == "number" and (subject := _subject(words, i)) is not None:
                subjects[i] = subject
        return cls(words, content, negated, values, [], subjects)


def _in_brackets(text: str, position: int) -> bool:
    return text.count("(", 0, position) > text.count(")", 0, position)


def _subject(words: Sequence[Word], i: int) -> tuple[str, int] | None:
    for before in reversed(words[max(0, i - 4) : i]):
        if before.kind != "word":
            break
        if before.weight >= INFORMATIVE_WEIGHT:
            return before.key, 1
    for after in words[i + 1 : i + 3]:
        if after.kind != "word":
            break
        if after.weight >= INFORMATIVE_WEIGHT:
            return after.key, -1
    return None


# --- A claim against one unit ----------------------------------------------------------------------------------


@dataclass
class _Comparison:
    share: float = 0.0  # of the claim's weight that the unit holds
    values_held: bool = False  # every number and date of the claim, each number next to its subject
    value_conflict: bool = False  # the unit states another value for the claim's subject, or another date
    polarity_conflict: bool = False  # the unit denies what the claim affirms, or the reverse
    informative: bool = False  # the unit holds one of the claim's informative words, or the claim has none

    names_held: bool = True  # every name the claim gives

    @property
    def supports(self) -> bool:
        return (
            self.share >= SUPPORT_SHARE and self.names_held and self.values_held and not self.polarity_conflict
            and self.informative
        )

    @property
    def contradicts(self) -> bool:
        return self.share >= SUBJECT_SHARE and self.informative and (self.value_conflict or self.polarity_conflict)


def _compare(claim: _Claim, words: Sequence[Word], context: frozenset[str] = frozenset()) -> _Comparison:
    keys = {word.key for word in words} | context
    held = {key: weight for key, weight in claim.content.items() if key in keys}
    share = sum(held.values()) / claim.weight if claim.weight else 1.0
    informative = not claim.content or sum(held.values()) >= INFORMATIVE_SHARE
    held_values, conflict = _values(claim, words)
    return _Comparison(
        share=share,
        names_held=all(key in held for key, weight in claim.content.items() if weight >= NAME_WEIGHT),
        values_held=held_values,
        value_conflict=conflict,
        polarity_conflict=_polarity_conflict(claim, held, words),
        informative=informative,
    )


def _values(claim: _Claim, words: Sequence[Word]) -> tuple[bool, bool]:
    """Whether the unit holds each of the claim's numbers and dates; and whether it states other ones instead."""
    numbers = [word.value for word in words if word.kind == "number"]
    dates = [word.value for word in words if word.kind == "date"]
    held, conflict = True, False
    for i, word in enumerate(claim.words):
        if word.kind == "date":
            if not any(date == word.value or date.startswith(word.value + "-") for date in dates):
                held = False
                conflict |= bool(dates)
        elif word.kind == "number":
            if not (any(same_number(word.value, number) for number in numbers) or _is_year_of(word.value, dates)):
                held = False
            subject = claim.subjects.get(i)
            bound = _bound_numbers(words, *subject) if subject is not None else []
            if bound and not any(same_number(word.value, number) for number in bound):
                held, conflict = False, True
    return held, conflict


def _bound_numbers(words: Sequence[Word], subject: str, side: int) -> list[str]:
    """The numbers next to each mention of `subject` on the claim's side of it, up to the next informative word:
    the values a table row or a list gives that name ("Creatinine 1.82", "Blood Pressure | 132/88 | 128/80",
    side 1), or the count before a noun ("two sprays", side -1)."""
    found = []
    for i, word in enumerate(words):
        if word.key != subject:
            continue
        neighbours = words[i + 1 :] if side > 0 else list(reversed(words[:i]))
        values: list[str] = []
        for other in neighbours:
            if other.kind == "number":
                values.append(other.value)
            elif other.kind == "word" and other.weight >= INFORMATIVE_WEIGHT and values:
                break
        found += values
    return found


def _is_year_of(value: str, dates: Sequence[str]) -> bool:
    return len(value) == 4 and value.isdigit() and any(date.startswith(value) for date in dates)


def _polarity_conflict(claim: _Claim, held: dict[str, float], words: Sequence[Word]) -> bool:
    """The unit denies most of what the claim affirms ("has chest pain" / "denies chest pain"), or affirms most of
    what it denies, by weight. A word the unit both affirms and denies ("ALLERGIES: NKDA") is no conflict."""
    conflicting = 0.0
    for key, weight in held.items():
        mentions = {word.negated for word in words if word.key == key}
        if mentions == {not claim.negated[key]}:
            conflicting += weight
    return conflicting > 0 and conflicting >= 0.5 * sum(held.values())


def same_number(claimed: str, stated: str) -> bool:
    """Whether a claimed number is the stated one, written as given or rounded or cut to fewer decimals: "12.1"
    for "12.14", "134.63" for "134.6303"."""
    claimed_parts, stated_parts = claimed.split("/"), stated.split("/")
    return len(claimed_parts) == len(stated_parts) and all(map(_same_part, claimed_parts, stated_parts))


def _same_part(claimed: str, stated: str) -> bool:
    if claimed == stated:
        return True
    decimals = len(claimed.partition(".")[2])
    if decimals >= len(stated.partition(".")[2]):
        return False
    value, target = float(stated), float(claimed)
    factor = 10**decimals
    rounded = int(value * factor + 0.5) / factor
    cut = int(value * factor) / factor
    return target in (rounded, cut)
