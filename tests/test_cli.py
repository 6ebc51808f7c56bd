"""`clinidoc ask` as a clinician runs it: the installed command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prompts import disclaimer
from storage import list_messages, list_sessions, open_database
from conftest import CLINICIAN, tiny_bailing_checkpoint

CLINIDOC = Path(sys.executable).with_name("clinidoc")


def clinidoc(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLINIDOC_DATA_DIR": str(data_dir), "CLINIDOC_MAX_NEW_TOKENS": "32"}
    return subprocess.run([str(CLINIDOC), *args], env=env, capture_output=True, text=True, timeout=300)


def test_ask_prints_the_evidence_the_labelled_answer_the_disclaimer_and_one_stats_line(
    corpus: Path, tmp_path: Path
) -> None:
    record = corpus / "mtsamples_allergic_rhinitis.txt"

    result = clinidoc("ask", str(record), "What is the assessment?", data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    blocks = result.stdout.rstrip("\n").split("\n\n")
    evidence, answer, tally, *_, disclaimer_block, stats_line = blocks[0], blocks[1], blocks[2], *blocks[3:]
    assert evidence.startswith(f"**From the record ({record.name}):**\n> “") and "ASSESSMENT: Allergic rhinitis." in evidence
    assert answer.strip()
    assert tally.startswith("Clinidoc: Each sentence checked against the record: ")
    disclaimer_line, stats_line = stats_line.split("\n") if "\n" in stats_line else (disclaimer_block, stats_line)
    assert disclaimer_line == f"*{disclaimer()}*"
    assert "tokens/s" in stats_line and "first token" in stats_line
    db = open_database(tmp_path / "clinidoc.sqlite3")
    (session,) = list_sessions(db, CLINICIAN.name)
    assert [message.role for message in list_messages(db, CLINICIAN.name, session.id)] == ["user", "assistant"]


@pytest.mark.parametrize("content", [b"%PDF-1.7\nthe rest of this file was lost", None], ids=["damaged", "missing"])
def test_ask_on_a_bad_file_gives_a_one_line_reason_and_fails(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "scan.pdf"
    if content is not None:
        path.write_bytes(content)

    result = clinidoc("ask", str(path), "What is the assessment?", data_dir=tmp_path)

    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("scan.pdf: ")


def test_ask_runs_a_bailing_moe_checkpoint_in_fp8_with_yarn(corpus: Path, tmp_path: Path, local_engine) -> None:
    """`--model DIR --quantize fp8 --context N` on a (tiny, random) BailingMoeV2 checkpoint: the model line names
    the architecture, the precision and the stretched context window."""
    model_dir = tiny_bailing_checkpoint(tmp_path / "bailing", local_engine)

    result = clinidoc(
        "ask", str(corpus / "mtsamples_allergic_rhinitis.txt"), "What is the assessment?",
        "--model", str(model_dir), "--quantize", "fp8", "--context", "8192", data_dir=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    model_line = next(line for line in result.stderr.splitlines() if "BailingMoeV2ForCausalLM" in line)
    assert "FP8" in model_line and "context 8,192 tokens" in model_line
    assert disclaimer() in result.stdout


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_check_labels_each_line_of_a_text_against_the_record(corpus: Path, tmp_path: Path) -> None:
    claims = tmp_path / "draft.txt"
    claims.write_text(
        "She has no known drug allergies.\n\nShe is allergic to penicillin.\nHer hemoglobin was 12.1 g/dL.\n"
        "She takes warfarin 5 mg daily.\n",
        encoding="utf-8",
    )
    record = corpus / "mtsamples_tka_discharge_summary.pdf"

    result = clinidoc("check", str(record), "--claims", str(claims), "--json", data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    checked = report["claims"]
    assert [item["label"] for item in checked] == ["supported", "contradicted", "supported", "not_found"]
    assert set(checked[0]) == {"text", "label", "citations", "note"}
    citation = checked[1]["citations"][0]
    assert set(citation) == {"document", "page", "start", "end", "quote"} and "NKDA" in citation["quote"]
    # What the draft leaves out: the record's medications, problems and results it never names, most weighty first.
    omitted = report["omissions"]
    assert omitted and all(set(item) == {"fact", "category", "citation"} for item in omitted)
    assert omitted[0]["category"] == "active medication" and "Celebrex" in " ".join(item["fact"] for item in omitted)
    assert not any("hemoglobin" in item["fact"].casefold() for item in omitted)
    text = clinidoc("check", str(record), "--claims", str(claims), data_dir=tmp_path).stdout
    assert text.startswith("SUPPORTED: She has no known drug allergies.")
    assert "4 statements: 2 supported, 1 contradicted, 1 not found in the record." in text
    assert f"{len(omitted)} facts of the record the text does not mention, most weighty first:" in text


def test_check_refuses_an_unreadable_claims_file_or_record_with_a_reason(corpus: Path, tmp_path: Path) -> None:
    binary = tmp_path / "claims.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    record = corpus / "mtsamples_tka_discharge_summary.pdf"
    result = clinidoc("check", str(record), "--claims", str(binary), data_dir=tmp_path)
    assert result.returncode == 2 and "cannot be read as UTF-8 text" in result.stderr
    missing = clinidoc("check", str(tmp_path / "none.pdf"), "--claims", str(binary), data_dir=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("none.pdf: ")


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_the_administrators_commands_manage_accounts_and_serve_refuses_without_one(tmp_path: Path) -> None:
    refused = clinidoc("serve", "--port", "1", data_dir=tmp_path)
    assert refused.returncode == 2 and "clinidoc users add" in refused.stderr
    added = subprocess.run([str(CLINIDOC), "users", "add", "dr.jones", "--password-stdin"], input="short\n",
                           env={**os.environ, "CLINIDOC_DATA_DIR": str(tmp_path)}, capture_output=True, text=True)
    assert added.returncode == 1 and "at least 12 characters" in added.stderr
    added = subprocess.run([str(CLINIDOC), "users", "add", "dr.jones", "--password-stdin"],
                           input="a long enough passphrase\n", env={**os.environ, "CLINIDOC_DATA_DIR": str(tmp_path)},
                           capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    assert clinidoc("users", "disable", "dr.jones", data_dir=tmp_path).returncode == 0
    listed = clinidoc("users", "list", data_dir=tmp_path)
    assert listed.stdout.split() == ["dr.jones", "clinician", "local", "disabled"]
    verified = clinidoc("audit", "verify", data_dir=tmp_path)
    assert verified.returncode == 0 and "2 events" in verified.stdout
    exported = clinidoc("audit", "export", "--csv", "-", "--action", "account_disable", data_dir=tmp_path)
    assert exported.stdout.splitlines()[1].split(",")[3] == "account_disable"


def test_an_encrypted_database_is_refused_without_its_key_with_what_to_set(tmp_path: Path) -> None:
    open_database(tmp_path / "clinidoc.sqlite3", key="the key").close()
    refused = clinidoc("users", "list", data_dir=tmp_path)
    assert refused.returncode == 1 and "is encrypted" in refused.stderr and "CLINIDOC_DB_KEY" in refused.stderr
