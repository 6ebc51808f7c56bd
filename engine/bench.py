"""Decode speed and time to first token: the engine against `transformers` generate on the same weights.

    python -m engine.bench [--model PATH] [--prompt-file FILE] [--new-tokens 256] [--runs 3]
    python -m engine.bench --moe [--new-tokens 64] [--prompt-tokens 256]

The first compares a dense model (default SmolLM2-135M-Instruct); `--moe` builds a tiny-but-wide random
BailingMoeV2 (hidden 1024, 64 experts, top-8, 1 shared, 8 layers) and compares it with the same weights in
transformers' Glm4MoeForCausalLM, both with its per-expert loop ("eager") and its default grouped matmul.
Every runner gets the same prompt tokens, greedy, the same number of new tokens, in this one process, so the
printed ratios compare like with like on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from engine import ChatMessage, GenerationParams, LocalEngine, Stats

DEFAULT_PROMPT = (
    "Summarise the following text in five bullet points.\n\n"
    "The committee reviewed the quarterly maintenance reports for the three buildings. The north building "
    "needs a new roof membrane before winter; the contractor's estimate arrived on Monday. The east building's "
    "elevator passed inspection. The south building reported two water leaks in the basement, both repaired, "
    "and the committee asked for a survey of the drainage. The budget for next year will be presented in March."
)


def bench_engine(engine: LocalEngine, ids: list[int], new_tokens: int) -> tuple[float, float]:
    params = GenerationParams(max_new_tokens=new_tokens, ignore_eos=True)
    stats = [e for e in engine.generate(ids, params) if isinstance(e, Stats)][0]
    assert stats.generated_tokens == new_tokens
    return stats.ttft_s, stats.decode_tok_s


class _FirstTokenClock:
    """A transformers streamer that notes when the first generated token arrives (the prompt comes first)."""

    def __init__(self):
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.first_token_at = time.perf_counter()

    def end(self):
        pass


def bench_transformers(model, ids: list[int], new_tokens: int) -> tuple[float, float]:
    clock = _FirstTokenClock()
    input_ids = torch.tensor([ids])
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, streamer=clock,
        )
    finished = time.perf_counter()
    assert out.shape[1] - len(ids) == new_tokens
    return clock.first_token_at - started, (new_tokens - 1) / (finished - clock.first_token_at)


def median_runs(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up: first calls allocate caches and pick kernels
    results = [fn() for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def print_table(rows: list[tuple[str, float, float]], prompt_tokens: int) -> None:
    """rows: (runner, time to first token, decode tokens/s); the first row is the engine, the peer of every ratio."""
    print("| runner | time to first token (s) | prefill tokens/s | decode tokens/s | engine speed-up (prefill / decode) |")
    print("|---|---|---|---|---|")
    ours = rows[0]
    for name, ttft, decode in rows:
        ratio = "—" if name == ours[0] else f"{ttft / ours[1]:.2f}x / {ours[2] / decode:.2f}x"
        print(f"| {name} | {ttft:.3f} | {prompt_tokens / ttft:.0f} | {decode:.1f} | {ratio} |")


def bench_moe(args) -> None:
    import tempfile

    from engine.checkpoint import Checkpoint, default_model_path
    from engine.reference import random_glm4_moe, save_as_bailing

    tokenizer = Checkpoint(default_model_path()).tokenizer()
    reference = random_glm4_moe(
        len(tokenizer.hf), hidden_size=1024, intermediate_size=2816, moe_intermediate_size=512,
        num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2, head_dim=128,
        max_position_embeddings=4096, n_routed_experts=64, num_experts_per_tok=8, n_group=8, topk_group=4,
        n_shared_experts=1, routed_scaling_factor=2.5, first_k_dense_replace=1, eos_token_id=None,
    )
    with tempfile.TemporaryDirectory() as directory:
        save_as_bailing(reference, Path(directory))
        tokenizer.hf.save_pretrained(directory)
        engine = LocalEngine(directory)
    ids = tokenizer.encode(DEFAULT_PROMPT * 8)[: args.prompt_tokens]
    rows = [("clinidoc engine (BailingMoeV2, grouped experts)", *median_runs(lambda: bench_engine(engine, ids, args.new_tokens), args.runs))]
    for implementation in ("eager", "grouped_mm"):
        reference.set_experts_implementation(implementation)
        timing = median_runs(lambda: bench_transformers(reference, ids, args.new_tokens), args.runs)
        rows.append((f"transformers Glm4Moe generate, experts={implementation}", *timing))
    print(f"tiny-but-wide BailingMoeV2: hidden 1024, 64 experts top-8 + 1 shared, 8 layers, fp32, "
          f"threads {torch.get_num_threads()}")
    print(f"prompt: {len(ids)} tokens, new tokens: {args.new_tokens}, median of {args.runs} runs after a warm-up\n")
    print_table(rows, len(ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="GGUF file or HF directory (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--moe", action="store_true", help="the BailingMoeV2 benchmark instead")
    parser.add_argument("--prompt-file", type=Path)
    parser.add_argument("--prompt-tokens", type=int, default=256, help="with --moe")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.moe:
        bench_moe(args)
        return

    from transformers import AutoModelForCausalLM

    engine = LocalEngine(args.model)
    path = engine.checkpoint_path
    if path.suffix == ".gguf":
        reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    else:
        reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    reference.eval()

    text = args.prompt_file.read_text() if args.prompt_file else DEFAULT_PROMPT
    ids = engine.tokenizer.encode_chat([ChatMessage(role="user", content=text)])
    ours = median_runs(lambda: bench_engine(engine, ids, args.new_tokens), args.runs)
    theirs = median_runs(lambda: bench_transformers(reference, ids, args.new_tokens), args.runs)

    print(f"model: {engine.info.model_name} ({engine.info.precision}), threads: {torch.get_num_threads()}")
    print(f"prompt: {len(ids)} tokens, new tokens: {args.new_tokens}, median of {args.runs} runs after a warm-up\n")
    print_table([("clinidoc engine", *ours), ("transformers generate", *theirs)], len(ids))


if __name__ == "__main__":
    main()
