"""Reading order of PDF pages: two-column notes read column by column; other pages as pypdf's plain mode reads them."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from documents import load

LEFT = [
    "The patient is a 67-year-old man admitted",
    "with chest pain radiating to the left arm,",
    "troponin was negative on two draws and the",
    "ECG showed no acute ischemic changes today.",
]
RIGHT = [
    "Discharge plan: aspirin 81 mg daily and",
    "atorvastatin 40 mg at bedtime, follow up",
    "with cardiology in two weeks, repeat the",
    "lipid panel in three months after discharge.",
]


def pdf_drawing(runs: list[tuple[float, float, str]]) -> bytes:
    """A one-page PDF drawing each (x, y, text) in Helvetica 10, in the order given."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    })
    page[NameObject("/Resources")] = DictionaryObject({
        NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)}),
    })
    content = DecodedStreamObject()
    content.set_data("".join(f"BT /F1 10 Tf {x} {y} Td ({text}) Tj ET\n" for x, y, text in runs).encode())
    page[NameObject("/Contents")] = writer._add_object(content)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def rows(*columns: tuple[float, list[str]]) -> list[tuple[float, float, str]]:
    """Runs drawn row by row: each row's cell in every column, then the next row."""
    count = max(len(lines) for _, lines in columns)
    return [
        (x, 700 - 14 * row, lines[row]) for row in range(count) for x, lines in columns if row < len(lines)
    ]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def plain(data: bytes) -> str:
    return PdfReader(BytesIO(data)).pages[0].extract_text()


def test_two_column_page_reads_left_column_then_right(tmp_path: Path) -> None:
    data = pdf_drawing(rows((72, LEFT), (320, RIGHT)))
    assert LEFT[0] + " " + RIGHT[0] in plain(data)  # pypdf alone interleaves the columns
    (page,) = load(write(tmp_path / "two_columns.pdf", data)).pages
    text = page.text
    assert "\n".join(LEFT) in text
    assert "\n".join(RIGHT) in text
    assert text.index(LEFT[-1]) < text.index(RIGHT[0])


def test_single_column_page_is_read_as_plain_extraction(tmp_path: Path) -> None:
    data = pdf_drawing(rows((72, LEFT + RIGHT)))
    (page,) = load(write(tmp_path / "one_column.pdf", data)).pages
    text = page.text
    assert text == plain(data)
    assert "\n".join(LEFT + RIGHT) in text


def test_two_column_table_keeps_its_rows(tmp_path: Path) -> None:
    # Short label and value cells: a table, read row by row as today.
    labels = ["Sodium", "Potassium", "Creatinine", "Glucose"]
    values = ["138 mmol/L", "4.1 mmol/L", "0.9 mg/dL", "102 mg/dL"]
    data = pdf_drawing(rows((72, labels), (320, values)))
    (page,) = load(write(tmp_path / "table.pdf", data)).pages
    text = page.text
    assert text == plain(data)
    assert "Sodium 138 mmol/L" in text

