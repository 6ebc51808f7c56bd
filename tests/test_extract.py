"""`clinidoc extract`: the installed command in a subprocess, on corpus files and on bad ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfWriter

from documents import Document

CLINIDOC = Path(sys.executable).with_name("clinidoc")
TKA_PDF = "mtsamples_tka_discharge_summary.pdf"


def extract(*args: str | Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLINIDOC_DATA_DIR": str(data_dir)}
    command = [str(CLINIDOC), "extract", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_a_pdf_prints_each_page_under_its_marker(corpus: Path, tmp_path: Path) -> None:
    result = extract(corpus / TKA_PDF, data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    markers = [line for line in result.stdout.splitlines() if line.startswith("[Document: ")]
    assert markers == [f"[Document: {TKA_PDF} | page 1]", f"[Document: {TKA_PDF} | page 2]"]
    assert "CHIEF COMPLAINT" in result.stdout


def test_a_ccda_file_prints_its_sections_as_text(corpus: Path, tmp_path: Path) -> None:
    result = extract(corpus / "ccda_progress_note_adam_everyman.xml", data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[Document: ccda_progress_note_adam_everyman.xml | page 1]\n")
    assert "<" not in result.stdout.split("\n", 1)[1]  # text, not the XML it was read from


def test_json_is_the_document_with_its_sources_sections_and_coverage(corpus: Path, tmp_path: Path) -> None:
    result = extract(corpus / "synthea_fhir_dennis_durgan.json", "--json", data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    document = Document.model_validate_json(result.stdout)
    assert document.kind == "fhir" and document.sections
    assert document.pages[0].sources and document.pages[0].sources[0].source.format == "fhir"
    coverage = document.coverage
    assert coverage is not None and coverage.tokens is not None and coverage.tokens > 1000
    assert coverage.characters == len(document.pages[0].text)
    assert any(skipped.what == "Claim" and "billing" in skipped.reason for skipped in coverage.skipped)


@pytest.mark.parametrize(
    ("name", "content"),
    [("scan.pdf", b"%PDF-1.7\nthe rest of this file was lost"), ("bundle.json", b"\x00\x01binary"), ("empty.txt", b"")],
)
def test_a_bad_file_gives_a_one_line_reason_and_fails(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    result = extract(path, data_dir=tmp_path)

    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{name}: ")


def test_an_encrypted_pdf_is_read_only_with_its_password(corpus: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked.pdf"
    writer = PdfWriter(clone_from=corpus / TKA_PDF)
    writer.encrypt(user_password="secret", algorithm="AES-256")
    writer.write(locked)

    refused = extract(locked, data_dir=tmp_path)
    opened = extract(locked, "--password", "secret", data_dir=tmp_path)

    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.strip() == "locked.pdf: the PDF is password-protected"
    assert opened.returncode == 0, opened.stderr
    assert "[Document: locked.pdf | page 2]" in opened.stdout


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path) -> None:
    # Longer than a pipe's buffer, so the writer is still writing when the reader has gone.
    note = tmp_path / "long.txt"
    note.write_text("".join(f"Day {day}: vitals stable, no complaints.\n" for day in range(20_000)))

    done = subprocess.run(
        f'"{CLINIDOC}" extract "{note}" | head -1', shell=True, capture_output=True, text=True, timeout=120
    )

    assert done.stdout == "[Document: long.txt | page 1]\n"
    assert done.stderr == ""
