"""Keys and values of earlier requests, kept so that a request sharing their first tokens skips that prefill.

A clinician's follow-up question repeats the system prompt, the whole record and the conversation so far; only the
new question is new. After each request the KV of every token it processed is kept here (least recently used first
out, under a byte budget); the next request copies the longest matching prefix into the working cache and
prefills only the rest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from engine.kv_cache import KVCache


@dataclass
class _Entry:
    tokens: torch.Tensor  # [n] int64
    stored: list[torch.Tensor]  # KVCache.stored over the first n positions: keys, values (and FP8 scales)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.stored)


class PrefixCache:
    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_id = 0
        # The scheduler's thread restores and stores; `clear` comes from the app's threads (a deleted session).
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def restore(self, tokens: list[int], cache: KVCache) -> int:
        """Copy the KV of the longest cached prefix of `tokens` into `cache` and return its length.

        At most len(tokens) - 1: the last prompt token is always run, since its logits pick the first new token.
        """
        with self._lock:
            return self._restore(tokens, cache)

    def _restore(self, tokens: list[int], cache: KVCache) -> int:
        if not self._entries or len(tokens) < 2:
            return 0
        query = torch.tensor(tokens[:-1])
        best_id, best_len = None, 0
        for entry_id, entry in self._entries.items():
            shared = _shared_prefix(query, entry.tokens)
            if shared > best_len:
                best_id, best_len = entry_id, shared
        if best_id is None:
            return 0
        entry = self._entries[best_id]
        self._entries.move_to_end(best_id)
        for target, saved in zip(cache.stored, entry.stored, strict=True):
            target[:, :, :, :best_len] = saved[:, :, :, :best_len]
        return best_len

    def store(self, tokens: list[int], cache: KVCache) -> None:
        """Keep the KV of `tokens`, which occupy the first len(tokens) positions of `cache`."""
        n = len(tokens)
        if n == 0:
            return
        entry = _Entry(tokens=torch.tensor(tokens), stored=[t[:, :, :, :n].clone() for t in cache.stored])
        if entry.nbytes > self.budget_bytes:
            return
        with self._lock:
            self._add(entry)

    def _add(self, entry: _Entry) -> None:
        # An entry that is a prefix of the new one can never be the better match again.
        for entry_id in [i for i, e in self._entries.items() if _shared_prefix(e.tokens, entry.tokens) == len(e.tokens)]:
            del self._entries[entry_id]
        self._entries[self._next_id] = entry
        self._next_id += 1
        while self.nbytes > self.budget_bytes:
            self._entries.popitem(last=False)


def _shared_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n
