"""Continuous batching: every request in flight advances in one loop, on one thread that owns the model.

Each turn of the loop
1. retires cancelled requests and admits waiting ones (up to `max_batch` in flight), each with a KV cache of its
   own, seeded from the prefix cache;
2. runs one prefill chunk of the oldest request still reading its prompt, so a 128K-token record being read
   delays the others' next tokens by one chunk at a time rather than by the whole record;
3. runs one decode step for every request past its prompt: all of them in one batched forward pass, which reads
   each weight once for all rows, or, when only one is decoding, a speculative step that may commit several tokens.

Requests join and leave between turns. A caller reads its request's events from a queue; cancelling (the UI's
Stop button closes the stream) retires the request at the next turn and frees its KV cache, keeping what it
computed in the prefix cache.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Callable, Iterator, Protocol, Sequence

import torch

from engine.grammar import Constraint
from engine.kv_cache import KVCache
from engine.prefix_cache import PrefixCache
from engine.sampling import Sampler
from engine.speculative import Drafter, SpeculationStats, verify
from engine.tokenizer import StreamDecoder, Tokenizer
from engine.types import Event, GenerationParams, Stats, TextDelta


class Runner(Protocol):
    """What the scheduler needs of the engine: forward passes over per-request caches."""

    device: torch.device
    prefill_chunk: int
    prefix_cache: PrefixCache

    def new_cache(self, tokens: int) -> KVCache: ...

    def forward(
        self, rows: Sequence[Sequence[int]], caches: Sequence[KVCache], starts: Sequence[int], last_only: bool = True
    ) -> torch.Tensor: ...

    def forward_hidden(
        self, rows: Sequence[Sequence[int]], caches: Sequence[KVCache], starts: Sequence[int], last_only: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class Request:
    """One generation in flight: its tokens, its KV cache, how it picks tokens and streams text."""

    def __init__(
        self,
        ids: list[int],
        params: GenerationParams,
        tokenizer: Tokenizer,
        make_drafter: Callable[[KVCache], Drafter] | None,
        device: torch.device,
        constraint: Constraint | None = None,
    ):
        self.started = time.perf_counter()
        self.ids = ids
        self.params = params
        self.sampler = Sampler(params, device)
        self.decoder = StreamDecoder(tokenizer)
        self.stops = StopStrings(params.stop)
        self.stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else tokenizer.eos_ids)
        self.make_drafter = make_drafter  # called once the request has its KV cache
        self.drafter: Drafter | None = None
        self.speculation = SpeculationStats()
        self.constraint = constraint
        self.tokens = list(ids)  # the prompt, then every committed token; the first `fed` have their KV cached
        # The same ids as a tensor (the repetition penalty reads it), written as tokens commit: made afresh from the
        # list, it would cost every step time in proportion to the context (1.2 ms at 8K tokens, 5 ms at 32K).
        self._seen = torch.empty(len(ids) + params.max_new_tokens, dtype=torch.long, device=device)
        self._seen[: len(ids)] = torch.tensor(ids)
        self.fed = 0
        self.reused = 0
        self.cache: KVCache | None = None
        self.first_token_at: float | None = None
        self.finish: str | None = None
        self.cancelled = False
        self.failed = False
        self.events: queue.SimpleQueue[Event | BaseException] = queue.SimpleQueue()
        self.retired = threading.Event()

    @property
    def reading_prompt(self) -> bool:
        return self.fed < len(self.ids)

    @property
    def ended(self) -> bool:
        return self.finish is not None or self.cancelled or self.failed

    @property
    def generated(self) -> int:
        return len(self.tokens) - len(self.ids)

    def seen(self) -> torch.Tensor:
        return self._seen[: len(self.tokens)]

    def allowed(self, logits: torch.Tensor, draft: Sequence[int] = ()) -> torch.Tensor:
        """logits [len(draft)+1, vocab] with what the request's grammar forbids masked out, if it has one."""
        return logits if self.constraint is None else self.constraint.masked(logits, draft)

    def commit(self, new: Sequence[int]) -> None:
        """Append chosen tokens one by one and stream their text, until a stop or the token limit ends the answer."""
        for token in new:
            self._seen[len(self.tokens)] = token
            self.tokens.append(token)
            self.first_token_at = self.first_token_at or time.perf_counter()
            if self.constraint is not None:
                self.constraint.consume(token)
            stopped = token in self.stop_ids
            if not stopped:
                text, stopped = self.stops.push(self.decoder.push(token))
                if text:
                    self.events.put(TextDelta(text=text))
                # A complete JSON value ends the answer even before the model says so.
                stopped = stopped or (self.constraint is not None and self.constraint.done)
            if stopped or self.generated == self.params.max_new_tokens:
                self.finish = "stop" if stopped else "length"
                tail = self.stops.flush()
                if tail:
                    self.events.put(TextDelta(text=tail))
                self.events.put(self._stats())
                return

    def _stats(self) -> Stats:
        finished_at = time.perf_counter()
        first_token_at = self.first_token_at or finished_at
        decode_time = finished_at - first_token_at
        return Stats(
            prompt_tokens=len(self.ids),
            cached_tokens=self.reused,
            generated_tokens=self.generated,
            ttft_s=first_token_at - self.started,
            decode_tok_s=(self.generated - 1) / decode_time if self.generated > 1 and decode_time > 0 else 0.0,
            finish_reason=self.finish,
            drafted=self.speculation.drafted,
            accepted=self.speculation.accepted,
        )

    def stream(self) -> Iterator[Event]:
        """The request's events as they come, up to its Stats; a failure in the loop is raised here."""
        while True:
            event = self.events.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, Stats):
                return


