"""BailingMoeV2 (Ling-2.0, AntAngelMed): fused QKV with per-head QK-norm and partial RoPE, a few dense
layers, then MoE layers with a sigmoid group-limited router and shared experts; optionally one MTP layer.

Module names follow the checkpoint (`model.word_embeddings`, `attention.query_key_value`, …) so most
tensors load by their own names. Per-expert tensors `mlp.experts.{e}.{gate,up,down}_proj.weight` are
slotted into the stacked `mlp.experts.{gate,up,down}_proj` by `load_weights` (`stacked_name` below). At the end,
`gguf_config` and `gguf_to_hf` read llama.cpp's GGUF files of the model.
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
    GatedMLP, RMSNorm, Rotation, Step, attention, linear, output_weights, rotary_for, run_layers,
)
from engine.moe import MoEBlock, MoEConfig
from engine.types import EngineError


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        qkv_out = (self.heads + 2 * self.kv_heads) * self.head_dim
        self.query_key_value = linear(cfg.hidden_size, qkv_out, cfg.attention_bias, cfg.weights)
        self.query_layernorm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.key_layernorm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.dense = linear(self.heads * self.head_dim, cfg.hidden_size, weights=cfg.weights)

    def forward(self, x: torch.Tensor, rotate: Rotation, step: Step, layer: int) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.query_key_value(x).view(B, T, self.heads + 2 * self.kv_heads, self.head_dim)
        q, k, v = qkv.split([self.heads, self.kv_heads, self.kv_heads], dim=2)
        # The heads of q and k side by side take one rotation.
        qk = torch.cat([self.query_layernorm(q), self.key_layernorm(k)], dim=2)
        q, k = rotate(qk).split([self.heads, self.kv_heads], dim=2)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), step, layer)
        return self.dense(out)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        moe = cfg.moe
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attention = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if layer < moe.first_k_dense_replace:
            self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, cfg.weights)
        else:
            self.mlp = MoEBlock(cfg.hidden_size, moe, GatedMLP(cfg.hidden_size, moe.shared_size, cfg.weights), cfg.weights)

    def forward(self, x: torch.Tensor, rotate: Rotation, step: Step, layer: int) -> torch.Tensor:
        x = x + self.attention(self.input_layernorm(x), rotate, step, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class MTPLayer(DecoderLayer):
    """Multi-token prediction: from the main model's normed hidden state at position i and the embedding
    of token i+1, a full decoder layer predicts token i+2 through the shared lm_head."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__(cfg, layer)
        self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # FP8 checkpoints keep the MTP projection in full precision.
        self.eh_proj = linear(2 * cfg.hidden_size, cfg.hidden_size, weights=cfg.integer or "full")
        self.final_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class BailingMoeV2Body(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        layers: list[nn.Module] = [DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers)]
        layers += [MTPLayer(cfg, cfg.num_hidden_layers + i) for i in range(cfg.mtp_layers)]
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class BailingMoeV2ForCausalLM(nn.Module):
    # Tensors that stay fp32 whatever dtype the model runs in: selection must not lose bias precision.
    keep_fp32 = ("mlp.gate.expert_bias",)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = BailingMoeV2Body(cfg)
        self.lm_head = linear(cfg.hidden_size, cfg.vocab_size, weights=output_weights(cfg.weights))
        self.rope = rotary_for(cfg)
        self.compiled: CompiledDecoder | None = None

    def hidden(
        self, tokens: torch.Tensor, caches: Sequence[KVCache], starts: Sequence[int], capture: Sequence[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final normed hidden states [B, T, H], what lm_head and the MTP layer read, and the residual stream
        entering the main layers in `capture` (see `run_layers`). Row b continues the sequence cached in caches[b]
        from position starts[b]."""
        step = Step(caches, starts, tokens.shape[1], tokens.device)
        x = self.model.word_embeddings(tokens)
        rotate = self.rope.at(step.positions, x.dtype, self.config.head_dim)
        x, captured = run_layers(self.model.layers[: self.config.num_hidden_layers], x, rotate, step, capture)
        return self.model.norm(x), captured

    def forward(
        self, tokens: torch.Tensor, caches: Sequence[KVCache], starts: Sequence[int], last_only: bool = False
    ) -> torch.Tensor:
        """fp32 logits [B, T, vocab] (the last position's only with `last_only`). A pass of a few tokens over int8/int4
        weights runs in one compiled call (engine/cpu_decoder.py)."""
        if self.compiled is not None and self.compiled.takes(tokens, caches):
            return self.compiled(tokens, caches, starts, last_only)
        h, _ = self.hidden(tokens, caches, starts)
        if last_only:
            h = h[:, -1:]
        return self.lm_head(h).float()

    def draft_next(
        self, hidden: torch.Tensor, tokens: torch.Tensor, caches: Sequence[KVCache], starts: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One MTP step. hidden: [B, T, H] normed states at the positions from starts[b]; tokens: [B, T] the tokens
        that follow each of those positions. Returns (logits for the token after `tokens` [B, T, V] fp32, the MTP state to
        feed back as `hidden` for a further step)."""
        layer_index = self.config.num_hidden_layers
        mtp: MTPLayer = self.model.layers[layer_index]
        e = mtp.enorm(self.model.word_embeddings(tokens))
        u = mtp.eh_proj(torch.cat([e, mtp.hnorm(hidden)], dim=-1))
        step = Step(caches, starts, tokens.shape[1], tokens.device)
        rotate = self.rope.at(step.positions, u.dtype, self.config.head_dim)
        r = DecoderLayer.forward(mtp, u, rotate, step, layer_index)
        out = mtp.final_layernorm(r)
        return self.lm_head(out).float(), out

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.word_embeddings.weight

    def materialize_buffers(self, device: torch.device | str) -> None:
        """Rotary tables are computed, not loaded: rebuild them on the weights' device. Then the compiled decoder over
        the main layers (not the MTP layer), where it takes this model."""
        self.rope = rotary_for(self.config).to(device)
        layers = [
            LayerWeights(
                layer.input_layernorm, layer.post_attention_layernorm, layer.attention.query_layernorm,
                layer.attention.key_layernorm, layer.attention.query_key_value, layer.attention.dense, layer.mlp,
            )
            for layer in list(self.model.layers)[: self.config.num_hidden_layers]
        ]
        self.compiled = compiled_decoder(self, self.model.word_embeddings, layers, self.model.norm)

    @staticmethod
    def stacked_name(name: str) -> tuple[str, int | None]:
        """Per-expert checkpoint tensors are slices of the layer's stacked expert tensors."""
        match = _EXPERT.fullmatch(name)
        if not match:
            return name, None
        prefix, expert, proj, suffix = match.groups()
        return f"{prefix}.{proj}{suffix.removeprefix('weight')}", int(expert)


_EXPERT = re.compile(r"(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(\w+_proj)\.(weight|weight_scale_inv)")


# GGUF files of BailingMoeV2, as llama.cpp's converter writes them (architecture `bailingmoe2`): q/k/v stay fused and
# unpermuted (the rotation is NeoX-style in both), the experts of a layer come as three [experts, out, in] stacks,
# and an MTP layer is counted among the blocks, after the main ones.


# Ling-2.0 / AntAngelMed (llama.cpp calls it `bailing2`): the system turn is always present and ends with the
# thinking switch; no separators between turns; the generation prompt has no trailing newline.
CHAT_TEMPLATE = (
    "{%- set system = messages[0].content if messages and messages[0].role == 'system' else none -%}"
    "<role>SYSTEM</role>{%- if system is not none -%}{{ system ~ '\\n' }}{%- endif -%}detailed thinking off<|role_end|>"
    "{%- for message in messages -%}"
    "{%- if loop.first and message.role == 'system' -%}"
    "{%- elif message.role == 'system' -%}<role>SYSTEM</role>{{ message.content }}<|role_end|>"
    "{%- elif message.role == 'user' -%}<role>HUMAN</role>{{ message.content }}<|role_end|>"
    "{%- elif message.role == 'assistant' -%}<role>ASSISTANT</role>{{ message.content }}<|role_end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<role>ASSISTANT</role>{%- endif -%}"
)


def hf_config(raw: dict[str, Any]) -> ModelConfig:
    """Ling-2.0 / AntAngelMed. Values the spec could not verify are read from the file, never assumed."""
    if raw.get("score_function", "sigmoid") != "sigmoid":
        raise EngineError(f"BailingMoeV2 with '{raw['score_function']}' routing is not supported.")
    if raw.get("norm_head"):
        raise EngineError("BailingMoeV2 checkpoints with a normalised lm_head (norm_head) are not supported.")
    if raw.get("use_qk_norm") is False:
        raise EngineError("BailingMoeV2 without QK-norm is not supported.")
    return ModelConfig(
        architecture="bailing_moe_v2",
        **hf_common(raw),
        attention_bias=bool(raw.get("use_qkv_bias", False)),
        qk_norm=True,
        partial_rotary_factor=raw.get("partial_rotary_factor", 1.0),
        moe=MoEConfig(
            num_experts=raw["num_experts"],
            experts_per_token=raw["num_experts_per_tok"],
            intermediate_size=raw["moe_intermediate_size"],
            num_shared_experts=raw.get("num_shared_experts") or 0,
            shared_intermediate_size=raw.get("moe_shared_expert_intermediate_size"),
            n_group=raw.get("n_group") or 1,
            topk_group=raw.get("topk_group") or 1,
            routed_scaling_factor=raw.get("routed_scaling_factor", 1.0),
            norm_topk_prob=bailing_norm_topk(raw.get("num_experts_per_tok", 1), raw.get("norm_topk_prob", True)),
            first_k_dense_replace=raw.get("first_k_dense_replace", 0),
        ),
    )


def bailing_norm_topk(experts_per_token: int, flag: bool) -> bool:
    """HF's BailingMoeV2 normalises the chosen experts' weights whenever it chooses more than one, whatever its
    `norm_topk_prob` flag (GGUF: `expert_weights_norm`) says."""
    return experts_per_token > 1 or flag


def gguf_config(meta: dict[str, Any], tensor_shapes: dict[str, tuple[int, ...]]) -> ModelConfig:
    """The config of a `bailingmoe2` GGUF file from its metadata; `tensor_shapes` are GGUF's own (innermost first)."""
    key = gguf_keys(meta)
    if key("expert_gating_func") != _SIGMOID:
        raise EngineError("BailingMoeV2 GGUF files whose router is not a sigmoid are not supported.")
    if "blk.0.attn_q_norm.weight" not in tensor_shapes:
        raise EngineError("BailingMoeV2 GGUF files without QK-norm are not supported.")
    common = gguf_common(meta, tensor_shapes)
    mtp_layers = key("nextn_predict_layers", 0)
    first_moe = key("leading_dense_block_count", 0)
    top_k = key("expert_used_count")
    # The shared experts' width is read from their tensor: llama.cpp multiplies the stated width by the number of
    # shared experts where transformers does not, so the key alone is ambiguous.
    shared_size = tensor_shapes[f"blk.{first_moe}.ffn_gate_shexp.weight"][1]
    return ModelConfig(
        architecture="bailing_moe_v2",
        **common | {"num_hidden_layers": common["num_hidden_layers"] - mtp_layers},
        intermediate_size=key("feed_forward_length"),
        attention_bias="blk.0.attn_qkv.bias" in tensor_shapes,
        qk_norm=True,
        mtp_layers=mtp_layers,
        moe=MoEConfig(
            num_experts=key("expert_count"),
            experts_per_token=top_k,
            intermediate_size=key("expert_feed_forward_length"),
            num_shared_experts=key("expert_shared_count"),
            shared_intermediate_size=shared_size,
            n_group=key("expert_group_count") or 1,
            topk_group=key("expert_group_used_count") or 1,
            routed_scaling_factor=key("expert_weights_scale", 1.0),
            norm_topk_prob=bailing_norm_topk(top_k, key("expert_weights_norm", False)),
            first_k_dense_replace=first_moe,
        ),
    )


_SIGMOID = 2  # llama.cpp's expert_gating_func: 1 softmax, 2 sigmoid

# llama.cpp's tensor names → the checkpoint names above.
_GGUF_GLOBAL = {
    "token_embd.weight": "model.word_embeddings.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_qkv.weight": "attention.query_key_value.weight",
    "attn_qkv.bias": "attention.query_key_value.bias",
    "attn_q_norm.weight": "attention.query_layernorm.weight",
    "attn_k_norm.weight": "attention.key_layernorm.weight",
    "attn_output.weight": "attention.dense.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    # The first, dense layers.
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    # MoE layers: the router, its selection bias, the routed experts stacked whole, the shared experts.
    "ffn_gate_inp.weight": "mlp.gate.weight",
    "exp_probs_b.bias": "mlp.gate.expert_bias",
    "ffn_gate_exps.weight": "mlp.experts.gate_proj",
    "ffn_up_exps.weight": "mlp.experts.up_proj",
    "ffn_down_exps.weight": "mlp.experts.down_proj",
    "ffn_gate_shexp.weight": "mlp.shared_experts.gate_proj.weight",
    "ffn_up_shexp.weight": "mlp.shared_experts.up_proj.weight",
    "ffn_down_shexp.weight": "mlp.shared_experts.down_proj.weight",
    # The MTP layer's own parts. llama.cpp also allows it an embedding and a head of its own (nextn.embed_tokens,
    # nextn.shared_head_*), which this model's MTP layer has not: it reads the main model's.
    "nextn.eh_proj.weight": "eh_proj.weight",
    "nextn.enorm.weight": "enorm.weight",
    "nextn.hnorm.weight": "hnorm.weight",
    "layer_output_norm.weight": "final_layernorm.weight",
}
_GGUF_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


def gguf_to_hf(name: str, tensor: torch.Tensor, cfg: ModelConfig) -> tuple[str, torch.Tensor]:
    """A `bailingmoe2` GGUF tensor under its checkpoint name; the values need no change."""
    if name in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[name], tensor
    match = _GGUF_BLOCK.fullmatch(name)
    if not match or match.group(2) not in _GGUF_LAYER:
        raise EngineError(f"The GGUF file holds a tensor the engine does not know for BailingMoeV2: {name}.")
    layer, part = match.groups()
    return f"model.layers.{layer}.{_GGUF_LAYER[part]}", tensor
