"""Clinidoc's inference engine: tokens in, tokens out. It knows nothing of clinics."""

from engine.checkpoint import default_model_path
from engine.generate import LocalEngine
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


def load_engine(model: str | None = None, device: str = "cpu") -> Engine:
    """The embedded engine on a GGUF file or HF directory; None loads the default SmolLM2-135M-Instruct."""
    return LocalEngine(model, device=device)


__all__ = [
    "ChatMessage",
    "Engine",
    "EngineError",
    "EngineInfo",
    "Event",
    "GenerationParams",
    "LocalEngine",
    "PromptTooLong",
    "Stats",
    "TextDelta",
    "default_model_path",
    "load_engine",
]
