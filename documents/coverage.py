"""The coverage report: how much of a file reached the text the model sees, and what did not and why."""

from collections.abc import Callable

from documents.document import Coverage, Document, Page, Skipped


def measure(
    pages: list[Page],
    extracted: list[str],
    repeated_lines_removed: int,
    skipped: list[Skipped],
    ocr_pages: list[int] | None = None,
) -> Coverage:
    """`extracted`: each page's text as the reader produced it, before cleaning."""
    return Coverage(
        pages=len(pages),
        empty_pages=[page.number for page in pages if not page.text.strip()],
        ocr_pages=ocr_pages or [],
        characters=sum(len(page.text) for page in pages),
        extracted_characters=sum(len(text) for text in extracted),
        repeated_lines_removed=repeated_lines_removed,
        skipped=skipped,
    )


def with_tokens(document: Document, count_tokens: Callable[[str], int]) -> Document:
    """`document` with its coverage's token count filled in by the model's own tokenizer.

    Separate from loading, so that a file can be read where no tokenizer is
    loaded (a worker process, say) and counted afterwards.
    """
    coverage = document.coverage or measure(document.pages, [page.text for page in document.pages], 0, [])
    tokens = sum(count_tokens(page.text) for page in document.pages)
    return document.model_copy(update={"coverage": coverage.model_copy(update={"tokens": tokens})})
