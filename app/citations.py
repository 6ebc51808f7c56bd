"""Places in the record that a statement points to, and their numbering.

A `Located` is a document name, a page number and a span of that page's text, so `page.text[start:end]` is exactly
the cited words. Answers and summaries number their citations the same way, here: in order of first use, and a
span cited twice keeps its first number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from documents import Document, Page

# How a place was found: a quote as written; ignoring case, spacing and punctuation; with small slips allowed;
# by the words a claim shares with a line ("claim"); ranked for a question ("evidence"); or read from a structured
# entry ("record").
Match = Literal["exact", "normalized", "fuzzy", "claim", "record", "evidence"]


class Located(BaseModel):
    """Where words lie in the record: `quote` is exactly the page's `text[start:end]`."""

    document: str  # Document.name
    page: int  # Page.number
    start: int
    end: int
    quote: str
    match: Match
    # 100 for exact, normalized and record. For fuzzy, rapidfuzz's score of a quote; for a claim, the share (in
    # percent) of what the claim says that the cited words hold.
    score: float


class Citation(Located):
    number: int  # 1-based, in order of first use


def located(document: Document, page: Page, start: int, end: int, match: Match, score: float) -> Located:
    return Located(
        document=document.name, page=page.number, start=start, end=end, quote=page.text[start:end], match=match,
        score=score,
    )


class CitationNumbers:
    """Numbers the places a text cites in order of first use; a place cited twice keeps its first number."""

    def __init__(self) -> None:
        self.citations: list[Citation] = []
        self._numbers: dict[tuple[str, int, int, int], int] = {}

    def add(self, place: Located) -> int:
        key = (place.document, place.page, place.start, place.end)
        if key not in self._numbers:
            self._numbers[key] = len(self.citations) + 1
            # A citation numbered elsewhere (an answer's, in a summary) takes its number here.
            self.citations.append(Citation(number=self._numbers[key], **place.model_dump(exclude={"number"})))
        return self._numbers[key]

    def add_all(self, places: Sequence[Located]) -> list[int]:
        numbers: list[int] = []
        for place in places:
            if (number := self.add(place)) not in numbers:
                numbers.append(number)
        return numbers


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
