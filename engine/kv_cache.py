"""A key/value cache allocated once for the whole context, so decoding never reallocates.

Keys and values may be stored narrower than attention computes: bfloat16 (half of fp32), or FP8 e4m3 with one
scale per token and KV head (about half of bf16). Narrow storage is widened into a reusable buffer on every read.
"""

from __future__ import annotations

import threading

import torch

from engine.fp8 import FP8, FP8_MAX

# On a CPU, PyTorch casts e4m3 element by element, over ten times slower than this: e4m3 bits `s eeee mmm` (exponent
# bias 7) moved to fp16's positions `s 0eeee mmm0000000` (bias 15) are an exact fp16 of the same value times 2**-8,
# subnormals included, and fp16 → fp32 is a vectorised copy.
_E4M3_TO_FP16_SHIFT = 7
_E4M3_TO_FP16_MASK = -(1 << 15) | 0x3F80  # the sign bit and the seven exponent and mantissa bits, as an int16
_E4M3_TO_FP16_FACTOR = 2.0**8
# Widened a block at a time, the int16 (2 MiB) and fp32 (4 MiB) of a block stay in the CPU's L3 between passes. Smaller
# blocks mean more ops, each a parallel region that a busy machine makes wait for its threads; 1M was the fastest.
_CPU_WIDEN_ELEMENTS = 1 << 20
# Narrow KV on a CPU is read this many positions at a time: the widened block is the only copy, so a 128K-token
# context needs no more working memory than an 8K one (AntAngelMed: 32 MiB of fp32 keys and values per block).
READ_BLOCK = 8192
_SCALE_DTYPE = torch.bfloat16  # two bytes per token and head; fp32's exponent range, so no scale under- or overflows


