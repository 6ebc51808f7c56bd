"""What a served engine does with long records and many clinicians.

    python -m bench.serving --prefix --prompt-tokens 8000 --new-tokens 32       follow-up TTFT, cached vs not
    python -m bench.serving --memory --prompt-tokens 32768                      peak memory of a long prefill
    python -m bench.serving --concurrent [--concurrency 1,2,4,8]               batched requests' throughput
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.runners import DEFAULT_PROMPT, arguments, tokenizer_of
from engine import ChatMessage, GenerationParams, LocalEngine, Stats
from engine.tokenizer import Tokenizer

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


def main() -> None:
    parser = arguments(__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prefix", action="store_true", help="follow-up time to first token, cached vs not")
    mode.add_argument("--memory", action="store_true", help="peak memory of a --prompt-tokens prefill")
    mode.add_argument("--concurrent", action="store_true", help="throughput with several requests in flight")
    parser.add_argument("--kv-storage", choices=["float32", "bfloat16", "float8_e4m3fn"],
                        help="--memory: how the KV cache holds keys and values (default: as the model computes)")
    parser.add_argument("--concurrency", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 4, 8])
    args = parser.parse_args()
    if args.prefix:
        bench_prefix(args)
    elif args.memory:
        bench_memory(args, tokenizer_of(args))
    else:
        bench_concurrent(args)


if __name__ == "__main__":
    main()
