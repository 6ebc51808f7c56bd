"""One normalised model config, read from an HF `config.json` or from GGUF metadata."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from engine.types import EngineError


class ModelConfig(BaseModel):
    architecture: str  # the key of engine.models.ARCHITECTURES
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 1.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2 puts biases on q, k and v
    qk_norm: bool = False  # Qwen3 normalises every q and k head before RoPE
    bos_token_id: int | None = None
    eos_token_ids: list[int] = []

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)


# Dense decoders that share the Llama layout; each differs by the flags it sets.
_HF_DENSE = {
    "llama": {},
    "mistral": {},
    "qwen2": {"attention_bias": True},
    "qwen3": {"qk_norm": True},
}


def _eos_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [int(value)]


def from_hf_config(raw: dict[str, Any]) -> ModelConfig:
    model_type = raw.get("model_type", "")
    if model_type not in _HF_DENSE:
        raise EngineError(f"Model type '{model_type}' is not supported by the embedded engine.")
    if raw.get("rope_scaling") or raw.get("quantization_config"):
        raise EngineError(
            f"This {model_type} checkpoint uses rope scaling or quantization, which this engine does not read yet."
        )
    heads = raw["num_attention_heads"]
    flags = {"attention_bias": bool(raw.get("attention_bias", False)), **_HF_DENSE[model_type]}
    return ModelConfig(
        architecture="llama",
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=raw.get("num_key_value_heads", heads),
        head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        rope_theta=raw.get("rope_theta", 10000.0),
        max_position_embeddings=raw.get("max_position_embeddings", 2048),
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
        bos_token_id=raw.get("bos_token_id"),
        eos_token_ids=_eos_list(raw.get("eos_token_id")),
        **flags,
    )


def from_gguf_metadata(meta: dict[str, Any], tensor_shapes: dict[str, tuple[int, ...]]) -> ModelConfig:
    """`tensor_shapes` are GGUF's own (innermost dim first)."""
    arch = meta["general.architecture"]
    if arch != "llama":
        raise EngineError(f"GGUF architecture '{arch}' is not supported by the embedded engine.")

    def key(name: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{name}", default)

    hidden = key("embedding_length")
    heads = key("attention.head_count")
    head_dim = key("attention.key_length") or hidden // heads
    return ModelConfig(
        architecture="llama",
        vocab_size=key("vocab_size") or tensor_shapes["token_embd.weight"][1],
        hidden_size=hidden,
        intermediate_size=key("feed_forward_length"),
        num_hidden_layers=key("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=key("attention.head_count_kv", heads),
        head_dim=head_dim,
        rms_norm_eps=key("attention.layer_norm_rms_epsilon", 1e-6),
        rope_theta=key("rope.freq_base", 10000.0),
        partial_rotary_factor=key("rope.dimension_count", head_dim) / head_dim,
        max_position_embeddings=key("context_length", 2048),
        # llama.cpp omits `output.weight` when the embedding is shared with the output head.
        tie_word_embeddings="output.weight" not in tensor_shapes,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_ids=_eos_list(meta.get("tokenizer.ggml.eos_token_id")),
    )
