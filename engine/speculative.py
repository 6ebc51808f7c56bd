"""Lossless speculative decoding: a drafter guesses the next tokens, one forward pass of the target checks them all.

One step, for a sequence whose last committed token `last` sits at position P and is not yet in the KV cache:

    draft  = drafter.propose(tokens, k)                # tokens: prompt + committed output, `last` included
    logits = model([last, *draft] at P..P+len(draft))  # fp32 [len(draft)+1, vocab]: every position, not last_only
    new    = verify(draft, logits, params, seen, sampler.generator)  # 1..len(draft)+1 tokens to commit

Row i of `logits` predicts the token after draft[i-1] (row 0: the one after `last`), so the output is exactly what
token-by-token decoding would have produced (greedy) or is distributed exactly like it (sampling), given those
logits: a forward pass over several tokens may round differently from one over a single token, which can flip a
greedy near-tie. What the caller must do:
- commit `new` token by token: stop strings, stop ids and max_new_tokens may end the answer inside it;
- the KV cache now holds `last` and draft[:len(new)-1] at P..P+len(new)-1, all valid, then entries for the rejected
  drafts. Nothing needs erasing: the next forward starts at P+len(new) with new[-1] and overwrites them, and attention
  reads the cache only up to the end of the tokens it is given. Anything that keeps cache entries beyond a step (a
  prefix cache) must take only positions < P+len(new);
- keep P+len(draft) inside the context window, and draft at most max_new_tokens-generated-1 tokens, since every
  draft token accepted also brings one more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from engine.sampling import apply_repetition_penalty, filter_logits
from engine.types import GenerationParams


class Drafter:
    """Guesses the next tokens of one sequence. Drafters that read the target model's hidden states (MTP, EAGLE3)
    set `needs_hidden`, and the scheduler then hands them every valid state through `observe`."""

    needs_hidden = False

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        """Up to k tokens likely to follow `tokens` (prompt + output so far), possibly none.

        Deterministic, so the draft distribution is one-hot: that is what `accept_sampled` assumes."""
        raise NotImplementedError

    def observe(self, hidden: torch.Tensor, start: int, tokens: Sequence[int]) -> None:
        """The target's hidden states that the drafter reads ([T, ·], see `LocalEngine.forward_hidden`) at positions
        start..start+T-1, all of them valid (accepted); `tokens` is the sequence committed so far."""


class PromptLookupDrafter(Drafter):
    """Propose what followed the most recent earlier occurrence of the sequence's last n tokens, longest n first.

    Clinical answers quote their documents (names, doses, codes), and that is where a copy is likely right.
    One drafter per sequence: `propose` indexes only the tokens appended since its last call, so a step costs
    O(new tokens × n-gram sizes + k) whatever the context length, and the whole sequence O(length × n-gram sizes)
    time and dictionary entries. (Scanning the context for the suffix each step instead, even vectorised with
    torch.unfold, costs O(length) per step: milliseconds at 100K tokens.)
    """

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram} and {max_ngram}")
        # n -> {n-gram: the position right after its most recent occurrence}.
        self._index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in range(max_ngram, min_ngram - 1, -1)}
        self._indexed = 0  # n-grams ending before this position are in the index

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        length = len(tokens)
        if length < self._indexed:  # a different, shorter sequence: start over
            for index in self._index.values():
                index.clear()
            self._indexed = 0
        # The n-gram ending at `length` is the suffix being looked up: it must not find itself,
        # so it goes into the index on the next call, once it is no longer the suffix.
        for n, index in self._index.items():
            start = max(self._indexed, n)
            if start < length:
                grams = zip(*(tokens[start - n + j : length - n + j] for j in range(n)))
                index.update(zip(grams, range(start, length)))  # later positions overwrite earlier ones
        self._indexed = length
        if k <= 0:
            return []
        for n, index in self._index.items():
            if n >= length:
                continue
            after = index.get(tuple(tokens[length - n :]))
            if after is not None:
                # Copy as LZ77 does: a continuation that runs into the suffix repeats what is being proposed,
                # so a sequence stuck in a loop still gets k tokens.
                draft: list[int] = []
                for j in range(after, after + k):
                    draft.append(tokens[j] if j < length else draft[j - length])
                return draft
        return []


def penalized_logits(
    logits: torch.Tensor, draft: Sequence[int], seen: torch.Tensor, repetition_penalty: float
) -> torch.Tensor:
    """Apply the repetition penalty to each row of [len(draft)+1, vocab] logits as the sampler would have at that
    position: row i has also seen draft[:i]."""
    if repetition_penalty == 1.0:
        return logits
    ids = torch.cat([seen, torch.tensor(list(draft), dtype=seen.dtype, device=seen.device)])
    return torch.stack(
        [apply_repetition_penalty(row, ids[: len(seen) + i], repetition_penalty) for i, row in enumerate(logits)]
    )


def _distribution(logits: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    """The Sampler's steps after the repetition penalty, as probabilities; greedy is one-hot on the argmax."""
    if params.temperature == 0.0:
        return torch.zeros_like(logits).scatter(-1, logits.argmax(-1, keepdim=True), 1.0)
    return filter_logits(logits / params.temperature, params.top_k, params.top_p).softmax(-1)


