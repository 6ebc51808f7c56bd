"""Pointing an answer back into the record it was written from, without a model.

Two questions are answered here:

- `locate`: where a quote the model copied lies in the documents. It is
  looked for as written, then ignoring case, spacing and punctuation, then
  allowing a small slip (rapidfuzz).
- `ground`: which sentences of an answer the record supports, and where. A
  sentence that quotes is judged by its quotes; any other by whether one
  line of the record holds its numbers and most of its words.

Every place found is a document name, a page number and a span of that page's
text, so `page.text[start:end]` is exactly the cited text; `verify` re-checks
that a stored citation still says so.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import accumulate
from typing import Literal

from pydantic import BaseModel
from rapidfuzz import fuzz

from documents import Document, Page
from documents.dates import find_dates

# Quotes shorter than this, counted as their words joined by single spaces,
# occur by chance in any record ("BP", "the", "on") and are not located.
MIN_QUOTE_CHARS = 4

# rapidfuzz scores the best-aligned stretch of text 0-100 by edit distance,
# each slipped character costing about 100/len(quote) points. At 90 a quote of
# 20 characters or more may carry one typo (one wrong letter in 20 scores 95),
# a fragment under 10 characters must be exact, and made-up sentences in
# clinical words, which score 55-83 against the corpus, are not located. A
# slip in a number is never allowed: it would be another fact.
FUZZY_THRESHOLD = 90.0

# A sentence is supported when one line of the record holds every number it
# states and at least this share of its content words: two of three, three of
# five. So a paraphrase may put one word in three in its own terms ("takes"
# for "is on"), while a false sentence that shares only a drug's name with a
# line fails. Numbers are all required: a wrong dose or date is another fact.
SUPPORT_THRESHOLD = 0.6

# How many of the lines sharing the most (rarest) words with a quote rapidfuzz
# compares it with: enough to reach past lines that share only common words,
# few enough that a quote is looked for in a 500,000-character record in
# tens of milliseconds.
FUZZY_CANDIDATE_LINES = 20

# Words are compared by their first few letters after a plural or verb ending
# is cut ("allergies" and "allergic", "prescribed" and "prescription").
_STEM_CHARS = 5

Match = Literal["exact", "normalized", "fuzzy", "record"]
SupportLabel = Literal["supported", "not_supported", "no_claim"]


class Located(BaseModel):
    """Where a quote lies: `quote` is exactly the page's `text[start:end]`."""

    document: str  # Document.name
    page: int  # Page.number
    start: int
    end: int
    quote: str
    # How it was found: as written; ignoring case, spacing and punctuation;
    # with small slips allowed, or (for an answer sentence) by the share of
    # its words a line holds; or read from a structured entry ("record", set
    # by callers that cite an entry directly).
    match: Match
    # 100 for exact and normalized. For fuzzy, rapidfuzz's score of a quote,
    # or the share (in percent) of a sentence's content the line holds.
    score: float


class Citation(Located):
    number: int  # 1-based, in order of first use in the answer


class SentenceSupport(BaseModel):
    text: str
    start: int  # into the answer
    end: int
    label: SupportLabel
    citations: list[int]  # Citation.number of each citation that supports it


class GroundedAnswer(BaseModel):
    sentences: list[SentenceSupport]
    citations: list[Citation]

    def marked(self, text: str, mark: Callable[[SentenceSupport], str], plain: Callable[[str], str] = str) -> str:
        """`text`, the answer these sentences' offsets point into, with each sentence written by `mark` and what lies
        between and after them (line breaks, the notes on what the model did not read) by `plain`."""
        parts: list[str] = []
        position = 0
        for sentence in self.sentences:
            parts += [plain(text[position : sentence.start]), mark(sentence)]
            position = sentence.end
        parts.append(plain(text[position:]))
        return "".join(parts)


def locate(quote: str, documents: Sequence[Document], min_score: float = FUZZY_THRESHOLD) -> Located | None:
    """Where `quote` lies in the documents, or None when it is not there or too short to tell."""
    return _Record(documents).locate(quote, min_score)


