"""BailingMoeV2 (Ling-2.0, AntAngelMed): fused QKV with per-head QK-norm and partial RoPE, a few dense
layers, then MoE layers with a sigmoid group-limited router and shared experts; optionally one MTP layer.

Module names follow the checkpoint (`model.word_embeddings`, `attention.query_key_value`, …) so most
tensors load by their own names. Per-expert tensors `mlp.experts.{e}.{gate,up,down}_proj.weight` are
stacked into `mlp.experts.gate_up` / `mlp.experts.down` by `load_weights` below.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import nn

from engine.config import ModelConfig
from engine.cpu_decoder import CompiledDecoder, LayerWeights, compiled_decoder
from engine.kv_cache import KVCache
from engine.layers import GatedMLP, RMSNorm, Rotation, Step, attention, linear, output_weights, rotary_for, run_layers
from engine.moe import MoEBlock


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
