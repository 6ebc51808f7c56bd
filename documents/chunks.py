"""Cutting a record into passages for retrieval: at section headings, then at line breaks, each with its place."""

from collections.abc import Iterator
from dataclasses import dataclass

from documents.document import Document
from documents.sections import find_sections

# About 250 tokens: a short section or a paragraph, and within the 256-token
# window of the embedding model, so that no passage is cut when embedded.
MAX_CHARS = 1_000


@dataclass(frozen=True)
class Chunk:
    """`text[start:end]` of page `page` of the record's `document`-th document."""

    document: int
    page: int
    start: int
    end: int
    text: str
    section: str | None  # the title of the section it lies in, which ranking reads with it

    @property
    def searchable(self) -> str:
        # A long section is cut into several passages, and only the first
        # starts with its heading: "Medications" matters to every one.
        return f"{self.section}\n{self.text}" if self.section else self.text


def chunk(documents: list[Document]) -> list[Chunk]:
    """Every non-blank part of every page, in record order; together they hold all of the record's text."""
    chunks = []
    for position, document in enumerate(documents):
        # Documents rebuilt from storage carry pages only; their sections are
        # found again here.
        sections = document.sections or find_sections(document.pages)
        titles: dict[tuple[int, int], str | None] = {}
        for section in sections:
            for span in section.spans:
                titles.setdefault((span.page, span.start), section.title)
        for page in document.pages:
            starts = sorted({0} | {start for number, start in titles if number == page.number})
            ends = starts[1:] + [len(page.text)]
            for start, end in zip(starts, ends):
                title = titles.get((page.number, start))
                for piece_start, piece_end in _pieces(page.text, start, end):
                    text = page.text[piece_start:piece_end]
                    chunks.append(Chunk(position, page.number, piece_start, piece_end, text, title))
    return chunks


def _pieces(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """text[start:end] without its outer whitespace, cut at line breaks (or spaces) into runs of MAX_CHARS at most."""
    while True:
        while start < end and text[start].isspace():
            start += 1
        if start == end:
            return
        if end - start <= MAX_CHARS:
            stop = end
        else:
            limit = start + MAX_CHARS
            stop = text.rfind("\n", start + 1, limit)
            if stop == -1:
                stop = text.rfind(" ", start + 1, limit)
            if stop == -1:
                stop = limit  # one word longer than a passage: cut inside it
        cut = stop
        while cut > start and text[cut - 1].isspace():
            cut -= 1
        yield start, cut
        start = stop
