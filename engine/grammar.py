"""Constrained decoding: the output follows a JSON schema, because every token the schema forbids is masked out.

llguidance (Microsoft's grammar engine behind Guidance; a Rust wheel with no dependencies, fast on a CPU) keeps the
parser state and computes, before each token, the set of tokens that keep the output valid. The masks are applied to
the logits before sampling or draft verification, so constrained decoding composes with speculative decoding: a draft
is cut at its first token the grammar refuses, and each verified position sees the mask of the state after the draft
tokens before it.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Sequence

import torch

from engine.types import EngineError

_BIT = torch.arange(32, dtype=torch.int32)


class GrammarCompiler:
    """The tokenizer as llguidance sees it, built once per engine on first use (about a second)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int):
        self._hf_tokenizer = hf_tokenizer
        self._vocab_size = vocab_size
        self._tokenizer = None
        self._lock = threading.Lock()

    def constraint(self, json_schema: dict) -> Constraint:
        import llguidance
        import llguidance.hf

        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = llguidance.hf.from_tokenizer(self._hf_tokenizer, n_vocab=self._vocab_size)
        # Compact JSON: flexible whitespace would let a small model wander in spaces and newlines.
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(json_schema), defaults={"whitespace_flexible": False}
        )
        matcher = llguidance.LLMatcher(self._tokenizer, grammar)
        if matcher.is_error():
            raise EngineError(f"The answer's JSON schema cannot be used: {matcher.get_error()}")
        return Constraint(matcher, self._vocab_size)


class Constraint:
    """One request's parser state."""

    def __init__(self, matcher: Any, vocab_size: int):
        self._matcher = matcher
        self._vocab_size = vocab_size

    @property
    def done(self) -> bool:
        """Whether the output is complete: nothing may follow it."""
        return self._matcher.is_stopped()

    def valid_prefix(self, draft: Sequence[int]) -> list[int]:
        """The longest start of `draft` that the grammar accepts from here."""
        return list(draft[: self._matcher.validate_tokens(list(draft))])

    def masked(self, logits: torch.Tensor, draft: Sequence[int] = ()) -> torch.Tensor:
        """logits [len(draft)+1, vocab] with forbidden tokens at -inf; row i as the grammar stands after draft[:i].
        `draft` must be a `valid_prefix`."""
        rows = []
        for i in range(len(draft) + 1):
            rows.append(torch.frombuffer(bytearray(self._matcher.compute_bitmask()), dtype=torch.int32))
            if i < len(draft):
                self._matcher.consume_token(draft[i])
        if draft:
            self._matcher.rollback(len(draft))
        # One bit per token, 32 to a word. Unpacked with plain tensor ops: llguidance's torch helper compiles a
        # kernel on first use, which takes seconds here.
        allowed = ((torch.stack(rows).unsqueeze(-1) >> _BIT) & 1).bool().flatten(-2)[:, : logits.shape[-1]]
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def consume(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise EngineError(f"Constrained decoding lost its way: {self._matcher.get_error()}")