def ground(answer: str, documents: Sequence[Document]) -> GroundedAnswer:
    """Each sentence of `answer` labelled by whether the documents support it, with citations."""
    record = _Record(documents)
    citations: dict[tuple[str, int, int, int], Citation] = {}
    sentences = []
    for start, end in _answer_sentences(answer):
        text = answer[start:end]
        label, found = _support(text, record)
        cited: list[int] = []
        for located in found:
            # The same span cited twice keeps its first number.
            key = (located.document, located.page, located.start, located.end)
            if key not in citations:
                citations[key] = Citation(number=len(citations) + 1, **located.model_dump())
            if citations[key].number not in cited:
                cited.append(citations[key].number)
        sentences.append(SentenceSupport(text=text, start=start, end=end, label=label, citations=cited))
    return GroundedAnswer(sentences=sentences, citations=list(citations.values()))


def verify(citation: Located, documents: Sequence[Document]) -> bool:
    """Whether the citation's span lies in its page and still reads as its quote."""
    return any(
        0 <= citation.start < citation.end <= len(page.text)
        and page.text[citation.start : citation.end] == citation.quote
        for document in documents
        if document.name == citation.document
        for page in document.pages
        if page.number == citation.page
    )


# Phrases that say the record lacks something: such a sentence makes no claim
# about the patient. The verbs are those of a record speaking ("mention",
# "state"), not of a patient ("report", "have"), so "She did not report chest
# pain" stays a claim.
_NO_CLAIM = re.compile(
    r"\b(?:"
    r"(?:does|do|did|is|are|was|were)\s*(?:not|n['’]t)\s+(?:\w+\s+)?"
    r"(?:mention|say|state|specify|contain|document|include|indicate|provide|record|list|give)"
    r"|not\s+(?:documented|mentioned|stated|recorded|specified|listed|provided|available)"
    r"|no\s+(?:information|mention|record|documentation|data|details?)\b"
    r"|(?:cannot|can['’]t|could\s*not|couldn['’]t|unable\s+to)\s+(?:find|determine|tell|answer|confirm|locate)"
    r")",
    re.IGNORECASE,
)

# Text in straight or curly double quotes: a claimed quote of the record.
_QUOTED = re.compile(r'"([^"\n]+)"|“([^”\n]+)”')


def _support(sentence: str, record: _Record) -> tuple[SupportLabel, list[Located]]:
    if _NO_CLAIM.search(sentence):
        return "no_claim", []
    # A quoted word or two ("PRN") is emphasis, not a claimed quote.
    quoted = [match.group(1) or match.group(2) for match in _QUOTED.finditer(sentence)]
    quotes = [quote for quote in quoted if len(_fold(quote)) >= MIN_QUOTE_CHARS]
    if quotes:
        # A sentence that quotes stands or falls by its quotes: one quote the
        # record does not hold is a fabricated one.
        found = [record.locate(quote, FUZZY_THRESHOLD) for quote in quotes]
        located = [place for place in found if place is not None]
        return ("supported", located) if len(located) == len(found) else ("not_supported", [])
    keys = {key for _, key in _keys(sentence)}
    if not keys:
        return "no_claim", []
    line = record.lines.support(keys)
    # Shared words do not make the same claim when one side denies them: "She does not have asthma" against "She does
    # have asthma". Erring this way marks a true sentence unsupported, never a false one supported.
    if line is None or _negated(sentence) & keys != _negated(line.quote) & keys:
        return "not_supported", []
    return "supported", [line]


_NEGATION = frozenset({"no", "not", "never", "none", "denies", "denied", "without", "negative", "nor"})
# A word is denied by a negation this many words before it: "not have asthma", "no known drug allergies".
_NEGATION_REACH = 3


def _negated(text: str) -> set[str]:
    """The content keys of `text` that a negation shortly before denies."""
    words = re.findall(r"[^\W_]+(?:['’]t)?", text.casefold())
    denied = set()
    for i, word in enumerate(words):
        if any(w in _NEGATION or w.endswith(("n't", "n’t")) for w in words[max(0, i - _NEGATION_REACH) : i]):
            if (key := _key(word)) is not None:
                denied.add(key)
    return denied


