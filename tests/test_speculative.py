"""Speculative decoding's pieces: the prompt-lookup drafter, and verification that changes nothing about the output
(greedy) or its distribution (sampling), checked on a bigram "model" whose logits come from a fixed table."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from typing import Sequence

import pytest
import torch

from engine.sampling import Sampler
from engine.speculative import (
    Drafter,
    PromptLookupDrafter,
    SpeculationStats,
    accept_greedy,
    accept_sampled,
    target_distribution,
    target_distributions,
    verify,
)
from engine.types import GenerationParams

VOCAB = 50


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: waking a thread pool costs more than the work, and milliseconds on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def naive_propose(tokens: Sequence[int], k: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """The drafter's rule by a backward scan of the whole sequence."""
    length = len(tokens)
    for n in range(max_ngram, min_ngram - 1, -1):
        if n >= length:
            continue
        suffix = list(tokens[length - n :])
        for end in range(length - 1, n - 1, -1):
            if list(tokens[end - n : end]) == suffix:
                draft: list[int] = []
                for j in range(end, end + k):
                    draft.append(tokens[j] if j < length else draft[j - length])
                return draft
    return []


# --- PromptLookupDrafter ---------------------------------------------------------------------------------------


def test_drafter_proposes_what_followed_the_most_recent_match():
    tokens = [1, 2, 3, 9, 1, 2, 3, 7, 8, 6, 5, 4, 0, 1, 2, 3]
    assert PromptLookupDrafter().propose(tokens, 3) == [7, 8, 6]


def test_drafter_prefers_longer_ngrams():
    # The last token 3 most recently preceded 5, but the 3-gram 1 2 3 occurred earlier, followed by 9.
    tokens = [1, 2, 3, 9, 4, 3, 5, 1, 2, 3]
    assert PromptLookupDrafter(max_ngram=3).propose(tokens, 2) == [9, 4]
    assert PromptLookupDrafter(max_ngram=1).propose(tokens, 2) == [5, 1]
    # Too short an n-gram is not looked for at all.
    assert PromptLookupDrafter(max_ngram=3, min_ngram=2).propose([5, 4, 7, 3, 4], 2) == []


def test_drafter_proposes_nothing_without_a_match():
    assert PromptLookupDrafter().propose([1, 2, 3, 4, 5], 4) == []
    assert PromptLookupDrafter().propose([7], 4) == []
    assert PromptLookupDrafter().propose([], 4) == []


def test_drafter_respects_k():
    tokens = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]
    assert PromptLookupDrafter().propose(tokens, 4) == [3, 4, 5, 6]
    assert PromptLookupDrafter().propose(tokens, 1) == [3]
    assert PromptLookupDrafter().propose(tokens, 0) == []


def test_drafter_keeps_copying_into_the_repeat():
    # The match's continuation runs into the suffix: a loop keeps proposing the loop.
    assert PromptLookupDrafter().propose([4, 1, 2, 1, 2], 5) == [1, 2, 1, 2, 1]
    assert PromptLookupDrafter().propose([3, 3, 3], 4) == [3, 3, 3, 3]


@pytest.mark.parametrize("seed", range(4))
def test_drafter_incremental_matches_fresh_and_naive(seed: int):
    rng = random.Random(seed)
    vocab = rng.choice([3, 6, 20])  # small vocabularies make many matches of every length
    tokens: list[int] = []
    growing = PromptLookupDrafter()
    while len(tokens) < 300:
        tokens += [rng.randrange(vocab) for _ in range(rng.randint(1, 9))]  # a step commits 1..k+1 tokens
        k = rng.randint(0, 8)
        expected = naive_propose(tokens, k)
        assert growing.propose(tokens, k) == expected
        assert PromptLookupDrafter().propose(tokens, k) == expected
    # A shorter sequence means a new one: the drafter starts over rather than using the old index.
    assert growing.propose([5, 6, 5], 2) == [6, 5]


