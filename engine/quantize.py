"""Weight-only int8 and int4 linears for CPU decoding (`--quantize int8`, `--quantize int4`), gpt-fast style.

A decode step multiplies a few rows of activations by every weight of the model, so on a CPU it costs the bytes
of the weights: 540 MB per token for SmolLM2-135M in fp32. "int8" holds each projection as int8 with one scale per
output channel (a quarter of fp32's bytes); "int4" packs two 4-bit values per byte with a scale and an offset per
32 inputs (the block of GGUF's Q4_0/Q4_1, so a Q4_1 checkpoint requantizes almost exactly). Up to NARROW_ROWS rows
(decode steps, draft verification, small batches) multiply in PyTorch's weight-only kernels, which on AVX2 are
vectorized for bf16 activations only: each row is rounded to bf16, products accumulate in fp32, and the result is
rounded to bf16. Each output row depends only on its own input row, so a row comes out the same whatever the
number of rows beside it. Longer prefills dequantize the weight into a reusable fp32 buffer and run an fp32 GEMM,
which is faster there than either kernel (it is bound by arithmetic, not by bytes).

`build` makes a model whose projections (`engine.layers.linear`) are these layers; `engine.weights.load_weights`
fills them, quantizing each full-precision weight as it arrives.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from engine.layers import NARROW_ROWS, SCRATCH

IntMode = Literal["int8", "int4"]
INT4_GROUP = 32
# The kernels' own types: activations, scales and results are bf16 on the way in and out, fp32 inside.
KERNEL_DTYPE = torch.bfloat16

_MODE: ContextVar[IntMode | None] = ContextVar("quantized_linears", default=None)


def build(make: Callable[[], nn.Module], mode: IntMode | None) -> nn.Module:
    """`make()` (a model constructor) with its projections, output head included, as int8 or int4 layers.

    With int4 the output head stays int8: logits are what the sampler reads, and a 4-bit head put SmolLM2's logits
    5-8% off fp32 where an 8-bit one leaves 1-2.5% (the projections themselves requantize its Q4_1 blocks)."""
    with _quantized_linears(mode):
        model = make()
        if mode == "int4":
            head = model.lm_head
            model.lm_head = Int8Linear(head.in_features, head.out_features, bias=head.bias is not None)
    return model


@contextmanager
def _quantized_linears(mode: IntMode | None) -> Iterator[None]:
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def quantized_linear(in_features: int, out_features: int, bias: bool) -> nn.Module | None:
    """The layer `engine.layers.linear` makes while `build` runs with a mode, or None."""
    mode = _MODE.get()
    if mode is None:
        return None
    # 4 bits take whole groups of inputs and whole tiles of outputs; other shapes (and CPUs whose layout is not
    # known here) get 8 bits.
    tile = int4_tile()
    if mode == "int4" and tile and in_features % INT4_GROUP == 0 and out_features % tile == 0:
        return Int4Linear(in_features, out_features, bias=bias)
    return Int8Linear(in_features, out_features, bias=bias)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W [out, in] → (q int8 [out, in], scale bf16 [out]) with W ≈ q · scale[:, None], symmetric per output row."""
    w = weight.float()
    scale = (w.abs().amax(dim=1).clamp(min=1e-10) / 127).to(KERNEL_DTYPE)
    # Rounded against the bf16 scale the kernel will use, so that q is the best grid point for that scale.
    q = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 q · scale, the weight the kernel multiplies by."""
    return _scale_rows_(q.float(), scale)


def _scale_rows_(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return w.mul_(scale.float()[:, None])


def quantize_int4(weight: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """W [out, in] → (q uint8 [out, in] in 0..15, scale_and_zero bf16 [in/group, out, 2]), asymmetric per group of
    `group` inputs, in the layout of `_weight_int4pack_mm_for_cpu`: W ≈ (q - 8) · scale + zero."""
    rows, cols = weight.shape
    w = weight.float().view(rows, cols // group, group)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    scale = ((high - low) / 15).clamp(min=1e-10).to(KERNEL_DTYPE)
    # The offset is stored for the grid's middle (q = 8), as the kernel reads it.
    zero = (low + 8 * scale.float()).to(KERNEL_DTYPE)
    q = torch.round((w - zero.float()[..., None]) / scale.float()[..., None] + 8).clamp_(0, 15).to(torch.uint8)
    scale_and_zero = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
    return q.view(rows, cols), scale_and_zero


def dequantize_int4(q: torch.Tensor, scale_and_zero: torch.Tensor) -> torch.Tensor:
    """fp32 weight of `quantize_int4`'s (unpacked) values, as the kernel computes it."""
    return _scale_groups_(q.float(), scale_and_zero)


