"""Engine benchmarks, each against a peer run on this machine on the same weights.

    python -m engine.bench [--model PATH] [--prompt-file FILE] [--rounds 1]          dense: vs transformers, llama.cpp
    python -m engine.bench --moe [--device cuda --dtype bfloat16]                     MoE: engine vs transformers Glm4Moe
    python -m engine.bench --fp8 [--device cuda]                                      FP8 weights vs BF16 weights
    python -m engine.bench --prefix --prompt-tokens 8000 --new-tokens 32             follow-up TTFT, cached vs not
    python -m engine.bench --concurrent [--concurrency 1,2,4,8] [--new-tokens 64]   batched requests' throughput
    python -m engine.bench --step                                   int8/int4 step, compiled and in PyTorch

Dense compares time to first token and decode speed of the engine (fp32, and with --quantize bf16, int8, int4) with
`transformers` generate and, when llama-cpp-python is installed (`pip install -e .[bench]`), llama.cpp on the same
GGUF file (default model SmolLM2-135M), each runner in a process of its own.
`--moe` builds a tiny-but-wide random BailingMoeV2 (hidden 1024, 64 experts, top-8, 1 shared, 8 layers) and runs
the same weights in transformers' Glm4MoeForCausalLM, with its per-expert loop ("eager") and its grouped matmul.
`--fp8` loads SmolLM2 (when installed) and the tiny-but-wide MoE with BF16 weights and with block FP8 weights
(quantized at load), and reports weight memory, logit error and decode speed. Runners get the same prompt tokens,
greedy decoding and the same number of new tokens, so the printed ratios compare like with like on this machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from engine import ChatMessage, EngineError, GenerationParams, LocalEngine, Stats
from engine.kv_cache import KVCache
from engine.tokenizer import Tokenizer

DEFAULT_PROMPT = (
    "Summarise the following text in five bullet points.\n\n"
    "The committee reviewed the quarterly maintenance reports for the three buildings. The north building "
    "needs a new roof membrane before winter; the contractor's estimate arrived on Monday. The east building's "
    "elevator passed inspection. The south building reported two water leaks in the basement, both repaired, "
    "and the committee asked for a survey of the drainage. The budget for next year will be presented in March."
)
WIDE_MOE = dict(
    hidden_size=1024, intermediate_size=2816, moe_intermediate_size=512, num_hidden_layers=8,
    num_attention_heads=8, num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
    n_routed_experts=64, num_experts_per_tok=8, n_group=8, topk_group=4, n_shared_experts=1,
    routed_scaling_factor=2.5, first_k_dense_replace=1, eos_token_id=None,
)


def bench_engine(engine: LocalEngine, ids: list[int], new_tokens: int, **params) -> tuple[float, float]:
    params = GenerationParams(max_new_tokens=new_tokens, ignore_eos=True, **params)
    stats = [e for e in engine.generate(ids, params) if isinstance(e, Stats)][0]
    assert stats.generated_tokens == new_tokens
    return stats.ttft_s, stats.decode_tok_s


class _FirstTokenClock:
    """A transformers streamer that notes when the first generated token arrives (the prompt comes first)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            _sync(self.device)
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
    _sync(device)
    finished = time.perf_counter()
    assert out.shape[1] - len(ids) == new_tokens
    return clock.first_token_at - started, (new_tokens - 1) / (finished - clock.first_token_at)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_runs(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up: first calls allocate caches and pick kernels
    results = [fn() for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def print_speed_table(rows: list[tuple[str, float, float]], prompt_tokens: int) -> None:
    """rows: (runner, time to first token, decode tokens/s); the first row is the engine, the peer of every ratio."""
    print("| runner | time to first token (s) | prefill tokens/s | decode tokens/s | engine speed-up (prefill / decode) |")
    print("|---|---|---|---|---|")
    ours = rows[0]
    for name, ttft, decode in rows:
        ratio = "—" if name == ours[0] else f"{ttft / ours[1]:.2f}x / {ours[2] / decode:.2f}x"
        print(f"| {name} | {ttft:.3f} | {prompt_tokens / ttft:.0f} | {decode:.1f} | {ratio} |")


def wide_moe_checkpoint(directory: Path, tokenizer: Tokenizer):
    """Write the tiny-but-wide random BailingMoeV2 to `directory`; returns its transformers twin."""
    from engine.reference import random_glm4_moe, save_as_bailing

    reference = random_glm4_moe(len(tokenizer.hf), **WIDE_MOE)
    save_as_bailing(reference, directory)
    tokenizer.hf.save_pretrained(directory)
    return reference


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
    rounds = [[_isolated(*runner) for runner in runners] for _ in range(args.rounds)]
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


def _isolated(work, *args):
    """work(*args) in a fresh process, as each runner is deployed: alone. In one process, the OpenMP teams of the
    threads that ran earlier runners (an engine's scheduler thread outlives the engine) push libgomp past one
    thread per core, and its workers then sleep between parallel regions, slowing every runner after the first."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(work, *args).result()


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
    rows = {quantize: _isolated(_step_breakdown, args, quantize, ids) for quantize in ("int8", "int4")}
    llama = None
    if checkpoint.path.suffix == ".gguf":
        llama = _isolated(bench_llama_cpp, checkpoint.path, ids, args.new_tokens, args.runs)
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


def bench_moe(args, tokenizer: Tokenizer) -> None:
    """With --dtype bfloat16 both hold bf16 weights; on a CPU the engine still computes in fp32 (as it serves)."""
    dtype = getattr(torch, args.dtype)
    compute = torch.float32 if args.device == "cpu" else dtype
    quantize = "bf16" if dtype == torch.bfloat16 else None
    with tempfile.TemporaryDirectory() as directory:
        reference = wide_moe_checkpoint(Path(directory), tokenizer).to(device=args.device, dtype=dtype)
        engine = LocalEngine(directory, device=args.device, dtype=compute, quantize=quantize)
    ids = tokenizer.encode(DEFAULT_PROMPT * 8)[: args.prompt_tokens]
    rows = [(f"clinidoc engine ({engine.info.precision.split('→ ')[-1]})",
             *median_runs(lambda: bench_engine(engine, ids, args.new_tokens), args.runs))]
    for implementation in ("eager", "grouped_mm"):
        reference.set_experts_implementation(implementation)
        timing = median_runs(lambda: bench_transformers(reference, ids, args.new_tokens), args.runs)
        rows.append((f"transformers Glm4Moe generate, {args.dtype}, experts={implementation}", *timing))
    print(f"tiny-but-wide BailingMoeV2: hidden 1024, 64 experts top-8 + 1 shared, 8 layers; {args.dtype} weights on "
          f"{args.device}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    print(f"prompt: {len(ids)} tokens, new tokens: {args.new_tokens}, median of {args.runs} runs after a warm-up\n")
    print_speed_table(rows, len(ids))


def bench_fp8(args, tokenizer: Tokenizer) -> None:
    from engine.checkpoint import default_model_path
    from engine.weights import resident_bytes

    print(f"FP8 (block 128x128 e4m3, quantized at load) against BF16 weights on {args.device}, torch {torch.__version__}")
    print(f"logits over the same {args.prompt_tokens}-token prompt; decode: {args.new_tokens} new tokens, "
          f"median of {args.runs} runs after a warm-up\n")
    print("| model | weights BF16 (MiB) | weights FP8 (MiB) | relative logit error | max abs logit error "
          "| top-1 agreement | decode tok/s BF16 | decode tok/s FP8 |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        wide_moe_checkpoint(Path(directory), tokenizer)
        models = [("tiny-but-wide BailingMoeV2 (random)", directory)]
        try:
            models.insert(0, ("SmolLM2-135M-Instruct", str(default_model_path())))
        except EngineError:  # the default model is not installed on this machine
            pass
        for label, path in models:
            bf16 = LocalEngine(path, device=args.device, dtype=torch.bfloat16)
            fp8 = LocalEngine(path, device=args.device, dtype=torch.bfloat16, quantize="fp8")
            ids = tokenizer.encode(DEFAULT_PROMPT * 8)[: args.prompt_tokens]
            full, quantized = _prompt_logits(bf16, ids), _prompt_logits(fp8, ids)
            relative = ((quantized - full).norm() / full.norm()).item()
            agreement = (quantized.argmax(-1) == full.argmax(-1)).float().mean().item()
            speed = [median_runs(lambda e=e: bench_engine(e, ids, args.new_tokens), args.runs)[1] for e in (bf16, fp8)]
            print(f"| {label} | {resident_bytes(bf16.model) / 2**20:.0f} | {resident_bytes(fp8.model) / 2**20:.0f} "
                  f"| {relative:.4f} | {(quantized - full).abs().max().item():.3f} | {agreement:.3f} "
                  f"| {speed[0]:.1f} | {speed[1]:.1f} |")
            del bf16, fp8


def bench_prefix(args) -> None:
    """Time to first token of a follow-up question on a long record: with the first question's KV cached, and
    with the cache emptied, on the same engine and the same prompt."""
    engine = LocalEngine(args.model, quantize="bf16")
    text = args.prompt_file.read_text() if args.prompt_file else DEFAULT_PROMPT
    budget = args.prompt_tokens
    record = text
    while engine.count_tokens(record + text) < budget:
        record += "\n" + text
    system = ChatMessage(role="system", content="Answer from this record only.\n" + record)
    first = [system, ChatMessage(role="user", content="List the main points.")]
    params = GenerationParams(max_new_tokens=args.new_tokens, ignore_eos=True)
    answer = "".join(e.text for e in engine.generate(first, params) if not isinstance(e, Stats))
    follow_up = [*first, ChatMessage(role="assistant", content=answer),
                 ChatMessage(role="user", content="Which of them is the most urgent?")]

    def ttft(clear: bool) -> tuple[float, int]:
        if clear:
            engine.prefix_cache.clear()
        stats = [e for e in engine.generate(follow_up, params) if isinstance(e, Stats)][0]
        # Leave the cache as the first question left it, so each cached run reuses the same prefix.
        engine.prefix_cache.clear()
        list(engine.generate(first, params))
        return stats.ttft_s, stats.cached_tokens

    cached = [ttft(clear=False) for _ in range(args.runs)]
    uncached = [ttft(clear=True) for _ in range(args.runs)]
    cached_s = statistics.median(t for t, _ in cached)
    uncached_s = statistics.median(t for t, _ in uncached)
    prompt_tokens = engine.count_prompt_tokens(follow_up)
    print(f"model: {engine.info.model_name} ({engine.info.precision}), threads {torch.get_num_threads()}")
    print(f"follow-up prompt: {prompt_tokens} tokens, of which {cached[0][1]} were cached from the first question; "
          f"median of {args.runs} runs\n")
    print("| follow-up question | time to first token (s) |")
    print("|---|---|")
    print(f"| prefix cached | {cached_s:.3f} |")
    print(f"| cache emptied | {uncached_s:.3f} |")
    print(f"| cached / uncached | {cached_s / uncached_s:.1%} |")


def bench_memory(args, tokenizer: Tokenizer) -> None:
    """Peak resident memory of one long prefill against the formula weights + KV + working set.

    A random one-layer Llama (so that a 128K-token prefill finishes on a CPU) stretched with YaRN to the prompt. The
    weights are read once before the prefill (loaded tensors map the checkpoint, so their pages arrive on first use);
    then the kernel's high-water mark is reset, so that the peak is the prefill's alone and not the load's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    n = args.prompt_tokens
    config = LlamaConfig(
        vocab_size=len(tokenizer.hf), hidden_size=256, intermediate_size=512, num_hidden_layers=1,
        num_attention_heads=8, num_key_value_heads=2, head_dim=32, max_position_embeddings=8192,
    )
    with tempfile.TemporaryDirectory() as directory:
        LlamaForCausalLM(config).save_pretrained(directory)
        tokenizer.hf.save_pretrained(directory)
        storage = getattr(torch, args.kv_storage) if args.kv_storage else None
        engine = LocalEngine(directory, context=n + 1, kv_dtype=storage)
    storage = storage or engine.dtype
    ids = torch.randint(0, config.vocab_size, (n,)).tolist()
    weights = engine.model.state_dict().values()
    sum(float(t.float().sum()) for t in weights)  # every page of the weights resident before the peak is reset
    reset_peak_rss()
    before, _ = rss_and_peak()
    cache = engine.new_cache(engine.context_window)
    engine.prefill(ids, cache)
    _, peak = rss_and_peak()
    kv = cache.nbytes
    rope = engine.model.rope.cos.nbytes * 2
    grown = peak - before
    mib = 2**20
    print("| prompt tokens | context | KV storage | weights MiB | rope tables MiB | RSS before prefill MiB "
          "| KV MiB | peak RSS growth in prefill MiB | working set (growth − KV) MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {n:,} | {engine.context_window:,} | {str(storage).removeprefix('torch.')} "
          f"| {sum(t.nbytes for t in weights) / mib:.1f} | {rope / mib:.0f} | {before / mib:.0f} | {kv / mib:.0f} "
          f"| {grown / mib:.1f} | {(grown - kv) / mib:.1f} |")


def reset_peak_rss() -> None:
    """Linux keeps a process's peak resident size (VmHWM); writing 5 to clear_refs resets it to the current size."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_and_peak() -> tuple[int, int]:
    """(current, peak) resident bytes of this process, from /proc (Linux)."""
    status = Path("/proc/self/status").read_text()
    kib = {key: int(value.split()[0]) for key, value in (line.split(":", 1) for line in status.splitlines())
           if key in ("VmRSS", "VmHWM")}
    return kib["VmRSS"] * 1024, kib["VmHWM"] * 1024


def bench_concurrent(args) -> None:
    """Total decode throughput with 1, 2, 4, 8 requests in flight, each on a prompt of its own, against one at a
    time. Drafting is off, so the figures show what batching alone gives."""
    engine = LocalEngine(args.model, device=args.device)
    params = GenerationParams(max_new_tokens=args.new_tokens, ignore_eos=True, draft_tokens=0)
    prompts = [
        engine.tokenizer.encode_chat([ChatMessage(role="user", content=f"Note {i}. {DEFAULT_PROMPT}")])
        for i in range(max(args.concurrency))
    ]
    list(engine.generate(prompts[0], params.model_copy(update={"max_new_tokens": 8})))  # warm-up

    def run(n: int) -> tuple[float, list[Stats]]:
        engine.prefix_cache.clear()
        stats: list[Stats] = []
        start = threading.Barrier(n + 1)

        def one(ids: list[int]) -> None:
            start.wait()
            stats.append([e for e in engine.generate(ids, params) if isinstance(e, Stats)][0])

        threads = [threading.Thread(target=one, args=(prompts[i],)) for i in range(n)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        return time.perf_counter() - began, stats

    print(f"{engine.info.model_name}, {engine.info.precision}, {len(prompts[0])}-token prompts, "
          f"{args.new_tokens} new tokens each, {torch.get_num_threads()} threads")
    print("| requests in flight | wall time (s) | total tokens/s | per-request decode tokens/s "
          "| mean time to first token (s) | throughput vs one at a time |")
    print("|---|---|---|---|---|---|")
    single = None
    for n in args.concurrency:
        wall, stats = run(n)
        throughput = sum(s.generated_tokens for s in stats) / wall
        single = single or throughput
        print(f"| {n} | {wall:.2f} | {throughput:.1f} | {statistics.mean(s.decode_tok_s for s in stats):.1f} "
              f"| {statistics.mean(s.ttft_s for s in stats):.2f} | {throughput / single:.2f}x |")


def _prompt_logits(engine: LocalEngine, ids: list[int]) -> torch.Tensor:
    cfg = engine.config
    cache = KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.bfloat16, engine.device)
    with torch.inference_mode():
        tokens = torch.tensor([ids], device=engine.device)
        return engine.model(tokens, [cache], [0])[0].float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--moe", action="store_true", help="BailingMoeV2 against transformers Glm4Moe")
    mode.add_argument("--fp8", action="store_true", help="FP8 weights against BF16 weights")
    mode.add_argument("--prefix", action="store_true", help="follow-up time to first token, cached vs not")
    mode.add_argument("--memory", action="store_true", help="peak memory of a --prompt-tokens prefill")
    mode.add_argument("--concurrent", action="store_true", help="throughput with several requests in flight")
    mode.add_argument("--step", action="store_true", help="where an int8/int4 decode step's time goes")
    parser.add_argument("--model", help="dense mode: GGUF file or HF directory (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--tokenizer", type=Path, help="a tokenizer directory (default: SmolLM2's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="--moe weight dtype (float32 or bfloat16)")
    parser.add_argument("--prompt-file", type=Path)
    parser.add_argument("--prompt-tokens", type=int, default=256, help="--moe, --fp8, --prefix prompt length")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="dense: run every runner this many times, in turn")
    parser.add_argument("--kv-storage", choices=["float32", "bfloat16", "float8_e4m3fn"],
                        help="--memory: how the KV cache holds keys and values (default: as the model computes)")
    parser.add_argument("--concurrency", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 4, 8])
    args = parser.parse_args()
    if args.concurrent:
        bench_concurrent(args)
        return
    if args.prefix:
        bench_prefix(args)
        return
    if args.step:
        bench_step(args)
        return
    if not (args.moe or args.fp8 or args.memory):
        bench_dense(args)
        return
    if args.tokenizer:
        tokenizer = Tokenizer.from_directory(args.tokenizer, [])
    else:
        from engine.checkpoint import Checkpoint, default_model_path

        tokenizer = Checkpoint(default_model_path()).tokenizer()
    if args.memory:
        bench_memory(args, tokenizer)
        return
    (bench_moe if args.moe else bench_fp8)(args, tokenizer)


if __name__ == "__main__":
    main()
