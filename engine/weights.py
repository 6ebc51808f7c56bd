"""Putting checkpoint tensors into a model built on the meta device, one tensor at a time.

A model may declare, by name, tensors kept in fp32 (`keep_fp32`) and checkpoint tensors that are slices of one
of its stacked tensors (`stacked_name`, e.g. per-expert weights). A module that fuses several of the checkpoint's
projections into one (`engine.layers.fused_linear`) names them in a `fused` mapping, as vLLM's stacked-params
mapping does: {"qkv_proj": ("q_proj", "k_proj", "v_proj")} loads q, k and v as consecutive rows of qkv_proj.
Where the model holds a weight in block FP8, int8 or int4 and the checkpoint has it in full precision, the weight
is quantized as it arrives (`--quantize fp8`, `int8`, `int4`), so the full-precision copy never exists beside the
model. A module that holds weights in integers says so in `integer` (its format) and `integer_weights` (their
names); an FP8 checkpoint loaded into such a model is dequantized one tensor at a time first (`dequantized_fp8`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from engine.fp8 import FP8, Fp8Parts, dequantize_block_fp8, quantize_block_fp8
from engine.quantize import quantized as quantized_buffers
from engine.types import EngineError

SCALE_SUFFIX = "_scale_inv"


def load_weights(
    model: nn.Module,
    tensors: Iterable[tuple[str, torch.Tensor]],
    dtype: torch.dtype,
    device: torch.device | str,
    weight_dtype: torch.dtype | None = None,
) -> None:
    """`dtype` is what the model computes in; projection weights may be stored in a narrower `weight_dtype`."""
    targets = model.state_dict(keep_vars=True)
    projections = _projection_tensors(model)
    keep_fp32: tuple[str, ...] = getattr(model, "keep_fp32", ())
    stacked_name = getattr(model, "stacked_name", lambda name: (name, None))
    # Modules holding int8/int4 weights, by name; their buffers keep the types the module declares.
    quantized = {name: module for name, module in model.named_modules() if getattr(module, "integer", None)}
    stacks: dict[str, torch.Tensor] = {}
    filled: dict[str, set[int]] = defaultdict(set)

    def put(name: str, tensor: torch.Tensor, index: int | None) -> None:
        target = targets[name]
        module_name, _, attr = name.rpartition(".")
        if target.dtype == FP8 or (module_name in quantized and attr != "bias"):
            want = target.dtype
        elif name.endswith(SCALE_SUFFIX) or name.endswith(keep_fp32):
            want = torch.float32
        elif name in projections and weight_dtype is not None:
            want = weight_dtype
        else:
            want = dtype
        tensor = tensor.to(device=device, dtype=want)
        if index is None:
            _assign(model, name, tensor)
            filled[name].add(0)
            return
        if name not in stacks:
            stacks[name] = torch.empty(target.shape, dtype=want, device=device)
        stacks[name][index] = tensor
        filled[name].add(index)

    for checkpoint_name, tensor in _joined(tensors, _fused_parts(model)):
        name, index = stacked_name(checkpoint_name)
        if name not in targets:
            continue  # e.g. rotary tables some exporters save; the engine computes its own
        module_name, _, attr = name.rpartition(".")
        if module_name in quantized and attr in quantized[module_name].integer_weights:
            _put_quantized(put, name, quantized[module_name], tensor.to(device), index)
            continue
        if targets[name].dtype == FP8 and tensor.dtype != FP8:
            tensor, scale = quantize_block_fp8(tensor.to(device))
            put(name + SCALE_SUFFIX, scale, index)
        put(name, tensor, index)

    for name, tensor in stacks.items():
        if len(filled[name]) != tensor.shape[0]:
            raise EngineError(f"The checkpoint lacks some of the {tensor.shape[0]} experts of {name}.")
        _assign(model, name, tensor)
    tied_head = getattr(model.config, "tie_word_embeddings", False)
    integer_head = quantized.get("lm_head")
    if tied_head and integer_head is not None:
        # An integer head cannot share the embedding's tensor: it holds its own quantized copy of it.
        _put_quantized(put, "lm_head.weight", integer_head, input_embedding(model).weight)
    elif tied_head:
        filled["lm_head.weight"].add(0)
    missing = [name for name in targets if name not in filled]
    if missing:
        raise EngineError(f"The checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}.")
    if tied_head and integer_head is None:
        model.tie_weights()


def _fused_parts(model: nn.Module) -> dict[str, tuple[str, int, int]]:
    """Checkpoint module name → (the fused module holding it, its place among the parts, how many parts), from the
    `fused` mappings of the model's modules; an FP8 part keeps a module of its own (`Fp8Parts`)."""
    parts = {}
    for prefix, module in model.named_modules():
        for fused, names in getattr(module, "fused", {}).items():
            fused_name = f"{prefix}.{fused}"
            apart = isinstance(module.get_submodule(fused), Fp8Parts)  # each part alone, joined with nothing
            for index, name in enumerate(names):
                joined = (f"{fused_name}.parts.{index}", 0, 1) if apart else (fused_name, index, len(names))
                parts[f"{prefix}.{name}"] = joined
    return parts


