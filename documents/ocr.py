"""Reading scanned PDF pages: each is rendered to an image (pypdfium2) and read by the tesseract program.

Both are optional: the `ocr` extra brings pypdfium2, and Debian's
tesseract-ocr the program. Without them a scanned page is listed as skipped in
the coverage report, with `NOT_INSTALLED` as the reason.

Tesseract is run directly rather than through pytesseract, because it must run
with one OpenMP thread (OMP_THREAD_LIMIT=1, as OCRmyPDF runs it): with its
default of four, a page took 42 s instead of 6 s on a busy 2-core machine, and
pytesseract passes the child only this process's own environment, where the
limit would also cap torch's threads.
"""

import math
import os
import shutil
import subprocess
import threading
from functools import cache
from importlib.util import find_spec
from io import BytesIO
from typing import Any

NOT_INSTALLED = "reading scanned pages (OCR) is not installed on this computer"

# Tesseract is trained on text scanned at about 300 dots per inch.
_DPI = 300
# A PDF can declare a page 200 inches wide; such a page is rendered at a lower
# resolution rather than into gigabytes of pixels (one byte each, in grey).
_MAX_PIXELS = 40_000_000
# A page Tesseract cannot finish in this time is left out rather than waited for.
_TIMEOUT_S = 120
_LANGUAGE = "eng"

# PDFium is not thread-safe, not even for two documents in two threads, and
# the app may read two uploads at once.
_PDFIUM = threading.Lock()


class PageNotRead(Exception):
    """A scanned page OCR could not read, with the reason for the coverage report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@cache
def unavailable() -> str | None:
    """Why scanned pages cannot be read here, or None when they can."""
    program = shutil.which("tesseract")
    if find_spec("pypdfium2") is None or program is None:
        return NOT_INSTALLED
    try:
        listed = subprocess.run([program, "--list-langs"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return NOT_INSTALLED
    if _LANGUAGE not in listed.stdout.decode(errors="replace").split():
        return "the English language data for reading scanned pages (OCR) is not installed on this computer"
    return None


class ScannedPages:
    """One PDF opened for rendering; `read(index)` OCRs one page (0-based)."""

    def __init__(self, data: bytes, password: str | None) -> None:
        import pypdfium2

        self._pdf: Any = None
        self._failure: str | None = None
        try:
            with _PDFIUM:
                self._pdf = pypdfium2.PdfDocument(data, password=password)
        except Exception:
            # pypdf read the file and PDFium does not: its scanned pages are
            # reported as not read, and its text pages are kept.
            self._failure = "the scanned page could not be rendered for OCR"

    def read(self, index: int) -> str:
        if self._failure is not None:
            raise PageNotRead(self._failure)
        try:
            with _PDFIUM:
                image, dpi = self._render(index)
        except Exception as exc:
            raise PageNotRead("the scanned page could not be rendered for OCR") from exc
        return _tesseract(image, dpi)

    def _render(self, index: int) -> tuple[bytes, int]:
        """The page as a grey PGM image (a raw format, quicker to write than PNG, that Tesseract reads), and its dpi."""
        page = self._pdf[index]
        try:
            width, height = page.get_size()  # in points, 72 to the inch
            scale = min(_DPI / 72, math.sqrt(_MAX_PIXELS / max(width * height, 1.0)))
            bitmap = page.render(scale=scale, grayscale=True)
            try:
                image = BytesIO()
                bitmap.to_pil().save(image, "PPM")
                return image.getvalue(), round(72 * scale)
            finally:
                bitmap.close()
        finally:
            page.close()

    def __enter__(self) -> "ScannedPages":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pdf is not None:
            with _PDFIUM:
                self._pdf.close()


def _tesseract(image: bytes, dpi: int) -> str:
    program = shutil.which("tesseract") or "tesseract"
    try:
        # A PGM image carries no resolution, which Tesseract needs to size its glyphs.
        done = subprocess.run(
            [program, "stdin", "stdout", "-l", _LANGUAGE, "--dpi", str(dpi)],
            input=image,
            capture_output=True,
            timeout=_TIMEOUT_S,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        raise PageNotRead(f"OCR of the scanned page took more than {_TIMEOUT_S} seconds") from exc
    except OSError as exc:
        raise PageNotRead("OCR could not read the scanned page") from exc
    if done.returncode != 0:
        raise PageNotRead("OCR could not read the scanned page")
    return done.stdout.decode("utf-8", errors="replace")