class Scheduler:
    def __init__(self, runner: Runner, max_batch: int = 8):
        self.runner = runner
        self.max_batch = max_batch
        self._waiting: deque[Request] = deque()
        self._running: list[Request] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def in_flight(self) -> int:
        """Requests admitted or waiting, i.e. holding or about to hold a KV cache."""
        with self._wake:
            return len(self._waiting) + len(self._running)

    def submit(self, request: Request) -> None:
        with self._wake:
            self._waiting.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="engine-scheduler", daemon=True)
                self._thread.start()
            self._wake.notify()

    def cancel(self, request: Request) -> None:
        """Retire `request` at the next turn; returns once its KV cache is freed (at most one turn later)."""
        request.cancelled = True
        with self._wake:
            self._wake.notify()
        # A generator finalized by garbage collection may run this on the loop's own thread: never wait on oneself.
        if threading.current_thread() is not self._thread:
            request.retired.wait()

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                for request in self._admit_waiting():
                    if not request.cancelled:
                        self._guarded([request], self._give_cache, request)
                self._retire_ended()
                self._turn()
                self._retire_ended()

    def _admit_waiting(self) -> list[Request]:
        """Move waiting requests into the running set while there is room; sleep while there is nothing to do."""
        with self._wake:
            while not self._waiting and not self._running:
                self._wake.wait()
            admitted = []
            while self._waiting and len(self._running) < self.max_batch:
                admitted.append(self._waiting.popleft())
            self._running.extend(admitted)
            return admitted

    def _turn(self) -> None:
        reading = next((r for r in self._running if r.reading_prompt), None)
        if reading is not None:
            self._guarded([reading], self._prefill_chunk, reading)
        decoding = [r for r in self._running if not r.reading_prompt and not r.ended]
        if len(decoding) == 1:
            self._guarded(decoding, self._speculative_step, decoding[0])
        elif decoding:
            self._guarded(decoding, self._batched_step, decoding)

    def _give_cache(self, request: Request) -> None:
        # Room for the prompt and the answer: a verified draft never reaches past the last token of the answer.
        request.cache = self.runner.new_cache(len(request.ids) + request.params.max_new_tokens)
        request.reused = request.fed = self.runner.prefix_cache.restore(request.ids, request.cache)
        if request.make_drafter is not None:
            request.drafter = request.make_drafter(request.cache)

    def _retire_ended(self) -> None:
        """Free the caches of finished, failed and cancelled requests, keeping what they computed for later reuse
        (also when stopped early)."""
        with self._wake:
            ended = [r for r in self._running if r.ended]
            for request in ended:
                self._running.remove(request)
        for request in ended:
            if request.cache is not None:
                self.runner.prefix_cache.store(request.tokens[: min(request.fed, len(request.tokens))], request.cache)
                request.cache = None
            request.retired.set()

    def _guarded(self, requests: list[Request], work: Callable[..., None], *args) -> None:
        """Run `work`; if it fails, the requests it was for end with that error, and the loop goes on."""
        try:
            work(*args)
        except Exception as error:  # noqa: BLE001 - handed to the callers, who raise it
            for request in requests:
                request.failed = True
                request.events.put(error)

    def _prefill_chunk(self, request: Request) -> None:
        start, end = request.fed, min(request.fed + self.runner.prefill_chunk, len(request.ids))
        logits, hidden = self._forward([request], [request.ids[start:end]], last_only=True)
        if hidden is not None:
            request.drafter.observe(hidden[0], start, request.ids)
        request.fed = end
        if not request.reading_prompt:
            request.commit([request.sampler(request.allowed(logits[:1])[0], request.seen())])

    def _batched_step(self, requests: list[Request]) -> None:
        """One token for each request, all rows in one forward pass."""
        starts = [r.fed for r in requests]
        logits, hidden = self._forward(requests, [[r.tokens[-1]] for r in requests], last_only=True)
        for b, request in enumerate(requests):
            request.fed += 1
            request.commit([request.sampler(request.allowed(logits[b : b + 1])[0], request.seen())])
            if hidden is not None and _observing(request):
                request.drafter.observe(hidden[b], starts[b], request.tokens)

    def _speculative_step(self, request: Request) -> None:
        """Feed the last committed token, and a draft if the drafter has one, in one forward pass.

        The KV of the last token and of the accepted drafts is then valid; that of rejected drafts is overwritten
        by the next step (see engine/speculative.py)."""
        left = request.params.max_new_tokens - request.generated
        drafting = request.drafter is not None and request.speculation.paying_off
        draft = request.drafter.propose(request.tokens, min(request.params.draft_tokens, left - 1)) if drafting else []
        if draft and request.constraint is not None:
            draft = request.constraint.valid_prefix(draft)
        seen = request.seen()
        start = request.fed
        logits, hidden = self._forward([request], [[request.tokens[-1], *draft]], last_only=False)
        logits = request.allowed(logits[0], draft)
        if draft:
            new = verify(draft, logits, request.params, seen, request.sampler.generator)
            request.speculation.record(len(draft), len(new) - 1)
        else:
            new = [request.sampler(logits[-1], seen)]
        request.fed += len(new)
        request.commit(new)
        if hidden is not None:
            request.drafter.observe(hidden[0, : len(new)], start, request.tokens)

    def _forward(
        self, requests: list[Request], rows: list[list[int]], last_only: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for the rows, and the target's hidden states [B, T, H] when a drafter of theirs reads them."""
        caches, starts = [r.cache for r in requests], [r.fed for r in requests]
        if any(_observing(r) for r in requests):
            return self.runner.forward_hidden(rows, caches, starts, last_only)
        return self.runner.forward(rows, caches, starts, last_only), None


def _observing(request: Request) -> bool:
    """Whether the request's drafter reads hidden states and is still in use."""
    return request.drafter is not None and request.drafter.needs_hidden and request.speculation.paying_off


class StopStrings:
    """Holds back text that might be the start of a stop string, and cuts the output at the first one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, piece: str) -> tuple[str, bool]:
        """Return (text safe to show now, whether a stop string was reached)."""
        self.pending += piece
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = max((_overlap(self.pending, s) for s in self.stops), default=0)
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
