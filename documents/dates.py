"""Dates written in clinical text, read into ISO form, with what they are the date of when the text says."""

import re
from dataclasses import dataclass
from datetime import date

from documents.document import DateLabel

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "(?P<month_name>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"

# Each pattern starts by consuming a digit or letter and only then looks
# behind it: a pattern that opens with a look-behind is tried at every
# character of the text, which makes a long record slow to read.
_NUMERIC = [
    # 2013-07-31, also as the start of an ISO date-time.
    re.compile(r"(?P<year>\d(?<![\d/-]\d)\d{3})-(?P<month>\d\d)-(?P<day>\d\d)(?![\d/-])"),
    # 07/31/2013, 7/31/13: the US order, which clinical notes written in the US use.
    re.compile(r"(?P<month>\d(?<![\d/.-]\d)\d?)/(?P<day>\d{1,2})/(?P<year>\d{4}|\d\d)(?![\d/])"),
    # 9/92, 9/1992: a month and year alone count only after a word that
    # introduces a date ("in 9/92"), since "2/2" or "3/4" are as often
    # reflexes or fractions; see _INTRODUCED.
    re.compile(r"(?P<month>\d(?<![\d/.-]\d)\d?)/(?P<year>(?:19|20)?\d\d)(?![\d/])"),
]
_INTRODUCED = re.compile(r"\b(?:in|since|from|until|by)\s+$", re.I)
_NAMED = [
    # July 31, 2013 / Jul 31 2013
    re.compile(rf"(?i:{_MONTH})\s+{_DAY},?\s+{_YEAR}(?!\d)"),
    # 31 July 2013
    re.compile(rf"{_DAY}\s+(?i:{_MONTH}),?\s+{_YEAR}(?!\d)"),
    # July 2013
    re.compile(rf"(?i:{_MONTH}),?\s+{_YEAR}(?!\d)"),
]
# A date with a month's name ends in a year; it is looked for only just before one.
_YEAR_ONLY = re.compile(r"(?:19|20)\d\d(?!\d)")
_NAMED_REACH = 25


# Words shortly before a date that say what it is the date of.
_LABELS: list[tuple[DateLabel, re.Pattern[str]]] = [
    ("birth", re.compile(r"\b(?:dob|d\.o\.b|date of birth|birth ?date|born)\b", re.I)),
    ("death", re.compile(r"\b(?:died|death|deceased|expired)\b", re.I)),
    ("admission", re.compile(r"\b(?:admitted|admission|admit date|date of admission)\b", re.I)),
    ("discharge", re.compile(r"\b(?:discharged?|date of discharge)\b", re.I)),
    ("service", re.compile(r"\b(?:date of service|dos|visit date|encounter date|seen on|date of visit)\b", re.I)),
]
# A date after a bare "Date:" or a signature is the date of the note itself,
# unless one of the labels above says otherwise.
_NOTE = re.compile(r"\b(?:date|dated|dictated|signed|transcribed)\b", re.I)
_LABEL_REACH = 40


@dataclass(frozen=True)
class FoundDate:
    date: str
    start: int
    end: int
    label: DateLabel | None


def find_dates(text: str, start: int = 0, end: int | None = None) -> list[FoundDate]:
    """Every date written in text[start:end], in order."""
    end = len(text) if end is None else end
    # (start, pattern rank, end, ISO date); where two readings overlap, the
    # earlier one wins, then the more specific pattern.
    candidates: list[tuple[int, int, int, str]] = []
    for rank, pattern in enumerate(_NUMERIC):
        for match in pattern.finditer(text, start, end):
            if pattern is _NUMERIC[2] and not _INTRODUCED.search(text, max(start, match.start() - 8), match.start()):
                continue
            candidates.append((match.start(), rank, match.end(), _iso(match) or ""))
    searched_to = start
    for year in _YEAR_ONLY.finditer(text, start, end):
        window_start = max(searched_to, start, year.start() - _NAMED_REACH)
        for rank, pattern in enumerate(_NAMED, start=len(_NUMERIC)):
            for match in pattern.finditer(text, window_start, year.end()):
                if match.end() == year.end() and not text[match.start() - 1 : match.start()].isalnum():
                    candidates.append((match.start(), rank, match.end(), _iso(match) or ""))
        searched_to = year.end()
    found = []
    previous_end = start
    for date_start, _, date_end, iso in sorted(candidates):
        if date_start < previous_end or not iso:
            continue
        found.append(FoundDate(iso, date_start, date_end, _label(text, found[-1].end if found else start, date_start)))
        previous_end = date_end
    return found


def iso_date(value: str) -> str | None:
    """The date part of an ISO or HL7 date-time ("2013-07-31T10:00", "201307311000-0500") as ISO."""
    digits = re.match(r"(\d{4})-?(\d\d)?-?(\d\d)?", value)
    if digits is None:
        return None
    year, month, day = digits.groups()
    if month is None:
        return year
    return _checked(int(year), int(month), int(day) if day else None)


def _iso(match: re.Match[str]) -> str | None:
    parts = match.groupdict()
    year = int(parts["year"])
    if len(parts["year"]) == 2:
        # POSIX strptime's rule for two-digit years: 69-99 are 1900s, 00-68 2000s.
        year += 1900 if year >= 69 else 2000
    month = _MONTHS[parts["month_name"].lower()] if parts.get("month_name") else int(parts["month"])
    day = int(parts["day"]) if parts.get("day") else None
    return _checked(year, month, day)


def _checked(year: int, month: int, day: int | None) -> str | None:
    try:
        date(year, month, day or 1)
    except ValueError:
        return None  # 02/30/2020, 13/01/2020: not a date
    return f"{year:04d}-{month:02d}" + (f"-{day:02d}" if day else "")


def _label(text: str, previous_end: int, start: int) -> DateLabel | None:
    # Only the words of the same clause count, up to the date before this one.
    clause_start = max(
        (found + len(stop) for stop in ("\n", ". ", "; ") if (found := text.rfind(stop, 0, start)) >= 0), default=0
    )
    before = text[max(previous_end, clause_start, start - _LABEL_REACH) : start]
    nearest: tuple[int, DateLabel] | None = None
    for label, pattern in _LABELS:
        for match in pattern.finditer(before):
            if nearest is None or match.end() > nearest[0]:
                nearest = (match.end(), label)
    if nearest is not None:
        return nearest[1]
    return "note" if _NOTE.search(before) else None
