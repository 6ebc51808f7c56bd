"""Stopping an answer that has begun to repeat itself.

A small model, and now and then a large one, can fall into a loop ("They are taking a combination of Zyrtec and
Zyrtec." to its token limit). The guard watches the words as they stream, whatever engine writes them, and says
where the repetition began, so the answer can end before it and say why.
"""

from __future__ import annotations

import re

from app.words import answer_sentences

# A run of this many words seen before is a loop: a list legitimately repeats "mg by mouth twice daily", not a
# dozen words in a row.
REPEATED_WORDS = 12
# A sentence of at least this many words written twice is a loop; "Yes." twice is not.
REPEATED_SENTENCE_WORDS = 4

_WORD = re.compile(r"[^\W_]+")


class LoopGuard:
    def __init__(self) -> None:
        self.text = ""
        self._runs: set[tuple[str, ...]] = set()
        self._sentences: set[tuple[str, ...]] = set()
        self._words_seen = 0
        self._sentences_seen = 0

    def add(self, delta: str) -> int | None:
        """Adds the next piece of the answer; returns where the repetition began once the answer loops."""
        self.text += delta
        return self._repeated_run() if (start := self._repeated_sentence()) is None else start

    def _repeated_sentence(self) -> int | None:
        spans = answer_sentences(self.text)
        # The last sentence may still be growing; only the finished ones before it are compared.
        finished = spans[:-1]
        for start, end in finished[self._sentences_seen :]:
            words = tuple(word.lower() for word in _WORD.findall(self.text, start, end))
            self._sentences_seen += 1
            if len(words) < REPEATED_SENTENCE_WORDS:
                continue
            if words in self._sentences:
                return start
            self._sentences.add(words)
        return None

    def _repeated_run(self) -> int | None:
        words = list(_WORD.finditer(self.text))
        # The last word may still be growing.
        complete = words[:-1]
        for end in range(max(self._words_seen, REPEATED_WORDS), len(complete) + 1):
            run = tuple(word.group().lower() for word in complete[end - REPEATED_WORDS : end])
            if run in self._runs:
                return complete[end - REPEATED_WORDS].start()
            self._runs.add(run)
        self._words_seen = max(self._words_seen, len(complete) + 1)
        return None
