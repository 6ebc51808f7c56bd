"""Cleaning extracted text for the model, with an offset map back to what was extracted.

Three things cost tokens and carry nothing: page headers and footers repeated on
every page (patient banners, "Page 3 of 40", fax headers), runs of whitespace,
and words split across lines by a hyphen. They are removed here, and every
removal is recorded in the page's offset map, so a span of the cleaned text can
always be traced to the extracted text it came from.
"""

import math
import re
from dataclasses import dataclass

from documents.document import Page
from documents.offsets import OffsetMap, Rewriter

_BREAK = re.compile(r"\r\n|[\r\n\u2028\u2029]")
_SPACE = "[ \t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"
# Characters that take no room on the page: zero-width spaces (which Synthea
# puts inside lab names), joiners, a stray byte-order mark, soft hyphens.
_INVISIBLE = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
_RUN = re.compile(f"(?:{_SPACE}|{_INVISIBLE})+")
# Runs to rewrite: all but the single plain space, which most runs are.
_UNTIDY_RUN = re.compile(f"(?:{_SPACE}|{_INVISIBLE}){{2,}}|(?! ){_SPACE}|{_INVISIBLE}")
_HAS_SPACE = re.compile(_SPACE)
_INVISIBLES = re.compile(_INVISIBLE)
_COMPOUND = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)+")
_WORD = re.compile(r"[^\W\d_]+")

# Words that keep their hyphen when a line break falls after it: "self-\ncare"
# is "self-care", never "selfcare".
_HYPHEN_PREFIXES = frozenset({"self", "non", "ex", "well", "follow", "all", "ill"})

# A header or footer is a line among the first or last few of a page.
_EDGE_LINES = 3
_MIN_REPEATED_CHARS = 10
_PAGE_NUMBER = re.compile(r"(?:page|p\.?|pg\.?)?\s*#(?:\s*(?:of|/)\s*#)?|-\s*#\s*-")


_EdgeKey = tuple[str, str]  # ("top" or "bottom", a line's text with its digits as "#")


@dataclass(frozen=True)
class Cleaned:
    pages: list[Page]
    repeated_lines_removed: int


@dataclass(frozen=True)
class _Line:
    start: int  # where the line begins in the page's text
    end: int  # where its content ends, before the line break

    def content(self, text: str) -> str:
        return text[self.start : self.end]


def clean_pages(texts: list[str]) -> Cleaned:
    """The pages of one document, cleaned, each with the map back to its extracted text."""
    lines = [_lines(text) for text in texts]
    repeated = _repeated_lines(texts, lines)
    compounds = _Compounds(texts)
    pages = []
    for number, (text, page_lines) in enumerate(zip(texts, lines), start=1):
        removed = {index for page, index in repeated if page == number - 1}
        cleaned, offsets = _clean_page(text, page_lines, removed, compounds)
        pages.append(Page(number=number, text=cleaned, offsets=None if cleaned == text else offsets))
    return Cleaned(pages=pages, repeated_lines_removed=len(repeated))


def squeeze(text: str) -> str:
    """`text` as one line: every run of whitespace one space, invisible characters gone."""
    return " ".join(_INVISIBLES.sub("", text).split())


def _lines(text: str) -> list[_Line]:
    lines = []
    start = 0
    for match in _BREAK.finditer(text):
        lines.append(_Line(start, match.start()))
        start = match.end()
    if start < len(text):
        lines.append(_Line(start, len(text)))
    return lines


def _is_blank(content: str) -> bool:
    return not _RUN.sub("", content)


# --- Repeated headers and footers ------------------------------------------------


def _repeated_lines(texts: list[str], lines: list[list[_Line]]) -> set[tuple[int, int]]:
    """(page index, line index) of each header or footer line to remove.

    A line is a header (footer) when, digits aside, it is among the first
    (last) few lines of at least half the pages, and of two pages or more, and
    nowhere else: a line that also occurs amid a page's text is a repeated
    table cell, not a header. Only pages long enough to have a middle decide
    what the headers are; short ones (a last page with a signature) lose them
    too. The first occurrence stays, so nothing is lost; digits are ignored so
    that "Page 3 of 40" and a fax header's page counter match.
    """
    if len(texts) < 2:
        return set()
    edges: list[list[tuple[int, _EdgeKey]]] = []  # per page: (line index, (edge, key))
    inside: set[str] = set()
    long_pages = []
    for text, page_lines in zip(texts, lines):
        filled = [index for index, line in enumerate(page_lines) if not _is_blank(line.content(text))]
        keys = {index: _repeat_key(page_lines[index].content(text)) for index in filled}
        at_edge = [
            (index, (edge, key))
            for edge, indices in (("top", filled[:_EDGE_LINES]), ("bottom", filled[-_EDGE_LINES:]))
            for index in indices
            if (key := keys[index]) is not None
        ]
        edges.append(at_edge)
        if len(filled) > 2 * _EDGE_LINES:
            long_pages.append(len(edges) - 1)
            edge_lines = {index for index, _ in at_edge}
            inside |= {key for index, key in keys.items() if key is not None and index not in edge_lines}
    pages_with: dict[_EdgeKey, set[int]] = {}
    for page in long_pages:
        for _, edge_key in edges[page]:
            pages_with.setdefault(edge_key, set()).add(page)
    needed = max(2, math.ceil(len(long_pages) / 2))
    repeated_keys = {
        edge_key
        for edge_key, pages in pages_with.items()
        if len(pages) >= needed
        and edge_key[1] not in inside
        and (not _PAGE_NUMBER.fullmatch(edge_key[1]) or _counts_pages(edge_key, texts, lines, edges))
    }
    repeated: set[tuple[int, int]] = set()
    first_pages: dict[_EdgeKey, int] = {}
    for page, at_edge in enumerate(edges):
        for index, edge_key in at_edge:
            if edge_key in repeated_keys and first_pages.setdefault(edge_key, page) != page:
                repeated.add((page, index))
    return repeated


