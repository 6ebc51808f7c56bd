"""Writing one page of text from a structured file (FHIR, C-CDA): headings, then lines that know their source."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from documents.cleaning import squeeze
from documents.document import Fact, Page, Section, SectionKind, Skipped, Source, SourceSpan, Span
from documents.sections import dates_in

# A fact read from an entry, lacking only the span of the line it is written
# into, which exists once the line is: `partial(Fact, category=..., name=...)`,
# called with `span=`.
FactWithoutSpan = Callable[..., Fact]


@dataclass(frozen=True)
class Structured:
    """What a structured file reads as: one page, its sections, and what was left out."""

    page: Page
    sections: list[Section]
    skipped: list[Skipped]
    facts: list[Fact]


@dataclass(frozen=True)
class _Heading:
    title: str
    kind: SectionKind | None
    code: str | None
    start: int


class PageWriter:
    """The page's text, built a line at a time; each line is one source's."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._sources: list[SourceSpan] = []
        self._headings: list[_Heading] = []
        self._facts: list[Fact] = []

    def heading(self, title: str, kind: SectionKind | None = None, code: str | None = None) -> None:
        if self._length:
            self._write("\n")  # a blank line before each heading but the first
        self._headings.append(_Heading(squeeze(title), kind, code, self._length))
        self._write(squeeze(title) + "\n")

    def line(
        self, text: str, source: Source, keep_breaks: bool = False, facts: Iterable[FactWithoutSpan] = ()
    ) -> None:
        """Write `text` as one line; with `keep_breaks`, as its lines, which stay one source's span.

        `facts` are those read from the entries this line names; each gets the line's span.
        """
        if keep_breaks:
            text = "\n".join(line for line in map(squeeze, text.splitlines()) if line)
        else:
            text = squeeze(text)
        if not text:
            return
        start = self._length
        self._write(text + "\n")
        self._sources.append(SourceSpan(page=1, start=start, end=start + len(text), source=source))
        span = Span(page=1, start=start, end=start + len(text))
        self._facts += [fact(span=span) for fact in facts]

    def finish(self, skipped: list[Skipped]) -> Structured:
        text = "".join(self._parts).rstrip("\n")
        page = Page(number=1, text=text, sources=self._sources)
        sections = []
        for position, heading in enumerate(self._headings):
            end = self._headings[position + 1].start if position + 1 < len(self._headings) else len(text)
            while text[end - 1] == "\n":
                end -= 1
            spans = [Span(page=1, start=heading.start, end=end)]
            dates = dates_in([page], spans)
            sections.append(
                Section(title=heading.title, kind=heading.kind, code=heading.code, spans=spans, dates=dates)
            )
        return Structured(page=page, sections=sections, skipped=skipped, facts=self._facts)

    def _write(self, text: str) -> None:
        self._parts.append(text)
        self._length += len(text)
