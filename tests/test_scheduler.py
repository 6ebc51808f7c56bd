"""Continuous batching: concurrent requests decode together, each as it would alone, and can be cancelled."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from engine import ChatMessage, GenerationParams, Stats, TextDelta
from conftest import relative_error

QUESTIONS = [
    "What is a normal resting heart rate?",
    "List three common side effects of metformin.",
    "Explain what an HbA1c test measures.",
    "What does BMI stand for?",
    "Name two symptoms of dehydration.",
]


def _messages(question: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=question)]


def _answer(engine, question: str, params: GenerationParams) -> tuple[str, Stats]:
    events = list(engine.generate(_messages(question), params))
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def _concurrently(engine, questions: list[str], params: GenerationParams) -> list[list[tuple[float, object]]]:
    """Each question from its own thread, all submitted at once; per question, its events with arrival times."""
    timelines: list[list[tuple[float, object]]] = [[] for _ in questions]
    start = threading.Barrier(len(questions))

    def run(i: int) -> None:
        start.wait()
        for event in engine.generate(_messages(questions[i]), params):
            timelines[i].append((time.perf_counter(), event))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(questions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return timelines


def _text(timeline) -> str:
    return "".join(e.text for _, e in timeline if isinstance(e, TextDelta))


def test_a_batched_step_gives_each_row_the_logits_it_gets_alone(local_engine):
    """Rows at different positions, each with its own cache, in one forward pass."""
    prompts = [local_engine.tokenizer.encode_chat(_messages(q)) for q in QUESTIONS[:3]]
    caches = [local_engine.new_cache(len(p)) for p in prompts]
    for prompt, cache in zip(prompts, caches):
        local_engine.prefill(prompt[:-1], cache)
    solo = []
    for prompt, cache in zip(prompts, caches):
        solo.append(local_engine.forward([prompt[-1:]], [cache], [len(prompt) - 1])[0])
    batched = local_engine.forward([p[-1:] for p in prompts], caches, [len(p) - 1 for p in prompts])
    assert batched.shape == (3, local_engine.config.vocab_size)
    for row, expected in zip(batched, solo):
        assert relative_error(row, expected) < 1e-4
        assert row.argmax() == expected.argmax()


def _greedy_up_to_ties(engine, question: str, answer: str, tie: float = 0.01) -> bool:
    """Whether each token of `answer` is, read alone after the question and the tokens before it, the model's top
    choice or within `tie` of it. A batch sums in another order than one row does, so where two tokens are all but
    tied a batched answer may take the other one; a row given another row's logits would be far from its top."""
    prompt = engine.tokenizer.encode_chat(_messages(question))
    tokens = engine.tokenizer.encode(answer)
    cache = engine.new_cache(len(prompt) + len(tokens))
    engine.prefill(prompt[:-1], cache)
    logits = engine.forward([prompt[-1:] + tokens[:-1]], [cache], [len(prompt) - 1], last_only=False)[0]
    chosen = logits.gather(1, torch.tensor(tokens).unsqueeze(1)).squeeze(1)
    return bool((logits.max(dim=1).values - chosen <= tie).all())


def test_concurrent_requests_answer_as_they_would_alone(local_engine):
    params = GenerationParams(max_new_tokens=24)
    alone = [_answer(local_engine, q, params)[0] for q in QUESTIONS[:4]]
    timelines = _concurrently(local_engine, QUESTIONS[:4], params)
    for question, timeline, solo in zip(QUESTIONS[:4], timelines, alone):
        text = _text(timeline)
        assert text == solo or _greedy_up_to_ties(local_engine, question, text), (question, text, solo)
    assert all(isinstance(t[-1][1], Stats) for t in timelines)
    assert local_engine.scheduler.in_flight == 0


def test_no_request_waits_for_another_to_finish(local_engine):
    params = GenerationParams(max_new_tokens=48, ignore_eos=True, draft_tokens=0)
    first, second = _concurrently(local_engine, QUESTIONS[:2], params)
    first_done = first[-1][0]
    second_started = next(t for t, e in second if isinstance(e, TextDelta))
    assert second_started < first_done, "the second request only started once the first had finished"
    assert first[-1][1].generated_tokens == second[-1][1].generated_tokens == 48


def test_more_requests_than_the_batch_queue_and_all_finish(local_engine):
    saved = local_engine.scheduler.max_batch
    local_engine.scheduler.max_batch = 2
    try:
        timelines = _concurrently(local_engine, QUESTIONS, GenerationParams(max_new_tokens=8, ignore_eos=True))
    finally:
        local_engine.scheduler.max_batch = saved
    assert [t[-1][1].generated_tokens for t in timelines] == [8] * len(QUESTIONS)


def test_stopping_one_request_frees_it_and_the_others_go_on(local_engine):
    params = GenerationParams(max_new_tokens=40, ignore_eos=True, draft_tokens=0)
    results: dict[str, Stats] = {}

    def other() -> None:
        results["other"] = list(local_engine.generate(_messages(QUESTIONS[1]), params))[-1]

    thread = threading.Thread(target=other)
    thread.start()
    stream = local_engine.generate(_messages(QUESTIONS[0]), params)
    for _, _ in zip(range(3), stream):
        pass
    stream.close()  # the UI's Stop button
    assert local_engine.scheduler.in_flight <= 1, "the stopped request still holds its KV cache"
    thread.join(timeout=300)
    assert results["other"].generated_tokens == 40
    assert local_engine.scheduler.in_flight == 0


def test_a_failing_request_reports_its_error_and_the_engine_goes_on(local_engine):
    bad = [local_engine.config.vocab_size + 7]  # no such token: the embedding lookup fails
    with pytest.raises(IndexError):
        list(local_engine.generate(bad, GenerationParams(max_new_tokens=4)))
    text, stats = _answer(local_engine, QUESTIONS[3], GenerationParams(max_new_tokens=4, ignore_eos=True))
    assert stats.generated_tokens == 4 and text
    assert local_engine.scheduler.in_flight == 0


def test_sampling_with_a_seed_is_reproducible_under_batching(local_engine):
    # Without drafting: a verified draft draws its random numbers differently (same distribution, other sample).
    params = GenerationParams(max_new_tokens=16, temperature=0.8, top_p=0.95, seed=3, ignore_eos=True, draft_tokens=0)
    alone = _answer(local_engine, QUESTIONS[2], params)[0]
    batched = _concurrently(local_engine, [QUESTIONS[2], QUESTIONS[4]], params)
    assert _text(batched[0]) == alone