class KVCache:
    def __init__(
        self,
        layers: int,
        kv_heads: int,
        head_dim: int,
        max_tokens: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        batch: int = 1,
        storage_dtype: torch.dtype | None = None,
    ):
        """`dtype` is what attention computes in and what `update` returns. `storage_dtype` is how keys and values
        are held: `dtype` by default; torch.bfloat16; or torch.float8_e4m3fn, with a bf16 scale per token and KV head
        (2 · kv_heads · (head_dim + 2) bytes per token and layer)."""
        storage_dtype = storage_dtype or dtype
        if storage_dtype not in (dtype, torch.bfloat16, FP8):
            raise ValueError(f"KV storage in {storage_dtype} is not supported (use {dtype}, bfloat16 or float8_e4m3fn)")
        shape = (layers, batch, kv_heads, max_tokens, head_dim)
        # Keys and values share one tensor, so that narrow storage quantizes and widens both with one op per pass:
        # a decode step over a short context is bound by the number of ops, not by their arithmetic.
        self._kv = torch.zeros((2, *shape), dtype=storage_dtype, device=device)
        self.keys, self.values = self._kv
        # Each layer's keys and values as views made once: a decode step indexes them for every layer.
        self._by_layer = list(zip(self.keys, self.values))
        self._scales: torch.Tensor | None = None
        self.key_scales: torch.Tensor | None = None
        self.value_scales: torch.Tensor | None = None
        if storage_dtype == FP8:
            self._scales = torch.zeros((2, *shape[:-1], 1), dtype=_SCALE_DTYPE, device=device)
            self.key_scales, self.value_scales = self._scales
        self.max_tokens = max_tokens
        self.dtype = dtype

    @property
    def stored(self) -> list[torch.Tensor]:
        """Every tensor that holds the cache's contents, each [layers, batch, kv_heads, max_tokens, ...]."""
        scales = [] if self._scales is None else [self.key_scales, self.value_scales]
        return [self.keys, self.values, *scales]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.stored)

    @property
    def narrow(self) -> bool:
        """Whether keys and values are stored narrower than attention computes, so that every read widens them."""
        return self._kv.dtype != self.dtype

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v ([B, H, T, D]) at positions [start, start+T)."""
        if self._scales is None:
            keys, values = self._by_layer[layer]
            keys.narrow(2, start, k.shape[2]).copy_(k)
            values.narrow(2, start, v.shape[2]).copy_(v)
        else:
            end = start + k.shape[2]
            self._kv[:, layer, :, :, start:end], self._scales[:, layer, :, :, start:end] = quantize_fp8(
                torch.stack((k, v))
            )

    def read(self, layer: int, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions [first, last) of one layer's keys and values ([B, H, last-first, D]) in `dtype`.

        Storage in `dtype` is returned in place. Narrow storage is widened into a buffer that the next read on this
        thread overwrites; on a CPU that buffer holds READ_BLOCK positions, so readers of long contexts read a block
        at a time and the working set stays the same whatever the context."""
        if not self.narrow:
            keys, values = self._by_layer[layer]
            return keys[:, :, first:last], values[:, :, first:last]
        keys, values = self._widen(layer, first, last).unbind()
        return keys, values

    def update(
        self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v ([B, H, T, D]) at [start, start+T) and return the cache up to start+T, in `dtype`."""
        self.write(layer, start, k, v)
        return self.read(layer, 0, start + k.shape[2])

    def _widen(self, layer: int, first: int, last: int) -> torch.Tensor:
        """Positions [first, last) of one layer's keys and values ([2, B, H, last-first, D]) in `dtype`, in this
        thread's read buffer."""
        stored = self._kv[:, layer, :, :, first:last]
        per_position = stored[:, :, :, 0].numel()
        # GPUs read whole contexts (a buffer of the layer, allocated once); CPUs read a block at a time.
        capacity = self.max_tokens if stored.device.type != "cpu" else min(self.max_tokens, READ_BLOCK)
        out = _READ_BUFFERS.get("kv", self.dtype, stored.numel(), capacity * per_position, stored.device)
        out = out.view(stored.shape)
        if self._scales is None:
            return out.copy_(stored)
        scales = self._scales[:, layer, :, :, first:last]
        if stored.device.type != "cpu":
            return out.copy_(stored).mul_(scales.float())  # GPUs cast e4m3 natively, in one kernel
        scales = scales.float() * _E4M3_TO_FP16_FACTOR
        length = last - first
        block = max(1, _CPU_WIDEN_ELEMENTS // per_position)
        bits_buffer = _READ_BUFFERS.get(
            "fp16 bits", torch.int16, min(block, length) * per_position, block * per_position, stored.device
        )
        for a in range(0, length, block):
            b = min(length, a + block)
            bits = bits_buffer[: (b - a) * per_position].view(*stored.shape[:3], b - a, -1)
            # The int8 view sign-extends, so the shift leaves copies of the sign bit that the mask clears.
            bits.copy_(stored[:, :, :, a:b].view(torch.int8))
            bits.bitwise_left_shift_(_E4M3_TO_FP16_SHIFT).bitwise_and_(_E4M3_TO_FP16_MASK)
            out[:, :, :, a:b].copy_(bits.view(torch.float16)).mul_(scales[:, :, :, a:b])
        return out


class _ReadBuffers(threading.local):
    """Buffers that narrow KV is widened into, one set per thread and shared by every cache read on that thread:
    layers run one after another, and so do the rows of a batch (each with its own cache). A fresh allocation per
    read would page-fault on every layer of every step; one per thread (an engine runs its model on one) cannot be
    overwritten by another engine's reads."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, name: str, dtype: torch.dtype, numel: int, capacity: int, device: torch.device) -> torch.Tensor:
        """A flat tensor of `numel` elements. When the buffer must grow, it grows to `capacity` (for the keys and
        values, a block of positions or the whole layer of the cache being read), so a sequence that lengthens by one
        token a step does not reallocate every step."""
        key = (name, dtype, device)
        buffer = self._buffers.get(key)
        if buffer is None or not writable_here(buffer) or buffer.numel() < numel:
            self._buffers.pop(key, None)  # freed before the larger one is allocated
            self._buffers[key] = torch.empty(max(numel, capacity), dtype=dtype, device=device)
        return self._buffers[key][:numel]


_READ_BUFFERS = _ReadBuffers()


def writable_here(buffer: torch.Tensor) -> bool:
    """Whether a reused scratch buffer may be written now: one made under inference mode (an engine's forward, on
    its thread) cannot be written outside it (a test's or a tool's direct call)."""
    return not buffer.is_inference() or torch.is_inference_mode_enabled()


def quantize_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] → (e4m3 [..., D], bf16 scale [..., 1]) with x ≈ float(q) · scale; each vector's amax maps to 448."""
    x = x.float()
    # The floor keeps an all-zero vector's scale finite; it is fp32's (and bf16's) smallest normal number.
    amax = x.abs().amax(-1, keepdim=True)
    scale = (amax / FP8_MAX).clamp_min(torch.finfo(torch.float32).tiny).to(_SCALE_DTYPE)
    # The bf16 scale may round below amax / 448, and e4m3fn has no infinity: an unclamped cast could give NaN.
    return (x / scale.float()).clamp_(-FP8_MAX, FP8_MAX).to(FP8), scale