class _Record:
    """The documents of one call, indexed once for every quote and sentence it looks up."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = documents

    @cached_property
    def folded(self) -> _FoldedText:
        return _FoldedText(self.documents)

    @cached_property
    def lines(self) -> _LineIndex:
        return _LineIndex(self.documents)

    def locate(self, quote: str, min_score: float) -> Located | None:
        folded = _fold(quote)
        if len(folded) < MIN_QUOTE_CHARS:
            return None
        quote = quote.strip()
        for document in self.documents:
            for page in document.pages:
                start = page.text.find(quote)
                if start >= 0:
                    return _located(document, page, start, start + len(quote), "exact", 100.0)
        return self.folded.find(folded) or self.folded.find_fuzzy(folded, min_score)


_WORD = re.compile(r"[^\W_]+")
_DIGITS = re.compile(r"\d+")
_LINE = re.compile(r"[^\n]+")


def _folded_words(text: str) -> tuple[list[int], list[str]]:
    """Where each word of `text` starts, and the word in lower case."""
    lowered = text.lower()
    if len(lowered) == len(text):
        found = list(_WORD.finditer(lowered))
        return [word.start() for word in found], [word.group() for word in found]
    # Offsets into the folded text map back character for character, so the
    # rare word with a letter whose lower case is longer ("İ") keeps its case.
    found = list(_WORD.finditer(text))
    starts = [word.start() for word in found]
    words = [word.group() for word in found]
    return starts, [word.lower() if len(word.lower()) == len(word) else word for word in words]


def _fold(text: str) -> str:
    """The words of `text`, lowercased, joined by single spaces: what spacing, case and punctuation leave alone."""
    return " ".join(_folded_words(text)[1])


def _located(document: Document, page: Page, start: int, end: int, match: Match, score: float) -> Located:
    return Located(
        document=document.name,
        page=page.number,
        start=start,
        end=end,
        quote=page.text[start:end],
        match=match,
        score=score,
    )


class _FoldedText:
    """Every word of the documents folded (see `_fold`) into one text, and where each word came from.

    Page breaks and line breaks fold to a space like any other, so a quote
    that runs across either is found.
    """

    def __init__(self, documents: Sequence[Document]) -> None:
        self.pages: list[tuple[Document, Page]] = []
        self.word_pages: list[int] = []  # of each word: its index in `pages`
        self.word_starts: list[int] = []  # of each word: where it starts in its page's text
        self.line_firsts: list[int] = []  # of each line with words: the index of its first word
        words: list[str] = []
        for document in documents:
            for page in document.pages:
                starts, page_words = _folded_words(page.text)
                offset = len(words)
                line_firsts = {offset + bisect_left(starts, line.start()) for line in _LINE.finditer(page.text)}
                self.line_firsts += sorted(first for first in line_firsts if first < offset + len(starts))
                words += page_words
                self.word_starts += starts
                self.word_pages += [len(self.pages)] * len(starts)
                self.pages.append((document, page))
        self.text = " ".join(words)
        self.lengths = [len(word) for word in words]
        self.starts = list(accumulate((length + 1 for length in self.lengths), initial=0))[:-1]  # in `text`

    def find(self, folded_quote: str) -> Located | None:
        start = self.text.find(folded_quote)
        if start < 0:
            return None
        return self._located(start, start + len(folded_quote), "normalized", 100.0)

    def find_fuzzy(self, folded_quote: str, min_score: float) -> Located | None:
        if len(self.text) < len(folded_quote):
            return None
        # Rank lines by the rarer words they share with the quote, so a line
        # holding its one distinctive word outranks lines holding "she has".
        weights: Counter[int] = Counter()
        for word in set(folded_quote.split()):
            if len(word) < 3 and not word.isdigit():
                continue
            occurrences = re.finditer(rf"(?<![^ ]){re.escape(word)}(?![^ ])", self.text)
            words_at = (bisect_right(self.starts, found.start()) - 1 for found in occurrences)
            lines = {bisect_right(self.line_firsts, word_index) - 1 for word_index in words_at}
            for line in lines:
                weights[line] += math.log(1 + len(self.line_firsts) / len(lines))
        best: tuple[tuple[float, int], Located] | None = None
        reach = len(folded_quote)
        numbers = _DIGITS.findall(folded_quote)
        for line, _ in weights.most_common(FUZZY_CANDIDATE_LINES):
            first = self.line_firsts[line]
            last = self.line_firsts[line + 1] if line + 1 < len(self.line_firsts) else len(self.starts)
            # A quote's own length either side of the line: room for a quote
            # that runs into the neighbouring lines, and never a window
            # shorter than the quote (rapidfuzz would then align the quote
            # with the window, not the window with the quote).
            window_start = max(0, self.starts[first] - reach)
            window_end = min(len(self.text), self.starts[last - 1] + self.lengths[last - 1] + reach)
            alignment = fuzz.partial_ratio_alignment(
                folded_quote, self.text[window_start:window_end], score_cutoff=min_score
            )
            if alignment is None:
                continue
            start, end = window_start + alignment.dest_start, window_start + alignment.dest_end
            # The best score wins, and of equal scores the earliest in the record.
            if best is not None and (alignment.score, -start) <= best[0]:
                continue
            located = self._located(start, end, "fuzzy", alignment.score)
            # A slipped letter is a typo; a slipped digit is another fact
            # ("Creatinine: 1.20 mg/dL" scores 95 against "1.42 mg/dL").
            if located is not None and _DIGITS.findall(_fold(located.quote)) == numbers:
                best = ((alignment.score, -start), located)
        return best[1] if best is not None else None

    def _located(self, start: int, end: int, match: Match, score: float) -> Located | None:
        """The page span behind `text[start:end]`, on the page that holds most of it."""
        first = bisect_right(self.starts, start) - 1
        if start >= self.starts[first] + self.lengths[first]:
            first += 1  # it starts on a space: the span starts at the next word
        last = bisect_right(self.starts, end - 1) - 1
        if last < first:
            return None
        runs: list[tuple[int, int]] = []  # (first word, last word) of each page's part
        for index in range(first, last + 1):
            if runs and self.word_pages[index] == self.word_pages[runs[-1][0]]:
                runs[-1] = (runs[-1][0], index)
            else:
                runs.append((index, index))
        run_first, run_last = max(runs, key=lambda run: sum(self.lengths[run[0] : run[1] + 1]))
        # A fuzzy alignment may cut into a word; the span takes the whole word.
        cut_start = start - self.starts[run_first] if match == "normalized" and run_first == first else 0
        cut_end = end - self.starts[run_last] if match == "normalized" and run_last == last else self.lengths[run_last]
        document, page = self.pages[self.word_pages[run_first]]
        return _located(
            document,
            page,
            self.word_starts[run_first] + cut_start,
            self.word_starts[run_last] + cut_end,
            match,
            score,
        )


@dataclass(frozen=True)
class _Unit:
    """A stretch of a page that may support a sentence: a sentence, a line or two lines."""

    document: Document
    page: Page
    start: int
    end: int


class _LineIndex:
    """The content keys (see `_keys`) of every sentence, line and pair of lines, and which units hold each key."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.units: list[_Unit] = []
        self.postings: defaultdict[str, list[int]] = defaultdict(list)
        for document in documents:
            for page in document.pages:
                self._add_page(document, page)

    def _add_page(self, document: Document, page: Page) -> None:
        text = page.text
        keyed = list(_keys(text))
        positions = [position for position, _ in keyed]

        def keys_in(start: int, end: int) -> set[str]:
            return {key for _, key in keyed[bisect_left(positions, start) : bisect_left(positions, end)]}

        previous: tuple[int, set[str]] | None = None
        for line in _LINE.finditer(text):
            start, end = _trimmed(text, line.start(), line.end())
            if start == end:
                continue
            keys = keys_in(start, end)
            sentences = _sentence_spans(text, start, end)
            if len(sentences) > 1:
                for sentence in sentences:
                    self._add(_Unit(document, page, *sentence), keys_in(*sentence))
            self._add(_Unit(document, page, start, end), keys)
            # Pairs of lines, for a fact wrapped onto the next line (a PDF's
            # lines) or a lab's name on one line and its value on the next.
            if previous is not None:
                self._add(_Unit(document, page, previous[0], end), previous[1] | keys)
            previous = (start, keys)

    def _add(self, unit: _Unit, keys: set[str]) -> None:
        if not keys:
            return
        for key in keys:
            self.postings[key].append(len(self.units))
        self.units.append(unit)

    def support(self, keys: set[str]) -> Located | None:
        """The unit holding all the numbers among `keys` and most of its words (enough); of equals, the shortest."""
        numbers = {key for key in keys if key.startswith("#")}
        words = keys - numbers
        held: Counter[int] = Counter()
        for word in words:
            held.update(self.postings.get(word, []))
        if numbers:
            candidates = set.intersection(*(set(self.postings.get(number, [])) for number in numbers))
        else:
            candidates = set(held)
        passing = [unit for unit in candidates if not words or held[unit] / len(words) >= SUPPORT_THRESHOLD]
        if not passing:
            return None
        best = min(passing, key=lambda unit: (-held[unit], self.units[unit].end - self.units[unit].start, unit))
        unit = self.units[best]
        share = (held[best] + len(numbers)) / len(keys)
        return _located(unit.document, unit.page, unit.start, unit.end, "fuzzy", round(100 * share, 1))


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# Sentence splitting, for answers and for the record's own lines.

