"""Weight-only int8 and int4 linears for CPU decoding (`--quantize int8`, `--quantize int4`), gpt-fast style.

A decode step multiplies a few rows of activations by every weight of the model, so on a CPU it costs the bytes
of the weights: 540 MB per token for SmolLM2-135M in fp32. "int8" holds each projection as int8 with one scale per
output channel (a quarter of fp32's bytes); "int4" packs two 4-bit values per byte with an fp16 scale and low value
per block of 32 inputs: W ≈ q · scale + low, GGUF's Q4_1, so a Q4_1 checkpoint requantizes to its own values.

Up to NARROW_ROWS rows (decode steps, draft verification, small batches) multiply in our own AVX2 kernels
(engine/kernels/int_matmul.cpp), which quantize each activation row to int8 per block of 32, as llama.cpp does, and
take the dot products on 8-bit integers. Each output row depends only on its own input row, so a row comes out the
same whatever the number of rows beside it. Longer prefills, and every matmul where the kernels cannot be built,
dequantize the weight into a reusable fp32 buffer and run an fp32 GEMM (bound by arithmetic there, not by bytes).

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

from engine.kernels import cpu_kernels
from engine.layers import NARROW_ROWS, SCRATCH

IntMode = Literal["int8", "int4"]
INT4_GROUP = 32

_MODE: ContextVar[IntMode | None] = ContextVar("quantized_linears", default=None)


def build(make: Callable[[], nn.Module], mode: IntMode | None) -> nn.Module:
    """`make()` (a model constructor) with its projections, output head included, as int8 or int4 layers.

    With int4 the output head stays int8: logits are what the sampler reads, and a 4-bit head put SmolLM2's logits
    5-8% off fp32 where an 8-bit one leaves 1-2.5% (the projections themselves requantize its Q4_1 blocks)."""
    if mode is not None:
        cpu_kernels()  # built now, if need be, rather than during the first request
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
    if mode == "int4" and in_features % INT4_GROUP == 0:
        return Int4Linear(in_features, out_features, bias=bias)
    return Int8Linear(in_features, out_features, bias=bias)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W [out, in] → (q int8 [out, in], scale fp32 [out]) with W ≈ q · scale[:, None], symmetric per output row."""
    w = weight.float()
    scale = w.abs().amax(dim=1).clamp(min=1e-10) / 127
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 q · scale, the weight the kernel multiplies by."""
    return _scale_rows_(q.float(), scale)


def _scale_rows_(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return w.mul_(scale[:, None])


def quantize_int4(weight: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W [out, in] → (q uint8 [out, in] in 0..15, scale fp16 [out, in/group], low fp16 [out, in/group]) with
    W ≈ q · scale + low per group of `group` inputs: each group's range cut into 15 equal steps. Scale and low are
    fp16, as GGUF's Q4_1 holds them (so its blocks come back as they are), and q is rounded on that fp16 grid."""
    rows, cols = weight.shape
    w = weight.float().view(rows, cols // group, group)
    low = w.amin(dim=-1).half()
    # fp16's smallest subnormal is 6e-8: a floor above it keeps a constant group's step from rounding to zero.
    scale = ((w.amax(dim=-1) - low.float()) / 15).clamp(min=1e-7).half()
    q = torch.round((w - low.float()[..., None]) / scale.float()[..., None]).clamp_(0, 15).to(torch.uint8)
    return q.view(rows, cols), scale, low


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """fp32 weight of `quantize_int4`'s (unpacked) values, as the kernel computes it."""
    return _scale_groups_(q.float(), scale, low)


def _scale_groups_(w: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    rows, cols = w.shape
    w.view(rows, scale.shape[1], -1).mul_(scale.float()[..., None]).add_(low.float()[..., None])
    return w


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """q uint8 [out, in] → uint8 [out, in / 2]: in each block of 32 inputs, byte j holds input j in its low nibble
    and input j + 16 in its high one, so that the kernel unpacks a block with one shift and two masks."""
    rows, cols = q.shape
    blocks = q.view(rows, cols // INT4_GROUP, 2, INT4_GROUP // 2)
    return (blocks[:, :, 0] | (blocks[:, :, 1] << 4)).reshape(rows, cols // 2)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_int4`."""
    rows, half = packed.shape
    blocks = packed.view(rows, half * 2 // INT4_GROUP, 1, INT4_GROUP // 2)
    return torch.cat([blocks & 15, blocks >> 4], dim=2).reshape(rows, half * 2)


def _rows(x: torch.Tensor) -> int:
    return x.shape[:-1].numel()


class _IntegerLinear(nn.Module):
    """y = x Wᵀ (+ b) for a weight held in integers: the compiled kernel for a few rows, else an fp32 GEMM on the
    weight dequantized into a reusable buffer. Quantized weights are buffers, not Parameters: they are never
    trained, and buffers still travel with .to(device)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, device, dtype):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        b = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype), requires_grad=False) if bias else None
        self.register_parameter("bias", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels = _kernels_for(x)
        x2 = x.reshape(-1, self.in_features)
        if kernels is not None:
            out = self._kernel_matmul(kernels, x2.float().contiguous()).to(x.dtype)
        else:
            out = F.linear(x2, self._dequantized(x.dtype))
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def _kernel_matmul(self, kernels, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(_IntegerLinear):
    """W held as int8 `weight` and an fp32 `weight_scale` per output channel."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(in_features, out_features, bias, device, dtype)
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.empty(out_features, device=device))

    @staticmethod
    def quantized(weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """This layer's buffers for a full-precision weight, by the suffix each adds to the weight's name."""
        q, scale = quantize_int8(weight)
        return {"": q, "_scale": scale}

    def _kernel_matmul(self, kernels, x: torch.Tensor) -> torch.Tensor:
        return kernels.int8_matmul(x, self.weight, self.weight_scale)

    def _dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        return _scale_rows_(SCRATCH.converted("linear", self.weight, dtype), self.weight_scale)


class Int4Linear(_IntegerLinear):
    """W held as packed 4-bit `weight` (`pack_int4`) and fp16 `weight_scale` and `weight_low` per block of 32
    inputs: 20 bytes per 32 weights, as GGUF's Q4_1."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(in_features, out_features, bias, device, dtype)
        blocks = in_features // INT4_GROUP
        self.register_buffer("weight", torch.empty(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer("weight_scale", torch.empty(out_features, blocks, dtype=torch.float16, device=device))
        self.register_buffer("weight_low", torch.empty(out_features, blocks, dtype=torch.float16, device=device))

    @staticmethod
    def quantized(weight: torch.Tensor) -> dict[str, torch.Tensor]:
        q, scale, low = quantize_int4(weight)
        return {"": pack_int4(q), "_scale": scale, "_low": low}

    def _kernel_matmul(self, kernels, x: torch.Tensor) -> torch.Tensor:
        return kernels.int4_matmul(x, self.weight, self.weight_scale, self.weight_low)

    def _dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        w = SCRATCH.converted("linear", unpack_int4(self.weight), dtype)
        return _scale_groups_(w, self.weight_scale, self.weight_low)


def _kernels_for(x: torch.Tensor):
    """The compiled kernels when they take this input: a few rows, on the CPU, inputs in whole blocks of 32."""
    if _rows(x) > NARROW_ROWS or x.device.type != "cpu" or x.shape[-1] % INT4_GROUP:
        return None
    return cpu_kernels()
