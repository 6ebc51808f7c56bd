"""Building blocks shared by the architectures: norms, rotary embeddings, cached attention, MLPs."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.fp8 import Fp8Linear, Fp8Parts
from engine.kv_cache import READ_BLOCK, KVCache
from engine.quantize import Int4Linear, Int8Linear, WeightFormat, int_mode
from engine.rope import RopeScaling, rope_inv_freq
from engine.scratch import NARROW_ROWS, SCRATCH


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            # The reference's ops in one call, bit for bit: a decode step runs 61 norms, each a handful of tiny ops.
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        # Statistics in fp32, then rounded back before the weight, as the reference implementations do.
        return self.weight * F.rms_norm(x.float(), self.weight.shape, eps=self.eps).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """NeoX-style (rotate-half) RoPE on the first `rotary_dim` dims of each head; the rest pass through.

    With YaRN, cos and sin carry the attention factor, so only the rotary dims of q and k are scaled (as HF and vLLM do).
    """

    def __init__(self, rotary_dim: int, theta: float, max_positions: int, scaling: RopeScaling | None = None):
        super().__init__()
        self.rotary_dim = rotary_dim
        inv_freq, attention_factor = rope_inv_freq(rotary_dim, theta, scaling)
        # One vectorised fp32 table: 131072 positions x 64 dims is 32 MB each for cos and sin.
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos() * attention_factor, persistent=False)
        # rotate_half(x) · sin is swapped(x) · signed_sin: with the sign in the table, a rotation is whole-head ops.
        signed_sin = angles.sin() * attention_factor
        signed_sin[:, : rotary_dim // 2].neg_()
        self.register_buffer("signed_sin", signed_sin, persistent=False)

    def at(self, positions: torch.Tensor, dtype: torch.dtype, head_dim: int) -> Rotation:
        """The rotation at one forward pass's positions ([B, T]), looked up once for all its layers."""
        cos, sin = self.cos[positions], self.signed_sin[positions]
        if head_dim > self.rotary_dim:  # the dims past the rotary ones pass through: cos 1, sin 0
            cos = F.pad(cos, (0, head_dim - self.rotary_dim), value=1.0)
            sin = F.pad(sin, (0, head_dim - self.rotary_dim))
        swap = torch.arange(head_dim, device=positions.device)
        swap[: self.rotary_dim] = swap[: self.rotary_dim].roll(self.rotary_dim // 2)
        return Rotation(cos.unsqueeze(-2).to(dtype), sin.unsqueeze(-2).to(dtype), swap)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: [B, heads, T, head_dim]; positions: [B, T]."""
        return self.at(positions, x.dtype, x.shape[-1])(x.transpose(1, 2)).transpose(1, 2)


class Rotation:
    """RoPE at fixed positions: x · cos + swapped(x) · signed_sin, with cos and signed_sin [B, T, 1, head_dim] and
    `swap` [head_dim] the permutation that exchanges the halves of the rotary dims. The products and the sum are
    those of the reference's rotate-half form, so the result is the same to the bit."""

    def __init__(self, cos: torch.Tensor, signed_sin: torch.Tensor, swap: torch.Tensor):
        self.cos, self.signed_sin, self.swap = cos, signed_sin, swap

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, heads, head_dim]."""
        return x * self.cos + x.index_select(-1, self.swap) * self.signed_sin


class Step:
    """Where the tokens of one forward pass belong: row b continues the sequence whose KV is in caches[b], from
    position starts[b]. Rows may sit at different positions (continuous batching decodes several requests at once)."""

    def __init__(self, caches: Sequence[KVCache], starts: Sequence[int], length: int, device: torch.device):
        self.caches = caches
        self.starts = [int(s) for s in starts]  # Python ints: reading positions back from a GPU would sync
        self.positions = torch.tensor(self.starts, device=device)[:, None] + torch.arange(length, device=device)


def run_layers(
    layers: Sequence[nn.Module], x: torch.Tensor, rotate: Rotation, step: Step, capture: Sequence[int] = ()
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x [B, T, H] through the decoder layers in order, layer i writing KV slot i; also the residual stream entering
    each layer whose index is in `capture`, in layer order (an EAGLE3 head reads three of them, engine/eagle3.py)."""
    captured = []
    for i, layer in enumerate(layers):
        if i in capture:
            captured.append(x)
        x = layer(x, rotate, step, i)
    return x, captured


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, step: Step, layer: int) -> torch.Tensor:
    """Causal attention of each row over its own cache; shapes as in `cached_attention`.

    Rows attend one at a time: each reads only its own length, with no padding or mask, and at decode the loop
    costs little next to the batched projections, which read every weight once for all rows."""
    if len(step.caches) == 1:
        return cached_attention(q, k, v, step.caches[0], layer, step.starts[0])
    return torch.cat([
        cached_attention(q[b : b + 1], k[b : b + 1], v[b : b + 1], cache, layer, start)
        for b, (cache, start) in enumerate(zip(step.caches, step.starts))
    ])