# A list item's marker, which is not part of its sentence (nor a number it states).
_BULLET = re.compile(r"\s*(?:#{1,6}|[-*+•‣◦]|\(?\d{1,2}[.)])\s+")
# The end of a sentence: its stop, any closing quotes or brackets, then a space.
_STOP = re.compile(r"([.!?]+[\"”’')\]]*)\s+")
# Words whose full stop is not a sentence's: titles before a name, months and
# "No." before a number, and single letters (initials, "e.g.").
_ABBREVIATION = re.compile(
    r"\b(?:dr|mr|mrs|ms|prof|sr|jr|st|vs|no|approx|fig"
    r"|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|[a-z])$",
    re.IGNORECASE,
)
_OPENERS = "\"“'‘(["


def _answer_sentences(answer: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence of the answer; each line (a list item, say) ends one."""
    for line in _LINE.finditer(answer):
        bullet = _BULLET.match(answer, line.start(), line.end())
        yield from _sentence_spans(answer, bullet.end() if bullet else line.start(), line.end())


def _sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text[start:end]`, trimmed, that has a letter or digit.

    A stop ends a sentence only before a capital, a digit or an opening quote,
    so "25 mg. daily", "1.92" and "Dr. Smith" stay whole, and never inside a
    quote.
    """
    quoted = [(match.start(), match.end()) for match in _QUOTED.finditer(text, start, end)]
    spans = []
    sentence_start = start
    for stop in _STOP.finditer(text, start, end):
        after = stop.end()
        if after >= end:
            break
        following = text[after]
        if not (following.isupper() or following.isdigit() or following in _OPENERS):
            continue
        if any(quote_start < after < quote_end for quote_start, quote_end in quoted):
            continue
        if stop.group(1) == "." and _ABBREVIATION.search(text, max(start, stop.start() - 8), stop.start()):
            continue
        spans.append((sentence_start, stop.end(1)))
        sentence_start = after
    spans.append((sentence_start, end))
    trimmed = [_trimmed(text, span_start, span_end) for span_start, span_end in spans]
    return [(s, e) for s, e in trimmed if _WORD.search(text, s, e)]


# Content: what a sentence says about the patient, as keys that a line of the
# record holding the same fact holds too.

_STOPWORDS = frozenset(
    """
    about above after again against all also and any are around because been before being below between
    both but can could did does doing done down during each either few for from further had has have
    having her here hers herself him himself his into its itself just more most neither nor not now off
    once only other our ours out over own same she should some such than that the their theirs them
    themselves then there these they this those through too under until upon very was were while will
    with would yes you your
    how what when where which who whom whose why
    according chart document documented documents include included includes including indicate indicates
    listed mention mentioned mentions note noted notes patient patients record recorded records report
    reported reports show showed shows state stated states
    """.split()
)

# Small counts are written in words as often as in digits ("two sprays"), and
# a wrong count is a wrong number.
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}

