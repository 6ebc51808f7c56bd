"""EAGLE3 draft heads (Li et al. 2025) as SpecForge trains them and SGLang serves them, e.g. AQ-MedAI's
Ling-Flash-2.0-eagle3 for Ling-flash-2.0 (see the engine spec, §8).

The head is one Llama decoder layer beside the target. At target position i it reads three of the target's hidden
states, the residual stream entering target layers [2, L//2, L-3] (or those the draft's config names), fused by
`fc` into one state g, together with the embedding of token i+1, and predicts token i+2:

    x   = concat(input_layernorm(embed(t[i+1])), hidden_norm(g))      # 2·hidden wide: the QKV projection reads both
    h   = g + self_attn(x)                                           # its own KV, RoPE at the target's positions
    h_d = h + mlp(post_attention_layernorm(h))
    draft logits = lm_head(norm(h_d))                                # over the draft's own, smaller vocabulary

A further draft step feeds h_d back in place of g (no `fc`: it is already hidden-sized). The draft vocabulary maps to
the target's by `d2t`: target id = draft id + d2t[draft id]. Drafts are greedy, so `verify` stays lossless.

Checkpoint (SpecForge/SGLang names, `model.` prefix optional): config.json with `architectures:
["LlamaForCausalLMEagle3"]`, `draft_vocab_size` and the Llama layer's dims; tensors `fc.weight` [H, 3H],
`midlayer.{input_layernorm, hidden_norm, post_attention_layernorm}.weight`, `midlayer.self_attn.{q,k,v,o}_proj.weight`
(q, k, v reading 2H), `midlayer.mlp.{gate,up,down}_proj.weight`, `norm.weight`, `lm_head.weight` [draft vocab, H],
`d2t` [draft vocab] int64, `t2d` [target vocab] bool (only checked), and `embed_tokens.weight` if the draft has its
own embedding; without one it shares the target's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from engine.checkpoint import Checkpoint
from engine.config import ModelConfig
from engine.drafters import HiddenStateDrafter
from engine.kv_cache import KVCache
from engine.layers import GatedMLP, RMSNorm, Rotation, Step, linear, rotary_for
from engine.models.llama import Attention
from engine.types import EngineError
from engine.weights import input_embedding, load_weights

ARCHITECTURE = "LlamaForCausalLMEagle3"
_VOCABULARY_MAPS = ("d2t", "t2d")  # tensors of the checkpoint that are not weights


class Eagle3Layer(nn.Module):
    """The decoder layer: a Llama layer whose attention reads the normed embedding and the normed hidden state side
    by side, with the hidden state (not the attention's input) as the residual."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hidden_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, in_features=2 * cfg.hidden_size)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size, cfg.weights)

    def forward(self, embeds: torch.Tensor, hidden: torch.Tensor, rotate: Rotation, step: Step) -> torch.Tensor:
        x = torch.cat([self.input_layernorm(embeds), self.hidden_norm(hidden)], dim=-1)
        h = hidden + self.self_attn(x, rotate, step, 0)
        return h + self.mlp(self.post_attention_layernorm(h))


class Eagle3Head(nn.Module):
    """The draft head; `load_eagle3` builds it for a target model."""

    def __init__(self, cfg: ModelConfig, draft_vocab_size: int, own_embedding: bool):
        super().__init__()
        self.config = cfg  # the layer's dims, norms and RoPE, as a Llama config
        self.fc = linear(3 * cfg.hidden_size, cfg.hidden_size)
        self.midlayer = Eagle3Layer(cfg)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = linear(cfg.hidden_size, draft_vocab_size)
        if own_embedding:
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.rope = rotary_for(cfg)
        self.capture: tuple[int, ...] = ()  # the target layers whose entering residual stream the head reads
        self.target_ids: list[int] = []  # draft id → target id

    def draft_next(
        self, hidden: torch.Tensor, tokens: torch.Tensor, cache: KVCache, position: int, slot: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step at target positions position.. (RoPE), whose KV goes to `cache` from `slot` on.

        hidden: [1, T, 3H] the target's captured states, or [1, T, H] the head's own output states from a previous
        step; tokens: [1, T] the (target) tokens that follow those positions. Returns fp32 logits over the draft
        vocabulary for the token after `tokens` [1, T, draft vocab], and the output states h_d [1, T, H]."""
        if hidden.shape[-1] != self.config.hidden_size:
            hidden = self.fc(hidden)
        length = tokens.shape[1]
        positions = torch.arange(position, position + length, device=tokens.device)[None]
        rotate = self.rope.at(positions, hidden.dtype, self.config.head_dim)
        out = self.midlayer(self.embed_tokens(tokens), hidden, rotate, Step([cache], [slot], length, tokens.device))
        return self.lm_head(self.norm(out)).float(), out

    def new_cache(self, tokens: int) -> KVCache:
        """KV for one sequence's draft layer, `tokens` positions."""
        cfg = self.config
        dtype = self.norm.weight.dtype
        return KVCache(1, cfg.num_key_value_heads, cfg.head_dim, tokens, dtype, self.norm.weight.device)


class Eagle3Drafter(HiddenStateDrafter):
    """Drafts with an EAGLE3 head for one sequence, reading the target's three captured states (`forward_hidden`).

    The head's KV lives in a cache of its own, which starts at the first position the target computes: positions
    restored from the prefix cache have only the target's KV, so the head attends over the part it has seen (a
    shorter context, rather than empty entries that would dilute its attention)."""

    def __init__(self, head: Eagle3Head, capacity: int):
        """`capacity`: the request's positions, prompt and answer."""
        super().__init__()
        self.head = head
        self.capacity = capacity
        self.cache: KVCache | None = None
        self.first = 0  # the position in the cache's slot 0

    def observe(self, hidden: torch.Tensor, start: int, tokens: Sequence[int]) -> None:
        if self.cache is None:
            self.first = start
            self.cache = self.head.new_cache(self.capacity - start)
        super().observe(hidden, start, tokens)

    def _run(self, hidden: torch.Tensor, tokens: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.draft_next(hidden, tokens, self.cache, start, start - self.first)

    def _token(self, logits: torch.Tensor) -> int:
        return self.head.target_ids[int(logits.argmax())]


def load_eagle3(path: Path, target: nn.Module, dtype: torch.dtype, device: torch.device) -> Eagle3Head:
    """The EAGLE3 draft in `path` (a SpecForge/SGLang directory) for `target`, in `dtype` on `device`; refused with
    what to do when it was not made for that target."""
    raw = _eagle3_config(path)
    target_cfg: ModelConfig = target.config
    checkpoint = Checkpoint(path)  # its config reads as the Llama layer's
    cfg = checkpoint.config.model_copy(update={
        # The head runs at the target's positions, so its RoPE tables cover the target's window.
        "max_position_embeddings": max(checkpoint.config.context_window, target_cfg.context_window),
        "tie_word_embeddings": False,  # the head has its own lm_head over its own vocabulary
    })
    draft_vocab_size = raw.get("draft_vocab_size") or cfg.vocab_size
    shapes = {name.removeprefix("model."): shape for name, shape in checkpoint.tensor_shapes().items()}
    _check_fit(path.name, raw, cfg, draft_vocab_size, shapes, target_cfg)
    capture = _capture_layers(path.name, raw, target_cfg)

    with torch.device("meta"):
        head = Eagle3Head(cfg, draft_vocab_size, own_embedding="embed_tokens.weight" in shapes)
    maps: dict[str, torch.Tensor] = {}

    def weights() -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in checkpoint.tensors():
            name = name.removeprefix("model.")
            if name in _VOCABULARY_MAPS:
                maps[name] = tensor
            else:
                yield name, tensor

    load_weights(head, weights(), dtype, device)
    if "embed_tokens.weight" not in shapes:
        head.embed_tokens = input_embedding(target)
    head.rope = rotary_for(cfg).to(device)  # computed, not loaded: built on the weights' device
    head.capture = capture
    head.target_ids = _target_ids(path.name, maps.get("d2t"), draft_vocab_size, target_cfg.vocab_size)
    return head.eval()


def _eagle3_config(path: Path) -> dict:
    if not (path / "config.json").is_file():
        raise EngineError(
            f"No EAGLE3 draft at {path}: the eagle3 drafter reads a directory with config.json and .safetensors "
            "files, as SpecForge and SGLang publish them."
        )
    raw = json.loads((path / "config.json").read_text())
    if ARCHITECTURE not in raw.get("architectures", []):
        raise EngineError(
            f"{path.name} is not an EAGLE3 draft (its architectures are {raw.get('architectures')}, not "
            f"{ARCHITECTURE}); for a small model with the same tokenizer use the 'model' drafter."
        )
    if raw.get("model_type") != "llama" or raw.get("num_hidden_layers") != 1:
        raise EngineError(
            f"{path.name} is an EAGLE3 draft of {raw.get('num_hidden_layers')} '{raw.get('model_type')}' layers; the "
            "engine runs those of one Llama layer (model_type llama), as SpecForge trains them for Ling-flash-2.0."
        )
    return raw


def _check_fit(
    name: str, raw: dict, cfg: ModelConfig, draft_vocab_size: int, shapes: dict[str, tuple[int, ...]],
    target: ModelConfig,
) -> None:
    """Refuse a draft made for another target: it reads the target's hidden states and names its tokens."""
    hidden = raw.get("target_hidden_size") or cfg.hidden_size
    if hidden != target.hidden_size or cfg.hidden_size != target.hidden_size:
        raise EngineError(
            f"The EAGLE3 draft {name} works on hidden states of size {hidden} (its own {cfg.hidden_size}), but this "
            f"model's are {target.hidden_size}: it was trained for another model. Use the draft trained for this one."
        )
    if cfg.fp8:
        raise EngineError(f"The EAGLE3 draft {name} is stored in FP8; the engine reads EAGLE3 drafts in bf16 or fp32.")
    expected = {
        "fc.weight": (cfg.hidden_size, 3 * cfg.hidden_size),
        "lm_head.weight": (draft_vocab_size, cfg.hidden_size),
        "d2t": (draft_vocab_size,),
        "t2d": (target.vocab_size,),
        "embed_tokens.weight": (target.vocab_size, cfg.hidden_size),
    }
    wrong = {key: shapes[key] for key, shape in expected.items() if key in shapes and shapes[key] != shape}
    if cfg.vocab_size != target.vocab_size or wrong:
        raise EngineError(
            f"The EAGLE3 draft {name}'s vocabulary maps do not fit this model's {target.vocab_size}-token vocabulary "
            f"(the draft says {cfg.vocab_size} target tokens, {draft_vocab_size} draft tokens"
            + (f"; shapes {wrong}" if wrong else "") + "). Use the draft trained for this model."
        )
    if "lm_head.weight" not in shapes:
        raise EngineError(f"The EAGLE3 draft {name} has no lm_head.weight; the engine needs the draft's own head.")
    if "d2t" not in shapes and draft_vocab_size != target.vocab_size:
        raise EngineError(
            f"The EAGLE3 draft {name} proposes from {draft_vocab_size} tokens but has no d2t map to this model's "
            f"{target.vocab_size}: the checkpoint is incomplete."
        )


def _capture_layers(name: str, raw: dict, target: ModelConfig) -> tuple[int, ...]:
    """The target layers whose entering residual stream the head reads, as SGLang captures them: by default those
    entering layers 2, L//2 and L-3; ids named in the draft's `eagle_config` are layer outputs, i.e. the stream
    entering the next layer."""
    layers = target.num_hidden_layers
    named = (raw.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    capture = [2, layers // 2, layers - 3] if named is None else [i + 1 for i in named]
    if len(set(capture)) != 3 or not all(0 <= i < layers for i in capture):
        raise EngineError(
            f"The EAGLE3 draft {name} reads the states entering layers {capture} of its target, which this model "
            f"({layers} layers) does not have as three distinct layers: it was trained for another model."
        )
    return tuple(sorted(capture))  # concatenated in layer order, as SGLang captures them


def _target_ids(name: str, d2t: torch.Tensor | None, draft_vocab_size: int, target_vocab_size: int) -> list[int]:
    """Draft id → target id: draft id + d2t[draft id], the identity without d2t (a full-vocabulary draft)."""
    ids = torch.arange(draft_vocab_size)
    if d2t is not None:
        ids = ids + d2t.long()
    if ids.min() < 0 or ids.max() >= target_vocab_size:
        raise EngineError(
            f"The EAGLE3 draft {name}'s d2t map sends draft tokens outside this model's {target_vocab_size}-token "
            "vocabulary: it was made for another tokenizer. Use the draft trained for this model."
        )
    return ids.tolist()
