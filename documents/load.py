"""Reading a file from disk into a Document, whatever its format."""

import hashlib
import math
from pathlib import Path

from documents import pdf, text, word
from documents.document import Document, Kind, Page
from documents.errors import DocumentError

MAX_BYTES = 50 * 1024 * 1024


def load(path: str | Path, name: str | None = None, max_bytes: int = MAX_BYTES) -> Document:
    """Read the file at `path`; `name` is what the user calls it (uploads arrive under temporary names)."""
    path = Path(path)
    name = name or path.name
    data = _read_bytes(path, name, max_bytes)
    kind, pages = _read_pages(data, name)
    return Document(name=name, sha256=hashlib.sha256(data).hexdigest(), kind=kind, pages=pages)


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


def _read_pages(data: bytes, name: str) -> tuple[Kind, list[Page]]:
    # The content decides the format, so a PDF saved as .txt still reads as a
    # PDF. The extension only tells which format a damaged file was meant to be.
    if pdf.looks_like_pdf(data):
        return "pdf", pdf.read_pdf(data, name)
    if word.looks_like_docx(data):
        return "docx", word.read_docx(data, name)
    extension = Path(name).suffix.lower()
    if extension == ".pdf":
        raise DocumentError(name, pdf.DAMAGED)
    if extension == ".docx":
        raise DocumentError(name, word.DAMAGED)
    return ("md" if extension == ".md" else "txt"), text.read_text(data, name)


def _size(n: int) -> str:
    """A byte count for people: '80 MB', '1.5 KB', '200 bytes'."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            # Rounded up, so a file just over the limit never shows as equal to it.
            amount = math.ceil(n / scale * 10) / 10
            return f"{amount:g} {unit}"
    return f"{n} bytes"
