"""A decoder's forward pass of a few tokens in one C++ call, for int8/int4 weights on a CPU: the Llama family, and
BailingMoeV2 with its routed experts.

A decode step of SmolLM2-135M in eager PyTorch is some 600 small ops; each costs microseconds of Python and dispatch,
and together they took as long as reading every int4 weight of the model (docs/benchmarks.md, `--step`). A MoE layer
adds routing, sorting tokens by expert and a grouped matmul. The compiled decoder (engine/kernels/decoder.cpp) runs
the same pass — embedding, norms, fused projections through the int8/int4 kernels, QK-norm, (partial) rotary, cache
writes, attention, SwiGLU or the router and the chosen experts beside the shared one, the output head — as loops in
one call, reading only the chosen experts' weights.

It takes passes of up to NARROW_ROWS tokens in all (decode steps, drafts to verify, short batches) whose KV caches
hold fp32; longer prefills, and caches stored narrower, run in PyTorch. Each token is computed alone, so a draft
verifies to what one-token steps would decode and a batched row equals the row decoded alone.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from engine.kernels import cpu_kernels
from engine.kv_cache import KVCache
from engine.layers import GatedMLP, RMSNorm
from engine.moe import MoEBlock
from engine.quantize import INT4_GROUP, Int4Linear, Int8Linear
from engine.scratch import NARROW_ROWS


class LayerWeights(NamedTuple):
    """One decoder layer's parts, by what they do; each architecture names its own (engine/models)."""

    input_norm: RMSNorm
    post_norm: RMSNorm
    q_norm: RMSNorm | None  # None without QK-norm
    k_norm: RMSNorm | None
    qkv: nn.Module  # q, k and v fused
    o: nn.Module
    mlp: GatedMLP | MoEBlock


class CompiledDecoder:
    """The compiled pass over one loaded model's weights (it holds references to them, not copies)."""

    def __init__(self, model: nn.Module, embedding: nn.Embedding, layers: Sequence[LayerWeights], final_norm: RMSNorm):
        kernels = cpu_kernels()
        cfg = model.config
        compiled = []
        for layer in layers:
            dense = layer.mlp.shared_experts if isinstance(layer.mlp, MoEBlock) else layer.mlp
            compiled.append(kernels.DecoderLayer(
                input_norm=layer.input_norm.weight, post_norm=layer.post_norm.weight,
                q_norm=None if layer.q_norm is None else layer.q_norm.weight,
                k_norm=None if layer.k_norm is None else layer.k_norm.weight,
                qkv=_int_weight(kernels, layer.qkv), o=_int_weight(kernels, layer.o),
                gate_up=_int_weight(kernels, dense.gate_up_proj), down=_int_weight(kernels, dense.down_proj),
                experts=_routed_experts(kernels, layer.mlp) if isinstance(layer.mlp, MoEBlock) else None,
            ))
        self._decoder = kernels.Decoder(
            embedding=embedding.weight, layers=compiled, final_norm=final_norm.weight,
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


def compiled_decoder(
    model: nn.Module, embedding: nn.Embedding, layers: Sequence[LayerWeights], final_norm: RMSNorm
) -> CompiledDecoder | None:
    """The compiled pass for a loaded model whose projections, experts and head are all int8/int4 over whole blocks
    of 32 inputs, and whose embedding, norms, router and rotary tables are fp32 on the CPU; None for any other, or
    where the kernels cannot be built."""
    projections = [model.lm_head]
    full = [embedding.weight, final_norm.weight, model.rope.cos]
    for layer in layers:
        dense = layer.mlp.shared_experts if isinstance(layer.mlp, MoEBlock) else layer.mlp
        projections += [layer.qkv, layer.o, dense.gate_up_proj, dense.down_proj]
        full += [norm.weight for norm in (layer.input_norm, layer.post_norm, layer.q_norm, layer.k_norm) if norm]
        if isinstance(layer.mlp, MoEBlock):
            if layer.mlp.experts.integer is None:
                return None
            full += [layer.mlp.gate.weight, layer.mlp.gate.expert_bias]
    integer = all(isinstance(p, (Int8Linear, Int4Linear)) and p.in_features % INT4_GROUP == 0 for p in projections)
    fp32_on_cpu = all(t.dtype == torch.float32 and t.device.type == "cpu" for t in full)
    if not (integer and fp32_on_cpu) or cpu_kernels() is None:
        return None
    return CompiledDecoder(model, embedding, layers, final_norm)


def _int_weight(kernels, layer: nn.Module):
    low = layer.weight_low if isinstance(layer, Int4Linear) else None
    bias = None if layer.bias is None else layer.bias.detach()
    return kernels.IntWeight(weight=layer.weight, scale=layer.weight_scale, low=low, bias=bias)


def _routed_experts(kernels, block: MoEBlock):
    """The router and each expert's projections as slices of the stacked integer tensors (views, not copies)."""
    experts, cfg = block.experts, block.gate.cfg

    def per_expert(name: str) -> list:
        q, scale, low = experts.integer_parts(name)
        return [
            kernels.IntWeight(weight=q[e], scale=scale[e], low=None if low is None else low[e], bias=None)
            for e in range(experts.num_experts)
        ]

    return kernels.RoutedExperts(
        router=block.gate.weight.detach(), bias=block.gate.expert_bias.detach(), gate=per_expert("gate_proj"),
        up=per_expert("up_proj"), down=per_expert("down_proj"), top_k=cfg.experts_per_token, groups=cfg.n_group,
        top_groups=cfg.topk_group, normalize=cfg.norm_topk_prob, scaling=cfg.routed_scaling_factor,
    )
