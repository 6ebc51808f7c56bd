"""The record the model reads: every page of every document, each under a marker line."""

from collections.abc import Callable

from pydantic import BaseModel

from documents.document import Document


class RecordSpan(BaseModel):
    """Where one page's text lies in the record: `text[start:end]`."""

    document: str
    page: int
    start: int
    end: int


class AssembledRecord(BaseModel):
    text: str
    tokens: int
    budget: int
    fits: bool
    spans: list[RecordSpan]


def assemble(documents: list[Document], budget: int, count_tokens: Callable[[str], int]) -> AssembledRecord:
    """Join all pages, in order, and report whether the result fits the token budget.

    Nothing is cut when it does not fit: the caller decides what to leave out.
    """
    text = ""
    spans: list[RecordSpan] = []
    for document in documents:
        for page in document.pages:
            if text:
                text += "\n\n"
            text += f"[Document: {_one_line(document.name)} | page {page.number}]\n"
            start = len(text)
            text += page.text
            spans.append(RecordSpan(document=document.name, page=page.number, start=start, end=len(text)))
    tokens = count_tokens(text)
    return AssembledRecord(text=text, tokens=tokens, budget=budget, fits=tokens <= budget, spans=spans)


def _one_line(name: str) -> str:
    # A file name with a line break in it could otherwise forge a marker line.
    return " ".join(name.split())
