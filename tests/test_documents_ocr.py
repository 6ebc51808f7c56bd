"""documents: scanned PDF pages read by OCR when it is installed, and listed as not read when it is not."""

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

from documents import DocumentError, load, ocr

MEDICATIONS = ["DISCHARGE MEDICATIONS", "Warfarin 5 mg by mouth daily", "Metoprolol 25 mg twice daily"]
TKA_PDF = "mtsamples_tka_discharge_summary.pdf"


def image_pdf(lines: list[str], pages: int = 1) -> bytes:
    """A PDF of `pages` scanned pages, each a letter-size image of these lines at 200 dpi, with no text layer."""
    image = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for row, line in enumerate(lines):
        draw.text((150, 200 + 80 * row), line, fill=0, font=font)
    buffer = io.BytesIO()
    image.save(buffer, "PDF", resolution=200.0, save_all=True, append_images=[image] * (pages - 1))
    return buffer.getvalue()


def text_then_scan(corpus: Path) -> bytes:
    """The two text pages of the TKA summary, then one scanned page."""
    writer = PdfWriter(clone_from=corpus / TKA_PDF)
    writer.append(PdfReader(io.BytesIO(image_pdf(MEDICATIONS))))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def no_ocr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "unavailable", lambda: ocr.NOT_INSTALLED)


class FakeScans:
    """Stands in for OCR where only the bookkeeping around it is tested: each page reads as its number."""

    def __init__(self, data: bytes, password: str | None) -> None:
        pass

    def read(self, index: int) -> str:
        return f"Scanned page {index + 1}: warfarin 5 mg"

    def __enter__(self) -> "FakeScans":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def fake_ocr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "unavailable", lambda: None)
    monkeypatch.setattr(ocr, "ScannedPages", FakeScans)


needs_tesseract = pytest.mark.skipif(
    ocr.unavailable() is not None,
    reason=f"{ocr.unavailable()}: `make install` installs Debian's tesseract-ocr and the `ocr` extra",
)


@needs_tesseract
def test_scanned_page_of_a_text_pdf_is_read_by_ocr(corpus: Path, tmp_path: Path) -> None:
    document = load(write(tmp_path / "mixed.pdf", text_then_scan(corpus)))
    assert document.pages[:2] == load(corpus / TKA_PDF).pages
    scanned = " ".join(document.pages[2].text.lower().split())
    assert [line for line in MEDICATIONS if " ".join(line.lower().split()) not in scanned] == []
    coverage = document.coverage
    assert (coverage.ocr_pages, coverage.empty_pages, coverage.skipped) == ([3], [], [])


def test_scanned_page_without_ocr_is_listed_as_not_read(corpus: Path, tmp_path: Path, no_ocr: None) -> None:
    document = load(write(tmp_path / "mixed.pdf", text_then_scan(corpus)))
    assert [page.number for page in document.pages] == [1, 2, 3]
    assert document.pages[2].text == ""
    coverage = document.coverage
    assert coverage.empty_pages == [3]
    assert coverage.ocr_pages == []
    [skipped] = coverage.skipped
    assert (skipped.what, skipped.count, skipped.pages) == ("scanned page 3", 1, [3])
    assert skipped.reason == "reading scanned pages (OCR) is not installed on this computer"


def test_scanned_pdf_without_ocr_is_refused_in_plain_words(tmp_path: Path, no_ocr: None) -> None:
    with pytest.raises(DocumentError) as caught:
        load(write(tmp_path / "scan.pdf", image_pdf(MEDICATIONS, pages=2)))
    assert caught.value.reason == (
        "the PDF seems to be scanned, with no text layer; reading scanned pages (OCR) is not installed on this computer"
    )


def test_scanned_pages_past_the_ocr_limit_are_listed(tmp_path: Path, fake_ocr: None) -> None:
    document = load(write(tmp_path / "scan.pdf", image_pdf(MEDICATIONS, pages=5)), max_ocr_pages=2)
    assert [page.text for page in document.pages[:3]] == [
        "Scanned page 1: warfarin 5 mg",
        "Scanned page 2: warfarin 5 mg",
        "",
    ]
    assert document.coverage.ocr_pages == [1, 2]
    [skipped] = document.coverage.skipped
    assert (skipped.what, skipped.count, skipped.pages) == ("scanned pages 3-5", 3, [3, 4, 5])
    assert skipped.reason == "more scanned pages than the 2 read by OCR in one file"


def test_a_page_ocr_cannot_read_is_listed_and_the_rest_kept(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: FakeScans, index: int) -> str:
        raise ocr.PageNotRead("OCR could not read the scanned page")

    monkeypatch.setattr(ocr, "unavailable", lambda: None)
    monkeypatch.setattr(ocr, "ScannedPages", type("Failing", (FakeScans,), {"read": fail}))
    document = load(write(tmp_path / "mixed.pdf", text_then_scan(corpus)))
    assert document.pages[:2] == load(corpus / TKA_PDF).pages
    assert [(s.pages, s.reason) for s in document.coverage.skipped] == [([3], "OCR could not read the scanned page")]