def _scale_groups_(w: torch.Tensor, scale_and_zero: torch.Tensor) -> torch.Tensor:
    rows, cols = w.shape
    scale, zero = scale_and_zero.float().transpose(0, 1).unbind(-1)
    # q · scale + (zero - 8 · scale), the kernel's own order of operations.
    groups = w.view(rows, scale.shape[1], -1)
    groups.mul_(scale[..., None]).add_((zero - 8 * scale)[..., None])
    return w


def int4_tile() -> int | None:
    """Output rows per tile of the CPU int4 kernel's packed layout, which follows the CPU's vector width; None
    where this module does not know the layout (the 4-bit kernels are then not used)."""
    return {"AVX2": 32, "AVX512": 64}.get(torch.backends.cpu.get_cpu_capability())


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """q uint8 [out, in] → uint8 [out, in / 2] in the kernel's layout: within a tile of T output rows, the byte for
    input k and row r < T/2 holds row r in its low nibble and row r + T/2 in its high one."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_int4` (for out_features a multiple of the tile)."""
    tile = int4_tile()
    rows, cols = packed.shape[0], packed.shape[1] * 2
    tiles = packed.view(rows // tile, cols, tile // 2)
    return torch.cat([tiles & 15, tiles >> 4], dim=-1).transpose(1, 2).reshape(rows, cols)


def _rows(x: torch.Tensor) -> int:
    return x.shape[:-1].numel()


class Int8Linear(nn.Module):
    """y = x Wᵀ (+ b) with W held as int8 `weight` and a bf16 `weight_scale` per output channel."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        # Buffers, not Parameters: quantized weights are never trained, and buffers still travel with .to(device).
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.empty(out_features, dtype=KERNEL_DTYPE, device=device))
        b = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype), requires_grad=False) if bias else None
        self.register_parameter("bias", b)

    @staticmethod
    def quantized(weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """This layer's buffers for a full-precision weight, by the suffix each adds to the weight's name."""
        q, scale = quantize_int8(weight)
        return {"": q, "_scale": scale}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if _rows(x) <= NARROW_ROWS:
            out = torch.ops.aten._weight_int8pack_mm(x2.to(KERNEL_DTYPE), self.weight, self.weight_scale).to(x.dtype)
        else:
            out = F.linear(x2, _scale_rows_(SCRATCH.converted("linear", self.weight, x.dtype), self.weight_scale))
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int4Linear(nn.Module):
    """y = x Wᵀ (+ b) with W held as packed 4-bit `weight` and bf16 `weight_scale_and_zero` per 32 inputs."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features, self.group = in_features, out_features, INT4_GROUP
        self.register_buffer("weight", torch.empty(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer(
            "weight_scale_and_zero",
            torch.empty(in_features // INT4_GROUP, out_features, 2, dtype=KERNEL_DTYPE, device=device),
        )
        b = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype), requires_grad=False) if bias else None
        self.register_parameter("bias", b)

    @staticmethod
    def quantized(weight: torch.Tensor) -> dict[str, torch.Tensor]:
        q, scale_and_zero = quantize_int4(weight)
        return {"": pack_int4(q), "_scale_and_zero": scale_and_zero}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if _rows(x) <= NARROW_ROWS:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2.to(KERNEL_DTYPE), self.weight, self.group, self.weight_scale_and_zero
            ).to(x.dtype)
        else:
            w = SCRATCH.converted("linear", unpack_int4(self.weight), x.dtype)
            out = F.linear(x2, _scale_groups_(w, self.weight_scale_and_zero))
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group={self.group}, "
                f"bias={self.bias is not None}")
