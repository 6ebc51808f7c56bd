"""Weight-only int8 and int4 linears for CPU decoding (`--quantize int8`, `--quantize int4`), gpt-fast style.

A decode step multiplies a few rows of activations by every weight of the model, so on a CPU it costs the bytes
of the weights: 540 MB per token for SmolLM2-135M in fp32. "int8" holds each projection as int8 with an fp16 scale
per block of 32 inputs, GGUF's Q8_0 (about a quarter of fp32's bytes); "int4" packs two 4-bit values per byte with
an fp16 scale and low value per block of 32 inputs: W ≈ q · scale + low, GGUF's Q4_1. Checkpoints of Q8_0, Q4_1
and Q4_0 blocks (levels around zero, `_zero_centred_grid`) requantize to their own values.

Up to NARROW_ROWS rows (decode steps, draft verification, small batches) multiply in our own AVX2 kernels
(engine/kernels/int_matmul.cpp), which quantize each activation row to int8 per block of 32, as llama.cpp does, and
take the dot products on 8-bit integers, eight weight rows at a time: the buffers hold their rows interleaved in
groups of eight (`interleave_rows`) so that one load brings four inputs of each. Each output row depends only on
its own input row, so a row comes out the same whatever the number of rows beside it. Longer prefills, and every
matmul where the kernels cannot be built, dequantize the weight into a reusable fp32 buffer and run an fp32 GEMM (bound by arithmetic there, not by bytes).

A model whose config says `integer` builds its projections (`engine.layers.linear`) as these layers and its routed
experts (engine/moe.py) in the same formats; `engine.weights.load_weights` fills them, quantizing each
full-precision weight as it arrives (`quantized`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.kernels import cpu_kernels
from engine.scratch import NARROW_ROWS, SCRATCH

IntMode = Literal["int8", "int4"]
# Groups looked at first for a 4-bit grid (`_zero_centred_grid`): a weight none of them is on is not searched further.
GRID_SAMPLE = 64
# How a model holds its projection and expert weights: as loaded (full or half precision), in block FP8
# (engine/fp8.py), or in int8/int4.
WeightFormat = Literal["full", "fp8", "int8", "int4"]
INT4_GROUP = 32
# Weight rows the kernels multiply at once, interleaved in memory (`interleave_rows`).
GROUP_ROWS = 8


def int_mode(mode: IntMode, *in_features: int) -> IntMode:
    """`mode`, or int8 where some weight's inputs are not whole groups of 32, which int4 needs."""
    return "int4" if mode == "int4" and all(n % INT4_GROUP == 0 for n in in_features) else "int8"


