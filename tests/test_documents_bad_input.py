"""documents: every kind of bad file gets a clear message, within bounded time and memory, and nothing else.

The cases are also the rows of the bad-input table of `python -m bench.documents`.
"""

import io
import random
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pypdf import PdfWriter

from documents import DocumentError, PasswordRequired, load

TKA_PDF = "mtsamples_tka_discharge_summary.pdf"
DUSTY_DOCX = "synthea_summary_dusty_stracke.docx"
PDF_DAMAGED = "the PDF is damaged or incomplete"
WORD_DAMAGED = "the Word document is damaged or incomplete"


def lines_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages hold these lines of Helvetica text.

    Written by hand rather than with pypdf, so that 5,000 pages take a tenth of a second, not a minute.
    """
    # Objects: 1 catalog, 2 page tree, 3 font, then each page's content stream and page.
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(len(pages)))
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count %d /Kids [%s] >>" % (len(pages), kids.encode()),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        escaped = (line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines)
        content = ("BT /F1 10 Tf 12 TL 72 750 Td " + " ".join(f"({line}) Tj T*" for line in escaped) + " ET").encode(
            "latin-1"
        )
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        bodies.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (4 + 2 * i)
        )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    table = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(bodies) + 1, table))
    return out.getvalue()


def numbered_pages(count: int) -> bytes:
    """A PDF of `count` pages of one line each."""
    return lines_pdf([[f"Page {number}: warfarin 5 mg daily, INR checked."] for number in range(1, count + 1)])


def pdf_bytes(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def locked_pdf(corpus: Path) -> bytes:
    writer = PdfWriter(clone_from=corpus / TKA_PDF)
    writer.encrypt(user_password="secret", algorithm="AES-256")
    return pdf_bytes(writer)


def zip_bomb() -> bytes:
    """A .docx of 1 MB whose document.xml unpacks to 300 MB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = bytes(4 * 1024 * 1024)
            for _ in range(75):
                member.write(chunk)
    return buffer.getvalue()


def entity_bomb(corpus: Path) -> bytes:
    """The Dusty Stracke summary with "billion laughs" XML entities in its body: 10^9 "lol"s if expanded."""
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(corpus / DUSTY_DOCX) as source, zipfile.ZipFile(buffer, "w") as archive:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "word/document.xml":
                body = data.decode().split("?>", 1)[1].replace("<w:t>", "<w:t>&lol9;", 1)
                data = f'<?xml version="1.0"?><!DOCTYPE w:document [{entities}]>{body}'.encode()
            archive.writestr(member, data)
    return buffer.getvalue()


