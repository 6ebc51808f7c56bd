"""PDF files: one page of text per PDF page, read from the PDF's text layer."""

from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from documents.errors import DocumentError

DAMAGED = "the PDF is damaged or incomplete"


def looks_like_pdf(data: bytes) -> bool:
    # The format tolerates a little junk before the header, and some
    # exporters write it.
    return b"%PDF-" in data[:1024]


def read_pdf(data: bytes, name: str) -> list[str]:
    """The text of each page, as extracted."""
    with _reading(name):
        reader = PdfReader(BytesIO(data))
    if reader.is_encrypted:
        _unlock(reader, name)
    # Plain extraction, not pypdf's layout mode: layout mode keeps table rows
    # on one line, but it splits a wrapped cell across lines with other
    # columns in between, and pads with runs of spaces that cost tokens.
    with _reading(name):
        texts = [page.extract_text() for page in reader.pages]
    if not texts:
        raise DocumentError(name, "the PDF has no pages")
    if not any(text.strip() for text in texts):
        raise DocumentError(
            name,
            "the PDF seems to be a scanned image with no text in it; "
            "reading scanned documents is not available yet",
        )
    return texts


def _unlock(reader: PdfReader, name: str) -> None:
    # Many PDFs are encrypted only to restrict printing or copying, and open
    # with an empty password.
    with _reading(name):
        unlocked = reader.decrypt("")
    if unlocked == PasswordType.NOT_DECRYPTED:
        raise DocumentError(name, "the PDF is password-protected")


@contextmanager
def _reading(name: str) -> Iterator[None]:
    """Turn whatever pypdf raises into a DocumentError.

    pypdf reads lazily, so a damaged file can fail on opening, on unlocking or
    on any page, and it raises many exception types (its own, but also
    KeyError, ValueError, RecursionError...) on malformed input.
    """
    try:
        yield
    except DependencyError as exc:
        # AES encryption needs the `cryptography` package.
        raise DocumentError(name, "the PDF is protected by encryption that cannot be opened here") from exc
    except Exception as exc:
        raise DocumentError(name, DAMAGED) from exc
