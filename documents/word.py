"""Word files (.docx): the body's paragraphs and tables as one page of text."""

from collections.abc import Iterator
from io import BytesIO
from zipfile import ZipFile

import docx
from docx.document import Document as WordDocument
from docx.table import Table, _Cell, _Row
from docx.text.paragraph import Paragraph

from documents.errors import DocumentError

DAMAGED = "the Word document is damaged or incomplete"

# A .docx is a zip archive. A small upload can unpack to gigabytes (a "zip
# bomb"), so the unpacked size the archive declares is checked before any of
# it is unpacked; Python's zipfile never unpacks more than the declared size.
MAX_UNPACKED_BYTES = 200 * 1024 * 1024


def looks_like_docx(data: bytes) -> bool:
    try:
        with ZipFile(BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except Exception:
        # Whatever stops the archive from opening, it is no usable .docx.
        return False


def read_docx(data: bytes, name: str) -> list[str]:
    """The body as one page of text, as extracted."""
    try:
        with ZipFile(BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except Exception as exc:
        raise DocumentError(name, DAMAGED) from exc
    if unpacked > MAX_UNPACKED_BYTES:
        raise DocumentError(name, "the Word document is too large to open safely")
    try:
        # python-docx raises KeyError, ValueError, lxml errors and more on
        # archives that are zips but not well-formed Word documents.
        text = "\n".join(_lines(docx.Document(BytesIO(data))))
    except Exception as exc:
        raise DocumentError(name, DAMAGED) from exc
    if not text.strip():
        raise DocumentError(name, "the Word document contains no text")
    return [text]


def _lines(container: WordDocument | _Cell) -> Iterator[str]:
    """Paragraphs and table rows in the order they appear in the body."""
    for block in container.iter_inner_content():
        if isinstance(block, Paragraph):
            yield block.text
        elif isinstance(block, Table):
            for row in block.rows:
                yield " | ".join(_cell_text(cell) for cell in _distinct_cells(row))


def _cell_text(cell: _Cell) -> str:
    # A row is one line, so a cell's paragraphs and nested tables are joined
    # with spaces.
    return " ".join(line for line in _lines(cell) if line.strip())


def _distinct_cells(row: _Row) -> Iterator[_Cell]:
    # python-docx repeats a merged cell once for every grid column it spans.
    previous = None
    for cell in row.cells:
        if previous is None or cell._tc is not previous._tc:
            yield cell
        previous = cell
