"""`clinidoc ask` as a clinician runs it: the installed command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prompts import disclaimer
from storage import list_messages, list_sessions, open_database

CLINIDOC = Path(sys.executable).with_name("clinidoc")


def clinidoc(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLINIDOC_DATA_DIR": str(data_dir), "CLINIDOC_MAX_NEW_TOKENS": "32"}
    return subprocess.run([str(CLINIDOC), *args], env=env, capture_output=True, text=True, timeout=300)


def test_ask_prints_the_answer_then_the_disclaimer_and_one_stats_line(corpus: Path, tmp_path: Path) -> None:
    record = corpus / "mtsamples_allergic_rhinitis.txt"

    result = clinidoc("ask", str(record), "What is the assessment?", data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    *answer, blank, disclaimer_line, stats_line = result.stdout.rstrip("\n").split("\n")
    assert "".join(answer).strip() and blank == ""
    assert disclaimer_line == disclaimer()
    assert "tokens/s" in stats_line and "first token" in stats_line
    db = open_database(tmp_path / "clinidoc.sqlite3")
    (session,) = list_sessions(db)
    assert [message.role for message in list_messages(db, session.id)] == ["user", "assistant"]


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
    from engine.reference import random_glm4_moe, save_as_bailing

    model_dir = tmp_path / "bailing"
    model_dir.mkdir()
    reference = random_glm4_moe(
        local_engine.config.vocab_size, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=2048, n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1,
        n_shared_experts=1, routed_scaling_factor=2.5, first_k_dense_replace=1, eos_token_id=2,
    )
    save_as_bailing(reference, model_dir)
    local_engine.tokenizer.hf.save_pretrained(model_dir)

    result = clinidoc(
        "ask", str(corpus / "mtsamples_allergic_rhinitis.txt"), "What is the assessment?",
        "--model", str(model_dir), "--quantize", "fp8", "--context", "8192", data_dir=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    model_line = next(line for line in result.stderr.splitlines() if "BailingMoeV2ForCausalLM" in line)
    assert "FP8" in model_line and "context 8,192 tokens" in model_line
    assert disclaimer() in result.stdout
