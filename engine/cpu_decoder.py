"""A Llama-family forward pass of a few tokens in one C++ call, for int8/int4 weights on a CPU.

A decode step of SmolLM2-135M in eager PyTorch is some 600 small ops; each costs microseconds of Python and dispatch,
and together they took as long as reading every int4 weight of the model (docs/benchmarks.md, `--step`). The
compiled decoder (engine/kernels/decoder.cpp) runs the same pass — embedding, norms, fused projections through the
int8/int4 kernels, rotary, cache writes, attention, SwiGLU, the output head — as loops in one call.

It takes passes of up to NARROW_ROWS tokens in all (decode steps, drafts to verify, short batches) whose KV caches
hold fp32; longer prefills, and caches stored narrower, run in PyTorch. Each token is computed alone, so a draft
verifies to what one-token steps would decode and a batched row equals the row decoded alone.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from engine.kernels import cpu_kernels
from engine.kv_cache import KVCache
from engine.layers import RMSNorm
from engine.scratch import NARROW_ROWS
from engine.quantize import Int4Linear, Int8Linear


class CompiledDecoder:
    """The compiled pass over one loaded model's weights (it holds references to them, not copies)."""

    def __init__(self, model: nn.Module):
        kernels = cpu_kernels()
        cfg, body = model.config, model.model
        layers = [
            kernels.DecoderLayer(
                input_norm=layer.input_layernorm.weight,
                post_norm=layer.post_attention_layernorm.weight,
                q_norm=layer.self_attn.q_norm.weight if cfg.qk_norm else None,
                k_norm=layer.self_attn.k_norm.weight if cfg.qk_norm else None,
                **{name: _int_weight(kernels, projection) for name, projection in _projections(layer).items()},
            )
            for layer in body.layers
        ]
        self._decoder = kernels.Decoder(
            embedding=body.embed_tokens.weight, layers=layers, final_norm=body.norm.weight,
            head=_int_weight(kernels, model.lm_head), cos=model.rope.cos, signed_sin=model.rope.signed_sin,
            heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
            eps=cfg.rms_norm_eps,
        )

    @staticmethod
    def takes(tokens: torch.Tensor, caches: Sequence[KVCache]) -> bool:
        """Whether this pass is one for the compiled decoder: a few tokens, every cache in fp32 on the CPU."""
        return tokens.numel() <= NARROW_ROWS and all(
            cache.keys.dtype == torch.float32 and cache.keys.device.type == "cpu" for cache in caches
        )

    def __call__(
        self, tokens: torch.Tensor, caches: Sequence[KVCache], starts: Sequence[int], last_only: bool
    ) -> torch.Tensor:
        """fp32 logits [B, T, vocab] of tokens [B, T] (or [B, 1, vocab] with `last_only`), as the model's forward."""
        return self._decoder.forward(
            tokens, [cache.keys for cache in caches], [cache.values for cache in caches], [int(s) for s in starts],
            last_only,
        )


def compiled_decoder(model: nn.Module) -> CompiledDecoder | None:
    """The compiled pass for a loaded Llama-family model whose projections and head are all int8/int4 layers and
    whose embedding, norms and rotary tables are fp32 on the CPU; None for any other, or where the kernels cannot
    be built."""
    projections = [model.lm_head, *(p for layer in model.model.layers for p in _projections(layer).values())]
    integer = all(isinstance(p, (Int8Linear, Int4Linear)) for p in projections)
    norms = [m.weight for m in model.modules() if isinstance(m, RMSNorm)]
    full = [model.model.embed_tokens.weight, model.rope.cos, *norms]
    fp32_on_cpu = all(t.dtype == torch.float32 and t.device.type == "cpu" for t in full)
    if not (integer and fp32_on_cpu) or cpu_kernels() is None:
        return None
    return CompiledDecoder(model)


def _projections(layer: nn.Module) -> dict[str, nn.Module]:
    """A decoder layer's projections, by the names the compiled layer takes them under."""
    attention, mlp = layer.self_attn, layer.mlp
    return {"qkv": attention.qkv_proj, "o": attention.o_proj, "gate_up": mlp.gate_up_proj, "down": mlp.down_proj}


def _int_weight(kernels, layer: nn.Module):
    low = layer.weight_low if isinstance(layer, Int4Linear) else None
    bias = None if layer.bias is None else layer.bias.detach()
    return kernels.IntWeight(weight=layer.weight, scale=layer.weight_scale, low=low, bias=bias)
