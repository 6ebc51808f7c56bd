"""bench/gpu_check.py: without a GPU it is a no-op that says so; its whole path runs here on a tiny shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.gpu_check import PARITY_BOUND, SMALL, full_shape, main, write_checkpoint
from engine import LocalEngine
from engine.fp8 import FP8


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the check runs in full")
def test_without_a_gpu_it_says_so_and_succeeds(capsys, tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "gpu-check: not run: it needs a CUDA GPU, and torch finds none here."
    assert not any(tmp_path.iterdir())


def test_the_whole_check_runs_on_a_tiny_shape_on_the_cpu(capsys, tmp_path: Path) -> None:
    assert main(["--device", "cpu", "--small", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "gpu-check.json").read_text())
    runs = figures["runs"]
    assert [(run["prompt_tokens"], run["draft_tokens"]) for run in runs] == [(384, 0), (384, 3), (32, 0), (32, 3)]
    for run in runs:
        assert run["decode_tok_s"] > 0 and run["prefill_tok_s"] > 0 and run["step_bytes"] > 0
        assert (run["drafted"] > 0) == (run["draft_tokens"] > 0)
    assert figures["memory"]["rope_scaling"]["factor"] == 4  # YaRN stretched the window to the context asked
    # bf16 against fp32 on the same FP8 weights, FP8 keys and values: rounding, and the odd expert chosen otherwise.
    for parity in figures["parity"].values():
        assert parity["relative_error"] < PARITY_BOUND / 2 and parity["top1_agreement"] >= 0.5
    costs = figures["step_ms"]
    assert costs["plain"] > 0 and costs["verify"] > 0 and costs["draft"] > 0
    full = figures["antangelmed"]
    assert full["step_bytes"] > runs[2]["step_bytes"] and 0 < full["implied_tok_s"] < full["roofline_tok_s"]
    assert figures["bandwidth"] > 0 and figures["seconds"]["total"] > 0
    tables = capsys.readouterr().out
    assert "| prompt tokens | drafts per step |" in tables and "> 200 tokens/s" in tables
    assert (tmp_path / "gpu-check.md").read_text().strip() == tables.strip()


def test_the_checkpoint_is_in_lings_fp8_format_and_loads_as_written(tmp_path: Path) -> None:
    """The names and formats of engine-spec.md §3, §6 and §7; the full shape differs only in sizes."""
    from safetensors import safe_open

    write_checkpoint(tmp_path, SMALL.config, torch.device("cpu"))
    tensors = {}
    for shard in sorted(tmp_path.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as f:
            tensors.update({name: f.get_tensor(name) for name in f.keys()})
    config = SMALL.config
    layers, experts = config["num_hidden_layers"], config["num_experts"]
    moe_layers = layers - config["first_k_dense_replace"] + 1  # the MTP layer has experts too
    assert tensors["model.layers.0.mlp.gate_proj.weight"].dtype == FP8
    assert tensors["model.layers.1.mlp.experts.15.down_proj.weight_scale_inv"].shape == (2, 1)
    assert tensors["model.layers.1.mlp.gate.expert_bias"].dtype == torch.float32
    assert tensors[f"model.layers.{layers}.eh_proj.weight"].dtype == torch.bfloat16
    # Each expert's gate, up and down projections, each with its block scales.
    assert sum(".mlp.experts." in name for name in tensors) == moe_layers * experts * 3 * 2
    engine = LocalEngine(tmp_path)
    assert engine.config.fp8 and engine.config.mtp_layers == 1 and len(engine.tokenizer.hf) == config["vocab_size"]


def test_the_full_shape_is_antangelmeds_at_reduced_depth() -> None:
    config = full_shape(moe_layers=2).config
    assert (config["hidden_size"], config["num_experts"], config["num_experts_per_tok"]) == (4096, 256, 8)
    assert (config["num_hidden_layers"], config["vocab_size"], config["partial_rotary_factor"]) == (3, 157184, 0.5)
