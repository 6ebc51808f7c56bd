"""Memory planning before a model is loaded: what its weights, its KV cache over the requested context and its
working set will take, against what the machine has free, so a model that cannot fit is refused with the numbers
(and the context that would fit) before minutes of loading end in the kernel's out-of-memory killer.

The weights are counted from the checkpoint's tensor shapes, not loaded: each projection at the bytes per value of
the precision it will be held in (engine/quantize.py, engine/fp8.py), embeddings and norms in the compute dtype.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel

from engine.config import ModelConfig

GIB = 1 << 30
# Bytes per weight value as each precision holds a projection: int4 packs two values per byte with an fp16 scale
# and low per group of 32, int8 adds an fp16 scale per group of 32; fp8's scale per 128×128 block is a rounding
# error here.
_PROJECTION_BYTES = {"int4": 0.5 + 4 / 32, "int8": 1.0 + 2 / 32, "fp8": 1.0, "bf16": 2.0}
# The int4 model's output head stays int8 (engine/quantize.py); an FP8 model's stays in the compute dtype
# (engine/layers.py, output_weights).
_HEAD_BYTES = {"int4": 1.0}
# What the process needs besides weights and KV: the framework, the tokenizer, compiled kernels, the server. The
# share of free memory kept back is for everything else the machine runs.
RUNTIME_BYTES = GIB // 2
HEADROOM = 0.1
# Of the memory left once the model and one full-context request fit, the share the prefix cache may keep.
PREFIX_CACHE_SHARE = 0.5


class MemoryPlan(BaseModel):
    device: str
    weight_bytes: int
    kv_bytes_per_token: int
    context: int  # tokens one request may hold
    working_bytes: int  # activations of a prefill chunk, the logits, the runtime
    available_bytes: int  # free now, less the headroom kept for the rest of the machine

    @property
    def needed_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes_per_token * self.context + self.working_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.available_bytes

    @property
    def context_that_fits(self) -> int:
        """The longest context, in whole thousands of tokens, that fits beside the weights; 0 if none does."""
        left = self.available_bytes - self.weight_bytes - self.working_bytes
        return max(0, left // self.kv_bytes_per_token // 1024 * 1024)

    @property
    def prefix_cache_bytes(self) -> int:
        """A share of what is left once the model and one full-context request are in memory."""
        return max(0, int((self.available_bytes - self.needed_bytes) * PREFIX_CACHE_SHARE))

    def refusal(self, model: str) -> str:
        context = self.context_that_fits
        advice = (
            f"A context of {context:,} tokens would fit (--context {context})."
            if context >= 1024
            else "Not even its weights fit: use a narrower precision (--quantize int4 or fp8) or a machine with more memory."
        )
        return (
            f"{model} does not fit in the {_gib(self.available_bytes)} free on {self.device}: its weights take "
            f"{_gib(self.weight_bytes)}, its KV cache {_gib(self.kv_bytes_per_token * self.context)} for "
            f"{self.context:,} tokens ({self.kv_bytes_per_token:,} bytes a token), working memory "
            f"{_gib(self.working_bytes)}. {advice}"
        )


def plan_memory(
    config: ModelConfig,
    shapes: dict[str, tuple[int, ...]],
    dtype: torch.dtype,
    quantize: str | None,
    device: torch.device,
    context: int,
    kv_dtype: torch.dtype | None = None,
    prefill_chunk: int = 512,
    available: int | None = None,
) -> MemoryPlan:
    """The plan against `available` bytes, by default what `device` has free less the headroom."""
    # A block-FP8 checkpoint's projections stay FP8 when nothing asks otherwise (AntAngelMed-FP8 loaded as it is).
    held = "fp8" if config.fp8 else quantize
    return MemoryPlan(
        device=str(device),
        weight_bytes=weight_bytes(shapes, dtype, held),
        kv_bytes_per_token=kv_bytes_per_token(config, kv_dtype or dtype),
        context=context,
        working_bytes=working_bytes(config, dtype, prefill_chunk),
        available_bytes=int(available_bytes(device) * (1 - HEADROOM)) if available is None else available,
    )


def weight_bytes(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, quantize: str | None) -> int:
    """The bytes of the weights as loaded: projections in their storage precision, the rest in `dtype`."""
    compute = torch.finfo(dtype).bits // 8
    held = quantize or ""
    head_bytes = compute if held == "fp8" else _HEAD_BYTES.get(held, _PROJECTION_BYTES.get(held, compute))
    total = 0.0
    for name, shape in shapes.items():
        count = math.prod(shape)
        if _is_embedding(name):
            total += count * compute
            # A head tied to the embedding is quantized into a table of its own by int8 and int4.
            if quantize in ("int8", "int4") and not any(_is_head(other) for other in shapes):
                total += count * head_bytes
        elif _is_head(name):
            total += count * head_bytes
        elif len(shape) < 2 or _is_router(name):
            total += count * compute
        else:
            total += count * _PROJECTION_BYTES.get(quantize or "", compute)
    return int(total)


def kv_bytes_per_token(config: ModelConfig, kv_dtype: torch.dtype) -> int:
    """Keys and values of one token in every layer (MTP layers included), with FP8's scale per token and head."""
    layers = config.num_hidden_layers + config.mtp_layers
    per_head = config.head_dim * (torch.finfo(kv_dtype).bits // 8)
    if kv_dtype == torch.float8_e4m3fn:
        per_head += 2  # a bf16 scale (engine/kv_cache.py)
    return 2 * layers * config.num_key_value_heads * per_head


def working_bytes(config: ModelConfig, dtype: torch.dtype, prefill_chunk: int) -> int:
    """A prefill chunk's activations (residual, attention, the widest MLP or the routed experts' inputs), one row
    of logits per chunk token, and the runtime."""
    compute = torch.finfo(dtype).bits // 8
    heads = config.num_attention_heads * config.head_dim
    mlp = config.intermediate_size if config.moe is None else config.moe.intermediate_size * config.moe.experts_per_token
    per_token = 4 * config.hidden_size + 3 * heads + 3 * mlp + config.vocab_size
    return prefill_chunk * per_token * compute + RUNTIME_BYTES


def available_bytes(device: torch.device) -> int:
    """Memory free for a new model: the GPU's free memory, or the machine's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def _is_embedding(name: str) -> bool:
    return "embed_tokens" in name or "word_embeddings" in name or name.startswith("token_embd")


def _is_router(name: str) -> bool:
    """The MoE router's weight, which chooses experts and stays in the compute dtype (engine/moe.py)."""
    return name.endswith(".mlp.gate.weight") or "ffn_gate_inp" in name


def _is_head(name: str) -> bool:
    return name.startswith("lm_head") or name.startswith("output.")


def _gib(count: float) -> str:
    return f"{count / GIB:.1f} GiB"