def test_drafter_is_fast_on_a_long_context():
    rng = random.Random(0)
    source = [rng.randrange(32000) for _ in range(2000)]
    tokens: list[int] = []
    while len(tokens) < 100_000:  # pieces quoted from a "document" between fresh text, like a clinical answer
        start = rng.randrange(len(source) - 50)
        tokens += source[start : start + rng.randint(5, 50)] if rng.random() < 0.5 else rng.choices(range(32000), k=20)
    steps = 200
    prompt, tail = tokens[: 100_000 - steps], tokens[100_000 - steps : 100_000]

    drafter = PromptLookupDrafter()
    began = time.perf_counter()
    drafter.propose(prompt, 8)
    indexed = time.perf_counter() - began
    sequence = list(prompt)
    began = time.perf_counter()
    proposals = []
    for token in tail:
        sequence.append(token)
        proposals.append(drafter.propose(sequence, 8))
    per_step = (time.perf_counter() - began) / steps

    checked = 5
    began = time.perf_counter()
    for i in range(checked):
        assert naive_propose(sequence[: len(prompt) + i + 1], 8) == proposals[i]
    naive_per_step = (time.perf_counter() - began) / checked

    print(f"\n100K tokens: index {indexed * 1e3:.0f} ms once, then {per_step * 1e6:.1f} µs/step; "
          f"naive rescan {naive_per_step * 1e3:.1f} ms/step")
    assert per_step < naive_per_step  # by orders of magnitude in practice; only the direction is asserted


# --- accept_greedy ---------------------------------------------------------------------------------------------


def one_hot_logits(choices: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(choices), 10).float() * 5.0


def test_accept_greedy_all_accepted_adds_the_bonus():
    assert accept_greedy([3, 4, 5], one_hot_logits([3, 4, 5, 6])) == [3, 4, 5, 6]


def test_accept_greedy_stops_at_the_first_mismatch():
    assert accept_greedy([3, 4, 5], one_hot_logits([3, 7, 5, 6])) == [3, 7]
    assert accept_greedy([3, 4, 5], one_hot_logits([1, 4, 5, 6])) == [1]


def test_accept_greedy_without_a_draft_is_one_step():
    assert accept_greedy([], one_hot_logits([2])) == [2]


# --- End to end on a bigram model ------------------------------------------------------------------------------


def bigram_table(seed: int, scale: float = 3.0) -> torch.Tensor:
    """table[t] are the logits of the token after t."""
    return torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(seed)) * scale


def plain_decode(table: torch.Tensor, prompt: list[int], params: GenerationParams) -> list[int]:
    sampler = Sampler(params)
    tokens = list(prompt)
    while len(tokens) - len(prompt) < params.max_new_tokens:
        tokens.append(sampler(table[tokens[-1]], torch.tensor(tokens)))
    return tokens[len(prompt) :]


def speculative_decode(
    table: torch.Tensor, prompt: list[int], params: GenerationParams, drafter: Drafter, k: int,
    stats: SpeculationStats | None = None,
) -> list[int]:
    """The decode loop the engine runs, with the bigram table standing in for the model's forward pass."""
    sampler = Sampler(params)
    tokens = list(prompt)
    while (left := params.max_new_tokens - (len(tokens) - len(prompt))) > 0:
        draft = drafter.propose(tokens, min(k, left - 1))
        logits = table[torch.tensor([tokens[-1], *draft])]  # one row per position: the last token, then the draft
        new = verify(draft, logits, params, torch.tensor(tokens), sampler.generator)
        if stats is not None:
            stats.record(len(draft), len(new) - 1)
        tokens += new[:left]
    return tokens[len(prompt) :]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_speculation_is_lossless(seed: int, k: int, penalty: float):
    table = bigram_table(seed)
    prompt = torch.randint(VOCAB, (30,), generator=torch.Generator().manual_seed(100 + seed)).tolist()
    params = GenerationParams(max_new_tokens=200, temperature=0.0, repetition_penalty=penalty)
    stats = SpeculationStats()
    expected = plain_decode(table, prompt, params)
    assert speculative_decode(table, prompt, params, PromptLookupDrafter(), k, stats) == expected
    assert stats.accepted > 0  # the greedy bigram loops, so lookup drafts are often right: speculation did happen
    assert stats.steps + stats.accepted >= 200


