"""BailingMoeV2 from GGUF files as llama.cpp converts Ling-2.0 and AntAngelMed (architecture `bailingmoe2`).

A tiny random BailingMoeV2 (one dense layer, one MoE layer, one MTP layer) is written as safetensors and, with
gguf-py's own tensor-name mapping, as GGUF files: the engine must read the same config and weights from both, and
(slow test) give llama.cpp's logits on the GGUF file. The vocabulary is the head of SmolLM2's, so that the files
open in a moment.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine import EngineError, GenerationParams, LocalEngine, TextDelta
from engine.models.bailing_moe_v2 import CHAT_TEMPLATE as LING
from engine.checkpoint import Checkpoint, default_model_path, load_model
from engine.kv_cache import KVCache
from engine.models.bailing_moe_v2 import gguf_config
from engine.quantize import dequantize_int4, dequantize_int8, quantize_int4, quantize_int8
from engine.reference import GgufKeys, add_random_mtp_layer, gguf_vocabulary, save_as_bailing, save_as_bailing_gguf
from conftest import relative_error, tiny_bailing_reference

VOCAB = 512
PROMPT = [1, 300, 301, 302, 45, 77, 260, 290, 311, 99, 17, 420]


@pytest.fixture(scope="module")
def vocabulary() -> GgufKeys:
    return gguf_vocabulary(default_model_path(), VOCAB)


@pytest.fixture(scope="module")
def directory(tmp_path_factory) -> Path:
    """The tiny checkpoint as safetensors, with an MTP layer."""
    directory = tmp_path_factory.mktemp("bailing")
    save_as_bailing(tiny_bailing_reference(VOCAB), directory)
    add_random_mtp_layer(directory)
    return directory


def gguf_file(directory: Path, vocabulary: GgufKeys, block_type: str) -> Path:
    path = directory.parent / f"{directory.name}-{block_type}.gguf"
    if not path.exists():
        save_as_bailing_gguf(directory, path, vocabulary, block_type)
    return path


def fp32_model(path: Path) -> nn.Module:
    checkpoint = Checkpoint(path)
    return load_model(checkpoint, checkpoint.config, torch.float32, "cpu")


@pytest.fixture(scope="module")
def safetensors_model(directory):
    return fp32_model(directory)


def logits(model: nn.Module, ids: list[int]) -> torch.Tensor:
    cfg = model.config
    cache = KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.float32)
    with torch.inference_mode():
        return model(torch.tensor([ids]), [cache], [0])[0]


def test_gguf_config_is_the_checkpoints(directory, vocabulary):
    ours = Checkpoint(gguf_file(directory, vocabulary, "F32")).config
    theirs = Checkpoint(directory).config
    assert ours.architecture == "bailing_moe_v2" and ours.mtp_layers == 1 and ours.num_hidden_layers == 2
    assert ours.moe.shared_size == theirs.moe.shared_size
    ours, theirs = ours.model_dump(), theirs.model_dump()
    assert ours.pop("rms_norm_eps") == pytest.approx(theirs.pop("rms_norm_eps"))  # GGUF holds it in float32
    assert ours.pop("bos_token_id") == 1 and theirs.pop("bos_token_id") is None  # the vocabulary's own
    for moe in ours["moe"], theirs["moe"]:
        moe.pop("shared_intermediate_size")
    assert ours == theirs


def test_f32_gguf_gives_the_checkpoints_weights_and_logits(directory, vocabulary, safetensors_model):
    model = fp32_model(gguf_file(directory, vocabulary, "F32"))
    ours, theirs = model.state_dict(), safetensors_model.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name
    assert torch.equal(logits(model, PROMPT), logits(safetensors_model, PROMPT))


@pytest.mark.parametrize("block_type", ["Q8_0", "Q4_0", "Q4_1"])
def test_quantized_gguf_loads_the_values_of_its_blocks(directory, vocabulary, block_type):
    """The fp32 model holds exactly the values the blocks encode: a projection, a stack of experts, the embedding."""
    from gguf import GGUFReader, dequantize

    path = gguf_file(directory, vocabulary, block_type)
    model = fp32_model(path)
    blocks = {t.name: t for t in GGUFReader(path).tensors}
    for gguf_name, ours in [
        ("blk.0.attn_qkv.weight", model.model.layers[0].attention.query_key_value.weight),
        ("blk.1.ffn_down_exps.weight", model.model.layers[1].mlp.experts.down_proj),
        ("token_embd.weight", model.model.word_embeddings.weight),
    ]:
        t = blocks[gguf_name]
        assert t.tensor_type.name == block_type
        assert torch.equal(ours, torch.from_numpy(dequantize(t.data, t.tensor_type)).view(ours.shape))


def test_q8_0_gguf_logits_stay_near_the_checkpoints(directory, vocabulary, safetensors_model):
    """Q8_0 puts each weight within 0.4% of its value; through a dozen projections of this random model the logits
    move 2.5%. (Q4 blocks move them by half their size here: a perturbed input flips the experts the router picks.)"""
    model = fp32_model(gguf_file(directory, vocabulary, "Q8_0"))
    assert relative_error(logits(model, PROMPT), logits(safetensors_model, PROMPT)) < 0.05


def test_what_int4_and_int8_keep_of_gguf_blocks():
    """What `--quantize int4`/`int8` make of blocks loaded in fp32 (engine/checkpoint.py): int4 gives Q4_1 and Q4_0
    blocks back as they were, steps of either sign included, and int8 Q8_0 blocks."""
    from gguf import GGMLQuantizationType as Q, dequantize, quantize

    rows = np.random.default_rng(0).normal(0, 0.1, (64, 256)).astype(np.float32)

    def values(blocks: np.ndarray, block_type: Q) -> torch.Tensor:
        return torch.from_numpy(dequantize(blocks, block_type)).view(rows.shape)

    q4_1 = values(quantize(rows, Q.Q4_1), Q.Q4_1)
    assert torch.equal(dequantize_int4(*quantize_int4(q4_1)), q4_1)

    blocks = quantize(rows, Q.Q4_0)
    q4_0 = values(blocks, Q.Q4_0)
    # A Q4_0 block is its step d in fp16, then 16 bytes of 4-bit levels: value = (level - 8) · d.
    step = torch.from_numpy(blocks.reshape(64, -1, 18)[..., :2].copy().view(np.float16).astype(np.float32))[..., 0]
    assert (step > 0).any() and (step < 0).any()
    assert torch.equal(dequantize_int4(*quantize_int4(q4_0)), q4_0)

    q8_0 = values(quantize(rows, Q.Q8_0), Q.Q8_0)
    assert torch.equal(dequantize_int8(*quantize_int8(q8_0)), q8_0)


def test_gguf_engine_uses_the_ling_template_and_generates(directory, vocabulary):
    engine = LocalEngine(gguf_file(directory, vocabulary, "F32"))
    assert engine.tokenizer.hf.chat_template == LING  # the file has none of its own
    assert engine.tokenizer.decode(engine.tokenizer.encode("mg daily")) == "mg daily"
    events = list(engine.generate(PROMPT, GenerationParams(max_new_tokens=4, ignore_eos=True)))
    assert sum(1 for e in events if isinstance(e, TextDelta)) > 0 and events[-1].generated_tokens == 4


# The metadata a small bailingmoe2 file needs, and the tensor shapes its config is read from.
TINY_META = {
    "general.architecture": "bailingmoe2", "bailingmoe2.block_count": 2, "bailingmoe2.embedding_length": 64,
    "bailingmoe2.feed_forward_length": 96, "bailingmoe2.attention.head_count": 4, "bailingmoe2.expert_count": 8,
    "bailingmoe2.expert_used_count": 2, "bailingmoe2.expert_feed_forward_length": 32,
    "bailingmoe2.expert_shared_count": 1, "bailingmoe2.expert_gating_func": 2,
}
TINY_SHAPES = {"token_embd.weight": (64, VOCAB), "blk.0.attn_q_norm.weight": (16,), "blk.0.ffn_gate_shexp.weight": (64, 32)}


def test_gguf_config_refusals_and_yarn():
    assert gguf_config(TINY_META, TINY_SHAPES).moe.num_experts == 8
    with pytest.raises(EngineError, match="not a sigmoid"):
        gguf_config(TINY_META | {"bailingmoe2.expert_gating_func": 1}, TINY_SHAPES)
    with pytest.raises(EngineError, match="QK-norm"):
        gguf_config(TINY_META, {k: v for k, v in TINY_SHAPES.items() if "q_norm" not in k})
    yarn = TINY_META | {"bailingmoe2.rope.scaling.type": "yarn", "bailingmoe2.rope.scaling.factor": 4.0,
                        "bailingmoe2.rope.scaling.original_context_length": 4096}
    assert gguf_config(yarn, TINY_SHAPES).context_window == 16384
    with pytest.raises(EngineError, match="yarn_log_multiplier"):
        gguf_config(yarn | {"bailingmoe2.rope.scaling.yarn_log_multiplier": 0.1}, TINY_SHAPES)


# llama.cpp's bailingmoe2 takes heads × head_dim = hidden, as Ling has; 256 wide rows hold whole K-quant blocks.
WIDE = dict(hidden_size=256, intermediate_size=256, moe_intermediate_size=256, head_dim=64)
YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512}


@pytest.mark.slow
@pytest.mark.parametrize(
    "quantization, rope_scaling, bound", [("F32", None, 5e-3), ("F32", YARN, 5e-3), ("Q4_K_M", None, 0.1)]
)
def test_logits_match_llama_cpp(tmp_path, vocabulary, quantization, rope_scaling, bound):
    """llama.cpp (llama-cpp-python, the bench extra) on the same GGUF file gives the engine's logits. Q4_K_M, the
    form published for Ling-mini-2.0, is made by llama.cpp's own quantizer from the F32 file (Q4_K, Q5_K, Q6_K
    blocks), which the engine dequantizes at load. The bounds: llama.cpp keeps the KV cache in fp16, and multiplies
    K-quant blocks by activations rounded to 8 bits where the engine uses fp32; the quantization itself moves this
    random model's logits by 20-80% (engine on Q4_K_M against F32), so 10% tells its blocks from any others."""
    llama_cpp = pytest.importorskip("llama_cpp")
    directory = tmp_path / "bailing"
    directory.mkdir()
    save_as_bailing(tiny_bailing_reference(VOCAB, **WIDE), directory)
    add_random_mtp_layer(directory)  # llama.cpp must accept it, and pass over it
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"rope_scaling": rope_scaling}))
    path = tmp_path / "bailing-F32.gguf"
    save_as_bailing_gguf(directory, path, vocabulary)
    if quantization != "F32":
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quantization}")
        quantized = tmp_path / f"bailing-{quantization}.gguf"
        assert llama_cpp.llama_model_quantize(str(path).encode(), str(quantized).encode(), ctypes.byref(params)) == 0
        path = quantized

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, n_threads=2, verbose=False)
    llm.eval(PROMPT)
    theirs = torch.from_numpy(np.array(llm.scores[: len(PROMPT)], dtype=np.float32))
    ours = logits(fp32_model(path), PROMPT)
    error = relative_error(ours[-1], theirs[-1])
    print(
        f"\nllama-cpp-python {llama_cpp.__version__} against the engine, {Checkpoint(path).precision}"
        f"{', YaRN' if rope_scaling else ''}: relative error {error:.1e} at the last position, "
        f"{relative_error(ours, theirs):.1e} over all {len(PROMPT)}"
    )
    assert ours[-1].argmax() == theirs[-1].argmax() and error < bound
