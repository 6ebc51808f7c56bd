"""What the engine benchmarks share: timing the engine and its peers (transformers, llama.cpp) on the same prompt
ids, greedy, with the same number of new tokens, each runner alone in a process of its own; and the command-line
options they all read.

    python -m bench.speed     dense decoder (SmolLM2): engine fp32/bf16/int8/int4 vs transformers and llama.cpp
    python -m bench.moe       BailingMoeV2: engine fp32/int8/int4 vs transformers Glm4Moe and llama.cpp
    python -m bench.serving   prefix cache, memory of long prefills, concurrent requests
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from engine import GenerationParams, LocalEngine, Stats
from engine.tokenizer import Tokenizer

DEFAULT_PROMPT = (
    "Summarise the following text in five bullet points.\n\n"
    "The committee reviewed the quarterly maintenance reports for the three buildings. The north building "
    "needs a new roof membrane before winter; the contractor's estimate arrived on Monday. The east building's "
    "elevator passed inspection. The south building reported two water leaks in the basement, both repaired, "
    "and the committee asked for a survey of the drainage. The budget for next year will be presented in March."
)


def bench_engine(engine: LocalEngine, ids: list[int], new_tokens: int, **params) -> tuple[float, float]:
    stats = engine_stats(engine, ids, new_tokens, **params)
    return stats.ttft_s, stats.decode_tok_s


def engine_stats(engine: LocalEngine, ids: list[int], new_tokens: int, **params) -> Stats:
    """One request of exactly `new_tokens` tokens after the prompt ids, and its Stats (timing, drafts accepted)."""
    params = GenerationParams(max_new_tokens=new_tokens, ignore_eos=True, **params)
    stats = [e for e in engine.generate(ids, params) if isinstance(e, Stats)][0]
    assert stats.generated_tokens == new_tokens
    return stats


class _FirstTokenClock:
    """A transformers streamer that notes when the first generated token arrives (the prompt comes first)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            sync(self.device)
            self.first_token_at = time.perf_counter()

    def end(self):
        pass


def bench_transformers(model, ids: list[int], new_tokens: int) -> tuple[float, float]:
    device = model.device
    clock = _FirstTokenClock(device)
    input_ids = torch.tensor([ids], device=device)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, streamer=clock,
        )
    sync(device)
    finished = time.perf_counter()
    assert out.shape[1] - len(ids) == new_tokens
    return clock.first_token_at - started, (new_tokens - 1) / (finished - clock.first_token_at)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_runs(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up: first calls allocate caches and pick kernels
    results = [fn() for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def bench_llama_cpp(path: Path, ids: list[int], new_tokens: int, runs: int) -> tuple[float, float] | None:
    """llama.cpp (llama-cpp-python, `pip install -e .[bench]`) on the same GGUF file and prompt ids: greedy
    (argmax of the logits), exactly `new_tokens` tokens whatever they are, timed as the other runners are.
    None when llama_cpp is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    import numpy as np

    threads = torch.get_num_threads()
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=len(ids) + new_tokens, n_batch=512, n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )
    vocab = llm.n_vocab()

    def next_token() -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))
        return int(logits.argmax())

    def run() -> tuple[float, float]:
        llm.reset()  # forget the previous run's tokens: the prompt is evaluated again from position 0
        started = time.perf_counter()
        llm.eval(ids)
        token = next_token()
        first_token_at = time.perf_counter()
        for _ in range(new_tokens - 1):
            llm.eval([token])
            token = next_token()
        finished = time.perf_counter()
        return first_token_at - started, (new_tokens - 1) / (finished - first_token_at)

    return median_runs(run, runs)


def isolated(work, *args):
    """work(*args) in a fresh process, as each runner is deployed: alone. In one process, the OpenMP teams of the
    threads that ran earlier runners (an engine's scheduler thread outlives the engine) push libgomp past one
    thread per core, and its workers then sleep between parallel regions, slowing every runner after the first."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(work, *args).result()


def arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options every engine benchmark reads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="GGUF file or HF directory (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--tokenizer", type=Path, help="a tokenizer directory (default: SmolLM2's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompt-file", type=Path)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    return parser


def tokenizer_of(args: argparse.Namespace) -> Tokenizer:
    """The tokenizer `--tokenizer` names, or the default model's."""
    if args.tokenizer:
        return Tokenizer.from_directory(args.tokenizer, [])
    from engine.checkpoint import Checkpoint, default_model_path

    return Checkpoint(default_model_path()).tokenizer()
