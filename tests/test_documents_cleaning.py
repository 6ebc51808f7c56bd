"""documents: cleaning extracted text without losing track of where each character came from."""

import io
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from documents import OffsetMap, load
from documents.cleaning import clean_pages
from documents.pdf import read_pdf


def normalised(text: str) -> str:
    return " ".join(text.replace("\u200b", "").split())


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages hold these lines of text, in Helvetica."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for lines in pages:
        page = writer.add_blank_page(width=612, height=792)
        operators = ["BT", "/F1 10 Tf", "12 TL", "72 750 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            operators.append(f"({escaped}) Tj T*")
        operators.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(operators).encode("latin-1"))
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        page.replace_contents(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def assert_maps_back(cleaned: str, original: str, to_original) -> None:
    """Every span of the cleaned text comes from original text that says the same, whitespace aside."""
    for start in range(len(cleaned) + 1):
        for end in range(start, min(len(cleaned), start + 40) + 1):
            original_start, original_end = to_original(start, end)
            assert 0 <= original_start <= original_end <= len(original)
            assert normalised(cleaned[start:end]) == normalised(original[original_start:original_end]), (start, end)


# --- Whitespace, invisible characters, line ends -----------------------------------


MESSY = (
    "  Allergies:\tpenicillin \u00a0 (rash)   \r\n\r\n\r\n\r\n"
    "Platelets\u200b [#/volume]\u3000 250\r\n  - nested item  \n\n"
)


def test_whitespace_is_normalised_and_indentation_kept() -> None:
    [page] = clean_pages([MESSY]).pages
    assert page.text == "  Allergies: penicillin (rash)\n\nPlatelets [#/volume] 250\n  - nested item"


def test_every_cleaned_span_maps_back_to_what_was_extracted() -> None:
    [page] = clean_pages([MESSY]).pages
    assert page.offsets is not None
    assert_maps_back(page.text, MESSY, page.to_original)


def test_a_span_maps_to_exactly_its_original_words() -> None:
    [page] = clean_pages([MESSY]).pages
    start = page.text.index("penicillin")
    original_start, original_end = page.to_original(start, page.text.index("250") + 3)
    assert MESSY[original_start:original_end] == MESSY[MESSY.index("penicillin") : MESSY.index("250") + 3]


def test_text_that_needs_no_cleaning_has_no_map() -> None:
    [page] = clean_pages(["Line one\nLine two"]).pages
    assert page.offsets is None
    assert page.to_original(5, 8) == (5, 8)


def test_offset_map_edges() -> None:
    offsets = OffsetMap(pieces=[(0, 4, 2, 6), (4, 5, 6, 9), (5, 8, 9, 12)])  # "ab  \r\n\r\ncd" style
    assert offsets.to_original(0, 0) == (2, 2)
    assert offsets.to_original(4, 5) == (6, 9)  # a replacement maps whole
    assert offsets.to_original(3, 6) == (5, 10)
    assert offsets.to_original(8, 8) == (12, 12)
    with pytest.raises(ValueError):
        offsets.to_original(2, 9)
    assert OffsetMap(pieces=[]).to_original(0, 0) == (0, 0)


# --- Hyphenation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extracted", "cleaned"),
    [
        ("The medi-\ncation was given.", "The medication was given."),
        ("The medi\u00ad\ncation was given.", "The medication was given."),
        ("back pain two-\nand-a-half days ago", "back pain two-and-a-half days ago"),
        ("able to self-\n  care at home", "able to self-care at home"),
        ("a well-known risk; the risk is well-\nknown", "a well-known risk; the risk is well-known"),
        ("tested HIV-\nPositive in 2001", "tested HIV-\nPositive in 2001"),
        ("Plan:\n- Stop warfarin\n- Recheck INR", "Plan:\n- Stop warfarin\n- Recheck INR"),
        ("ends with a dash -\nthen a new line", "ends with a dash -\nthen a new line"),
    ],
)
def test_words_broken_across_lines_are_joined(extracted: str, cleaned: str) -> None:
    [page] = clean_pages([extracted]).pages
    assert page.text == cleaned
    start = page.text.find("medication")
    if start >= 0:
        original_start, original_end = page.to_original(start, start + len("medication"))
        assert extracted[original_start:original_end] in ("medi-\ncation", "medi\u00ad\ncation")


# --- Repeated headers and footers ------------------------------------------------------