@pytest.mark.parametrize("seed", range(3))
def test_sampled_speculation_without_drafts_replays_the_sampler(seed: int):
    """A step with nothing drafted draws exactly like the Sampler: same probabilities, same random stream."""
    table = bigram_table(seed, scale=1.0)
    params = GenerationParams(max_new_tokens=50, temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.2,
                              seed=seed)

    class Silent:
        def propose(self, tokens: Sequence[int], k: int) -> list[int]:
            return []

    assert speculative_decode(table, [1, 2], params, Silent(), 4) == plain_decode(table, [1, 2], params)


def test_target_distributions_see_earlier_draft_tokens():
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(0))
    params = GenerationParams(temperature=0.7, top_k=30, top_p=0.95, repetition_penalty=1.5)
    seen, draft = torch.tensor([4, 9]), [11, 4]
    rows = target_distributions(logits, draft, params, seen)
    for i in range(3):
        expected = target_distribution(logits[i], params, torch.cat([seen, torch.tensor(draft[:i], dtype=torch.long)]))
        assert torch.equal(rows[i], expected)
    assert rows[0][11] != target_distribution(logits[0], params, torch.tensor([4, 9, 11]))[11]


def test_greedy_as_a_distribution_is_greedy():
    """At temperature 0 the target distributions are one-hot, and speculative sampling reduces to accept_greedy."""
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(1))
    params = GenerationParams(temperature=0.0, repetition_penalty=1.4)
    seen = torch.tensor([3, 8])
    right: list[int] = []
    for i in range(3):  # the greedy continuation, each token seeing the ones before it
        right = verify(right, logits[: i + 1], params, seen, torch.Generator())
    assert len(right) == 3
    for draft in ([5, 6, 7], right[:1] + [6, 7], right):
        probs = target_distributions(logits[: len(draft) + 1], draft, params, seen)
        assert probs.max(-1).values.eq(1.0).all() and probs.sum(-1).eq(1.0).all()
        greedy = verify(draft, logits[: len(draft) + 1], params, seen, torch.Generator())
        assert accept_sampled(draft, probs, torch.Generator().manual_seed(0)) == greedy


# --- The distribution under sampling ---------------------------------------------------------------------------

TRIALS = 12_000  # per case: enough to see a bias of a few percent on any likely pair, and quick
PROMPT = [7, 6]


class Ranked:
    """A deterministic drafter of varied quality: after token t it proposes the target's most likely next token
    (t = 0 mod 3), its second (t = 1 mod 3) or its least likely one, which the filters rule out (t = 2 mod 3), and
    keeps chaining; it stops at a token t = 3 mod 4. Whatever it proposes, the output must not change."""

    def __init__(self, table: torch.Tensor):
        self.order = table.argsort(-1, descending=True).tolist()

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        draft: list[int] = []
        last = tokens[-1]
        while len(draft) < k and last % 4 != 3:
            last = self.order[last][[0, 1, -1][last % 3]]
            draft.append(last)
        return draft


