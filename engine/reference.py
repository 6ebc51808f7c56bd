"""Random checkpoints for tests and benchmarks: a BailingMoeV2 made from transformers' Glm4MoeForCausalLM, an MTP
layer for it, and an EAGLE3 draft for any target.

transformers has no BailingMoeV2 class, but Glm4Moe implements the same router (sigmoid scores, correction
bias for selection, group-limited top-k, normalised weights × routed_scaling_factor), shared experts, partial
NeoX rotary and per-head QK-norm. Its weights written under BailingMoeV2's names (q/k/v fused, stacked experts
split per expert) give a checkpoint whose correct outputs transformers can compute. `save_as_bailing_gguf` writes
the same checkpoint as llama.cpp's converter would, as a GGUF file whose outputs llama.cpp can compute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import gguf
import torch

from engine.config import ModelConfig

# GGUF metadata as (value, type, type of an array's items).
GgufKeys = dict[str, tuple[Any, gguf.GGUFValueType, gguf.GGUFValueType | None]]

# The first MoE layers of the tiny model route with a bias this wide, so that it changes which experts win.
_BIAS_STD = 0.5


def random_glm4_moe(vocab_size: int, seed: int = 0, rope_theta: float = 600000.0, **dims):
    """A Glm4MoeForCausalLM with random weights wide enough to give decisive logits.

    `dims` are Glm4MoeConfig fields (hidden_size, n_routed_experts, …)."""
    from transformers import Glm4MoeConfig, Glm4MoeForCausalLM

    config = Glm4MoeConfig(
        vocab_size=vocab_size, use_qk_norm=True, attention_bias=False, norm_topk_prob=True, num_mtp_layers=0,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta, "partial_rotary_factor": 0.5},
        **dims,
    )
    torch.manual_seed(seed)
    model = Glm4MoeForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.3 if "mlp.gate" in name else 0.1)
        for layer in model.model.layers[config.first_k_dense_replace :]:
            layer.mlp.gate.e_score_correction_bias.normal_(0, _BIAS_STD)
    return model


def bailing_config(reference) -> dict:
    c = reference.config
    return {
        "architectures": ["BailingMoeV2ForCausalLM"], "model_type": "bailing_moe_v2", "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "moe_intermediate_size": c.moe_intermediate_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
        "head_dim": c.head_dim, "rms_norm_eps": c.rms_norm_eps, "max_position_embeddings": c.max_position_embeddings,
        "rope_theta": c.rope_parameters["rope_theta"], "partial_rotary_factor": c.rope_parameters["partial_rotary_factor"],
        "rope_scaling": None, "num_experts": c.n_routed_experts, "num_experts_per_tok": c.num_experts_per_tok,
        "num_shared_experts": c.n_shared_experts, "n_group": c.n_group, "topk_group": c.topk_group,
        "routed_scaling_factor": c.routed_scaling_factor, "first_k_dense_replace": c.first_k_dense_replace,
        "use_qk_norm": True, "use_rmsnorm": True, "score_function": "sigmoid", "norm_topk_prob": True,
        "moe_router_enable_expert_bias": True, "tie_word_embeddings": False, "use_qkv_bias": False,
        "eos_token_id": c.eos_token_id, "torch_dtype": "float32",
    }


def bailing_tensors(reference) -> dict[str, torch.Tensor]:
    """The reference's state dict under BailingMoeV2 checkpoint names."""
    state = reference.state_dict()
    intermediate = reference.config.moe_intermediate_size
    out = {}
    for name, t in state.items():
        name = name.replace("model.embed_tokens", "model.word_embeddings")
        if ".self_attn.q_proj." in name:
            prefix = name.split(".self_attn.")[0]
            parts = [state[name.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            out[f"{prefix}.attention.query_key_value.weight"] = torch.cat(parts)
        elif ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            continue
        elif name.endswith("mlp.experts.gate_up_proj"):
            prefix = name.removesuffix(".gate_up_proj")
            for e, w in enumerate(t):
                out[f"{prefix}.{e}.gate_proj.weight"] = w[:intermediate]
                out[f"{prefix}.{e}.up_proj.weight"] = w[intermediate:]
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name.removesuffix(".down_proj")
            for e, w in enumerate(t):
                out[f"{prefix}.{e}.down_proj.weight"] = w
        else:
            out[name.replace("self_attn.o_proj", "attention.dense")
                .replace("self_attn.q_norm", "attention.query_layernorm")
                .replace("self_attn.k_norm", "attention.key_layernorm")
                .replace("mlp.gate.e_score_correction_bias", "mlp.gate.expert_bias")] = t
    return {k: v.contiguous() for k, v in out.items()}


def save_as_bailing(reference, directory: Path, shards: int = 1) -> None:
    """Write config.json and the tensors, split over `shards` files as real checkpoints come."""
    from safetensors.torch import save_file

    tensors = bailing_tensors(reference)
    names = sorted(tensors)
    for i in range(shards):
        part = {k: tensors[k] for k in names[i::shards]}
        save_file(part, directory / f"model-{i + 1:05d}-of-{shards:05d}.safetensors")
    (directory / "config.json").write_text(json.dumps(bailing_config(reference)))


def add_random_mtp_layer(directory: Path, seed: int = 1) -> None:
    """Add a random MTP layer (model.layers.{num_hidden_layers}.*, found by its eh_proj) to the BailingMoeV2
    checkpoint in `directory`, in a shard of its own as Ling checkpoints ship it."""
    from safetensors.torch import save_file

    from engine.models import hf_config
    from engine.models.bailing_moe_v2 import MTPLayer

    config = hf_config(json.loads((directory / "config.json").read_text()))
    index = config.num_hidden_layers
    torch.manual_seed(seed)
    layer = MTPLayer(config.model_copy(update={"mtp_layers": 1}), index)
    tensors = {}
    with torch.no_grad():
        for name, t in layer.state_dict().items():
            t = t.normal_(1.0, 0.1) if "norm" in name else t.normal_(0.0, 0.2)
            if name.startswith("mlp.experts.") and t.dim() == 3:  # stacked [experts, out, in]: one tensor each
                projection = name.removeprefix("mlp.experts.")
                tensors.update({f"mlp.experts.{e}.{projection}.weight": w for e, w in enumerate(t)})
            elif name.endswith("gate_up_proj.weight"):  # fused by the engine, two tensors in the checkpoint
                gate, up = t.chunk(2)
                tensors[name.replace("gate_up_proj", "gate_proj")] = gate
                tensors[name.replace("gate_up_proj", "up_proj")] = up
            else:
                tensors[name] = t
    save_file({f"model.layers.{index}.{k}": v.contiguous() for k, v in tensors.items()}, directory / "mtp.safetensors")


def save_as_bailing_gguf(directory: Path, path: Path, vocabulary: GgufKeys, block_type: str = "F32") -> None:
    """Write the BailingMoeV2 checkpoint in `directory` (config.json and safetensors, as `save_as_bailing` writes
    them) as a `bailingmoe2` GGUF file, with the metadata and tensor names llama.cpp's converter gives a Ling-2.0
    checkpoint, and the tokenizer keys `vocabulary` (`gguf_vocabulary`).

    Tensor names come from gguf-py's own mapping (llama.cpp's), not from the engine's, so that the engine's reading
    is checked against what llama.cpp writes. `block_type` is a GGUF block type gguf-py can quantize (F32, Q8_0,
    Q4_0, Q4_1, …): the projections and embeddings take it where their rows are whole blocks; the router and the
    1-D tensors stay F32, as llama.cpp keeps them.
    """
    from safetensors.torch import load_file

    hparams = json.loads((directory / "config.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(file))
    layers = hparams["num_hidden_layers"]
    mtp_layers = int(f"model.layers.{layers}.eh_proj.weight" in tensors)  # found by its weights, as the engine does
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BAILINGMOE2])
    _write_bailing_metadata(writer, hparams, layers + mtp_layers, mtp_layers, block_type)
    for name, (value, kind, item) in vocabulary.items():
        writer.add_key_value(name, value, kind, item)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BAILINGMOE2, layers + mtp_layers)
    quantization = gguf.GGMLQuantizationType[block_type]
    block_size = gguf.GGML_QUANT_SIZES[quantization][0]
    for name, tensor in _stacked_experts(tensors, hparams["num_experts"]).items():
        # The converter names the router's bias as a bias, so that the mapping finds it.
        gguf_name = names.get_name(name.replace(".expert_bias", ".expert_bias.bias"), try_suffixes=(".weight", ".bias"))
        array = tensor.float().numpy()
        whole_blocks = array.ndim >= 2 and array.shape[-1] % block_size == 0
        if quantization == gguf.GGMLQuantizationType.F32 or not whole_blocks or "ffn_gate_inp" in gguf_name:
            writer.add_tensor(gguf_name, array)
        else:
            writer.add_tensor(gguf_name, gguf.quantize(array, quantization), raw_dtype=quantization)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_vocabulary(path: Path, size: int) -> GgufKeys:
    """The `tokenizer.ggml.*` keys of the GGUF file at `path` (not its chat template), cut to its first `size` tokens
    and the merges among them. A byte-level BPE vocabulary lists its bytes first and each merge's token after its
    parts, so its head is a smaller vocabulary of the same kind: a small model written with it opens in a moment,
    where reading SmolLM2's 49,152 tokens and their merges takes seconds."""
    fields = gguf.GGUFReader(path).fields
    array = gguf.GGUFValueType.ARRAY
    keys = {
        name: (field.contents(), field.types[0], field.types[-1] if field.types[0] == array else None)
        for name, field in fields.items()
        if name.startswith("tokenizer.ggml.")
    }
    tokens = keys["tokenizer.ggml.tokens"][0][:size]
    kept = set(tokens)
    cut = {
        "tokens": tokens,
        "token_type": keys["tokenizer.ggml.token_type"][0][:size],
        "merges": [m for m in keys["tokenizer.ggml.merges"][0] if {*m.split(" "), m.replace(" ", "")} <= kept],
    }
    for name, value in cut.items():
        _, kind, item = keys[f"tokenizer.ggml.{name}"]
        keys[f"tokenizer.ggml.{name}"] = (value, kind, item)
    return keys


def _stacked_experts(tensors: dict[str, torch.Tensor], experts: int) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors with each layer's per-expert projections stacked into one [experts, out, in] tensor
    per projection (`model.layers.{i}.mlp.experts.{proj}.weight`), as the converter stacks them."""
    out = {name: t for name, t in tensors.items() if ".mlp.experts." not in name}
    prefixes = {name.split(".mlp.experts.")[0] for name in tensors if ".mlp.experts." in name}
    for prefix in prefixes:
        for proj in ("gate_proj", "up_proj", "down_proj"):
            parts = [tensors[f"{prefix}.mlp.experts.{e}.{proj}.weight"] for e in range(experts)]
            out[f"{prefix}.mlp.experts.{proj}.weight"] = torch.stack(parts)
    return out


def _write_bailing_metadata(
    writer: gguf.GGUFWriter, hparams: dict, blocks: int, mtp_layers: int, block_type: str
) -> None:
    """The keys llama.cpp's converter writes for BailingMoeV2ForCausalLM."""
    head_dim = hparams["head_dim"]
    writer.add_name("tiny-bailing")
    writer.add_file_type(gguf.LlamaFileType["ALL_F32" if block_type == "F32" else f"MOSTLY_{block_type}"])
    writer.add_block_count(blocks)
    writer.add_context_length(hparams["max_position_embeddings"])
    writer.add_embedding_length(hparams["hidden_size"])
    writer.add_feed_forward_length(hparams["intermediate_size"])
    writer.add_head_count(hparams["num_attention_heads"])
    writer.add_head_count_kv(hparams["num_key_value_heads"])
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(hparams["rope_theta"])
    writer.add_rope_dimension_count(int(head_dim * hparams["partial_rotary_factor"]))
    scaling = hparams.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(scaling["factor"])
        writer.add_rope_scaling_orig_ctx_len(scaling["original_max_position_embeddings"])
    else:
        writer.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    writer.add_layer_norm_rms_eps(hparams["rms_norm_eps"])
    writer.add_vocab_size(hparams["vocab_size"])
    writer.add_leading_dense_block_count(hparams["first_k_dense_replace"])
    writer.add_expert_count(hparams["num_experts"])
    writer.add_expert_used_count(hparams["num_experts_per_tok"])
    writer.add_expert_group_count(hparams["n_group"])
    writer.add_expert_group_used_count(hparams["topk_group"])
    writer.add_expert_feed_forward_length(hparams["moe_intermediate_size"])
    shared = hparams["moe_intermediate_size"] * hparams["num_shared_experts"]
    writer.add_expert_shared_feed_forward_length(hparams.get("moe_shared_expert_intermediate_size") or shared)
    writer.add_expert_shared_count(hparams["num_shared_experts"])
    writer.add_expert_weights_scale(hparams["routed_scaling_factor"])
    writer.add_expert_weights_norm(hparams["norm_topk_prob"])
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    if mtp_layers:
        writer.add_nextn_predict_layers(mtp_layers)


def write_random_eagle3(
    directory: Path,
    target: ModelConfig,
    draft_vocab_size: int,
    heads: int = 4,
    kv_heads: int = 2,
    layer_ids: Sequence[int] | None = None,
    own_embedding: bool = False,
    prefix: str = "",
    seed: int = 2,
) -> None:
    """Write a random EAGLE3 draft for `target` as SpecForge saves one (engine/eagle3.py): config.json and
    model.safetensors with q/k/v and gate/up apart, tensor names after `prefix` ("" or "model."). Its draft vocabulary
    is a random set of target tokens in id order, as SpecForge orders the frequent tokens it keeps: d2t[i] = its i-th
    token - i, t2d marks them. `layer_ids` go to `eagle_config` (layer outputs); None leaves SGLang's default."""
    from safetensors.torch import save_file

    hidden, vocab = target.hidden_size, target.vocab_size
    head_dim, intermediate = hidden // heads, 2 * hidden
    config = {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": 1, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-5, "max_position_embeddings": 2048,
        "vocab_size": vocab, "draft_vocab_size": draft_vocab_size, "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    if layer_ids is not None:
        config["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": list(layer_ids), "use_aux_hidden_state": True}
    shapes = {
        "fc.weight": (hidden, 3 * hidden),
        "midlayer.self_attn.q_proj.weight": (heads * head_dim, 2 * hidden),
        "midlayer.self_attn.k_proj.weight": (kv_heads * head_dim, 2 * hidden),
        "midlayer.self_attn.v_proj.weight": (kv_heads * head_dim, 2 * hidden),
        "midlayer.self_attn.o_proj.weight": (hidden, heads * head_dim),
        "midlayer.mlp.gate_proj.weight": (intermediate, hidden),
        "midlayer.mlp.up_proj.weight": (intermediate, hidden),
        "midlayer.mlp.down_proj.weight": (hidden, intermediate),
        "lm_head.weight": (draft_vocab_size, hidden),
    }
    norms = ["midlayer.input_layernorm", "midlayer.hidden_norm", "midlayer.post_attention_layernorm", "norm"]
    generator = torch.Generator().manual_seed(seed)
    # Scaled by fan-in, so that states keep their size through the layer and the logits are decisive.
    tensors = {name: torch.randn(shape, generator=generator) * shape[1] ** -0.5 for name, shape in shapes.items()}
    tensors.update({f"{norm}.weight": 1 + 0.1 * torch.randn(hidden, generator=generator) for norm in norms})
    if own_embedding:
        tensors["embed_tokens.weight"] = torch.randn(vocab, hidden, generator=generator)
    kept = torch.randperm(vocab, generator=generator)[:draft_vocab_size].sort().values
    tensors["d2t"] = kept - torch.arange(draft_vocab_size)
    tensors["t2d"] = torch.zeros(vocab, dtype=torch.bool).index_fill(0, kept, True)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({prefix + name: t.contiguous() for name, t in tensors.items()}, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(config))