BANNER = "Patient: Jane Roe   MRN 0012345   DOB 01/02/1950"
FAX = "03/04/2021 10:{:02d} FROM: 555 0100 TO: 555 0199 P.{:03d}/004"
BODY = [
    ["HISTORY OF PRESENT ILLNESS: Chest pain for two days,", "worse on exertion.", "No syncope.", "No fever."],
    ["MEDICATIONS: Aspirin 81 mg daily.", "Metoprolol 25 mg twice daily.", "ALLERGIES: None known.", "Quit smoking."],
    ["ASSESSMENT: Stable angina.", "PLAN: Stress test next week.", "Return if pain at rest.", "Diet advice given."],
    ["Signed by Dr. A. Smith on 03/04/2021."],  # a short last page
]


def faxed_pages() -> list[list[str]]:
    return [
        [FAX.format(10 + number, number), BANNER, *body, f"Page {number} of 4"]
        for number, body in enumerate(BODY, start=1)
    ]


def test_headers_and_footers_are_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "faxed.pdf"
    path.write_bytes(text_pdf(faxed_pages()))
    document = load(path)
    first, *others = document.pages
    assert first.text.splitlines() == [FAX.format(11, 1), " ".join(BANNER.split()), *BODY[0], "Page 1 of 4"]
    for page, body in zip(others, BODY[1:]):
        assert page.text.splitlines() == body
    assert document.coverage.repeated_lines_removed == 9
    assert document.coverage.characters < document.coverage.extracted_characters


def test_spans_after_removed_headers_map_back_to_the_extracted_page(tmp_path: Path) -> None:
    data = text_pdf(faxed_pages())
    path = tmp_path / "faxed.pdf"
    path.write_bytes(data)
    extracted = read_pdf(data, "faxed.pdf").texts
    page = load(path).pages[2]
    assert page.offsets is not None
    start = page.text.index("Stable angina")
    original_start, original_end = page.to_original(start, start + len("Stable angina"))
    assert extracted[2][original_start:original_end] == "Stable angina"
    assert_maps_back(page.text, extracted[2], page.to_original)


def note_page(word: str) -> str:
    return "\n".join(f"{word} line {letter}" for letter in "abcdefg") + "\n"


def test_bare_page_numbers_are_footers_only_when_they_count_pages() -> None:
    bodies = [note_page(word) for word in ("alpha", "beta", "gamma")]
    counted = [f"{body}{number}" for number, body in enumerate(bodies, start=1)]
    assert [p.text for p in clean_pages(counted).pages] == [bodies[0] + "1", bodies[1][:-1], bodies[2][:-1]]
    values = [f"{body}12" for body in bodies]
    assert [p.text for p in clean_pages(values).pages] == values


def test_table_rows_that_meet_at_page_ends_are_not_footers() -> None:
    # A vaccine list split over pages: the same row ends two pages and also
    # occurs amid one, so it is data, not a footer.
    vaccines = "\n".join(f"Influenza, seasonal, injectable\n19{year}-07-08" for year in range(70, 80))
    pages = [
        f"Procedures\nBiopsy of prostate\n1983-08-27\nProstatectomy\n1983-08-27\nImmunizations\n{vaccines}",
        f"{vaccines}\nPneumococcal vaccine\n1986-09-13",
        "Influenza, seasonal, injectable\n1987-09-19",
    ]
    cleaned = clean_pages(pages)
    assert cleaned.repeated_lines_removed == 0
    assert [p.text for p in cleaned.pages] == pages


def test_short_repeated_cells_are_not_footers() -> None:
    pages = ["Allergy to nut\nactive", "Allergy to fish\nactive", "Allergy to egg\nactive"]
    assert [p.text for p in clean_pages(pages).pages] == pages


def test_no_corpus_pdf_loses_a_line(corpus: Path) -> None:
    for name in ("mtsamples_tka_discharge_summary.pdf", "synthea_summary_stevie_cormier.pdf"):
        document = load(corpus / name)
        assert document.coverage.repeated_lines_removed == 0
        extracted = read_pdf((corpus / name).read_bytes(), name).texts
        for page, original in zip(document.pages, extracted):
            assert normalised(page.text) == normalised(original)
            for start in range(0, len(page.text), 97):
                end = min(len(page.text), start + 60)
                original_start, original_end = page.to_original(start, end)
                assert normalised(page.text[start:end]) == normalised(original[original_start:original_end])
