"""Drafters that run a model: a layer that reads the target's hidden states (the checkpoint's own MTP layer, or an
EAGLE3 head, engine/eagle3.py), or a small draft model that shares the tokenizer.

All propose their greedy continuation, so the draft distribution is one-hot and `verify` stays lossless for
greedy and sampled decoding alike. Each keeps KV of its own for one sequence and, like the target's cache, simply
overwrites the entries of rejected drafts on its next call. (The model-free prompt-lookup drafter is in
engine/speculative.py.)
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from engine.kv_cache import KVCache
from engine.speculative import Drafter


class HiddenStateDrafter(Drafter):
    """A layer of its own predicts token i+2 from the target's hidden state at position i and the embedding of token
    i+1: the checkpoint's MTP layer (below) or an EAGLE3 head (engine/eagle3.py). Subclasses say how the layer runs.

    Its attention needs its own KV at every earlier position, so every valid hidden state the target produces
    (prompt chunks, accepted drafts) is run through the layer as soon as the token after it is known; the last of
    those runs predicts the token after the sequence. Further drafts feed the layer its own output state, as the
    checkpoints' training does (EAGLE3) or as SGLang and vLLM chain it (MTP, trained for one step).
    """

    needs_hidden = True

    def __init__(self) -> None:
        self.pending: torch.Tensor | None = None  # [m, ·] target states at positions start.. not yet run
        self.start = 0  # the layer has run at every position before this one
        self.logits: torch.Tensor | None = None  # the layer's prediction after position start - 1
        self.state: torch.Tensor | None = None  # and its output state there

    def observe(self, hidden: torch.Tensor, start: int, tokens: Sequence[int]) -> None:
        if self.pending is None:  # the first states come after the prompt's cached prefix
            self.start, self.pending = start, hidden
        else:  # states from `start` on are new, or replace those of rejected drafts
            self.pending = torch.cat([self.pending[: start - self.start], hidden])
        self._advance(tokens)

    def _advance(self, tokens: Sequence[int]) -> None:
        """Run the pending states whose next token is known through the layer, writing its KV."""
        if self.pending is None:
            return
        ready = min(len(self.pending), len(tokens) - 1 - self.start)
        if ready <= 0:
            return
        after = torch.tensor([tokens[self.start + 1 : self.start + 1 + ready]], device=self.pending.device)
        logits, state = self._run(self.pending[None, :ready], after, self.start)
        self.logits, self.state = logits[0, -1], state[:, -1:]
        self.start += ready
        self.pending = self.pending[ready:]

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        self._advance(tokens)
        # The layer must have run at the position before the last token, whose output predicts the next one.
        if k <= 0 or self.logits is None or self.start != len(tokens) - 1:
            return []
        draft = [self._token(self.logits)]
        state, position = self.state, len(tokens) - 1
        while len(draft) < k:
            token = torch.tensor([[draft[-1]]], device=state.device)
            logits, state = self._run(state, token, position)
            draft.append(self._token(logits[0, -1]))
            position += 1
        return draft

    def _run(self, hidden: torch.Tensor, tokens: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer over states [1, T, ·] at positions start.. and the tokens that follow them [1, T]: fp32 logits for
        the token after each of those [1, T, V], and the layer's output states to feed back [1, T, H]."""
        raise NotImplementedError

    def _token(self, logits: torch.Tensor) -> int:
        """The target token proposed by one position's logits [V]: the greedy choice, so drafts stay one-hot."""
        return int(logits.argmax())


class MTPModel(Protocol):
    """A model with a multi-token-prediction layer (engine/models/bailing_moe_v2.py)."""

    def draft_next(
        self, hidden: torch.Tensor, tokens: torch.Tensor, caches: Sequence[KVCache], starts: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class MTPDrafter(HiddenStateDrafter):
    """The checkpoint's MTP layer, reading the target's final normed states, with its KV in a slot of its own in the
    request's cache."""

    def __init__(self, model: MTPModel, cache: KVCache):
        super().__init__()
        self.model = model
        self.cache = cache

    def _run(self, hidden: torch.Tensor, tokens: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.draft_next(hidden, tokens, [self.cache], [start])


class DraftRunner(Protocol):
    """The small model's engine: forward passes over a cache of its own."""

    def new_cache(self, tokens: int) -> KVCache: ...

    def forward(
        self, rows: Sequence[Sequence[int]], caches: Sequence[KVCache], starts: Sequence[int], last_only: bool = True
    ) -> torch.Tensor: ...

    def prefill(self, ids: Sequence[int], cache: KVCache, start: int = 0) -> torch.Tensor: ...


class DraftModelDrafter(Drafter):
    """A small model with the target's tokenizer proposes its greedy continuation, k one-token steps per call."""

    def __init__(self, runner: DraftRunner, capacity: int):
        self.runner = runner
        self.cache = runner.new_cache(capacity)
        self.fed: list[int] = []  # the tokens whose KV is in the cache, position by position
        self.valid = 0  # how many of them are known to match the committed sequence

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        if k <= 0:
            return []
        # Committed tokens never change, so only what was fed since the last check can differ (rejected drafts).
        limit = min(len(self.fed), len(tokens) - 1)
        while self.valid < limit and self.fed[self.valid] == tokens[self.valid]:
            self.valid += 1
        self.valid = min(self.valid, limit)
        logits = self.runner.prefill(tokens, self.cache, start=self.valid)
        self.fed = list(tokens)
        draft = [int(logits.argmax())]
        while len(draft) < k:
            logits = self.runner.forward([[draft[-1]]], [self.cache], [len(self.fed)])[0]
            self.fed.append(draft[-1])
            draft.append(int(logits.argmax()))
        return draft
