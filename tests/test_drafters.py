"""Drafters that run a model: the checkpoint's MTP layer and a small draft model. Both must leave the output
exactly as plain decoding gives it."""

from __future__ import annotations

import shutil

import pytest
import torch

from engine import ChatMessage, EngineError, GenerationParams, LocalEngine, Stats, TextDelta
from engine.checkpoint import default_model_path
from engine.drafters import MTPDrafter
from engine.reference import add_random_mtp_layer, random_glm4_moe, save_as_bailing

from test_bailing_moe import TINY, prompt_ids
from conftest import relative_error

QUESTIONS = [
    "List the medications: lisinopril 10 mg daily, metformin 500 mg twice daily, atorvastatin 20 mg nightly.",
    "Repeat after me: the patient denies chest pain, shortness of breath or palpitations.",
    "What is a normal adult resting heart rate?",
]


def _generate(engine: LocalEngine, prompt, params: GenerationParams) -> tuple[str, Stats]:
    events = list(engine.generate(prompt, params))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


@pytest.fixture(scope="module")
def mtp_checkpoint(tmp_path_factory, local_engine):
    directory = tmp_path_factory.mktemp("bailing-mtp")
    save_as_bailing(random_glm4_moe(local_engine.config.vocab_size, eos_token_id=2, **TINY), directory)
    local_engine.tokenizer.hf.save_pretrained(directory)
    add_random_mtp_layer(directory)
    return directory


def test_mtp_drafter_fills_its_kv_as_the_sequence_grows_and_drafts_what_a_fresh_run_predicts(mtp_checkpoint):
    engine = LocalEngine(mtp_checkpoint, drafter="mtp")
    model, ids = engine.model, prompt_ids(engine, 20)
    tokens = [*ids, 7]  # the prompt and a first sampled token
    cache = engine.new_cache(32)
    drafter = MTPDrafter(model, cache)
    with torch.inference_mode():
        for start, end in [(0, 8), (8, 20)]:  # two prefill chunks
            _, hidden = engine.forward_hidden([ids[start:end]], [cache], [start])
            drafter.observe(hidden[0], start, ids)
        draft = drafter.propose(tokens, 3)

        fresh = engine.new_cache(32)
        hidden, _ = model.hidden(torch.tensor([ids]), [fresh], [0])
        logits, state = model.draft_next(hidden, torch.tensor([tokens[1:]]), [fresh], [0])
        expected = [int(logits[0, -1].argmax())]
        for position in range(len(tokens) - 1, len(tokens) + 1):
            logits, state = model.draft_next(state[:, -1:], torch.tensor([[expected[-1]]]), [fresh], [position])
            expected.append(int(logits[0, -1].argmax()))
    assert draft == expected
    layer = engine.config.num_hidden_layers
    assert relative_error(cache.keys[layer, :, :, : len(ids)], fresh.keys[layer, :, :, : len(ids)]) < 1e-5


def test_mtp_drafting_leaves_greedy_output_unchanged(mtp_checkpoint):
    plain = LocalEngine(mtp_checkpoint, drafter="none")
    drafted = LocalEngine(mtp_checkpoint, drafter="mtp")
    params = GenerationParams(max_new_tokens=24, ignore_eos=True)
    for n in (9, 30, 64):
        ids = prompt_ids(plain, n)
        expected, _ = _generate(plain, ids, params)
        text, stats = _generate(drafted, ids, params)
        assert text == expected
        assert stats.drafted > 0


def test_mtp_needs_a_checkpoint_with_an_mtp_layer(local_engine):
    with pytest.raises(EngineError, match="no MTP layer"):
        LocalEngine(drafter="mtp")


@pytest.fixture(scope="module")
def self_drafting():
    """SmolLM2 drafting for itself: every draft should be accepted, which checks the drafter's bookkeeping."""
    return LocalEngine(drafter="model", draft_model=default_model_path())


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_a_draft_model_leaves_greedy_output_unchanged(local_engine, self_drafting):
    params = GenerationParams(max_new_tokens=40)
    for question in QUESTIONS:
        messages = [ChatMessage(role="user", content=question)]
        expected, _ = _generate(local_engine, messages, params.model_copy(update={"draft_tokens": 0}))
        text, stats = _generate(self_drafting, messages, params)
        assert text == expected
        assert stats.drafted > 0 and stats.accepted / stats.drafted > 0.9


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_a_weak_draft_model_is_still_lossless(tmp_path, local_engine):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=local_engine.config.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    local_engine.tokenizer.hf.save_pretrained(tmp_path)
    engine = LocalEngine(drafter="model", draft_model=tmp_path)
    params = GenerationParams(max_new_tokens=24, ignore_eos=True)
    messages = [ChatMessage(role="user", content=QUESTIONS[0])]
    expected, _ = _generate(local_engine, messages, params.model_copy(update={"draft_tokens": 0}))
    text, stats = _generate(engine, messages, params)
    assert text == expected
    assert stats.drafted > 0


def test_a_draft_model_must_share_the_tokenizer(tmp_path, mtp_checkpoint):
    from transformers import AutoTokenizer

    different = tmp_path / "other"
    shutil.copytree(mtp_checkpoint, different)
    tokenizer = AutoTokenizer.from_pretrained(different)
    tokenizer.add_tokens(["<not-in-the-target-vocabulary>"])
    tokenizer.save_pretrained(different)
    with pytest.raises(EngineError, match="tokenizer"):
        LocalEngine(mtp_checkpoint, drafter="model", draft_model=different)
