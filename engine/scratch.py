"""What a matmul of a few rows does differently, and the reusable buffers of weights converted on the fly.

Shared by the layers that hold weights narrower than the activations: full-precision linears (engine/layers.py),
block FP8 (engine/fp8.py), int8/int4 (engine/quantize.py) and stacked experts (engine/moe.py).
"""

from __future__ import annotations

import torch

from engine.kv_cache import writable_here

# Up to this many rows (tokens) a matmul with narrow weights runs in the weights' dtype: it is bound by reading the
# weights, so fewer bytes win. Beyond it, CPUs without bf16 arithmetic (AVX2) are faster upcasting the weight to fp32.
NARROW_ROWS = 16


class Scratch:
    """Reusable buffers for weights converted on the fly, one per use site, shared by all layers (which run one
    after another). A fresh allocation of many megabytes page-faults on every call, which on these CPUs costs
    several times the conversion itself."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def converted(self, site: str, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        buffer = self._buffers.get(site)
        fits = buffer is not None and buffer.numel() >= tensor.numel() and buffer.dtype == dtype
        if not fits or not writable_here(buffer) or buffer.device != tensor.device:
            buffer = torch.empty(tensor.numel(), dtype=dtype, device=tensor.device)
            self._buffers[site] = buffer
        return buffer[: tensor.numel()].view(tensor.shape).copy_(tensor)


SCRATCH = Scratch()
