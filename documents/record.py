"""The record the model reads: every page of every document under a marker line, or, when they do not all fit
the token budget, the passages most relevant to the question, in record order."""

from collections import Counter
from collections.abc import Callable
from itertools import groupby

from pydantic import BaseModel

from documents.chunks import Chunk, chunk
from documents.document import Document
from documents.retrieval import Ranking, rank

# Stands in the record for the text of a page that was left out.
OMITTED = "[...]"


class RecordSpan(BaseModel):
    """Where text of a page lies in the record: record `text[start:end]` is the page's
    `text[page_start : page_start + end - start]`."""

    document: str
    page: int
    start: int
    end: int
    page_start: int = 0


class PageRef(BaseModel):
    document: str
    page: int


class Retrieval(BaseModel):
    """How a record longer than the budget was cut down to the passages most relevant to the question."""

    question: str
    ranking: Ranking
    passages_used: int
    passages_total: int
    pages_total: int  # pages with text
    pages_in_part: list[PageRef]  # pages some of whose passages are in the record, but not all
    pages_left_out: list[PageRef]  # pages none of whose text is in the record

    def summary(self) -> str:
        """One line for the answer, saying that the model read only part of the record."""
        pages_used = self.pages_total - len(self.pages_left_out)
        return (
            f"Only part of the record was used: the {self.passages_used:,} of {self.passages_total:,} passages "
            f"most relevant to the question, from {pages_used:,} of {self.pages_total:,} pages "
            f"({len(self.pages_in_part):,} of them in part); the whole record is longer than the model can read at "
            "once."
        )


class AssembledRecord(BaseModel):
    text: str
    tokens: int  # of `text`
    budget: int
    fits: bool  # `tokens` <= `budget`
    spans: list[RecordSpan]
    record_tokens: int  # of the whole record, every page of every document
    retrieval: Retrieval | None = None  # None when `text` is the whole record

    @property
    def whole(self) -> bool:
        return self.retrieval is None


def assemble(
    documents: list[Document],
    budget: int,
    count_tokens: Callable[[str], int],
    query: str | None = None,
    use_embeddings: bool = True,
) -> AssembledRecord:
    """The whole record when it fits `budget` tokens; otherwise, given the question `query`, the passages that
    rank best against it, as many as fit, in record order. Without a query nothing is cut, whatever the budget.

    `use_embeddings`: rank with sentence embeddings as well as BM25, when their model is installed.
    """
    text, spans = _whole(documents)
    tokens = count_tokens(text)
    if tokens <= budget or query is None:
        return AssembledRecord(
            text=text, tokens=tokens, budget=budget, fits=tokens <= budget, spans=spans, record_tokens=tokens
        )
    record = _Record(documents)
    chunks = chunk(documents)
    order, ranking = rank([piece.searchable for piece in chunks], query, use_embeddings)
    chosen = _fill(record, chunks, order, budget, count_tokens)
    text, spans = record.excerpts([chunks[i] for i in sorted(chosen)])
    passages: Counter[tuple[int, int]] = Counter((piece.document, piece.page) for piece in chunks)
    used: Counter[tuple[int, int]] = Counter((chunks[i].document, chunks[i].page) for i in chosen)
    retrieval = Retrieval(
        question=query,
        ranking=ranking,
        passages_used=len(chosen),
        passages_total=len(chunks),
        pages_total=len(passages),
        pages_in_part=[record.ref(key) for key in passages if 0 < used[key] < passages[key]],
        pages_left_out=[record.ref(key) for key in passages if not used[key]],
    )
    selected = count_tokens(text)
    return AssembledRecord(
        text=text,
        tokens=selected,
        budget=budget,
        fits=selected <= budget,
        spans=spans,
        record_tokens=tokens,
        retrieval=retrieval,
    )


def _whole(documents: list[Document]) -> tuple[str, list[RecordSpan]]:
    text = ""
    spans: list[RecordSpan] = []
    for document in documents:
        for page in document.pages:
            if text:
                text += "\n\n"
            text += _marker(document.name, page.number)
            start = len(text)
            text += page.text
            spans.append(RecordSpan(document=document.name, page=page.number, start=start, end=len(text)))
    return text, spans


class _Record:
    """The session's documents, their pages found by (document position, page number)."""

    def __init__(self, documents: list[Document]) -> None:
        self._names = [document.name for document in documents]
        self._pages = {(i, page.number): page for i, document in enumerate(documents) for page in document.pages}

    def ref(self, key: tuple[int, int]) -> PageRef:
        return PageRef(document=self._names[key[0]], page=key[1])

    def marker(self, key: tuple[int, int]) -> str:
        return _marker(self._names[key[0]], key[1])

    def excerpts(self, chunks: list[Chunk]) -> tuple[str, list[RecordSpan]]:
        """The record made of `chunks`, in record order: each page's marker, then its chosen passages, with
        OMITTED wherever text of the page was left out."""
        text = ""
        spans: list[RecordSpan] = []
        for key, group in groupby(chunks, key=lambda piece: (piece.document, piece.page)):
            page = self._pages[key]
            if text:
                text += "\n\n"
            text += self.marker(key)
            runs = _runs(page.text, list(group))
            if page.text[: runs[0][0]].strip():
                text += OMITTED + "\n"
            for position, (start, end) in enumerate(runs):
                if position:
                    text += f"\n{OMITTED}\n"
                spans.append(
                    RecordSpan(
                        document=self._names[key[0]],
                        page=key[1],
                        start=len(text),
                        end=len(text) + end - start,
                        page_start=start,
                    )
                )
                text += page.text[start:end]
            if page.text[runs[-1][1] :].strip():
                text += f"\n{OMITTED}"
        return text, spans


def _fill(
    record: _Record, chunks: list[Chunk], order: list[int], budget: int, count_tokens: Callable[[str], int]
) -> set[int]:
    """The positions of the best-ranked chunks whose record fits the budget."""
    gap = count_tokens(f"\n{OMITTED}\n")
    chosen: list[int] = []
    opened: set[tuple[int, int]] = set()
    used = 0
    for i in order:
        key = (chunks[i].document, chunks[i].page)
        cost = count_tokens(chunks[i].text) + 2 * gap
        if key not in opened:
            cost += count_tokens("\n\n" + record.marker(key))
        if used + cost > budget:
            continue  # a shorter passage further down may still fit
        chosen.append(i)
        opened.add(key)
        used += cost
    # Counted apart, pieces can come to fewer tokens than joined, where tokens
    # merge across a seam: drop the worst-ranked until the whole fits.
    while chosen and count_tokens(record.excerpts([chunks[i] for i in sorted(chosen)])[0]) > budget:
        chosen.pop()
    return set(chosen)


def _runs(text: str, chunks: list[Chunk]) -> list[tuple[int, int]]:
    """Spans of the page covered by `chunks`, with chunks that only whitespace separates joined into one."""
    runs: list[tuple[int, int]] = []
    for piece in chunks:
        if runs and not text[runs[-1][1] : piece.start].strip():
            runs[-1] = (runs[-1][0], piece.end)
        else:
            runs.append((piece.start, piece.end))
    return runs


def _marker(name: str, number: int) -> str:
    # Spaces for line breaks: a file name with a line break in it could
    # otherwise forge a marker line.
    return f"[Document: {' '.join(name.split())} | page {number}]\n"
