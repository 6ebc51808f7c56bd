"""Putting checkpoint tensors into a model built on the meta device, one tensor at a time."""

from __future__ import annotations

import torch
from torch import nn

from engine.types import EngineError

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def model_dtype_for(name: str, tensor: torch.Tensor, dtype: torch.dtype, keep_fp32: tuple[str, ...]) -> torch.dtype:
    """FP8 weights stay FP8 and their scales fp32; named exceptions stay fp32; everything else runs in `dtype`."""
    if tensor.dtype in FP8_DTYPES:
        return tensor.dtype
    if name.endswith("weight_scale_inv") or name.endswith(keep_fp32):
        return torch.float32
    return dtype


def assign(root: nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Replace the meta placeholder `name` with the loaded tensor, without a copy."""
    module_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(module_name), attr, nn.Parameter(tensor, requires_grad=False))


def require_all(model: nn.Module, loaded: set[str]) -> None:
    missing = {name for name, p in model.named_parameters() if p.is_meta} - loaded
    if missing:
        raise EngineError(f"The checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}.")
