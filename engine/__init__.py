"""Clinidoc's inference engine: tokens in, tokens out. It knows nothing of clinics."""

from typing import Literal

import torch

from engine.checkpoint import Checkpoint, default_model_path
from engine.generate import DrafterKind, LocalEngine
from engine.remote import RemoteEngine
from engine.types import (
    ChatMessage,
    Engine,
    EngineError,
    EngineInfo,
    Event,
    GenerationParams,
    ModelBrokeOff,
    ModelTimedOut,
    ModelUnreachable,
    PromptTooLong,
    Stats,
    TextDelta,
)


def load_engine(
    model: str | None = None,
    device: str = "cpu",
    quantize: Literal["auto", "none", "bf16", "fp8", "int8", "int4"] = "auto",
    context: int | None = None,
    prefix_cache_bytes: int | None = None,
    drafter: DrafterKind = "prompt-lookup",
    draft_model: str | None = None,
    max_batch: int = 8,
    kv_cache: Literal["full", "fp8"] = "full",
) -> Engine:
    """The embedded engine on a GGUF file or HF directory; None loads the default SmolLM2-135M-Instruct.

    CPUs here emulate bf16 slowly, so they compute in fp32; GPUs compute in bf16. `quantize="auto"` holds a GGUF
    checkpoint's Q4 weights as int4 on a CPU (its own 4-bit blocks, decoded by compiled kernels), and any other
    checkpoint as it is.
    """
    if quantize == "auto":
        quantize = auto_quantize(model, device)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    return LocalEngine(
        model, device=device, dtype=dtype, quantize=None if quantize == "none" else quantize, context=context,
        prefix_cache_bytes=prefix_cache_bytes, drafter=drafter, draft_model=draft_model, max_batch=max_batch,
        kv_dtype=torch.float8_e4m3fn if kv_cache == "fp8" else None,
    )


def auto_quantize(model: str | None, device: str) -> Literal["none", "int4"]:
    """int4 for a GGUF checkpoint of Q4 blocks on a CPU, where it decodes several times as fast as fp32 and, on the
    corpus evaluation (docs/benchmarks.md), answers and summarises as well; else the checkpoint's own precision."""
    if device != "cpu":
        return "none"
    checkpoint = Checkpoint(model or default_model_path())
    return "int4" if checkpoint.is_gguf and "Q4" in checkpoint.precision else "none"


def connect_engine(
    url: str,
    model: str | None = None,
    api_key: str | None = None,
    tokenizer: str | None = None,
    context: int | None = None,
    timeout_s: float = 300.0,
) -> Engine:
    """The model of a vLLM, SGLang or llama.cpp server at `url` (its OpenAI-compatible API, such as
    http://gpu-node:8000/v1); see engine/remote.py. It fails at once, with the reason, when the server cannot be
    used."""
    return RemoteEngine(url, model, api_key, tokenizer, context, timeout_s)


__all__ = [
    "ChatMessage",
    "Engine",
    "EngineError",
    "EngineInfo",
    "Event",
    "GenerationParams",
    "LocalEngine",
    "PromptTooLong",
    "RemoteEngine",
    "Stats",
    "TextDelta",
    "connect_engine",
    "default_model_path",
    "load_engine",
]