def exact_two_token_distribution(table: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    """P(first, second) [VOCAB, VOCAB] under plain decoding, from the processing the Sampler applies."""
    first = target_distribution(table[PROMPT[-1]], params, torch.tensor(PROMPT))
    second = torch.stack([target_distribution(table[a], params, torch.tensor([*PROMPT, a])) for a in range(VOCAB)])
    return first[:, None] * second


def two_token_counts(
    table: torch.Tensor, params: GenerationParams, trials: int, accept=accept_sampled
) -> Counter:
    """How often each pair of first two tokens comes out of `trials` speculative generations."""
    drafter = Ranked(table)
    generator = torch.Generator().manual_seed(params.seed)  # one stream for all trials: fixed, independent draws
    distributions: dict[tuple[tuple[int, ...], tuple[int, ...]], torch.Tensor] = {}  # few distinct steps: reuse
    counts: Counter = Counter()
    for _ in range(trials):
        tokens = list(PROMPT)
        while len(tokens) < len(PROMPT) + 2:
            draft = drafter.propose(tokens, 3)
            key = (tuple(tokens), tuple(draft))
            if key not in distributions:
                logits = table[torch.tensor([tokens[-1], *draft])]
                distributions[key] = target_distributions(logits, draft, params, torch.tensor(tokens))
            tokens += accept(draft, distributions[key], generator)
        counts[tuple(tokens[len(PROMPT) : len(PROMPT) + 2])] += 1
    return counts


def chi_square_excess(counts: Counter, exact: torch.Tensor) -> float:
    """Pearson's statistic against the exact distribution, in standard deviations above its mean (bins with an
    expected count under 5 pooled): about N(0, 1) when the samples follow `exact`."""
    trials = sum(counts.values())
    expected = (exact * trials).flatten().tolist()
    observed = [counts.get(divmod(i, VOCAB), 0) for i in range(VOCAB * VOCAB)]
    assert all(o == 0 for e, o in zip(expected, observed) if e == 0), "a token the target rules out came out"
    bins, pooled_e, pooled_o = [], 0.0, 0
    for e, o in zip(expected, observed):
        if e >= 5:
            bins.append((e, o))
        else:
            pooled_e, pooled_o = pooled_e + e, pooled_o + o
    if pooled_e > 0:
        bins.append((pooled_e, pooled_o))
    statistic = sum((o - e) ** 2 / e for e, o in bins)
    df = len(bins) - 1
    return (statistic - df) / math.sqrt(2 * df)


SAMPLED_CASES = {
    "plain": GenerationParams(temperature=1.0, seed=1),
    "filtered": GenerationParams(temperature=0.8, top_k=8, top_p=0.9, repetition_penalty=1.3, seed=2),
}


@pytest.mark.parametrize("case", SAMPLED_CASES)
def test_sampled_speculation_keeps_the_distribution(case: str):
    """Plain decoding draws from exactly these distributions (test_sampled_speculation_without_drafts_replays_the_
    sampler), so speculative samples are compared with the exact distribution of plain decoding."""
    params = SAMPLED_CASES[case]
    table = bigram_table(5, scale=1.5)
    excess = chi_square_excess(two_token_counts(table, params, TRIALS), exact_two_token_distribution(table, params))
    print(f"\n{case}: chi-square {excess:+.2f} standard deviations from its mean over {TRIALS} trials")
    assert excess < 5.0  # a false alarm is a 1-in-a-million event, and the seeds are fixed anyway


def resample_from_p(draft: Sequence[int], probs: torch.Tensor, generator: torch.Generator) -> list[int]:
    """A plausible bug: on rejection, sample from p itself rather than p without the rejected token."""
    for i, d in enumerate(draft):
        if float(torch.rand(1, generator=generator)) >= probs[i, d]:
            return [*draft[:i], int(torch.multinomial(probs[i], 1, generator=generator))]
    return [*draft, int(torch.multinomial(probs[len(draft)], 1, generator=generator))]


def test_the_distribution_check_catches_a_biased_rule():
    params = SAMPLED_CASES["plain"]
    table = bigram_table(5, scale=1.5)
    trials = 2000  # the bias is large: a few trials show it
    biased = two_token_counts(table, params, trials, accept=resample_from_p)
    excess = chi_square_excess(biased, exact_two_token_distribution(table, params))
    print(f"\nbiased rule: chi-square {excess:+.2f} standard deviations from its mean over {trials} trials")
    assert excess > 10.0  # twice the bound the right rule is held to


def test_stats():
    stats = SpeculationStats()
    stats.record(drafted=4, accepted=4)
    stats.record(drafted=4, accepted=0)
    stats.record(drafted=0, accepted=0)
    assert (stats.drafted, stats.accepted, stats.steps) == (8, 4, 3)
    assert stats.mean_accepted == pytest.approx(4 / 3)
    assert SpeculationStats().mean_accepted == 0.0
