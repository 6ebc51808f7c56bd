"""Clinidoc's inference engine: tokens in, tokens out. It knows nothing of clinics."""

from typing import Literal

import torch

from engine.checkpoint import default_model_path
from engine.generate import DrafterKind, LocalEngine
from engine.remote import RemoteEngine
from engine.types import (
    ChatMessage,
    Engine,
    EngineError,
    EngineInfo,
    Event,
    GenerationParams,
    PromptTooLong,
    Stats,
    TextDelta,
)


def load_engine(
    model: str | None = None,
    device: str = "cpu",
    quantize: Literal["none", "bf16", "fp8", "int8", "int4"] = "none",
    context: int | None = None,
    prefix_cache_bytes: int = 1 << 30,
    drafter: DrafterKind = "prompt-lookup",
    draft_model: str | None = None,
    max_batch: int = 8,
    kv_cache: Literal["full", "fp8"] = "full",
) -> Engine:
    """The embedded engine on a GGUF file or HF directory; None loads the default SmolLM2-135M-Instruct.

    CPUs here emulate bf16 slowly, so they compute in fp32; GPUs compute in bf16.
    """
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    return LocalEngine(
        model, device=device, dtype=dtype, quantize=None if quantize == "none" else quantize, context=context,
        prefix_cache_bytes=prefix_cache_bytes, drafter=drafter, draft_model=draft_model, max_batch=max_batch,
        kv_dtype=torch.float8_e4m3fn if kv_cache == "fp8" else None,
    )


def connect_engine(
    url: str,
    model: str | None = None,
    api_key: str | None = None,
    tokenizer: str | None = None,
    context: int | None = None,
    timeout_s: float = 300.0,
) -> Engine:
    """The model of a vLLM or SGLang server at `url` (its OpenAI-compatible API, such as http://gpu-node:8000/v1);
    see engine/remote.py. It fails at once, with the reason, when the server cannot be used."""
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
