"""The dense decoder's speed on this machine against peers on the same weights.

    python -m bench.speed [--model PATH] [--prompt-file FILE] [--rounds 1]    vs transformers and llama.cpp
    python -m bench.speed --step                                             int8/int4 step, compiled and in PyTorch

Time to first token and decode speed of the engine (fp32, and with --quantize bf16, int8, int4) against
`transformers` generate and, when llama-cpp-python is installed (`pip install -e .[bench]`), llama.cpp on the same
GGUF file (default model SmolLM2-135M), each runner in a process of its own.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import torch

from bench.runners import (
    DEFAULT_PROMPT, arguments, bench_engine, bench_llama_cpp, bench_transformers, isolated, median_runs,
)
from engine import ChatMessage, LocalEngine

def bench_dense(args) -> None:
    from engine.checkpoint import Checkpoint, default_model_path

    checkpoint = Checkpoint(Path(args.model) if args.model else default_model_path())
    path = checkpoint.path
    text = args.prompt_file.read_text() if args.prompt_file else DEFAULT_PROMPT
    ids = checkpoint.tokenizer().encode_chat([ChatMessage(role="user", content=text)])

    # --quantize: bf16 weights × fp32 arithmetic, and int8 / int4 weights through the engine's CPU kernels.
    # Each round runs every runner once, each in a process of its own; a runner's figures are its medians over the
    # rounds, so that a shared machine's load, which drifts over minutes, weighs on every runner alike.
    runners = [(_dense_engine_row, args, quantize, ids) for quantize in (None, "bf16", "int8", "int4")]
    runners.append((_dense_transformers_row, args, path, ids))
    with_llama = path.suffix == ".gguf" and importlib.util.find_spec("llama_cpp") is not None
    if with_llama:
        runners.append((_dense_llama_row, path, ids, args.new_tokens, args.runs))
    rounds = [[isolated(*runner) for runner in runners] for _ in range(args.rounds)]
    measured = [
        (timings[0][0], statistics.median(t[1] for t in timings), statistics.median(t[2] for t in timings))
        for timings in zip(*rounds)
    ]
    rows, peers = measured[:4], measured[4:]

    print(f"model: {path.name}, threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"prompt: {len(ids)} tokens, new tokens: {args.new_tokens} (greedy, EOS ignored), "
          f"median of {args.runs} runs after a warm-up, median of {args.rounds} rounds\n")
    if not with_llama:
        print("llama.cpp: skipped (llama_cpp is not installed: pip install -e '.[bench]')\n")
    header = "| runner | time to first token (s) | prefill tokens/s | decode tokens/s |"
    header += "".join(f" decode vs {name.split(' ')[0]} |" for name, _, _ in peers)
    print(header)
    print("|---" * (4 + len(peers)) + "|")
    for name, ttft, decode in rows + peers:
        ratios = "".join(f" {decode / peer_decode:.2f}x |" for _, _, peer_decode in peers)
        print(f"| {name} | {ttft:.3f} | {len(ids) / ttft:.0f} | {decode:.1f} |{ratios}")


def _dense_engine_row(args, quantize: str | None, ids: list[int]) -> tuple[str, float, float]:
    served = LocalEngine(args.model, quantize=quantize)

    def uncached() -> tuple[float, float]:
        # Every run prefills the whole prompt, as the peers do (the prefix cache would keep the warm-up's), and
        # decodes one token per forward pass (drafting is measured by --speculative).
        served.prefix_cache.clear()
        return bench_engine(served, ids, args.new_tokens, draft_tokens=0)

    label = "fp32" if quantize is None else f"--quantize {quantize} ({served.info.precision.split('→ ')[-1]})"
    return (f"clinidoc engine, {label}", *median_runs(uncached, args.runs))


def _dense_llama_row(path: Path, ids: list[int], new_tokens: int, runs: int) -> tuple[str, float, float]:
    from llama_cpp import __version__ as llama_version

    name = f"llama.cpp {llama_version} (llama-cpp-python), the GGUF's own quants"
    return (name, *bench_llama_cpp(path, ids, new_tokens, runs))


def _dense_transformers_row(args, path: Path, ids: list[int]) -> tuple[str, float, float]:
    from transformers import AutoModelForCausalLM

    if path.suffix == ".gguf":
        reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    else:
        reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    reference.eval()
    timing = median_runs(lambda: bench_transformers(reference, ids, args.new_tokens), args.runs)
    return ("transformers generate, fp32", *timing)


def bench_step(args) -> None:
    """A decode step with integer weights: through the compiled decoder (engine/cpu_decoder.py) and through PyTorch
    ops, where the int8/int4 projections (kernels and their calls) are timed apart from the rest of the step
    (norms, rotary, attention, cache writes, Python); beside llama.cpp's whole step on the same GGUF file."""
    from engine.checkpoint import Checkpoint, default_model_path

    checkpoint = Checkpoint(Path(args.model) if args.model else default_model_path())
    ids = checkpoint.tokenizer().encode_chat([ChatMessage(role="user", content=DEFAULT_PROMPT)])
    rows = {quantize: isolated(_step_breakdown, args, quantize, ids) for quantize in ("int8", "int4")}
    llama = None
    if checkpoint.path.suffix == ".gguf":
        llama = isolated(bench_llama_cpp, checkpoint.path, ids, args.new_tokens, args.runs)
    llama_ms = 1000 / llama[1] if llama else None
    print(f"model: {checkpoint.path.name}, threads: {torch.get_num_threads()}, {args.new_tokens} decode steps after "
          f"a {len(ids)}-token prompt")
    print("\n| weights | compiled step (ms) | PyTorch step (ms) | its int projections (ms) | its rest (ms) "
          "| compiled step vs llama.cpp's |")
    print("|---|---|---|---|---|---|")
    for quantize, (compiled_s, step_s, projections_s) in rows.items():
        ratio = f"{compiled_s * 1000 / llama_ms:.2f}x" if llama_ms else "—"
        print(f"| {quantize} | {compiled_s * 1000:.1f} | {step_s * 1000:.1f} | {projections_s * 1000:.1f} "
              f"| {(step_s - projections_s) * 1000:.1f} | {ratio} |")
    if llama_ms:
        print(f"| llama.cpp, the GGUF's own quants | {llama_ms:.1f} | — | — | — | 1.00x |")


