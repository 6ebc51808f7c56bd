"""The embedded engine: prefill the prompt, then decode one token per step, streaming text as it comes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator, Literal, Sequence

import torch

from engine.checkpoint import Checkpoint, default_model_path, load_model
from engine.config import with_yarn
from engine.kv_cache import KVCache
from engine.prefix_cache import PrefixCache
from engine.sampling import Sampler
from engine.speculative import Drafter, PromptLookupDrafter, SpeculationStats, verify
from engine.tokenizer import StreamDecoder
from engine.types import (
    ChatMessage,
    EngineInfo,
    Event,
    GenerationParams,
    Prompt,
    PromptTooLong,
    Stats,
    TextDelta,
)


class LocalEngine:
    """One model in this process. Requests run one at a time; each call to `generate` owns the KV cache."""

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        quantize: Literal["fp8", "bf16"] | None = None,
        context: int | None = None,
        prefix_cache_bytes: int = 1 << 30,
        prefill_chunk: int = 512,
    ):
        """`dtype` is what the model computes in. `quantize` stores the projections narrower while loading:
        "fp8" as block FP8, "bf16" as bfloat16 (with fp32 arithmetic, half the bytes to read per token on a CPU).
        `context` beyond the model's window stretches it with YaRN. `prefix_cache_bytes` bounds the KV kept from
        earlier requests for reuse; prompts are prefilled `prefill_chunk` tokens at a time, which bounds the
        activation memory of a long record."""
        checkpoint = Checkpoint(Path(model) if model else default_model_path())
        self.checkpoint_path = checkpoint.path
        config = checkpoint.config
        if quantize == "fp8" and not config.fp8:
            config = config.model_copy(update={"fp8_block_size": [128, 128]})
        if context:
            config = with_yarn(config, context)
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        weight_dtype = torch.bfloat16 if quantize == "bf16" else None
        self.narrow_weights = weight_dtype is not None and weight_dtype != dtype
        self.model = load_model(checkpoint, config, dtype, self.device, weight_dtype)
        self.tokenizer = checkpoint.tokenizer()
        compute = str(dtype).removeprefix("torch.")
        self.info = EngineInfo(
            model_name=checkpoint.name,
            architecture=type(self.model).__name__,
            precision=f"{checkpoint.precision} → {_weights_label(quantize, config.fp8)}{compute}",
            device=str(self.device),
            context_window=self.config.context_window,
        )
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self.prefill_chunk = prefill_chunk
        self._cache: KVCache | None = None
        self._lock = threading.Lock()

    @property
    def context_window(self) -> int:
        return self.config.context_window

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenizer.encode_chat(messages))

    def generate(self, prompt: Prompt, params: GenerationParams) -> Iterator[Event]:
        started = time.perf_counter()
        ids = list(prompt) if prompt and isinstance(prompt[0], int) else self.tokenizer.encode_chat(prompt)
        if len(ids) + params.max_new_tokens > self.context_window:
            raise PromptTooLong(len(ids), params.max_new_tokens, self.context_window)
        with self._lock:
            yield from self._generate(ids, params, started)

    def _kv_cache(self) -> KVCache:
        # Allocated on first use and kept: a fresh allocation per request would cost more than the prefill.
        if self._cache is None:
            cfg = self.config
            self._cache = KVCache(
                cfg.num_hidden_layers + cfg.mtp_layers, cfg.num_key_value_heads, cfg.head_dim, self.context_window,
                self.dtype, self.device,
            )
        return self._cache

    @torch.inference_mode()
    def _forward(self, tokens: list[int], start: int, last_only: bool = True) -> torch.Tensor:
        """Run `tokens` at positions start.. and return fp32 logits: for the position after the last one
        ([vocab]), or with `last_only=False` for every one of them ([len(tokens), vocab])."""
        t = torch.tensor([tokens], device=self.device)
        positions = torch.arange(start, start + len(tokens), device=self.device)
        logits = self.model(t, positions, self._kv_cache(), last_only=last_only)[0]
        return logits[-1] if last_only else logits

    def _prefill(self, ids: list[int], start: int) -> torch.Tensor:
        """Run ids[start:] (the earlier positions are already cached) a chunk at a time; logits of the last."""
        for chunk_start in range(start, len(ids), self.prefill_chunk):
            logits = self._forward(ids[chunk_start : chunk_start + self.prefill_chunk], chunk_start)
        return logits

    def _generate(self, ids: list[int], params: GenerationParams, started: float) -> Iterator[Event]:
        sampler = Sampler(params, self.device)
        decoder = StreamDecoder(self.tokenizer)
        stops = StopStrings(params.stop)
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else self.tokenizer.eos_ids)
        # Drafts are verified several tokens per matmul. With bf16 weights that matmul rounds its bf16 output
        # differently from a one-token step, which can flip near-ties: drafting stays off there to stay lossless.
        drafter = PromptLookupDrafter() if params.draft_tokens and not self.narrow_weights else None
        speculation = SpeculationStats()
        cache = self._kv_cache()
        reused = self.prefix_cache.restore(ids, cache)
        tokens = list(ids)  # the prompt, then every committed token; the first `fed` have their KV in the cache
        fed = reused
        first_token_at = None
        finish = "length"  # until a stop id or stop string ends the answer first
        try:
            new = [sampler(self._prefill(ids, reused), torch.tensor(ids, device=self.device))]
            fed = len(ids)
            while True:
                stopped = False
                for token in new:
                    tokens.append(token)
                    first_token_at = first_token_at or time.perf_counter()
                    stopped = token in stop_ids
                    if not stopped:
                        text, stopped = stops.push(decoder.push(token))
                        if text:
                            yield TextDelta(text=text)
                    if stopped or len(tokens) - len(ids) == params.max_new_tokens:
                        break
                left = params.max_new_tokens - (len(tokens) - len(ids))
                if stopped or left == 0:
                    finish = "stop" if stopped else "length"
                    break
                new, accepted = self._step(tokens, fed, left, params, drafter, sampler, speculation)
                fed += 1 + accepted
            tail = stops.flush()
            if tail:
                yield TextDelta(text=tail)
        finally:
            # Also when the consumer stops reading (the UI's Stop button): what was computed stays reusable.
            self.prefix_cache.store(tokens[: min(fed, len(tokens))], cache)

        finished_at = time.perf_counter()
        first_token_at = first_token_at or finished_at
        decode_time = finished_at - first_token_at
        generated = len(tokens) - len(ids)
        yield Stats(
            prompt_tokens=len(ids),
            cached_tokens=reused,
            generated_tokens=generated,
            ttft_s=first_token_at - started,
            decode_tok_s=(generated - 1) / decode_time if generated > 1 and decode_time > 0 else 0.0,
            finish_reason=finish,
            drafted=speculation.drafted,
            accepted=speculation.accepted,
        )

    def _step(
        self,
        tokens: list[int],
        fed: int,
        left: int,
        params: GenerationParams,
        drafter: Drafter | None,
        sampler: Sampler,
        speculation: SpeculationStats,
    ) -> tuple[list[int], int]:
        """Feed the last committed token (and a draft, if the drafter has one) in one forward pass.

        Returns the tokens to commit next and how many draft tokens were accepted; the KV of the last token and the
        accepted drafts is then valid, and that of rejected drafts is overwritten by the next step."""
        room = self.context_window - 1 - fed
        drafting = drafter is not None and speculation.paying_off
        draft = drafter.propose(tokens, min(params.draft_tokens, left - 1, room)) if drafting else []
        seen = torch.tensor(tokens, device=self.device)
        if not draft:
            return [sampler(self._forward([tokens[-1]], fed), seen)], 0
        new = verify(draft, self._forward([tokens[-1], *draft], fed, last_only=False), params, seen, sampler.generator)
        speculation.record(len(draft), len(new) - 1)
        return new, len(new) - 1


def _weights_label(quantize: str | None, fp8: bool) -> str:
    if fp8:
        return "FP8 blocks × "
    return "bf16 weights × " if quantize == "bf16" else ""


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