def target_distribution(logits_row: torch.Tensor, params: GenerationParams, seen: torch.Tensor) -> torch.Tensor:
    """The distribution `Sampler(params)` draws the next token from, given fp32 logits [vocab] and the ids seen."""
    return _distribution(apply_repetition_penalty(logits_row, seen, params.repetition_penalty), params)


def target_distributions(
    logits: torch.Tensor, draft: Sequence[int], params: GenerationParams, seen: torch.Tensor
) -> torch.Tensor:
    """`target_distribution` for each row of the verification logits [len(draft)+1, vocab]."""
    return _distribution(penalized_logits(logits, draft, seen, params.repetition_penalty), params)


def accept_greedy(draft: Sequence[int], target_logits: torch.Tensor) -> list[int]:
    """The longest draft prefix that matches the target's argmax, then the target's own token after it.

    target_logits: [len(draft)+1, vocab], already through `penalized_logits` when a repetition penalty is on."""
    choice = target_logits.argmax(-1).tolist()
    accepted = 0
    while accepted < len(draft) and draft[accepted] == choice[accepted]:
        accepted += 1
    return [*draft[:accepted], choice[accepted]]


def accept_sampled(draft: Sequence[int], target_probs: torch.Tensor, generator: torch.Generator) -> list[int]:
    """Speculative sampling (Leviathan et al. 2023; Chen et al. 2023) for a one-hot draft distribution q.

    Accepting d_i with probability min(1, p_i(d_i) / q_i(d_i)) = p_i(d_i), and on the first rejection sampling from
    normalize(max(p_i - q_i, 0)), i.e. p_i without d_i, commits tokens distributed exactly as sampling from the target
    one token at a time would.
    target_probs: [len(draft)+1, vocab] from `target_distributions`.
    """
    k = len(draft)
    if k:
        d = torch.tensor(draft, device=target_probs.device)
        u = torch.rand(k, generator=generator, device=target_probs.device)
        rejected = (u >= target_probs[:k].gather(-1, d[:, None]).squeeze(-1)).nonzero()
        if rejected.numel():
            i = int(rejected[0])
            residual = target_probs[i].index_fill(0, d[i : i + 1], 0.0)
            # Rounding can leave p_i(d_i) a hair under 1 with nothing else possible: then d_i is the only choice.
            token = int(torch.multinomial(residual, 1, generator=generator)) if residual.sum() > 0 else draft[i]
            return [*draft[:i], token]
    # Drawn as the Sampler draws, so a step without a draft leaves the random stream where plain decoding would.
    return [*draft, int(torch.multinomial(target_probs[k], 1, generator=generator))]


def verify(
    draft: Sequence[int],
    target_logits: torch.Tensor,
    params: GenerationParams,
    seen: torch.Tensor,
    generator: torch.Generator,
) -> list[int]:
    """The tokens to commit after checking `draft` against the target's fp32 logits [len(draft)+1, vocab].

    seen: ids of the prompt and output before the draft, as given to the Sampler; generator: the Sampler's."""
    if params.temperature == 0.0:
        return accept_greedy(draft, penalized_logits(target_logits, draft, seen, params.repetition_penalty))
    return accept_sampled(draft, target_distributions(target_logits, draft, params, seen), generator)


@dataclass
class SpeculationStats:
    drafted: int = 0  # draft tokens sent to verification
    accepted: int = 0  # of those, how many the target kept
    steps: int = 0  # target forward passes that verified a draft (an empty one included)

    def record(self, drafted: int, accepted: int) -> None:
        """One verification step: `verify` returned accepted + 1 tokens for a draft of `drafted`."""
        self.drafted += drafted
        self.accepted += accepted
        self.steps += 1

    @property
    def mean_accepted(self) -> float:
        """Draft tokens kept per step; each step also commits one token of the target's own."""
        return self.accepted / self.steps if self.steps else 0.0

    @property
    def paying_off(self) -> bool:
        """Whether to keep drafting: verifying a draft costs more than a plain step, so it must keep at least one
        draft token per step on average. Judged after a few steps, since a text's first lines repeat little."""
        return self.steps < _STEPS_BEFORE_JUDGING or self.mean_accepted >= 1.0


_STEPS_BEFORE_JUDGING = 4
