"""RoPE and YaRN against transformers' own tables, and the rope-scaling config handling."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from transformers.modeling_rope_utils import _compute_yarn_parameters
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.stablelm.modeling_stablelm import StableLmRotaryEmbedding

from engine.config import with_yarn
from engine import models
from engine.layers import RotaryEmbedding
from engine.models.llama import gguf_config
from engine.rope import RopeScaling, rope_inv_freq
from engine.types import EngineError

LING = dict(theta=600000.0, head_dim=128, partial=0.5, yarn={"factor": 4.0, "original_max_position_embeddings": 32768})
YARN_CASES = {
    "ling": LING,
    "smollm2": dict(theta=100000.0, head_dim=64, partial=1.0,
                    yarn={"factor": 4.0, "original_max_position_embeddings": 8192}),
    "mscale": dict(theta=10000.0, head_dim=128, partial=1.0,
                   yarn={"factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 0.707}),
    "no_truncate": dict(LING, yarn={**LING["yarn"], "truncate": False, "beta_fast": 16, "beta_slow": 2}),
    "attention_factor": dict(LING, yarn={**LING["yarn"], "attention_factor": 0.9}),
}


def hf_config(theta: float, head_dim: int, partial: float, yarn: dict | None = None) -> transformers.LlamaConfig:
    params = {"rope_type": "yarn", **yarn} if yarn else {"rope_type": "default"}
    params |= {"rope_theta": theta, "partial_rotary_factor": partial}
    return transformers.LlamaConfig(
        hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim, max_position_embeddings=32768,
        rope_parameters=params,
    )


def engine_yarn(theta: float, head_dim: int, partial: float, yarn: dict) -> tuple[torch.Tensor, float]:
    return rope_inv_freq(int(head_dim * partial), theta, RopeScaling(**yarn))


@pytest.mark.parametrize("case", YARN_CASES)
def test_yarn_matches_transformers(case):
    expected_freq, expected_factor = _compute_yarn_parameters(hf_config(**YARN_CASES[case]))
    inv_freq, factor = engine_yarn(**YARN_CASES[case])
    assert inv_freq.dtype == torch.float32
    torch.testing.assert_close(inv_freq, expected_freq, rtol=1e-6, atol=0)
    assert factor == pytest.approx(expected_factor, abs=1e-6)


def test_yarn_ling_numbers_from_the_spec():
    inv_freq, factor = engine_yarn(**LING)
    plain, _ = rope_inv_freq(64, LING["theta"])
    assert inv_freq.shape == (32,)
    assert factor == pytest.approx(1.138629, abs=1e-6)
    # low = 12 and high = 21: dims up to 12 keep their frequency, dims from 21 on are divided by the factor.
    torch.testing.assert_close(inv_freq[:13], plain[:13], rtol=1e-6, atol=0)
    torch.testing.assert_close(inv_freq[21:], plain[21:] / 4, rtol=1e-6, atol=0)
    assert ((inv_freq[13:21] < plain[13:21]) & (inv_freq[13:21] > plain[13:21] / 4)).all()


def test_plain_rope_matches_transformers():
    inv_freq, factor = rope_inv_freq(64, 100000.0)
    expected, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(hf_config(100000.0, 64, 1.0))
    assert factor == 1.0
    assert torch.equal(inv_freq, expected)
    # Partial rotary: the frequencies are those of a 64-dim head, not of the 128-dim one.
    stablelm = transformers.StableLmConfig(
        hidden_size=512, num_attention_heads=4, rope_theta=600000.0, partial_rotary_factor=0.5
    )
    expected, _ = StableLmRotaryEmbedding.compute_default_rope_parameters(stablelm)
    assert torch.equal(rope_inv_freq(64, 600000.0)[0], expected)


def test_rotary_embedding_matches_transformers_with_yarn():
    cfg = hf_config(**YARN_CASES["smollm2"])
    positions = torch.tensor([0, 1, 7, 8191, 20000, 32767])
    q = torch.randn(1, 2, len(positions), 64)
    cos, sin = LlamaRotaryEmbedding(cfg)(q, positions[None])
    expected, _ = apply_rotary_pos_emb(q, q, cos, sin)
    rope = RotaryEmbedding(64, 100000.0, 32768, RopeScaling(**YARN_CASES["smollm2"]["yarn"]))
    torch.testing.assert_close(rope(q, positions[None]), expected, rtol=1e-5, atol=1e-5)


def test_rotary_embedding_scales_only_the_rotary_dims():
    scaling = RopeScaling(**LING["yarn"])
    rope = RotaryEmbedding(64, LING["theta"], 4096, scaling)
    x = torch.randn(2, 3, 5, 128)
    out = rope(x, torch.arange(100, 105)[None])
    assert torch.equal(out[..., 64:], x[..., 64:])
    # Rotation keeps each (i, i + 32) pair's length; only the attention factor changes it.
    pair_norm = lambda t: torch.hypot(t[..., :32], t[..., 32:64])  # noqa: E731
    torch.testing.assert_close(pair_norm(out), scaling.attention_scale() * pair_norm(x))


def test_position_zero_without_scaling_is_identity():
    x = torch.randn(1, 2, 1, 128)
    assert torch.equal(RotaryEmbedding(64, 600000.0, 16)(x, torch.tensor([0])), x)


SMOLLM2 = {
    "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
}


def test_hf_config_reads_rope_scaling():
    cfg = models.hf_config(SMOLLM2 | {"rope_scaling": {"type": "yarn", "factor": 4.0, "beta_fast": None}})
    assert cfg.rope_scaling == RopeScaling(factor=4.0, original_max_position_embeddings=8192)
    assert cfg.rope_theta == 100000.0
    assert cfg.context_window == 32768


def test_hf_config_reads_transformers_5_rope_parameters():
    # transformers 5 writes the theta inside rope_parameters and nothing at the top level.
    params = {"rope_type": "yarn", "rope_theta": 600000.0, "factor": 4.0, "original_max_position_embeddings": 32768}
    raw = {k: v for k, v in SMOLLM2.items() if k != "rope_theta"} | {"max_position_embeddings": 32768}
    cfg = models.hf_config(raw | {"rope_parameters": params})
    assert cfg.rope_theta == 600000.0
    assert cfg.rope_scaling.factor == 4.0 and cfg.rope_scaling.original_max_position_embeddings == 32768
    assert cfg.context_window == 131072
    plain = models.hf_config(raw | {"rope_parameters": {"rope_type": "default", "rope_theta": 600000.0}})
    assert plain.rope_scaling is None and plain.rope_theta == 600000.0 and plain.context_window == 32768


def test_context_window_when_max_positions_already_states_the_extension():
    # Qwen-style: max_position_embeddings is the extended length, the factor only restates it.
    raw = SMOLLM2 | {"max_position_embeddings": 131072}
    cfg = models.hf_config(raw | {"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                 "original_max_position_embeddings": 32768}})
    assert cfg.context_window == 131072


def test_unsupported_rope_scaling_is_refused():
    with pytest.raises(EngineError, match="'longrope' rope scaling"):
        models.hf_config(SMOLLM2 | {"rope_scaling": {"rope_type": "longrope", "short_factor": [1.0]}})
    with pytest.raises(EngineError, match="YaRN rope scaling settings are invalid"):
        models.hf_config(SMOLLM2 | {"rope_scaling": {"rope_type": "yarn"}})  # no factor
    gguf = {"general.architecture": "llama", "llama.embedding_length": 576, "llama.attention.head_count": 9}
    with pytest.raises(EngineError, match="'linear' rope scaling"):
        gguf_config(gguf | {"llama.rope.scaling.type": "linear"}, {"token_embd.weight": (576, 49152)})


def test_with_yarn_extends_only_when_needed():
    cfg = models.hf_config(SMOLLM2 | {"max_position_embeddings": 32768})
    assert with_yarn(cfg, 32768) is cfg
    scaled = with_yarn(cfg, 131072)
    assert scaled.rope_scaling == RopeScaling(factor=4.0, original_max_position_embeddings=32768)
    assert scaled.context_window == 131072
    assert cfg.rope_scaling is None  # the original config is untouched
    odd = with_yarn(models.hf_config(SMOLLM2 | {"max_position_embeddings": 32000}), 32001)
    assert odd.context_window == 32001  # float error in the factor must not cost a position
    with pytest.raises(EngineError, match="already uses YaRN"):
        with_yarn(scaled, 262144)
    assert math.isclose(with_yarn(cfg, 100000).rope_scaling.factor, 100000 / 32768)