def register_integer(module: nn.Module, name: str, shape: tuple[int, ...], mode: IntMode, device=None) -> None:
    """Empty buffers on `module` for a weight of `shape` ([..., out, in]) held in `mode`: `name` and `name_scale`,
    and `name_low` for int4. Buffers, not Parameters: they are never trained, and buffers still travel with .to()."""
    *lead, rows, cols = shape
    if mode == "int4":
        blocks = (*lead, rows, cols // INT4_GROUP)
        module.register_buffer(name, torch.empty(*lead, rows, cols // 2, dtype=torch.uint8, device=device))
        module.register_buffer(name + "_scale", torch.empty(blocks, dtype=torch.float16, device=device))
        module.register_buffer(name + "_low", torch.empty(blocks, dtype=torch.float16, device=device))
    else:
        blocks = (*lead, rows, cols // int8_group(cols))
        module.register_buffer(name, torch.empty(shape, dtype=torch.int8, device=device))
        module.register_buffer(name + "_scale", torch.empty(blocks, dtype=torch.float16, device=device))


def quantized(weight: torch.Tensor, mode: IntMode) -> dict[str, torch.Tensor]:
    """A full-precision weight [..., out, in] as the buffers `register_integer` makes, by the suffix each adds to the
    weight's name, in the order the kernels read them (`interleave_rows`)."""
    if mode == "int4":
        q, scale, low = quantize_int4(weight)
        parts = {"": pack_int4(q), "_scale": scale, "_low": low}
    else:
        q, scale = quantize_int8(weight)
        parts = {"": q, "_scale": scale}
    return {suffix: interleave_rows(t, scale.shape[-1], weight.shape[-1]) for suffix, t in parts.items()}


def kernel_matmul(
    kernels, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, low: torch.Tensor | None
) -> torch.Tensor:
    """x [rows, in] fp32 times the integer weight's transpose, in the compiled kernels (int4 when `low` is given)."""
    if low is None:
        return kernels.int8_matmul(x, q, scale)
    return kernels.int4_matmul(x, q, scale, low)


def dequantized(
    q: torch.Tensor, scale: torch.Tensor, low: torch.Tensor | None, dtype: torch.dtype, site: str
) -> torch.Tensor:
    """The weight the kernels multiply by, in `dtype`, in the reusable buffer of `site` (int4 when `low` is given),
    from the buffers as `quantized` stores them."""
    blocks, cols = scale.shape[-1], q.shape[-1] * (1 if low is None else 2)
    q, scale = deinterleave_rows(q, blocks, cols), deinterleave_rows(scale, blocks, cols)
    if low is None:
        return _scale_blocks_(SCRATCH.converted(site, q, dtype), scale)
    low = deinterleave_rows(low, blocks, cols)
    return _scale_groups_(SCRATCH.converted(site, unpack_int4(q), dtype), scale, low)


def interleave_rows(t: torch.Tensor, blocks: int, cols: int) -> torch.Tensor:
    """A weight's values, scales or lows [..., out, blocks · width] (`width` bytes or values per row and block) as the
    kernels read them (engine/kernels/int_matmul.cpp): rows in groups of GROUP_ROWS, and within a group, block by
    block, four bytes of the first row, four of the next, and so on (one value each for scales and lows), so that
    one 32-byte load holds four inputs of every row of the group. A last group of fewer rows is laid out the same
    with the rows it has. Only weights of whole blocks of 32 inputs (`cols`), which the kernels read, are
    interleaved; the shape is kept."""
    return _regroup(t, blocks, cols, stored=False)


def deinterleave_rows(t: torch.Tensor, blocks: int, cols: int) -> torch.Tensor:
    """The inverse of `interleave_rows`: one row after another."""
    return _regroup(t, blocks, cols, stored=True)


def _regroup(t: torch.Tensor, blocks: int, cols: int, stored: bool) -> torch.Tensor:
    if cols % INT4_GROUP:
        return t
    *lead, rows, width = t.shape
    chunk = 4 if width // blocks % 4 == 0 else 1
    parts = []
    whole = rows - rows % GROUP_ROWS
    for first, count in ((0, whole), (whole, rows % GROUP_ROWS)):
        if count == 0:
            continue
        size = min(GROUP_ROWS, count)
        # Rows as [..., groups, rows of a group, blocks, chunks, chunk]; stored as [..., groups, blocks, chunks,
        # rows of a group, chunk].
        by_row = (*lead, count // size, size, blocks, width // blocks // chunk, chunk)
        by_lane = (*lead, count // size, blocks, width // blocks // chunk, size, chunk)
        part = t[..., first : first + count, :]
        if stored:
            part = part.reshape(by_lane).movedim(-2, -4)
        else:
            part = part.reshape(by_row).movedim(-4, -2)
        parts.append(part.reshape(*lead, count, width))
    return torch.cat(parts, dim=-2)


def int8_group(cols: int) -> int:
    """int8's inputs per scale: blocks of 32, as GGUF's Q8_0, where the inputs come in whole blocks (the kernels
    need them); else the whole row."""
    return INT4_GROUP if cols % INT4_GROUP == 0 else cols


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W [..., out, in] → (q int8 [..., out, in], scale fp16 [..., out, in / group]) with W ≈ q · scale per group
    of `int8_group` inputs, symmetric: GGUF's Q8_0 (step in fp16, the largest magnitude at ±127), so a Q8_0
    checkpoint requantizes to its own values."""
    *lead, cols = weight.shape
    w = weight.float().view(*lead, -1, int8_group(cols))
    # fp16's smallest subnormal is 6e-8: a floor above it keeps an all-zero group's step from rounding to zero.
    scale = (w.abs().amax(dim=-1) / 127).clamp(min=1e-7).half()
    q = torch.round(w / scale.float()[..., None]).clamp_(-127, 127).to(torch.int8)
    return q.view(weight.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 q · scale, the weight the kernel multiplies by."""
    return _scale_blocks_(q.float(), scale)


def _scale_blocks_(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    w.view(*scale.shape, -1).mul_(scale.float()[..., None])
    return w


def quantize_int4(weight: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W [..., out, in] → (q uint8 [..., out, in] in 0..15, scale and low fp16 [..., out, in/group]) with
    W ≈ q · scale + low per group of `group` inputs: each group's range cut into 15 equal steps. Scale and low are
    fp16, as GGUF's Q4_1 holds them (so its blocks come back as they are), and q is rounded on that fp16 grid. A
    group already on a 4-bit grid around zero, as a GGUF Q4_0 block is, keeps that grid (`_zero_centred_grid`)."""
    *lead, cols = weight.shape
    w = weight.float().view(*lead, cols // group, group)
    low = w.amin(dim=-1).half()
    # fp16's smallest subnormal is 6e-8: a floor above it keeps a constant group's step from rounding to zero.
    scale = ((w.amax(dim=-1) - low.float()) / 15).clamp(min=1e-7).half()
    on_grid, grid_scale, grid_low = _zero_centred_grid(w)
    scale, low = torch.where(on_grid, grid_scale, scale), torch.where(on_grid, grid_low, low)
    q = torch.round((w - low.float()[..., None]) / scale.float()[..., None]).clamp_(0, 15).to(torch.uint8)
    return q.view(weight.shape), scale, low


def _zero_centred_grid(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For groups [..., groups, size] whose values are all j · d for integers j in -8..7 and one fp16 step d (GGUF's
    Q4_0: value = (level - 8) · d, d of either sign), the scale and low that hold them exactly: d and -8d, or -d and
    8d for a negative step; both multiply d by a power of two, so fp16 holds them exactly too. Returns (whether each
    group is on such a grid, scale, low). A group's largest magnitude is k · |d| for some k in 1..8: each k is tried,
    and a group is on a grid where every value divided by that step is a whole number in range."""
    on_grid = torch.zeros(w.shape[:-1], dtype=torch.bool, device=w.device)
    scale = torch.ones(w.shape[:-1], dtype=torch.float16, device=w.device)
    low = torch.zeros_like(scale)
    # Weights that were never on a grid (every checkpoint but a GGUF of Q4_0 blocks) are told by a few groups.
    sample = w.reshape(-1, w.shape[-1])[:GRID_SAMPLE]
    if w.numel() > sample.numel() and not _zero_centred_grid(sample)[0].any():
        return on_grid, scale, low
    magnitude = w.abs().amax(dim=-1)
    # llama.cpp's Q4_0 gives a block's largest value level 0, so k = 8 finds nearly every block at once.
    for k in range(8, 0, -1):
        if on_grid.all():
            break
        step = (magnitude / k).half()
        levels = w / step.float()[..., None]
        whole = (levels == levels.round()).all(dim=-1) & (step > 0)
        for sign, lowest, highest in ((1, -8, 7), (-1, -7, 8)):  # a negative d puts the levels at -7..8 of |d|
            fits = whole & ~on_grid & (levels.amin(dim=-1) >= lowest) & (levels.amax(dim=-1) <= highest)
            scale = torch.where(fits, sign * step, scale)
            low = torch.where(fits, -8 * sign * step, low)
            on_grid |= fits
    return on_grid, scale, low


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """fp32 weight of `quantize_int4`'s (unpacked) values, as the kernel computes it."""
    return _scale_groups_(q.float(), scale, low)


def _scale_groups_(w: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    _scale_blocks_(w, scale).view(*scale.shape, -1).add_(low.float()[..., None])
    return w


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """q uint8 [..., in] → uint8 [..., in / 2]: in each block of 32 inputs, byte j holds input j in its low nibble
    and input j + 16 in its high one, so that the kernel unpacks a block with one shift and two masks."""
    *lead, cols = q.shape
    blocks = q.view(*lead, cols // INT4_GROUP, 2, INT4_GROUP // 2)
    return (blocks[..., 0, :] | (blocks[..., 1, :] << 4)).reshape(*lead, cols // 2)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_int4`."""
    *lead, half = packed.shape
    blocks = packed.view(*lead, half * 2 // INT4_GROUP, 1, INT4_GROUP // 2)
    return torch.cat([blocks & 15, blocks >> 4], dim=-2).reshape(*lead, half * 2)


def _rows(x: torch.Tensor) -> int:
    return x.shape[:-1].numel()


class _IntegerLinear(nn.Module):
    """y = x Wᵀ (+ b) for a weight held in integers: the compiled kernel for a few rows, else an fp32 GEMM on the
    weight dequantized into a reusable buffer. `integer` names the format, and `integer_weights` the weights that
    `engine.weights` quantizes as they arrive."""

    integer: IntMode
    integer_weights = ("weight",)

    def __init__(self, in_features: int, out_features: int, bias: bool = False, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        b = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype), requires_grad=False) if bias else None
        self.register_parameter("bias", b)
        register_integer(self, "weight", (out_features, in_features), self.integer, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels = kernels_for(x)
        x2 = x.reshape(-1, self.in_features)
        low = getattr(self, "weight_low", None)
        if kernels is not None:
            out = kernel_matmul(kernels, x2.float().contiguous(), self.weight, self.weight_scale, low).to(x.dtype)
        else:
            out = F.linear(x2, dequantized(self.weight, self.weight_scale, low, x.dtype, "linear"))
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(_IntegerLinear):
    """W held as int8 `weight` and an fp16 `weight_scale` per block of 32 inputs: 34 bytes per 32 weights, as
    GGUF's Q8_0."""

    integer = "int8"


class Int4Linear(_IntegerLinear):
    """W held as packed 4-bit `weight` (`pack_int4`) and fp16 `weight_scale` and `weight_low` per block of 32
    inputs: 20 bytes per 32 weights, as GGUF's Q4_1."""

    integer = "int4"


def kernels_for(x: torch.Tensor):
    """The compiled kernels when they take this input: a few rows, on the CPU, inputs in whole blocks of 32."""
    if _rows(x) > NARROW_ROWS or x.device.type != "cpu" or x.shape[-1] % INT4_GROUP:
        return None
    return cpu_kernels()
