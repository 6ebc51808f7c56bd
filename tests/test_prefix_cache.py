"""Reusing the KV of earlier requests, and prefilling long prompts a chunk at a time."""

from __future__ import annotations

import random

import pytest
import torch

from engine import ChatMessage, GenerationParams, Stats, TextDelta
from engine.kv_cache import KVCache
from engine.prefix_cache import PrefixCache
from conftest import relative_error


def _record(seed: int, words: int = 600) -> str:
    """A record no other test sends, so nothing of it is cached before the test."""
    rng = random.Random(seed)
    vocabulary = "patient reports pain fever cough metformin lisinopril daily mg blood pressure normal follow up".split()
    return " ".join(rng.choice(vocabulary) for _ in range(words))


def _run(engine, messages, tokens=16):
    events = list(engine.generate(messages, GenerationParams(max_new_tokens=tokens)))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_follow_up_question_reuses_the_record_and_answers_the_same(local_engine):
    system = ChatMessage(role="system", content="Answer from this record only.\n" + _record(1))
    first = [system, ChatMessage(role="user", content="What medications are listed?")]
    answer, stats = _run(local_engine, first)
    follow_up = [*first, ChatMessage(role="assistant", content=answer),
                 ChatMessage(role="user", content="And the blood pressure?")]

    text, cached = _run(local_engine, follow_up)
    assert isinstance(cached, Stats)
    # Everything up to the end of the first prompt is reused (the chat template renders it the same way).
    assert cached.cached_tokens >= stats.prompt_tokens - 2
    assert cached.cached_tokens < cached.prompt_tokens

    local_engine.prefix_cache.clear()
    uncached_text, uncached = _run(local_engine, follow_up)
    assert uncached.cached_tokens == 0
    assert text == uncached_text


def test_a_stopped_answer_leaves_its_tokens_reusable(local_engine):
    messages = [ChatMessage(role="user", content=_record(2, 200) + "\nSummarise.")]
    stream = local_engine.generate(messages, GenerationParams(max_new_tokens=64, ignore_eos=True))
    for _, _ in zip(range(3), stream):
        pass
    stream.close()  # what the UI's Stop button does
    prompt = local_engine.count_prompt_tokens(messages)
    assert local_engine.scheduler.in_flight == 0  # closing the stream freed the request's KV cache
    assert local_engine.prefix_cache.restore(
        local_engine.tokenizer.encode_chat(messages) + [0], local_engine.new_cache(prompt + 1)
    ) == prompt


@pytest.mark.parametrize("chunk", [7, 64])
def test_chunked_prefill_gives_the_same_logits(local_engine, chunk):
    ids = local_engine.tokenizer.encode(_record(3, 120))
    whole = local_engine.prefill(ids, local_engine.new_cache(len(ids)))
    saved = local_engine.prefill_chunk
    local_engine.prefill_chunk = chunk
    try:
        chunked = local_engine.prefill(ids, local_engine.new_cache(len(ids)))
    finally:
        local_engine.prefill_chunk = saved
    assert relative_error(chunked, whole) < 5e-5


def _cache_with(tokens: list[int]) -> KVCache:
    cache = KVCache(layers=2, kv_heads=1, head_dim=4, max_tokens=64, dtype=torch.float32)
    for position, token in enumerate(tokens):
        cache.keys[:, :, :, position] = token
        cache.values[:, :, :, position] = -token
    return cache


def test_restore_copies_the_longest_shared_prefix_and_keeps_the_last_token_to_run():
    prefixes = PrefixCache(budget_bytes=1 << 20)
    prefixes.store([1, 2, 3, 4], _cache_with([1, 2, 3, 4]))
    prefixes.store([1, 2, 9], _cache_with([1, 2, 9]))
    target = KVCache(layers=2, kv_heads=1, head_dim=4, max_tokens=64, dtype=torch.float32)
    assert prefixes.restore([1, 2, 3, 7, 8], target) == 3
    assert target.keys[0, 0, 0, :3, 0].tolist() == [1, 2, 3]
    assert target.values[1, 0, 0, 2, 0].item() == -3
    assert prefixes.restore([1, 2, 3, 4], target) == 3  # the last prompt token always runs
    assert prefixes.restore([5, 6], target) == 0


def test_an_extension_replaces_its_prefix_and_old_entries_leave_first():
    one_entry = _cache_with([1, 2, 3]).keys[:, :, :, :3].nbytes * 2
    prefixes = PrefixCache(budget_bytes=2 * one_entry)
    prefixes.store([1, 2], _cache_with([1, 2]))
    prefixes.store([1, 2, 3], _cache_with([1, 2, 3]))
    assert len(prefixes) == 1
    prefixes.store([4, 5, 6], _cache_with([4, 5, 6]))
    prefixes.store([7, 8, 9], _cache_with([7, 8, 9]))  # over budget: [1, 2, 3] was used least recently
    assert len(prefixes) == 2 and prefixes.nbytes <= prefixes.budget_bytes
    target = KVCache(layers=2, kv_heads=1, head_dim=4, max_tokens=64, dtype=torch.float32)
    assert prefixes.restore([1, 2, 3, 0], target) == 0
    assert prefixes.restore([4, 5, 6, 0], target) == 3