def _joined(
    tensors: Iterable[tuple[str, torch.Tensor]], parts: dict[str, tuple[str, int, int]]
) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors with those of fused projections renamed, and concatenated once all parts have come:
    int8/int4 then quantize the whole weight, whose rows are those of the parts quantized alone."""
    waiting: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
    for name, tensor in tensors:
        module_name, _, attr = name.rpartition(".")
        if module_name not in parts:
            yield name, tensor
            continue
        fused, index, count = parts[module_name]
        name = f"{fused}.{attr}"
        waiting[name][index] = tensor
        if len(waiting[name]) == count:
            arrived = waiting.pop(name)
            yield name, torch.cat([arrived[i] for i in range(count)])


def _put_quantized(
    put: Callable[[str, torch.Tensor, int | None], None],
    name: str,
    module: nn.Module,
    weight: torch.Tensor,
    index: int | None = None,
) -> None:
    """Quantize a full-precision weight (or one expert's slice of it, `index`) into its module's int8/int4 buffers."""
    for suffix, tensor in quantized_buffers(weight, module.integer).items():
        put(name + suffix, tensor, index)


def dequantized_fp8(
    tensors: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """A block-FP8 checkpoint's tensors with each FP8 weight dequantized (to `dtype`) by its `*_scale_inv`, for a
    model that holds them otherwise (int8/int4). Each waits only for its partner, which checkpoints store beside it."""
    waiting: dict[str, torch.Tensor] = {}
    for name, tensor in tensors:
        is_scale = name.endswith(SCALE_SUFFIX)
        if not is_scale and tensor.dtype != FP8:
            yield name, tensor
            continue
        weight_name = name.removesuffix(SCALE_SUFFIX)
        partner = waiting.pop(name + SCALE_SUFFIX if not is_scale else weight_name, None)
        if partner is None:
            waiting[name] = tensor
            continue
        weight, scale = (partner, tensor) if is_scale else (tensor, partner)
        yield weight_name, dequantize_block_fp8(weight, scale, dtype)
    if waiting:
        raise EngineError(f"The checkpoint's FP8 weights and scales do not pair up, e.g. {sorted(waiting)[:2]}.")


def input_embedding(model: nn.Module) -> nn.Embedding:
    """The token embedding of a model (each architecture has exactly one): what a tied head reads, and what an
    EAGLE3 head without an embedding of its own shares."""
    (embedding,) = (m for m in model.modules() if isinstance(m, nn.Embedding))
    return embedding


def _projection_tensors(model: nn.Module) -> set[str]:
    """Names of the matmul operands: linear layers' weights and biases, and stacked expert weights."""
    from engine.moe import StackedExperts

    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, StackedExperts)):
            names.update(f"{module_name}.{p}" for p, _ in module.named_parameters(recurse=False))
    return names


def _assign(root: nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Replace the meta placeholder `name` with the loaded tensor, without a copy."""
    module_name, _, attr = name.rpartition(".")
    module = root.get_submodule(module_name)
    if attr in module._buffers:
        module._buffers[attr] = tensor
    else:
        setattr(module, attr, nn.Parameter(tensor, requires_grad=False))


def resident_bytes(model: nn.Module) -> int:
    """Bytes held by the model's weights, counting a tied tensor once."""
    seen: dict[int, int] = {}
    for tensor in model.state_dict().values():
        seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return sum(seen.values())
