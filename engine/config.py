"""One normalised model config, read from an HF `config.json` or from GGUF metadata."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from engine.moe import MoEConfig
from engine.quantize import IntMode, WeightFormat
from engine.rope import RopeScaling
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
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2 puts biases on q, k and v
    qk_norm: bool = False  # Qwen3 normalises every q and k head before RoPE
    moe: MoEConfig | None = None
    mtp_layers: int = 0  # multi-token-prediction layers stored after the main ones
    fp8_block_size: list[int] | None = None  # set when the checkpoint stores block-quantized FP8 weights
    integer: IntMode | None = None  # set at load to hold the weights in int8/int4 on a CPU (`--quantize int4`)
    bos_token_id: int | None = None
    eos_token_ids: list[int] = []

    @property
    def fp8(self) -> bool:
        return self.fp8_block_size is not None

    @property
    def weights(self) -> WeightFormat:
        return self.integer or ("fp8" if self.fp8 else "full")

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def context_window(self) -> int:
        if self.rope_scaling is None:
            return self.max_position_embeddings
        # Configs disagree on what max_position_embeddings means under YaRN: Ling keeps the pretraining length there
        # (32768, factor 4), Qwen-style configs state the extended one. The larger of the two is what the model is
        # meant to serve. round(), not int(): factor is often a quotient, and int() would lose a position to float error.
        scaled = round(self.rope_scaling.original_max_position_embeddings * self.rope_scaling.factor)
        return max(self.max_position_embeddings, scaled)


def eos_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [int(value)]


def _yarn(params: dict[str, Any], max_position_embeddings: int) -> RopeScaling:
    # Configs often write null for "use the default"; transformers treats null and missing alike.
    given = {key: value for key, value in params.items() if value is not None}
    given.setdefault("original_max_position_embeddings", max_position_embeddings)
    try:
        return RopeScaling.model_validate({**given, "type": "yarn"})
    except ValidationError as err:
        raise EngineError(f"The model's YaRN rope scaling settings are invalid: {err}") from None


def _hf_rope_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """rope_theta and rope_scaling from an HF config.

    transformers < 5 writes `rope_scaling` with the theta at the top level; transformers 5 writes `rope_parameters`,
    which holds the theta as well.
    """
    params = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind not in ("yarn", "default", "none"):
        raise EngineError(
            f"This model uses '{kind}' rope scaling; the embedded engine supports only YaRN or no scaling."
        )
    return {
        "rope_theta": params.get("rope_theta") or raw.get("rope_theta", 10000.0),
        "rope_scaling": _yarn(params, raw.get("max_position_embeddings", 2048)) if kind == "yarn" else None,
    }


def hf_common(raw: dict[str, Any]) -> dict[str, Any]:
    """The fields every HF decoder config spells the same way."""
    heads = raw["num_attention_heads"]
    return dict(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=raw.get("num_key_value_heads", heads),
        head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        max_position_embeddings=raw.get("max_position_embeddings", 2048),
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
        bos_token_id=raw.get("bos_token_id"),
        eos_token_ids=eos_list(raw.get("eos_token_id")),
        fp8_block_size=_fp8_block_size(raw.get("quantization_config")),
        **_hf_rope_fields(raw),
    )


def gguf_keys(meta: dict[str, Any]) -> Callable[..., Any]:
    """`key("block_count")` reads `{architecture}.block_count`: llama.cpp prefixes a model's keys with its
    architecture's name (`llama`, `bailingmoe2`)."""
    arch = meta["general.architecture"]

    def key(name: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{name}", default)

    return key


def gguf_common(meta: dict[str, Any], tensor_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The ModelConfig fields that every llama.cpp architecture writes under the same keys. `tensor_shapes` are
    GGUF's own (innermost dim first)."""
    key = gguf_keys(meta)
    hidden = key("embedding_length")
    heads = key("attention.head_count")
    head_dim = key("attention.key_length") or hidden // heads
    return dict(
        vocab_size=key("vocab_size") or tensor_shapes["token_embd.weight"][1],
        hidden_size=hidden,
        num_hidden_layers=key("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=key("attention.head_count_kv", heads),
        head_dim=head_dim,
        rms_norm_eps=key("attention.layer_norm_rms_epsilon", 1e-6),
        rope_theta=key("rope.freq_base", 10000.0),
        rope_scaling=_gguf_yarn(meta),
        partial_rotary_factor=key("rope.dimension_count", head_dim) / head_dim,
        max_position_embeddings=key("context_length", 2048),
        # llama.cpp omits `output.weight` when the embedding is shared with the output head.
        tie_word_embeddings="output.weight" not in tensor_shapes,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_ids=eos_list(meta.get("tokenizer.ggml.eos_token_id")),
    )


# The rope.scaling keys whose meaning transformers' YaRN shares; `finetuned` is a note that changes nothing.
_GGUF_YARN_KEYS = {"type", "factor", "original_context_length", "yarn_beta_fast", "yarn_beta_slow", "finetuned"}


def _gguf_yarn(meta: dict[str, Any]) -> RopeScaling | None:
    """llama.cpp's YaRN with only these keys is transformers' (engine/rope.py): the same ramp between the beta_fast
    and beta_slow dims, cos and sin scaled by 0.1·ln(factor) + 1. Its further knobs (attn_factor,
    yarn_log_multiplier, yarn_ext_factor) have no exact HF counterpart; refusing a file that sets them beats running
    a long-context model with the wrong positions."""
    key = gguf_keys(meta)
    kind = key("rope.scaling.type", "none")
    if kind == "none":
        return None
    prefix = f"{meta['general.architecture']}.rope.scaling."
    knobs = {name.removeprefix(prefix) for name in meta if name.startswith(prefix)} - _GGUF_YARN_KEYS
    if kind != "yarn" or knobs:
        raise EngineError(
            f"This GGUF uses '{kind}' rope scaling{' with ' + ', '.join(sorted(knobs)) if knobs else ''}, "
            "which the engine cannot reproduce exactly."
        )
    params = {
        "factor": key("rope.scaling.factor"),
        "original_max_position_embeddings": key("rope.scaling.original_context_length"),
        "beta_fast": key("rope.scaling.yarn_beta_fast"),
        "beta_slow": key("rope.scaling.yarn_beta_slow"),
    }
    return _yarn(params, key("context_length", 2048))


def _fp8_block_size(quant: dict[str, Any] | None) -> list[int] | None:
    if not quant:
        return None
    if quant.get("quant_method") != "fp8" or not quant.get("weight_block_size"):
        raise EngineError(
            f"Quantization '{quant.get('quant_method')}' is not supported; the engine reads block FP8 checkpoints."
        )
    return list(quant["weight_block_size"])


def with_yarn(cfg: ModelConfig, context: int) -> ModelConfig:
    """`cfg` able to serve `context` tokens: unchanged if they already fit, else with YaRN stretching the native window."""
    if context <= cfg.context_window:
        return cfg  # YaRN changes logits at every length, so it is only added when needed
    if cfg.rope_scaling is not None:
        raise EngineError(
            f"This model already uses YaRN for a {cfg.context_window}-token window; "
            f"the engine does not stretch it further to {context}."
        )
    native = cfg.max_position_embeddings
    scaling = RopeScaling(factor=context / native, original_max_position_embeddings=native)
    return cfg.model_copy(update={"rope_scaling": scaling})
