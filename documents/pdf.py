"""PDF files: one page of text per PDF page, from the PDF's text layer, or by OCR for a scanned page."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from io import BytesIO

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import DependencyError

from documents import ocr, reading_order
from documents.document import Skipped
from documents.errors import DocumentError, PasswordRequired
from documents.progress import Progress

DAMAGED = "the PDF is damaged or incomplete"
LOCKED = "the PDF is password-protected"
WRONG_PASSWORD = "the password for the PDF is not correct"

# Reading a page of text takes 2 to 35 ms here, so 10,000 pages take minutes,
# not hours, and the caller sees every page go by and can cancel.
MAX_PAGES = 10_000
# OCR takes one to a few seconds a page.
MAX_OCR_PAGES = 200


@dataclass(frozen=True)
class PdfText:
    texts: list[str]  # each page's text, as extracted or as OCR read it
    ocr_pages: list[int]  # numbers of the pages read by OCR
    skipped: list[Skipped]


def looks_like_pdf(data: bytes) -> bool:
    # The format tolerates a little junk before the header, and some
    # exporters write it.
    return b"%PDF-" in data[:1024]


def read_pdf(
    data: bytes,
    name: str,
    progress: Progress | None = None,
    password: str | None = None,
    max_pages: int = MAX_PAGES,
    max_ocr_pages: int = MAX_OCR_PAGES,
) -> PdfText:
    """Each page's text; a scanned page (no text, an image) is read by OCR, when installed, up to `max_ocr_pages`."""
    with _reading(name):
        reader = PdfReader(BytesIO(data))
    if reader.is_encrypted:
        password = _unlock(reader, name, password)
    with _reading(name):
        total = len(reader.pages)
    if total == 0:
        raise DocumentError(name, "the PDF has no pages")
    if total > max_pages:
        raise DocumentError(name, f"the PDF has {total:,} pages; the limit is {max_pages:,}")
    progress = progress or Progress(name)
    texts: list[str] = []
    with _Scans(data, password, max_ocr_pages) as scans:
        for number in range(1, total + 1):
            progress.check()
            with _reading(name):
                page = reader.pages[number - 1]
                # Plain extraction, not pypdf's layout mode: layout mode keeps
                # table rows on one line, but it splits a wrapped cell across
                # lines with other columns in between, and pads with runs of
                # spaces that cost tokens. A two-column page is read column
                # by column (see reading_order).
                text = reading_order.extract_text(page)
                scanned = not text.strip() and _has_images(page)
            texts.append(scans.read(number) if scanned else text)
            progress.page_read(number, total)
    if not any(text.strip() for text in texts):
        raise DocumentError(name, _no_text(scans))
    return PdfText(texts=texts, ocr_pages=scans.read_pages, skipped=scans.report())


class _Scans:
    """OCR of one PDF's scanned pages, up to a limit, and which were not read and why."""

    def __init__(self, data: bytes, password: str | None, limit: int) -> None:
        self._data = data
        self._password = password
        self._limit = limit
        self._stack = ExitStack()
        self._pages: ocr.ScannedPages | None = None
        self.read_pages: list[int] = []
        self.not_read: dict[str, list[int]] = {}  # reason: page numbers

    def read(self, number: int) -> str:
        """The page's text as OCR reads it; "" when it cannot, with the reason kept for the report."""
        reason = ocr.unavailable()
        if reason is None and len(self.read_pages) >= self._limit:
            reason = f"more scanned pages than the {self._limit:,} read by OCR in one file"
        if reason is None:
            if self._pages is None:
                # Opened at the first scanned page: most PDFs have none.
                self._pages = self._stack.enter_context(ocr.ScannedPages(self._data, self._password))
            try:
                text = self._pages.read(number - 1)
            except ocr.PageNotRead as exc:
                reason = exc.reason
            else:
                self.read_pages.append(number)
                return text
        self.not_read.setdefault(reason, []).append(number)
        return ""

    def report(self) -> list[Skipped]:
        return [
            Skipped(what=f"scanned {_pages(numbers)}", count=len(numbers), reason=reason, pages=numbers)
            for reason, numbers in self.not_read.items()
        ]

    def __enter__(self) -> "_Scans":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _no_text(scans: _Scans) -> str:
    if scans.not_read and not scans.read_pages:
        # One reason when OCR is missing; the first when several pages failed differently.
        return f"the PDF seems to be scanned, with no text layer; {next(iter(scans.not_read))}"
    if scans.read_pages:
        return "no text could be read from the PDF's scanned pages"
    return "the PDF has no text on any page"


def _has_images(page: PageObject) -> bool:
    # A page with no text and no image is blank; one with an image is most
    # likely a scan, which only OCR can read.
    return len(page.images) > 0


def _pages(numbers: list[int]) -> str:
    """'page 3', 'pages 3-5, 9'."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    parts = [str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs]
    return ("page " if len(numbers) == 1 else "pages ") + ", ".join(parts)


def _unlock(reader: PdfReader, name: str, password: str | None) -> str:
    """Decrypt the reader; the password that opened it."""
    # Many PDFs are encrypted only to restrict printing or copying, and open
    # with an empty password, whatever password the user typed.
    for candidate in ([password] if password else []) + [""]:
        with _reading(name):
            unlocked = reader.decrypt(candidate)
        if unlocked != PasswordType.NOT_DECRYPTED:
            return candidate
    raise PasswordRequired(name, WRONG_PASSWORD if password else LOCKED)


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
