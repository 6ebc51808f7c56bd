"""Llama-family dense decoder (Llama, SmolLM2, Mistral; Qwen2 with q/k/v biases; Qwen3 with QK-norm).

Module names follow the Hugging Face checkpoints, so HF tensors load by their own names, except that q/k/v and
gate/up are fused into one projection each (the `fused` mappings name the checkpoint's parts); `gguf_config` and
`gguf_to_hf` below read llama.cpp's GGUF files: their config, and their tensor names mapped onto HF's.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
from torch import nn

from engine.config import ModelConfig, gguf_common, gguf_keys, hf_common
from engine.cpu_decoder import CompiledDecoder, LayerWeights, compiled_decoder
from engine.kv_cache import KVCache
from engine.layers import (
    GatedMLP, RMSNorm, Rotation, Step, attention, fused_linear, linear, output_weights, rotary_for, run_layers,
)
from engine.types import EngineError


class Attention(nn.Module):
    fused = {"qkv_proj": ("q_proj", "k_proj", "v_proj")}

    def __init__(self, cfg: ModelConfig, in_features: int | None = None):
        """`in_features`: the width of the input, when not hidden_size (an EAGLE3 layer reads two states side by side)."""
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.qkv_proj = fused_linear(
            in_features or cfg.hidden_size, (q_out, kv_out, kv_out), cfg.attention_bias, cfg.weights
        )
        self.o_proj = linear(q_out, cfg.hidden_size, weights=cfg.weights)
        self.qk_norm = cfg.qk_norm
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, rotate: Rotation, step: Step, layer: int) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv_proj(x).view(B, T, self.heads + 2 * self.kv_heads, self.head_dim)
        qk, v = qkv.split([self.heads + self.kv_heads, self.kv_heads], dim=2)
        if self.qk_norm:
            q, k = qk.split([self.heads, self.kv_heads], dim=2)
            qk = torch.cat([self.q_norm(q), self.k_norm(k)], dim=2)
        # The heads of q and k side by side take one rotation.
        q, k = rotate(qk).split([self.heads, self.kv_heads], dim=2)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), step, layer)
        return self.o_proj(out)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, cfg.weights)

    def forward(self, x: torch.Tensor, rotate: Rotation, step: Step, layer: int) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rotate, step, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = LlamaBody(cfg)
        self.lm_head = linear(cfg.hidden_size, cfg.vocab_size, weights=output_weights(cfg.weights))
        self.rope = rotary_for(cfg)
        self.compiled: CompiledDecoder | None = None

    def forward(
        self, tokens: torch.Tensor, caches: Sequence[KVCache], starts: Sequence[int], last_only: bool = False
    ) -> torch.Tensor:
        """tokens: [B, T]; row b continues the sequence cached in caches[b] from position starts[b].
        Returns fp32 logits [B, T, vocab].

        With `last_only`, logits only for the last position: a long prompt's full logits would not fit in memory.
        A pass of a few tokens over int8/int4 weights runs in one compiled call (engine/cpu_decoder.py).
        """
        if self.compiled is not None and self.compiled.takes(tokens, caches):
            return self.compiled(tokens, caches, starts, last_only)
        h, _ = self.hidden(tokens, caches, starts)
        if last_only:
            h = h[:, -1:]
        return self.lm_head(h).float()

    def hidden(
        self, tokens: torch.Tensor, caches: Sequence[KVCache], starts: Sequence[int], capture: Sequence[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final normed hidden states [B, T, H], what lm_head reads, and the residual stream entering the layers
        in `capture` (see `run_layers`)."""
        step = Step(caches, starts, tokens.shape[1], tokens.device)
        x = self.model.embed_tokens(tokens)
        rotate = self.rope.at(step.positions, x.dtype, self.config.head_dim)
        x, captured = run_layers(self.model.layers, x, rotate, step, capture)
        return self.model.norm(x), captured

    def materialize_buffers(self, device: torch.device | str) -> None:
        """Rotary tables are computed, not loaded: rebuild them on the weights' device. Then the compiled decoder,
        which reads the loaded weights and those tables, where it takes this model."""
        self.rope = rotary_for(self.config).to(device)
        layers = [
            LayerWeights(
                layer.input_layernorm, layer.post_attention_layernorm, getattr(layer.self_attn, "q_norm", None),
                getattr(layer.self_attn, "k_norm", None), layer.self_attn.qkv_proj, layer.self_attn.o_proj, layer.mlp,
            )
            for layer in self.model.layers
        ]
        self.compiled = compiled_decoder(self, self.model.embed_tokens, layers, self.model.norm)

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight


# Dense decoders that share the Llama layout; each differs by the flags it sets.
_HF_DENSE = {
    "llama": {},
    "mistral": {},
    "qwen2": {"attention_bias": True},
    "qwen3": {"qk_norm": True},
}


def hf_config(raw: dict[str, Any]) -> ModelConfig:
    """The config of a Llama-family HF checkpoint (`config.json`)."""
    model_type = raw.get("model_type", "")
    if model_type not in _HF_DENSE:
        raise EngineError(f"Model type '{model_type}' is not supported by the embedded engine.")
    flags = {"attention_bias": bool(raw.get("attention_bias", False)), **_HF_DENSE[model_type]}
    return ModelConfig(architecture="llama", **hf_common(raw), **flags)


def gguf_config(meta: dict[str, Any], tensor_shapes: dict[str, tuple[int, ...]]) -> ModelConfig:
    """The config of a `llama` GGUF file from its metadata; `tensor_shapes` are GGUF's own (innermost dim first)."""
    intermediate_size = gguf_keys(meta)("feed_forward_length")
    return ModelConfig(architecture="llama", intermediate_size=intermediate_size, **gguf_common(meta, tensor_shapes))


# llama.cpp's tensor names → the HF names above.
_GGUF_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def _unpermute_rope(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's conversion, which interleaves each head's halves for its GPT-J style RoPE."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def gguf_to_hf(name: str, tensor: torch.Tensor, cfg: ModelConfig) -> tuple[str, torch.Tensor]:
    if name in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[name], tensor
    match = _GGUF_BLOCK.fullmatch(name)
    if not match or match.group(2) not in _GGUF_LAYER:
        raise KeyError(name)
    layer, part, kind = match.groups()
    if part == "attn_q":
        tensor = _unpermute_rope(tensor, cfg.num_attention_heads)
    elif part == "attn_k":
        tensor = _unpermute_rope(tensor, cfg.num_key_value_heads)
    return f"model.layers.{layer}.{_GGUF_LAYER[part]}.{kind}", tensor