def half(corpus: Path, name: str) -> bytes:
    data = (corpus / name).read_bytes()
    return data[: len(data) // 2]


@dataclass(frozen=True)
class BadInput:
    file: str  # the name it is uploaded under
    expected: str  # the reason given, or "read: <kind>, <pages>" for a file read by its content
    make: Callable[[Path], bytes | int]  # from the corpus folder: the bytes, or the size of a file of zeros
    options: dict[str, object] = field(default_factory=dict)  # for load()


BAD_INPUTS = [
    BadInput("empty.pdf", "the file is empty", lambda corpus: b""),
    BadInput("scan_80mb.pdf", "the file is 80 MB; the limit is 50 MB", lambda corpus: 80 * 1024 * 1024),
    BadInput("truncated.pdf", PDF_DAMAGED, lambda corpus: half(corpus, TKA_PDF)),
    BadInput("corrupt.pdf", PDF_DAMAGED, lambda corpus: b"%PDF-1.7\n" + random.Random(1).randbytes(64 * 1024)),
    BadInput("truncated.docx", WORD_DAMAGED, lambda corpus: half(corpus, DUSTY_DOCX)),
    BadInput("zip_bomb.docx", "the Word document is too large to open safely", lambda corpus: zip_bomb()),
    BadInput("entity_bomb.docx", WORD_DAMAGED, entity_bomb),
    BadInput("locked.pdf", "the PDF is password-protected", locked_pdf),
    BadInput(
        "locked.pdf (wrong password)",
        "the password for the PDF is not correct",
        locked_pdf,
        {"password": "guess"},
    ),
    BadInput("locked.pdf (password given)", "read: pdf, 2 pages", locked_pdf, {"password": "secret"}),
    BadInput("pdf_named.docx", "read: pdf, 2 pages", lambda corpus: (corpus / TKA_PDF).read_bytes()),
    BadInput("docx_named.pdf", "read: docx, 1 page", lambda corpus: (corpus / DUSTY_DOCX).read_bytes()),
    BadInput("note_named.pdf", "read: txt, 1 page", lambda corpus: b"Allergies: penicillin\nPlan: stop warfarin\n"),
    BadInput(
        "photo.png",
        "not a supported document type (PDF, DOCX, TXT, MD, FHIR JSON, C-CDA XML)",
        lambda corpus: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(2).randbytes(4096),
    ),
    BadInput(
        "300_pages.pdf (limit 100)",
        "the PDF has 300 pages; the limit is 100",
        lambda corpus: numbered_pages(300),
        {"max_pages": 100},
    ),
]

# Whole-file cases too slow for the default suite; the bench runs them as well.
SLOW_INPUTS = [
    BadInput("12000_pages.pdf", "the PDF has 12,000 pages; the limit is 10,000", lambda corpus: numbered_pages(12_000)),
    BadInput("5000_pages.pdf", "read: pdf, 5,000 pages", lambda corpus: numbered_pages(5_000)),
]


def upload(case: BadInput, corpus: Path, folder: Path) -> Path:
    """The case's file, written under its name (without the note in brackets)."""
    path = folder / case.file.split(" (")[0]
    made = case.make(corpus)
    if isinstance(made, int):
        with path.open("wb") as file:
            file.truncate(made)  # sparse: nothing is written
    else:
        path.write_bytes(made)
    return path


def outcome(path: Path, **options: object) -> str:
    """What the user is told: the reason a file was refused, or what it was read as."""
    try:
        document = load(path, **options)
    except DocumentError as err:
        return err.reason
    pages = len(document.pages)
    return f"read: {document.kind}, {pages:,} page{'s' * (pages != 1)}"


def measured(path: Path, **options: object) -> tuple[str, float, float]:
    """The outcome, the seconds it took and the peak of memory allocated meanwhile, in MiB."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = outcome(path, **options)
        return result, time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.file for case in BAD_INPUTS])
def test_bad_input_gets_a_clear_message_quickly_in_little_memory(corpus: Path, tmp_path: Path, case: BadInput) -> None:
    result, seconds, peak_mib = measured(upload(case, corpus, tmp_path), **case.options)
    assert result == case.expected
    # Generous bounds for a busy 2-core machine; a regression (unpacking a
    # bomb, reading every page of a refused file) costs orders of magnitude more.
    assert seconds < 10
    assert peak_mib < 64


def test_password_error_says_a_password_can_be_given(corpus: Path, tmp_path: Path) -> None:
    # The UI tells this error apart, to ask for the password and load again.
    path = tmp_path / "locked.pdf"
    path.write_bytes(locked_pdf(corpus))
    with pytest.raises(PasswordRequired):
        load(path)
    assert load(path, password="secret").pages == load(corpus / TKA_PDF).pages


def test_a_bad_file_leaves_the_others_of_an_upload_readable(corpus: Path, tmp_path: Path) -> None:
    # The loader keeps no state between files: after each failure the next file reads as it would alone.
    readable = corpus / TKA_PDF
    expected = load(readable)
    for case in BAD_INPUTS:
        outcome(upload(case, corpus, tmp_path), **case.options)
        assert load(readable) == expected


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_INPUTS, ids=[case.file for case in SLOW_INPUTS])
def test_thousands_of_pages_are_read_or_refused_in_bounded_time_and_memory(
    corpus: Path, tmp_path: Path, case: BadInput
) -> None:
    result, seconds, peak_mib = measured(upload(case, corpus, tmp_path))
    assert result == case.expected
    # 5,000 pages take 10-20 s here without tracemalloc, which slows pypdf about 2x.
    assert seconds < 120
    assert peak_mib < 400


@pytest.mark.parametrize(("content", "name", "note"), [
    ("mtsamples_moyamoya.txt", "renamed.pdf", "named .pdf, but it is plain text: read as plain text"),
    ("mtsamples_tka_discharge_summary.pdf", "renamed.txt", "named .txt, but it is a PDF: read as a PDF"),
    ("mtsamples_moyamoya.txt", "note.md", None),
])
def test_a_file_whose_content_is_another_format_than_its_name_says_is_read_by_its_content_and_says_so(
    corpus: Path, tmp_path: Path, content: str, name: str, note: str | None
) -> None:
    path = tmp_path / name
    path.write_bytes((corpus / content).read_bytes())
    assert load(path).coverage.format_note == note
