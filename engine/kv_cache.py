"""A key/value cache allocated once for the whole context, so decoding never reallocates."""

from __future__ import annotations

import torch


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
    ):
        shape = (layers, batch, kv_heads, max_tokens, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_tokens = max_tokens

    def update(
        self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v ([B, H, T, D]) at [start, start+T) and return the cache up to start+T."""
        end = start + k.shape[2]
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes
