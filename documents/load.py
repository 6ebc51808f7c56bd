"""Reading a file from disk into a Document, whatever its format."""

import hashlib
import math
from collections.abc import Callable
from pathlib import Path

from documents import ccda, fhir, pdf, text, word
from documents.cleaning import clean_pages
from documents.coverage import measure, with_tokens
from documents.document import Document, Kind, Skipped
from documents.errors import DocumentError
from documents.lines import Structured
from documents.progress import CancelCheck, Progress, ProgressCallback
from documents.sections import find_sections
from documents.text_facts import read_facts, read_narrative_facts

MAX_BYTES = 50 * 1024 * 1024


def load(
    path: str | Path,
    name: str | None = None,
    max_bytes: int = MAX_BYTES,
    count_tokens: Callable[[str], int] | None = None,
    *,
    password: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    max_pages: int = pdf.MAX_PAGES,
    max_ocr_pages: int = pdf.MAX_OCR_PAGES,
) -> Document:
    """Read the file at `path`; `name` is what the user calls it (uploads arrive under temporary names).

    `count_tokens`, the model's tokenizer, fills in the coverage report's token count.
    `password` opens an encrypted PDF; without it, or with a wrong one, such a
    file raises PasswordRequired. `progress` is called after each page with
    (pages read, pages in the file); `cancel` is asked before each page, and
    when it says stop, reading ends there with Cancelled. A PDF over
    `max_pages` pages is refused; past `max_ocr_pages` scanned pages, the rest
    are listed in the coverage report as not read.
    """
    path = Path(path)
    name = name or path.name
    tracker = Progress(name, progress, cancel)
    tracker.check()
    data = _read_bytes(path, name, max_bytes)
    document = _read(data, name, hashlib.sha256(data).hexdigest(), tracker, password, max_pages, max_ocr_pages)
    document = _with_format_note(document)
    return with_tokens(document, count_tokens) if count_tokens else document


# The format each extension names, and how a format is called in a note to the user.
_NAMED_FORMATS: dict[str, tuple[Kind, ...]] = {
    ".pdf": ("pdf",), ".docx": ("docx",), ".txt": ("txt", "md"), ".md": ("md", "txt"), ".json": ("fhir",),
    ".xml": ("ccda",),
}
_FORMAT_WORDS: dict[Kind, str] = {
    "pdf": "a PDF", "docx": "a Word document", "txt": "plain text", "md": "plain text", "fhir": "FHIR JSON",
    "ccda": "a C-CDA document",
}


def _with_format_note(document: Document) -> Document:
    """The document, with a note when its content is not the format its name says. The content decides how it is
    read; the note says so, so that a file renamed by mistake does not pass unremarked."""
    extension = Path(document.name).suffix.lower()
    named = _NAMED_FORMATS.get(extension)
    if named is None or document.kind in named or document.coverage is None:
        return document
    note = f"named {extension}, but it is {_FORMAT_WORDS[document.kind]}: read as {_FORMAT_WORDS[document.kind]}"
    return document.model_copy(update={"coverage": document.coverage.model_copy(update={"format_note": note})})


def _read_bytes(path: Path, name: str, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size == 0:
            raise DocumentError(name, "the file is empty")
        if size > max_bytes:
            raise DocumentError(name, f"the file is {_size(size)}; the limit is {_size(max_bytes)}")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DocumentError(name, "the file could not be found") from exc
    except OSError as exc:
        raise DocumentError(name, "the file could not be opened") from exc


def _read(
    data: bytes, name: str, sha256: str, progress: Progress, password: str | None, max_pages: int, max_ocr_pages: int
) -> Document:
    # The content decides the format, so a PDF saved as .txt still reads as a
    # PDF. The extension only tells which format a damaged file was meant to be.
    if pdf.looks_like_pdf(data):
        read = pdf.read_pdf(data, name, progress, password, max_pages, max_ocr_pages)
        # A cancel asked for during the last page stops here, before cleaning
        # and sections, which take seconds for thousands of pages.
        progress.check()
        return _free_text(name, sha256, "pdf", read.texts, read.skipped, read.ocr_pages)
    if word.looks_like_docx(data):
        document = _free_text(name, sha256, "docx", word.read_docx(data, name), [], [])
    else:
        document = _other(data, name, sha256)
    # Formats other than PDF are one page, so a cancel between pages cannot
    # arrive; one asked for while the page was read still wins.
    progress.check()
    progress.page_read(1, 1)
    return document


def _other(data: bytes, name: str, sha256: str) -> Document:
    extension = Path(name).suffix.lower()
    decoded = text.decode(data)
    if decoded is None:
        # Binary, and neither PDF nor Word by its content: a file named as a
        # supported format is most likely one that was damaged.
        reasons = {".pdf": pdf.DAMAGED, ".docx": word.DAMAGED, ".json": fhir.NOT_JSON, ".xml": ccda.NOT_XML}
        raise DocumentError(name, reasons.get(extension, text.UNSUPPORTED))
    # Text is read as the text it is, even when named .pdf or .docx.
    start = decoded.lstrip("\ufeff \t\r\n")[:1]
    if extension == ".json" or (start == "{" and '"resourceType"' in decoded):
        return _structured(name, sha256, "fhir", fhir.read_fhir(decoded, name))
    if extension == ".xml" or (start == "<" and ccda.mentions_cda(decoded)):
        return _structured(name, sha256, "ccda", ccda.read_ccda(data, name, meant_as_cda=ccda.mentions_cda(decoded)))
    kind: Kind = "md" if extension == ".md" else "txt"
    return _free_text(name, sha256, kind, text.read_text(decoded, name), [], [])


def _free_text(
    name: str, sha256: str, kind: Kind, extracted: list[str], skipped: list[Skipped], ocr_pages: list[int]
) -> Document:
    cleaned = clean_pages(extracted)
    document = Document(
        name=name,
        sha256=sha256,
        kind=kind,
        pages=cleaned.pages,
        sections=find_sections(cleaned.pages),
    )
    # Facts are read from the cleaned pages, so their spans point into the text the model and the viewer see.
    facts, not_read = read_facts(document)
    coverage = measure(cleaned.pages, extracted, cleaned.repeated_lines_removed, skipped + not_read, ocr_pages)
    return document.model_copy(update={"facts": facts, "coverage": coverage})


def _structured(name: str, sha256: str, kind: Kind, read: Structured) -> Document:
    pages = [read.page]
    document = Document(
        name=name,
        sha256=sha256,
        kind=kind,
        pages=pages,
        sections=read.sections,
        coverage=measure(pages, [read.page.text], 0, read.skipped),
        facts=read.facts,
    )
    return document.model_copy(update={"facts": read.facts + read_narrative_facts(document)})


def _size(n: int) -> str:
    """A byte count for people: '80 MB', '1.5 KB', '200 bytes'."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            # Rounded up, so a file just over the limit never shows as equal to it.
            amount = math.ceil(n / scale * 10) / 10
            return f"{amount:g} {unit}"
    return f"{n} bytes"