_SUFFIXES = (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))

_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d_]+")


def _keys(text: str) -> Iterator[tuple[int, str]]:
    """(position, key) of each content word and number of `text`; a number's key starts with "#".

    A date counts as its numbers, read the same however it is written
    ("April 23, 2008", "04/23/2008" and "2008-04-23" are all 2008, 4, 23).
    """
    position = 0
    for date in find_dates(text):
        yield from _token_keys(text, position, date.start)
        for part in date.date.split("-"):
            yield date.start, "#" + _number(part)
        position = date.end
    yield from _token_keys(text, position, len(text))


def _token_keys(text: str, start: int, end: int) -> Iterator[tuple[int, str]]:
    for token in _TOKEN.finditer(text, start, end):
        key = _key(token.group())
        if key is not None:
            yield token.start(), key


# A record repeats its words thousands of times; each is keyed once.
@lru_cache(maxsize=1 << 16)
def _key(token: str) -> str | None:
    """A number's value after "#", a content word's stem, or None for any other word."""
    if token[0].isdigit():
        return "#" + _number(token)
    lower = token.lower()
    if lower in _NUMBER_WORDS:
        return "#" + _NUMBER_WORDS[lower]
    if len(lower) < 3 or lower in _STOPWORDS:
        return None
    return _stem(lower)


def _number(text: str) -> str:
    """One spelling per value: "1.90" and "1.9", "04" and "4", "1,000" and "1000" are alike."""
    whole, _, fraction = text.replace(",", "").partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _stem(word: str) -> str:
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) + len(replacement) >= 3:
            word = word[: -len(suffix)] + replacement
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]  # "take", "takes" and "taking" all become "tak"
    return word[:_STEM_CHARS]
