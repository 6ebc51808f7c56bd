"""Finding a quote in the record, without a model: where words the model copied (a summary item's quote, a quoted
passage in an answer) lie in the documents.

A quote is looked for as written, then ignoring case, spacing and punctuation, then allowing a small slip
(rapidfuzz). A slip in a number is never allowed: it would be another fact.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from functools import cached_property
from itertools import accumulate

from rapidfuzz import fuzz

from app.citations import Located, Match, located
from documents import Document, Page

# Quotes shorter than this, counted as their words joined by single spaces, occur by chance in any record ("BP",
# "the", "on") and are not located.
MIN_QUOTE_CHARS = 4

# rapidfuzz scores the best-aligned stretch of text 0-100 by edit distance, each slipped character costing about
# 100/len(quote) points. At 90 a quote of 20 characters or more may carry one typo (one wrong letter in 20 scores
# 95), a fragment under 10 characters must be exact, and made-up sentences in clinical words, which score 55-83
# against the corpus, are not located.
FUZZY_THRESHOLD = 90.0

# How many of the lines sharing the most (rarest) words with a quote rapidfuzz compares it with: enough to reach
# past lines that share only common words, few enough that a quote is looked for in a 500,000-character record in
# tens of milliseconds.
FUZZY_CANDIDATE_LINES = 20


def locate(quote: str, documents: Sequence[Document], min_score: float = FUZZY_THRESHOLD) -> Located | None:
    """Where `quote` lies in the documents, or None when it is not there or too short to tell."""
    return Quotes(documents).locate(quote, min_score)


class Quotes:
    """The documents of one call, folded once for every quote looked up in them."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = documents

    @cached_property
    def folded(self) -> _FoldedText:
        return _FoldedText(self.documents)

    def locate(self, quote: str, min_score: float = FUZZY_THRESHOLD) -> Located | None:
        folded = fold(quote)
        if len(folded) < MIN_QUOTE_CHARS:
            return None
        quote = quote.strip()
        for document in self.documents:
            for page in document.pages:
                start = page.text.find(quote)
                if start >= 0:
                    return located(document, page, start, start + len(quote), "exact", 100.0)
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


def fold(text: str) -> str:
    """The words of `text`, lowercased, joined by single spaces: what spacing, case and punctuation leave alone."""
    return " ".join(_folded_words(text)[1])


class _FoldedText:
    """Every word of the documents folded (see `fold`) into one text, and where each word came from.

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
            place = self._located(start, end, "fuzzy", alignment.score)
            # A slipped letter is a typo; a slipped digit is another fact
            # ("Creatinine: 1.20 mg/dL" scores 95 against "1.42 mg/dL").
            if place is not None and _DIGITS.findall(fold(place.quote)) == numbers:
                best = ((alignment.score, -start), place)
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
        return located(
            document,
            page,
            self.word_starts[run_first] + cut_start,
            self.word_starts[run_last] + cut_end,
            match,
            score,
        )
