"""Where the sentences of clinical text start and end: in a record's lines, in an answer, in a note read for facts.

Clinical text breaks the usual rules: "25 mg. daily", "Dr. Smith", "1.92", numbered diagnoses ("1. Lumbar strain.
2. Anxiety.") and PDF lines wrapped mid-sentence. The rules below keep those whole.
"""

import re

_LETTER_OR_DIGIT = re.compile(r"[^\W_]")
# The end of a sentence: its stop, any closing quotes or brackets, then a space.
_STOP = re.compile(r"([.!?]+[\"”’')\]]*)\s+")
# Words whose full stop is not a sentence's: titles before a name, months and "No." before a number, and single
# letters (initials, "e.g.").
_ABBREVIATION = re.compile(
    r"\b(?:dr|mr|mrs|ms|prof|sr|jr|st|vs|no|approx|fig|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
    r"|[a-z])$",
    re.IGNORECASE,
)
_OPENERS = "\"“'‘(["
# A name that is a title and an initial ("Dr. B."), as anonymised notes write them, ends a sentence at its stop.
_TITLED_INITIAL = re.compile(r"\b(?:dr|mr|mrs|ms)\.\s[A-Z]$", re.IGNORECASE)
# A list item's number, whose full stop ends no sentence: "DIAGNOSES: 1. Lumbar strain. 2. Anxiety."
_LIST_NUMBER = re.compile(r"(?:^|[:\n]|[.!?]\s)\s*\d{1,2}$")
_QUOTED = re.compile(r'"([^"\n]+)"|“([^”\n]+)”')


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text[start:end]`, trimmed, that has a letter or digit.

    A stop ends a sentence only before a capital, a digit or an opening quote, so "25 mg. daily", "1.92" and
    "Dr. Smith" stay whole, and never inside a quote. Line breaks are spaces here: a PDF wraps its sentences.
    """
    end = len(text) if end is None else end
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
        before = text[max(start, stop.start() - 8) : stop.start()]
        if stop.group(1) == "." and (
            (_ABBREVIATION.search(before) and not _TITLED_INITIAL.search(before)) or _LIST_NUMBER.search(before[-6:])
        ):
            continue
        spans.append((sentence_start, stop.end(1)))
        sentence_start = after
    spans.append((sentence_start, end))
    trimmed = [trim(text, span_start, span_end) for span_start, span_end in spans]
    return [(s, e) for s, e in trimmed if _LETTER_OR_DIGIT.search(text, s, e)]


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