def _step_breakdown(args, quantize: str, ids: list[int]) -> tuple[float, float, float]:
    """Seconds per decode step through the compiled decoder, through PyTorch ops, and of the latter, seconds inside
    the integer projections. Module hooks time the projections, but they slow every call they watch: the PyTorch
    step is timed on a pass without them."""
    from engine.quantize import Int4Linear, Int8Linear

    engine = LocalEngine(args.model, quantize=quantize)
    warm_up = 8
    cache = engine.new_cache(len(ids) + 3 * (warm_up + args.new_tokens))
    engine.prefill(ids, cache)
    position, token = len(ids), ids[-1]

    def decode(steps: int) -> float:
        nonlocal position, token
        started = time.perf_counter()
        for _ in range(steps):
            token = int(engine.forward([[token]], [cache], [position]).argmax())
            position += 1
        return (time.perf_counter() - started) / steps

    decode(warm_up)
    compiled_s = decode(args.new_tokens)
    engine.model.compiled = None
    decode(warm_up)
    step_s = decode(args.new_tokens)
    inside = [0.0]
    entered: dict[torch.nn.Module, float] = {}

    def enter(module, inputs) -> None:
        entered[module] = time.perf_counter()

    def leave(module, inputs, output) -> None:
        inside[0] += time.perf_counter() - entered[module]

    for module in engine.model.modules():
        if isinstance(module, (Int8Linear, Int4Linear)):
            module.register_forward_pre_hook(enter)
            module.register_forward_hook(leave)
    decode(warm_up)
    inside[0] = 0.0
    decode(args.new_tokens)
    return compiled_s, step_s, inside[0] / args.new_tokens


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--step", action="store_true", help="where an int8/int4 decode step's time goes")
    parser.add_argument("--rounds", type=int, default=1, help="run every runner this many times, in turn")
    args = parser.parse_args()
    (bench_step if args.step else bench_dense)(args)


if __name__ == "__main__":
    main()
