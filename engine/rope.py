"""Rotary frequencies: plain RoPE and YaRN.

YaRN follows transformers >= 4.57 (`modeling_rope_utils._compute_yarn_parameters`): the explicit `factor` is used as
given. 4.51-4.55 replaced it by max_position_embeddings / original_max_position_embeddings, which turns Ling's
rope_scaling into a silent no-op; vLLM and SGLang use the explicit factor too.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, Field


class RopeScaling(BaseModel):
    type: Literal["yarn"] = "yarn"
    factor: float = Field(ge=1.0)
    original_max_position_embeddings: int = Field(gt=0)  # the pretraining context, L0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None  # overrides the value derived from factor and mscale
    truncate: bool = True

    def attention_scale(self) -> float:
        """What cos and sin are multiplied by, so q·k on the rotary dims grows by its square."""
        if self.attention_factor is not None:
            return self.attention_factor
        if self.mscale and self.mscale_all_dim:  # DeepSeek-style configs give both
            return _mscale(self.factor, self.mscale) / _mscale(self.factor, self.mscale_all_dim)
        return _mscale(self.factor)


def _mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _correction_dim(rotations: float, dim: int, theta: float, original_context: int) -> float:
    """The (fractional) frequency index whose wavelength fits `rotations` times into the pretraining context."""
    return (dim * math.log(original_context / (rotations * 2 * math.pi))) / (2 * math.log(theta))


def _extrapolation_weight(scaling: RopeScaling, dim: int, theta: float) -> torch.Tensor:
    """1 for the fast dims that keep their frequency, 0 for the slow ones divided by factor, a linear ramp between."""
    low = _correction_dim(scaling.beta_fast, dim, theta, scaling.original_max_position_embeddings)
    high = _correction_dim(scaling.beta_slow, dim, theta, scaling.original_max_position_embeddings)
    if scaling.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    return 1 - ramp


def rope_inv_freq(rotary_dim: int, theta: float, scaling: RopeScaling | None = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [rotary_dim // 2] in fp32 and the attention factor that scales cos and sin.

    The fp32 ops match transformers' in kind and order, so the tables agree to the last bit.
    """
    wavelength_base = theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
    if scaling is None:
        return 1.0 / wavelength_base, 1.0
    keep = _extrapolation_weight(scaling, rotary_dim, theta)
    inv_freq = 1.0 / (scaling.factor * wavelength_base) * (1 - keep) + 1.0 / wavelength_base * keep
    return inv_freq, scaling.attention_scale()
