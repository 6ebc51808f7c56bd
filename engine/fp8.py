"""Block-quantized FP8 linears in the Ling / DeepSeek-V3 checkpoint format (engine-spec §7).

A weight W [out, in] is stored as e4m3 values q plus one float32 `weight_scale_inv` per 128×128 block; despite its
name that scale is the dequant multiplier: W ≈ float(q) · scale_inv[i // 128, j // 128].
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
BLOCK = 128

# The W8A16 path dequantizes this many weight elements at a time (8 MiB in fp32): enough rows per matmul to keep the
# GEMMs efficient, small enough that a large matrix never exists in full precision.
_DEQUANT_CHUNK_ELEMENTS = 1 << 21
_TOKEN_ALIGN = 16


def quantize_block_fp8(weight: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize W [out, in] to (q e4m3 [out, in], scale_inv float32 [ceil(out/block), ceil(in/block)])."""
    rows, cols = weight.shape
    w = _padded_fp32_copy(weight, block)
    row_blocks, col_blocks = w.shape[0] // block, w.shape[1] // block
    w = w.view(row_blocks, block, col_blocks, block)
    # The floor keeps all-zero blocks finite; the converter uses the same 1e-4.
    scale = w.abs().amax(dim=(1, 3)).clamp(min=1e-4) / FP8_MAX
    # Rounding can push |W/s| a hair above 448, and e4m3fn has no infinity: an unclamped cast would give NaN.
    q = w.div_(scale[:, None, :, None]).clamp_(-FP8_MAX, FP8_MAX).to(FP8)
    q = q.view(row_blocks * block, col_blocks * block)[:rows, :cols].contiguous()
    return q, scale


def dequantize_block_fp8(
    q: torch.Tensor, scale_inv: torch.Tensor, dtype: torch.dtype = torch.bfloat16, block: int = BLOCK
) -> torch.Tensor:
    """float(q) · scale_inv per block, computed in fp32 and rounded once to `dtype`."""
    rows, cols = q.shape
    w = _padded_fp32_copy(q, block)
    w.view(scale_inv.shape[0], block, scale_inv.shape[1], block).mul_(scale_inv[:, None, :, None])
    return w[:rows, :cols].to(dtype).contiguous()


def _padded_fp32_copy(t: torch.Tensor, block: int) -> torch.Tensor:
    """A fresh fp32 copy zero-padded to whole blocks (fresh, so callers may work in place; zeros never raise a max)."""
    rows, cols = t.shape
    padded = torch.zeros(rows + -rows % block, cols + -cols % block, dtype=torch.float32, device=t.device)
    padded[:rows, :cols] = t
    return padded


class Fp8Linear(nn.Module):
    """y = x Wᵀ (+ b) with W held as block FP8; checkpoint keys `weight` and `weight_scale_inv` load by name.

    Inference only: nothing here is trainable, and the CPU path writes GEMM results straight into its output.
    Cast the model to its compute dtype before quantizing: Module.to(dtype) would also cast these FP8 buffers.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        block: int = BLOCK,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features, self.block = in_features, out_features, block
        # Buffers, not Parameters: FP8 weights are never trained, and buffers still travel with .to(device).
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=FP8, device=device))
        scale_shape = (-(-out_features // block), -(-in_features // block))
        self.register_buffer("weight_scale_inv", torch.empty(scale_shape, dtype=torch.float32, device=device))
        b = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype), requires_grad=False) if bias else None
        self.register_parameter("bias", b)

    @classmethod
    def from_linear(cls, linear: nn.Linear, block: int = BLOCK) -> Fp8Linear:
        layer = cls(linear.in_features, linear.out_features, bias=False, block=block, device="meta")
        layer.weight, layer.weight_scale_inv = quantize_block_fp8(linear.weight.detach(), block)
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach(), requires_grad=False)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if _block_scaled_mm_available(x.device) and self.block == BLOCK and self.in_features % BLOCK == 0:
            out = _w8a8_block_scaled_mm(x2, self.weight, self.weight_scale_inv)
        else:
            out = _w8a16_chunked(x2, self.weight, self.weight_scale_inv, self.block)
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Fp8Parts(nn.Module):
    """Block FP8 linears on the same input whose outputs come side by side: the FP8 form of `fused_linear`. Each part
    keeps blocks of its own (checkpoint keys `parts.{i}.weight`, `parts.{i}.weight_scale_inv`)."""

    def __init__(self, in_features: int, parts: Sequence[int], bias: bool = False):
        super().__init__()
        self.parts = nn.ModuleList(Fp8Linear(in_features, out_features, bias=bias) for out_features in parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x) for part in self.parts], dim=-1)


def dequant_row_chunks(out_features: int, in_features: int, block: int = BLOCK) -> list[tuple[int, int]]:
    """The [start, end) output-row ranges the W8A16 path dequantizes one at a time (block-aligned starts)."""
    step = max(1, _DEQUANT_CHUNK_ELEMENTS // (in_features * block)) * block
    return [(r, min(r + step, out_features)) for r in range(0, out_features, step)]


def _w8a16_chunked(x: torch.Tensor, q: torch.Tensor, scale_inv: torch.Tensor, block: int) -> torch.Tensor:
    """Dequantize a few block-rows at a time, so the weight stays ~1 byte/param and the scratch stays bounded."""
    out = x.new_empty(x.shape[0], q.shape[0])
    for start, end in dequant_row_chunks(q.shape[0], q.shape[1], block):
        # Chunks start on a block boundary, so the slice is itself a well-formed block-quantized matrix.
        w = dequantize_block_fp8(q[start:end], scale_inv[start // block : -(-end // block)], x.dtype, block)
        torch.mm(x, w.t(), out=out[:, start:end])
    return out


@functools.cache
def _block_scaled_mm_available(device: torch.device) -> bool:
    # cuBLASLt's 1×128 × 128×128 ("DeepSeek") scaling exists only on SM90; elsewhere PyTorch refuses it.
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


def _w8a8_block_scaled_mm(x: torch.Tensor, q: torch.Tensor, scale_inv: torch.Tensor) -> torch.Tensor:
    """W8A8 as vLLM runs block FP8: activations quantized per token per 128-wide K group, one cuBLASLt GEMM."""
    tokens, k = x.shape
    # cuBLASLt (13.0, H100) has no kernel for these scales at 1 or 2 tokens (4, 8, 12 and up worked); zero rows
    # up to 16 cost nothing, since the GEMM's tiles are larger than that anyway.
    groups = F.pad(x, (0, 0, 0, -tokens % _TOKEN_ALIGN)).view(-1, k // BLOCK, BLOCK)
    # Reduced as [K groups, tokens] so that the transpose is the K-group-major layout cuBLASLt reads.
    x_scale = torch.linalg.vector_norm(groups.transpose(0, 1), ord=float("inf"), dim=-1, dtype=torch.float32)
    x_scale = (x_scale.clamp_(min=1e-10) / FP8_MAX).t()
    x_q = (groups / x_scale[..., None]).clamp_(-FP8_MAX, FP8_MAX).to(FP8).view(-1, k)
    # The weight scales go in as [K groups padded to a multiple of 4, N / 128], K-group-major.
    w_scale = F.pad(scale_inv, (0, -scale_inv.shape[1] % 4)).t()
    out = F.scaled_mm(
        x_q,
        q.t(),
        x_scale,
        F.ScalingType.BlockWise1x128,
        w_scale,
        F.ScalingType.BlockWise128x128,
        output_dtype=x.dtype,
    )
    return out[:tokens]
