"""The embedded engine: a model loaded in this process, its forward passes, and `generate` through the scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import torch

from engine.checkpoint import Checkpoint, default_model_path, load_model
from engine.config import ModelConfig, with_yarn
from engine.kv_cache import KVCache
from engine.memory import plan_memory
from engine.prefix_cache import PrefixCache
from engine.scheduler import Request, Scheduler
from engine.drafters import DraftModelDrafter, MTPDrafter
from engine.eagle3 import Eagle3Drafter, Eagle3Head, load_eagle3
from engine.grammar import GrammarCompiler
from engine.speculative import Drafter, PromptLookupDrafter
from engine.types import ChatMessage, EngineError, EngineInfo, Event, GenerationParams, Prompt, PromptTooLong

DrafterKind = Literal["prompt-lookup", "mtp", "eagle3", "model", "none"]


class LocalEngine:
    """One model in this process. Concurrent calls to `generate` are batched by the scheduler, each request with
    a KV cache of its own."""

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        quantize: Literal["fp8", "bf16", "int8", "int4"] | None = None,
        context: int | None = None,
        prefix_cache_bytes: int | None = None,
        prefill_chunk: int = 512,
        max_batch: int = 8,
        drafter: DrafterKind = "prompt-lookup",
        draft_model: str | Path | None = None,
        kv_dtype: torch.dtype | None = None,
    ):
        """`dtype` is what the model computes in. `quantize` stores the projections narrower while loading:
        "fp8" as block FP8, "bf16" as bfloat16 (with fp32 arithmetic, half the bytes to read per token on a CPU),
        "int8" as int8 per output channel and "int4" as 4-bit groups of 32 with an int8 output head (CPU only: AVX2
        kernels with int8 activations, engine/quantize.py).
        `context` beyond the model's window stretches it with YaRN. Before loading, the weights, one request's KV
        over the whole context and the working set are planned against the free memory (engine/memory.py): a model
        that does not fit is refused with the numbers. `prefix_cache_bytes` bounds the KV kept from earlier
        requests for reuse; None gives it a share of what the plan leaves free. Prompts are prefilled `prefill_chunk` tokens at a time, which bounds the
        activation memory of a long record. Up to `max_batch` requests decode together (see engine/scheduler.py).
        `drafter` picks what proposes tokens for speculative decoding (engine/speculative.py): "prompt-lookup"
        copies from the prompt, "mtp" runs the checkpoint's MTP layer, "eagle3" runs `draft_model`, an EAGLE3 head
        trained for this model (engine/eagle3.py), "model" runs `draft_model`, a small model with the same
        tokenizer; "none" decodes one token per step. `kv_dtype` torch.float8_e4m3fn (or bfloat16) holds
        the KV cache narrower than `dtype`: FP8 about halves a long record's KV (engine/kv_cache.py)."""
        checkpoint = Checkpoint(Path(model) if model else default_model_path())
        self.checkpoint_path = checkpoint.path
        config = checkpoint.config
        _check_drafter(drafter, draft_model, config, checkpoint.name)
        if quantize == "fp8" and not config.fp8:
            config = config.model_copy(update={"fp8_block_size": [128, 128]})
        if context:
            config = with_yarn(config, context)
        self.device = torch.device(device)
        self.dtype = dtype
        weight_dtype = torch.bfloat16 if quantize == "bf16" else None
        if quantize in ("int8", "int4"):
            if self.device.type != "cpu":
                raise EngineError(f"{quantize} weights run on CPU kernels; on a GPU use bf16 or fp8.")
            # An FP8 checkpoint's weights are dequantized as they load, then quantized to int8/int4.
            config = config.model_copy(update={"integer": quantize, "fp8_block_size": None})
        self.config = config
        # int8/int4 matmuls of up to NARROW_ROWS rows give each row what it gets alone (tests/test_quantize.py), so
        # drafts verify exactly as one-token steps would: they are not narrow in that sense.
        self.narrow_weights = weight_dtype is not None and weight_dtype != dtype
        self.memory = plan_memory(
            config, checkpoint.tensor_shapes(), dtype, quantize, self.device, config.context_window, kv_dtype,
            prefill_chunk,
        )
        if not self.memory.fits:
            raise EngineError(self.memory.refusal(checkpoint.name))
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
        self.prefix_cache = PrefixCache(
            self.memory.prefix_cache_bytes if prefix_cache_bytes is None else prefix_cache_bytes
        )
        self.prefill_chunk = prefill_chunk
        self.scheduler = Scheduler(self, max_batch)
        self.grammar = GrammarCompiler(self.tokenizer.hf, self.config.vocab_size)
        self.kv_dtype = kv_dtype
        self.drafter = drafter
        self.eagle3: Eagle3Head | None = (
            load_eagle3(Path(draft_model), self.model, dtype, self.device) if drafter == "eagle3" else None
        )
        self.draft_engine = self._draft_engine(draft_model) if drafter == "model" else None

    def _draft_engine(self, draft_model: str | Path) -> LocalEngine:
        draft = LocalEngine(draft_model, str(self.device), self.dtype, prefix_cache_bytes=0, max_batch=1, drafter="none")
        if draft.tokenizer.hf.get_vocab() != self.tokenizer.hf.get_vocab():
            raise EngineError(f"The draft model {draft.info.model_name} does not share {self.info.model_name}'s tokenizer.")
        return draft

    @property
    def context_window(self) -> int:
        return self.config.context_window

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenizer.encode_chat(messages))

    def forget(self) -> None:
        self.prefix_cache.clear()

    def generate(self, prompt: Prompt, params: GenerationParams) -> Iterator[Event]:
        ids = list(prompt) if prompt and isinstance(prompt[0], int) else self.tokenizer.encode_chat(prompt)
        if len(ids) + params.max_new_tokens > self.context_window:
            raise PromptTooLong(len(ids), params.max_new_tokens, self.context_window)
        constraint = self.grammar.constraint(params.json_schema) if params.json_schema is not None else None
        request = Request(ids, params, self.tokenizer, self._drafter_for(ids, params), self.device, constraint)
        self.scheduler.submit(request)
        try:
            yield from request.stream()
        finally:
            self.scheduler.cancel(request)  # a no-op for a finished request; frees the KV cache of a stopped one

    def _drafter_for(self, ids: list[int], params: GenerationParams) -> Callable[[KVCache], Drafter] | None:
        """How to make the request's drafter once it has its KV cache (the MTP layer writes into it)."""
        # Drafts are verified several tokens per matmul. With bf16 weights that matmul rounds its bf16 output
        # differently from a one-token step, which can flip near-ties: drafting stays off there to stay lossless.
        if not params.draft_tokens or self.narrow_weights or self.drafter == "none":
            return None
        if self.drafter == "mtp":
            return lambda cache: MTPDrafter(self.model, cache)
        if self.drafter == "eagle3":
            return lambda cache: Eagle3Drafter(self.eagle3, cache.max_tokens)
        if self.drafter == "model":
            capacity = min(len(ids) + params.max_new_tokens, self.draft_engine.context_window)
            return lambda cache: DraftModelDrafter(self.draft_engine, capacity)
        return lambda cache: PromptLookupDrafter()

    def new_cache(self, tokens: int) -> KVCache:
        """A KV cache for one sequence of up to `tokens` positions (the MTP layer has a slot of its own)."""
        cfg = self.config
        return KVCache(
            cfg.num_hidden_layers + cfg.mtp_layers, cfg.num_key_value_heads, cfg.head_dim, tokens, self.dtype,
            self.device, storage_dtype=self.kv_dtype,
        )

    @torch.inference_mode()
    def forward(
        self, rows: Sequence[Sequence[int]], caches: Sequence[KVCache], starts: Sequence[int], last_only: bool = True
    ) -> torch.Tensor:
        """Run equally long token rows, row b after the starts[b] positions already in caches[b], and return fp32
        logits: for the position after each row's last token ([B, vocab]), or with `last_only=False` for every
        position ([B, T, vocab])."""
        logits = self.model(torch.tensor(rows, device=self.device), caches, starts, last_only=last_only)
        return logits[:, -1] if last_only else logits

    @torch.inference_mode()
    def forward_hidden(
        self, rows: Sequence[Sequence[int]], caches: Sequence[KVCache], starts: Sequence[int], last_only: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `forward`, and also the hidden states the drafter reads at every position: the final normed ones
        [B, T, H] for an MTP layer, or for an EAGLE3 head the residual stream entering its three target layers side
        by side [B, T, 3H]. Always in PyTorch: the compiled int8/int4 pass returns logits only."""
        capture = self.eagle3.capture if self.eagle3 is not None else ()
        hidden, captured = self.model.hidden(torch.tensor(rows, device=self.device), caches, starts, capture)
        logits = self.model.lm_head(hidden[:, -1] if last_only else hidden).float()
        return logits, torch.cat(captured, dim=-1) if captured else hidden

    def prefill(self, ids: Sequence[int], cache: KVCache, start: int = 0) -> torch.Tensor:
        """Run ids[start:] into `cache` (the earlier positions are already there) a chunk at a time, and return the
        logits after the last one. The scheduler interleaves the same chunks with other requests' steps."""
        for chunk_start in range(start, len(ids), self.prefill_chunk):
            logits = self.forward([ids[chunk_start : chunk_start + self.prefill_chunk]], [cache], [chunk_start])[0]
        return logits


def _check_drafter(drafter: DrafterKind, draft_model: str | Path | None, config: ModelConfig, name: str) -> None:
    """Refuse a drafter that cannot run, before the model loads."""
    if drafter == "mtp" and not config.mtp_layers:
        raise EngineError(f"{name} has no MTP layer to draft with; use another drafter.")
    if drafter in ("eagle3", "model") and draft_model is None:
        what = "an EAGLE3 draft directory" if drafter == "eagle3" else "a draft model (a GGUF file or HF directory)"
        raise EngineError(f"The {drafter} drafter needs {what}: set draft_model (CLINIDOC_DRAFT_MODEL).")


def _weights_label(quantize: str | None, fp8: bool) -> str:
    if fp8:
        return "FP8 blocks × "
    return f"{quantize} weights × " if quantize in ("bf16", "int8", "int4") else ""
