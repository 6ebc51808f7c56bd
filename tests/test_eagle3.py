"""EAGLE3 drafting (engine/eagle3.py) on tiny random targets with random drafts in SpecForge's format: the head
drafts what the spec's formula computes from the target's captured states, drafting leaves greedy output unchanged,
and drafts made for another model are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from engine import EngineError, GenerationParams, LocalEngine, TextDelta
from engine.checkpoint import Checkpoint
from engine.eagle3 import Eagle3Drafter, load_eagle3
from engine.reference import random_glm4_moe, save_as_bailing, write_random_eagle3
from engine.weights import input_embedding

from test_bailing_moe import TINY, prompt_ids
from conftest import relative_error

DRAFT_VOCAB = 1024


@pytest.fixture(scope="module")
def llama(tmp_path_factory, local_engine):
    """An 8-layer Llama, so SGLang's default layers [2, L//2, L-3] = [2, 4, 5]; its draft has its own embedding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("llama")
    config = LlamaConfig(
        vocab_size=local_engine.config.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
        initializer_range=0.1,  # decisive logits: greedy choices are not near-ties
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    local_engine.tokenizer.hf.save_pretrained(directory)
    return _with_draft(directory, own_embedding=True), [2, 4, 5]


@pytest.fixture(scope="module")
def bailing(tmp_path_factory, local_engine):
    """A 4-layer BailingMoeV2 whose draft names the outputs of layers 0, 1, 2 (= the states entering 1, 2, 3), under
    `model.` names, and shares the target's embedding, as Ling-flash-2.0's draft does."""
    directory = tmp_path_factory.mktemp("bailing")
    save_as_bailing(random_glm4_moe(local_engine.config.vocab_size, eos_token_id=2, **{**TINY, "num_hidden_layers": 4}),
                    directory)
    local_engine.tokenizer.hf.save_pretrained(directory)
    return _with_draft(directory, layer_ids=[0, 1, 2], prefix="model."), [1, 2, 3]


def _with_draft(directory: Path, **draft) -> tuple[LocalEngine, Path]:
    """The target in `directory` with a random draft beside it, and the draft's directory."""
    write_random_eagle3(directory / "eagle3", Checkpoint(directory).config, DRAFT_VOCAB, **draft)
    return LocalEngine(directory, drafter="eagle3", draft_model=directory / "eagle3"), directory / "eagle3"


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Llama's rotate-half RoPE over the whole head; x [T, heads, D]."""
    dim = x.shape[-1]
    angles = positions[:, None].double() / theta ** (torch.arange(0, dim, 2).double() / dim)
    angles = torch.cat([angles, angles], -1)[:, None]
    return x * angles.cos().float() + torch.cat([-x[..., dim // 2 :], x[..., : dim // 2]], -1) * angles.sin().float()


def reference_head(w: dict, config: dict, g: torch.Tensor, embeds: torch.Tensor, positions: torch.Tensor):
    """The spec's draft step (§8) over a whole sequence from scratch, from the checkpoint's own tensors: g [P, H] the
    fused hidden input, embeds [P, H] the next tokens' embeddings. Returns (draft logits [P, V'], h_d [P, H])."""
    eps, heads, kv_heads = config["rms_norm_eps"], config["num_attention_heads"], config["num_key_value_heads"]
    dim = config["hidden_size"] // heads
    x = torch.cat([_rms(embeds, w["midlayer.input_layernorm.weight"], eps),
                   _rms(g, w["midlayer.hidden_norm.weight"], eps)], -1)
    q = (x @ w["midlayer.self_attn.q_proj.weight"].T).view(len(x), heads, dim)
    k = (x @ w["midlayer.self_attn.k_proj.weight"].T).view(len(x), kv_heads, dim)
    v = (x @ w["midlayer.self_attn.v_proj.weight"].T).view(len(x), kv_heads, dim)
    q, k = _rope(q, positions, 10000.0), _rope(k, positions, 10000.0)  # no rope_theta in the config: Llama's default
    k, v = (t.repeat_interleave(heads // kv_heads, 1) for t in (k, v))
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(dim)
    scores = scores.masked_fill(torch.ones(len(x), len(x)).triu(1).bool(), float("-inf"))
    attended = torch.einsum("hts,shd->thd", scores.softmax(-1), v).reshape(len(x), -1)
    h = g + attended @ w["midlayer.self_attn.o_proj.weight"].T
    m = _rms(h, w["midlayer.post_attention_layernorm.weight"], eps)
    h_d = h + (F.silu(m @ w["midlayer.mlp.gate_proj.weight"].T) * (m @ w["midlayer.mlp.up_proj.weight"].T)) @ w[
        "midlayer.mlp.down_proj.weight"].T
    return _rms(h_d, w["norm.weight"], eps) @ w["lm_head.weight"].T, h_d


def entering_states(engine: LocalEngine, ids: list[int], layers: list[int]) -> torch.Tensor:
    """The residual stream entering each of `layers` [len(ids), 3H], taken by hooks on a fresh run of the target."""
    captured = {}
    hooks = [engine.model.model.layers[i].register_forward_pre_hook(
        lambda module, args, i=i: captured.__setitem__(i, args[0][0])) for i in layers]
    engine.forward([ids], [engine.new_cache(len(ids))], [0])
    for hook in hooks:
        hook.remove()
    return torch.cat([captured[i] for i in layers], -1)


@pytest.mark.parametrize("target", ["llama", "bailing"])
def test_the_head_drafts_by_the_formula_through_d2t(target, request):
    (engine, directory), layers = request.getfixturevalue(target)
    w = {name.removeprefix("model."): t for name, t in load_file(directory / "model.safetensors").items()}
    config = json.loads((directory / "config.json").read_text())
    embedding = w.get("embed_tokens.weight", input_embedding(engine.model).weight.detach())
    ids = prompt_ids(engine, 20)
    tokens = [*ids, 7]  # the prompt and a first sampled token
    with torch.inference_mode():
        cache, drafter = engine.new_cache(32), Eagle3Drafter(engine.eagle3, 32)
        for start, end in [(0, 8), (8, 20)]:  # two prefill chunks
            _, hidden = engine.forward_hidden([ids[start:end]], [cache], [start])
            drafter.observe(hidden[0], start, ids)
        draft = drafter.propose(tokens, 3)

        # A prompt whose first 8 positions came from the prefix cache: the head has seen only positions 8..
        engine.forward([ids[:8]], [cache], [0])
        _, hidden = engine.forward_hidden([ids[8:]], [cache], [8])
        restored = Eagle3Drafter(engine.eagle3, 32)
        restored.observe(hidden[0], 8, ids)
        first_after_restore = restored.propose(tokens, 1)

        aux = entering_states(engine, ids, layers)
    g, following, expected = aux @ w["fc.weight"].T, tokens[1:], []
    for _ in range(3):  # each further step feeds back the head's own state
        logits, h_d = reference_head(w, config, g, embedding[following], torch.arange(len(following)))
        draft_id = int(logits[-1].argmax())
        expected.append(draft_id + int(w["d2t"][draft_id]))
        g, following = torch.cat([g, h_d[-1:]]), [*following, expected[-1]]
        if len(expected) == 1:
            assert relative_error(drafter.logits, logits[-1]) < 1e-4
    assert draft == expected
    assert all(w["t2d"][token] for token in draft), "drafts are target ids of the draft vocabulary"
    logits, _ = reference_head(w, config, (aux @ w["fc.weight"].T)[8:], embedding[tokens[9:]], torch.arange(8, 20))
    draft_id = int(logits[-1].argmax())
    assert first_after_restore == [draft_id + int(w["d2t"][draft_id])]


def _generate(engine: LocalEngine, ids: list[int], params: GenerationParams):
    events = list(engine.generate(ids, params))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


@pytest.mark.parametrize("target", ["llama", "bailing"])
def test_eagle3_drafting_leaves_greedy_output_unchanged(target, request):
    (engine, _), _ = request.getfixturevalue(target)
    params = GenerationParams(max_new_tokens=24, ignore_eos=True)
    for n in (9, 30, 64):  # later prompts start with earlier ones: the prefix cache restores their start
        ids = prompt_ids(engine, n)
        expected, _ = _generate(engine, ids, params.model_copy(update={"draft_tokens": 0}))
        text, stats = _generate(engine, ids, params)
        assert text == expected
        assert stats.drafted > 0 and stats.cached_tokens > 0


def test_a_draft_for_another_model_is_refused(tmp_path, bailing):
    (engine, directory), _ = bailing
    target, cpu = engine.config, torch.device("cpu")
    write_random_eagle3(tmp_path / "wide", target.model_copy(update={"hidden_size": 128}), DRAFT_VOCAB)
    with pytest.raises(EngineError, match="hidden states of size 128"):
        load_eagle3(tmp_path / "wide", engine.model, torch.float32, cpu)

    other_vocabulary = target.model_copy(update={"vocab_size": target.vocab_size + 64})
    write_random_eagle3(tmp_path / "vocab", other_vocabulary, DRAFT_VOCAB)
    with pytest.raises(EngineError, match="vocabulary maps do not fit"):
        load_eagle3(tmp_path / "vocab", engine.model, torch.float32, cpu)

    write_random_eagle3(tmp_path / "d2t", target, DRAFT_VOCAB, layer_ids=[0, 1, 2])
    tensors = load_file(tmp_path / "d2t" / "model.safetensors")
    tensors["d2t"][-1] = target.vocab_size  # the last draft token maps past the end
    save_file(tensors, tmp_path / "d2t" / "model.safetensors")
    with pytest.raises(EngineError, match="outside this model's"):
        load_eagle3(tmp_path / "d2t", engine.model, torch.float32, cpu)

    write_random_eagle3(tmp_path / "layers", target, DRAFT_VOCAB)  # 4 layers: the default [2, 2, 1] repeats one
    with pytest.raises(EngineError, match="three distinct layers"):
        load_eagle3(tmp_path / "layers", engine.model, torch.float32, cpu)

    with pytest.raises(EngineError, match="not an EAGLE3 draft"):
        load_eagle3(directory.parent, engine.model, torch.float32, cpu)
    with pytest.raises(EngineError, match="needs an EAGLE3 draft directory"):
        LocalEngine(directory.parent, drafter="eagle3")