def cached_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, layer: int, start: int
) -> torch.Tensor:
    """Write this step's k, v at positions [start, start+T) and attend causally over the cache.

    q: [B, Hq, T, D]; k, v: [B, Hkv, T, D]. Returns [B, T, Hq*D].
    """
    T = q.shape[2]
    cache.write(layer, start, k, v)
    on_cpu = q.device.type == "cpu"
    if start == 0 or (T == 1 and not (on_cpu and cache.narrow)):
        # One new token sees everything before it; a first chunk is a plain causal square. Neither needs a mask.
        keys, values = cache.read(layer, 0, start + T)
        out = F.scaled_dot_product_attention(q, keys, values, is_causal=T > 1, enable_gqa=True)
    elif on_cpu:
        out = _attend_after_prefix(q, cache, layer, start)
    else:
        keys, values = cache.read(layer, 0, start + T)
        query_pos = torch.arange(start, start + T, device=q.device)[:, None]
        mask = torch.arange(start + T, device=q.device)[None, :] <= query_pos
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
    return out.transpose(1, 2).reshape(q.shape[0], T, -1)


def _attend_after_prefix(q: torch.Tensor, cache: KVCache, layer: int, start: int) -> torch.Tensor:
    """Queries after `start` cached positions, without a [T, start+T] mask: SDPA turns any mask into a float tensor
    that grows with the context (325 MB for 512 queries over 131K keys). The queries attend to the prefix (all
    visible) and to themselves (causal) separately, and the softmaxes merge by their log-sum-exp. Narrow KV is read
    a block of the prefix at a time, so no copy of it grows with the context either."""
    B, H, T, D = q.shape
    group = H // cache.keys.shape[2]
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    # Queries that share a KV head are stacked along the sequence, so the long prefix is never repeated per head.
    stacked = q.reshape(B, -1, group * T, D)
    block = READ_BLOCK if cache.narrow else start  # KV held in the compute dtype is read in place, whole
    out = lse = None
    for first in range(0, start, block):
        keys, values = cache.read(layer, first, min(start, first + block))
        block_out, block_lse = flash(stacked, keys, values, 0.0, False)
        out, lse = _merged(out, lse, block_out.reshape(B, H, T, D), block_lse.reshape(B, H, T, 1))
    keys, values = cache.read(layer, start, start + T)
    own_out, own_lse = flash(q, keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1), 0.0, True)
    out, _ = _merged(out, lse, own_out, own_lse.reshape(B, H, T, 1))
    return out.to(q.dtype)


def _merged(
    out: torch.Tensor | None, lse: torch.Tensor | None, part_out: torch.Tensor, part_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over two disjoint sets of keys, from each set's outputs and log-sum-exps, as over their union."""
    if out is None:
        return part_out, part_lse
    total = torch.logaddexp(lse, part_lse)
    return out * torch.exp(lse - total) + part_out * torch.exp(part_lse - total), total


class Linear(nn.Linear):
    """nn.Linear whose weight may be stored narrower than the activations (bf16 weights, fp32 activations)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if w.dtype == x.dtype:
            return F.linear(x, w, self.bias)
        if x.shape[:-1].numel() <= NARROW_ROWS:
            return F.linear(x.to(w.dtype), w, self.bias).to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, SCRATCH.converted("linear", w, x.dtype), bias)


def linear(in_features: int, out_features: int, bias: bool = False, weights: WeightFormat = "full") -> nn.Module:
    """A projection whose weight is held as `weights` says: as loaded, in block FP8, or in int8/int4 (int8 where the
    inputs are not whole groups of 32)."""
    if weights == "fp8":
        return Fp8Linear(in_features, out_features, bias=bias)
    if weights in ("int8", "int4"):
        layer = Int4Linear if int_mode(weights, in_features) == "int4" else Int8Linear
        return layer(in_features, out_features, bias=bias)
    return Linear(in_features, out_features, bias=bias)


def output_weights(weights: WeightFormat) -> WeightFormat:
    """How the output head is held. FP8 checkpoints keep it in full precision. An int4 model holds it in int8:
    logits are what the sampler reads, and a 4-bit head put SmolLM2's logits 5-8% off fp32 where an 8-bit one
    leaves 1-2.5% (the projections themselves requantize its Q4_1 blocks)."""
    return {"fp8": "full", "int4": "int8"}.get(weights, weights)


def fused_linear(in_features: int, parts: Sequence[int], bias: bool = False, weights: WeightFormat = "full") -> nn.Module:
    """One projection standing for several of the checkpoint's on the same input (q, k and v; gate and up), their
    outputs side by side: a decode step on a CPU pays per matmul, not only per byte of weights. A module that holds
    one declares which checkpoint projections it joins in a `fused` mapping, which `engine.weights` loads by.

    Block FP8 keeps the parts apart: a part that is not a whole number of 128-row blocks (SmolLM2's q, 576 rows)
    would share blocks with the next, and a checkpoint's own FP8 scales could not be reused."""
    if weights == "fp8":
        return Fp8Parts(in_features, parts, bias)
    return linear(in_features, sum(parts), bias, weights)


class GatedMLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)), gate and up in one matmul."""

    fused = {"gate_up_proj": ("gate_proj", "up_proj")}

    def __init__(self, hidden: int, intermediate: int, weights: WeightFormat = "full"):
        super().__init__()
        self.gate_up_proj = fused_linear(hidden, (intermediate, intermediate), weights=weights)
        self.down_proj = linear(intermediate, hidden, weights=weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


def rotary_for(cfg) -> RotaryEmbedding:
    """The rotary tables a model config asks for, covering its whole context window."""
    return RotaryEmbedding(cfg.rotary_dim, cfg.rope_theta, cfg.context_window, cfg.rope_scaling)