def _repeat_key(content: str) -> str | None:
    """What a line is, digits aside; None for a line too short to tell a header from table cells."""
    key = re.sub(r"\d+", "#", " ".join(_RUN.sub(" ", content).lower().split()))
    if _PAGE_NUMBER.fullmatch(key):
        return key
    if len(key) < _MIN_REPEATED_CHARS or sum(char.isalpha() for char in key) < 4:
        # "active", "12.5 mg" or a date at the foot of two pages are table
        # cells that happen to meet there, not a footer.
        return None
    return key


def _counts_pages(
    edge_key: _EdgeKey, texts: list[str], lines: list[list[_Line]], edges: list[list[tuple[int, _EdgeKey]]]
) -> bool:
    # A bare "3" at the foot of pages is a page number only when it counts the
    # pages; otherwise it is a value in a table.
    offsets = set()
    for page, at_edge in enumerate(edges):
        for index, found in at_edge:
            if found == edge_key:
                number = re.search(r"\d+", lines[page][index].content(texts[page]))
                offsets.add(int(number.group()) - page if number else None)
    return len(offsets) == 1


# --- Whitespace and hyphenation ----------------------------------------------------


class _Compounds:
    """The hyphenated words of a document, found the first time they are asked about (most texts never ask)."""

    def __init__(self, texts: list[str]) -> None:
        self._texts = texts
        self._found: set[str] | None = None

    def __contains__(self, word: object) -> bool:
        if self._found is None:
            self._found = {match.lower() for text in self._texts for match in _COMPOUND.findall(text)}
        return word in self._found


def _clean_page(text: str, lines: list[_Line], removed: set[int], compounds: _Compounds) -> tuple[str, OffsetMap]:
    rewriter = Rewriter(text)
    kept = [
        (index, line)
        for index, line in enumerate(lines)
        if index not in removed and not _is_blank(line.content(text))
    ]
    continues_previous = False
    for position, (index, line) in enumerate(kept):
        body_start, body_end = _body(text, line)
        if not continues_previous:
            _write_indent(rewriter, text, line.start, body_start)
        if position + 1 == len(kept):
            _write_body(rewriter, text, body_start, body_end)
            break
        next_index, next_line = kept[position + 1]
        next_start = _body(text, next_line)[0]
        hyphen = _line_end_hyphen(text, body_start, body_end, line) if next_index == index + 1 else None
        continues_previous = hyphen is not None and text[next_start].islower()
        if not continues_previous:
            _write_body(rewriter, text, body_start, body_end)
            blank = any(
                _is_blank(lines[between].content(text))
                for between in range(index + 1, next_index)
                if between not in removed
            )
            rewriter.replace(body_end, next_line.start, "\n\n" if blank else "\n")
        elif hyphen == "soft":
            _write_body(rewriter, text, body_start, body_end)
            rewriter.replace(body_end, next_start, "")
        else:
            _write_body(rewriter, text, body_start, body_end - 1)
            keep = _keeps_hyphen(text, body_end - 1, next_start, compounds)
            rewriter.replace(body_end - 1, next_start, "-" if keep else "")
    return rewriter.result()


def _line_end_hyphen(text: str, body_start: int, body_end: int, line: _Line) -> str | None:
    """'hard' or 'soft' when the line ends in a word broken by a hyphen; None otherwise."""
    last = text[body_end - 1]
    if last == "-":
        before = text[body_end - 2] if body_end - body_start >= 2 else ""
        return "hard" if before.isalpha() and before.islower() else None
    if last.isalpha() and "\u00ad" in text[body_end : line.end]:
        # A soft hyphen marks where a word was broken, and nothing else.
        return "soft"
    return None


def _keeps_hyphen(text: str, hyphen: int, next_start: int, compounds: _Compounds) -> bool:
    """Whether "word-" + line break + "word" is one hyphenated word rather than one word broken in two.

    Without a dictionary the document itself decides: a compound written
    whole elsewhere in it keeps its hyphen, and so do compounds that go on
    ("two-" / "and-a-half") and a few prefixes. Otherwise the hyphen is taken
    for one that a typesetter added.
    """
    before = _WORD.findall(text[max(0, hyphen - 40) : hyphen])
    after = _WORD.match(text, next_start)
    if not before or after is None:
        return True
    first, second = before[-1].lower(), after.group().lower()
    continues = text[after.end() : after.end() + 1] == "-"
    return continues or first in _HYPHEN_PREFIXES or f"{first}-{second}" in compounds


def _body(text: str, line: _Line) -> tuple[int, int]:
    """The line without its leading indentation and trailing whitespace."""
    start, end = line.start, line.end
    leading = _RUN.match(text, start, end)
    if leading:
        start = leading.end()
    while end > start and (_HAS_SPACE.fullmatch(text[end - 1]) or _INVISIBLES.fullmatch(text[end - 1])):
        end -= 1
    return start, end


def _write_indent(rewriter: Rewriter, text: str, start: int, end: int) -> None:
    # Indentation is kept as spaces and tabs: in Markdown and in many
    # plain-text notes it nests lists.
    rewriter.replace(start, end, re.sub(r"[^ \t]", " ", _INVISIBLES.sub("", text[start:end])))


def _write_body(rewriter: Rewriter, text: str, start: int, end: int) -> None:
    position = start
    for run in _UNTIDY_RUN.finditer(text, start, end):
        rewriter.copy(position, run.start())
        rewriter.replace(run.start(), run.end(), " " if _HAS_SPACE.search(run.group()) else "")
        position = run.end()
    rewriter.copy(position, end)
