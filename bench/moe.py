"""BailingMoeV2 (AntAngelMed's architecture) on this machine: the engine against transformers and llama.cpp on the
same random weights, and narrower weights against full ones.

    python -m bench.moe [--device cuda --dtype bfloat16]    engine vs transformers Glm4Moe (and llama.cpp)
    python -m bench.moe --fp8 [--device cuda]               FP8 weights vs BF16 weights

A tiny-but-wide random BailingMoeV2 (hidden 1024, 64 experts, top-8, 1 shared, 8 layers) runs in the engine and in
transformers' Glm4MoeForCausalLM, with its per-expert loop ("eager") and its grouped matmul. `--fp8` loads SmolLM2
(when installed) and the tiny-but-wide MoE with BF16 weights and with block FP8 weights (quantized at load), and
reports weight memory, logit error and decode speed.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import torch

from bench.runners import (
    DEFAULT_PROMPT, arguments, bench_engine, bench_llama_cpp, bench_transformers, isolated, median_runs, sync,
    tokenizer_of,
)
from engine import EngineError, LocalEngine
from engine.checkpoint import default_model_path
from engine.kv_cache import KVCache
from engine.memory import kv_bytes_per_token
from engine.tokenizer import Tokenizer

WIDE_MOE = dict(
    hidden_size=1024, intermediate_size=2816, moe_intermediate_size=512, num_hidden_layers=8,
    num_attention_heads=8, num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
    n_routed_experts=64, num_experts_per_tok=8, n_group=8, topk_group=4, n_shared_experts=1,
    routed_scaling_factor=2.5, first_k_dense_replace=1, eos_token_id=None,
)


def wide_moe_checkpoint(directory: Path, tokenizer: Tokenizer):
    """Write the tiny-but-wide random BailingMoeV2 to `directory`; returns its transformers twin."""
    from engine.reference import random_glm4_moe, save_as_bailing

    reference = random_glm4_moe(len(tokenizer.hf), **WIDE_MOE)
    directory.mkdir(parents=True, exist_ok=True)
    save_as_bailing(reference, directory)
    tokenizer.hf.save_pretrained(directory)
    return reference


def bench_moe(args, tokenizer: Tokenizer) -> None:
    """Each runner alone in a process of its own, on the same weights and prompt ids, greedy, without drafting. With
    --dtype bfloat16 the engine holds bf16 weights (on a CPU it still computes in fp32, as it serves); on a CPU it
    also runs with int8 and int4 weights, and each of its rows is set beside the memory roofline: the bytes one
    decode step reads (attention, router, shared expert, the chosen experts, head, KV) at the read bandwidth
    measured in its own process just before and after its runs: this machine's bandwidth drifts with its
    neighbours' load, so a roofline measured at another moment would not be the one the runner had."""
    dtype = getattr(torch, args.dtype)
    ids = tokenizer.encode(DEFAULT_PROMPT * 8)[: args.prompt_tokens]
    formats = ["bf16" if dtype == torch.bfloat16 else None] + (["int8", "int4"] if args.device == "cpu" else [])
    with tempfile.TemporaryDirectory() as directory:
        bailing, glm4 = Path(directory, "bailing"), Path(directory, "glm4")
        wide_moe_checkpoint(bailing, tokenizer).save_pretrained(glm4)
        rows = [isolated(_engine_row, args, bailing, quantize, ids) for quantize in formats]
        peers = [isolated(_transformers_row, args, glm4, experts, ids) for experts in ("eager", "grouped_mm")]
        if args.device == "cpu" and importlib.util.find_spec("llama_cpp") is not None:
            from engine.reference import gguf_vocabulary, save_as_bailing_gguf

            # Q8_0 and Q4_1 hold as many bytes per weight as the engine's int8 (per row) and int4 (groups of 32).
            vocabulary = gguf_vocabulary(default_model_path(), len(tokenizer.hf))
            for block_type in ("Q8_0", "Q4_1"):
                gguf = Path(directory, f"wide-moe.{block_type}.gguf")
                save_as_bailing_gguf(bailing, gguf, vocabulary, block_type)
                peers.append(isolated(_llama_row, gguf, block_type, ids, args.new_tokens, args.runs))
        accuracy = isolated(_accuracy, bailing, ids, formats[1:]) if args.device == "cpu" else []

    print(f"tiny-but-wide BailingMoeV2: hidden 1024, 64 experts top-8 + 1 shared, 8 layers; {args.dtype} weights on "
          f"{args.device}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    print(f"prompt: {len(ids)} tokens, new tokens: {args.new_tokens}, greedy, no drafting, median of {args.runs} runs "
          f"after a warm-up, each runner in a process of its own")
    on_cpu = args.device == "cpu"
    if on_cpu:
        print("memory read bandwidth: the best of torch reductions over 1 GiB, just before and after each engine run")
    if args.device == "cpu" and importlib.util.find_spec("llama_cpp") is None:
        print("llama.cpp: skipped (llama_cpp is not installed: pip install -e '.[bench]')")
    header = "\n| runner | prefill tokens/s | decode tokens/s |"
    header += "".join(f" decode vs {name} |" for name, *_ in peers)
    header += " bytes read per token (MB) | read bandwidth (GB/s) | share of the memory roofline |" if on_cpu else ""
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name, ttft, decode, *read in rows + peers:
        line = f"| {name} | {len(ids) / ttft:.0f} | {decode:.1f} |"
        line += "".join(f" {decode / peer_decode:.2f}x |" for _, _, peer_decode, *_ in peers)
        if on_cpu and read:
            read_bytes, bandwidth = read
            line += f" {read_bytes / 1e6:.0f} | {bandwidth / 1e9:.1f} | {decode * read_bytes / bandwidth:.0%} |"
        elif on_cpu:
            line += " — | — | — |"
        print(line)
    if accuracy:
        print("\nint8/int4 weights against fp32 on the same prompt: logits of a prefill (PyTorch, experts dequantized) "
              "and of one-token steps (the compiled pass)\n")
        print("| weights | pass | relative logit error | top-1 agreement |")
        print("|---|---|---|---|")
        for quantize, kind, error, agreement in accuracy:
            print(f"| {quantize} | {kind} | {error:.4f} | {agreement:.3f} |")


def _engine_row(args, path: Path, quantize: str | None, ids: list[int]) -> tuple:
    compute = torch.float32 if args.device == "cpu" else getattr(torch, args.dtype)
    engine = LocalEngine(path, device=args.device, dtype=compute, quantize=quantize)

    def uncached() -> tuple[float, float]:
        engine.prefix_cache.clear()  # every run prefills the whole prompt, as the peers do
        return bench_engine(engine, ids, args.new_tokens, draft_tokens=0)

    on_cpu = args.device == "cpu"
    bandwidth = read_bandwidth() if on_cpu else None
    ttft, decode = median_runs(uncached, args.runs)
    label = engine.info.precision.split("→ ")[-1]
    name = f"clinidoc engine, {label}"
    if not on_cpu:
        return name, ttft, decode
    return name, ttft, decode, step_bytes(engine, len(ids) + args.new_tokens // 2), max(bandwidth, read_bandwidth())


def _transformers_row(args, path: Path, experts: str, ids: list[int]) -> tuple[str, float, float]:
    from transformers import Glm4MoeForCausalLM

    dtype = getattr(torch, args.dtype)
    reference = Glm4MoeForCausalLM.from_pretrained(path, dtype=dtype).to(args.device).eval()
    reference.set_experts_implementation(experts)
    timing = median_runs(lambda: bench_transformers(reference, ids, args.new_tokens), args.runs)
    return (f"transformers {experts}", *timing)


def _llama_row(path: Path, block_type: str, ids: list[int], new_tokens: int, runs: int) -> tuple[str, float, float]:
    return (f"llama.cpp {block_type}", *bench_llama_cpp(path, ids, new_tokens, runs))


def step_bytes(engine: LocalEngine, position: int) -> float:
    """Bytes one decode step reads at `position`: the weights of the main layers and the head (`weight_reads`), and
    the main layers' cached keys and values up to the position."""
    mtp = f"model.layers.{engine.config.num_hidden_layers}."
    weights = sum(read for name, read in weight_reads(engine).items() if not name.startswith(mtp))
    return weights + kv_bytes_per_position(engine) * position


def weight_reads(engine: LocalEngine) -> dict[str, float]:
    """The bytes of each of the model's tensors that a pass of one token through it reads: the whole tensor, but of
    the routed experts only the chosen share (top-k of the experts) and of the embedding one row."""
    cfg = engine.config
    reads = {}
    for name, tensor in engine.model.state_dict().items():
        share = 1.0
        if ".mlp.experts." in name:
            share = cfg.moe.experts_per_token / cfg.moe.num_experts
        elif "word_embeddings" in name or "embed_tokens" in name:
            share = 1 / cfg.vocab_size
        reads[name] = tensor.nbytes * share
    return reads


def kv_bytes_per_position(engine: LocalEngine) -> int:
    """The cached keys and values of one position in the main layers (FP8's scales included); the MTP layer's own
    are read only when it drafts."""
    return kv_bytes_per_token(engine.config.model_copy(update={"mtp_layers": 0}), engine.kv_dtype or engine.dtype)


def read_bandwidth(device: str = "cpu") -> float:
    """Bytes per second of the fastest of two reductions over a tensor far larger than the caches (1 GiB; 4 GiB on a
    GPU, whose caches and speed are larger), with torch's threads, each timed three times: what a decode step that
    only reads its weights could reach at best. The best, not the mean: a shared machine's speed drifts, and a
    roofline should be one a runner cannot beat by timing."""
    on_cpu = device == "cpu"
    big = torch.ones(2**28 if on_cpu else 2**30, device=device)
    runs = 5 if on_cpu else 50  # a GPU sums 4 GiB in about a millisecond
    best = 0.0
    for reduce in (big.sum, big.view(torch.int64).amax):  # a max over int64 is lighter arithmetic than a float sum
        for _ in range(1 if on_cpu else runs):  # first for the caches, and for a GPU's clocks to rise
            reduce()
        for _ in range(3):
            sync(big.device)
            started = time.perf_counter()
            for _ in range(runs):
                reduce()
            sync(big.device)
            best = max(best, big.nbytes * runs / (time.perf_counter() - started))
    return best


def compare_logits(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """(relative error, top-1 agreement) of logits [positions, vocab] against the logits they should equal."""
    error = ((got - want).norm() / want.norm()).item()
    return error, (got.argmax(-1) == want.argmax(-1)).float().mean().item()


def _accuracy(path: Path, ids: list[int], formats: list[str]) -> list[tuple[str, str, float, float]]:
    """(weights, pass, relative logit error, top-1 agreement) against the fp32 engine on the same weights."""
    full = _logits(LocalEngine(path), ids)
    results = []
    for quantize in formats:
        quantized = _logits(LocalEngine(path, quantize=quantize), ids)
        for kind, got, want in zip(("prefill", "one-token steps"), quantized, full):
            results.append((quantize, kind, *compare_logits(got, want)))
    return results


def _logits(engine: LocalEngine, ids: list[int], steps: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the prompt's positions in one prefill, and of its first `steps` positions fed one token at a time."""
    whole = engine.forward([ids], [engine.new_cache(len(ids))], [0], last_only=False)[0]
    cache = engine.new_cache(steps)
    stepwise = torch.stack([engine.forward([[token]], [cache], [i])[0] for i, token in enumerate(ids[:steps])])
    return whole, stepwise


def bench_fp8(args, tokenizer: Tokenizer) -> None:
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
            relative, agreement = compare_logits(quantized, full)
            speed = [median_runs(lambda e=e: bench_engine(e, ids, args.new_tokens), args.runs)[1] for e in (bf16, fp8)]
            print(f"| {label} | {resident_bytes(bf16.model) / 2**20:.0f} | {resident_bytes(fp8.model) / 2**20:.0f} "
                  f"| {relative:.4f} | {(quantized - full).abs().max().item():.3f} | {agreement:.3f} "
                  f"| {speed[0]:.1f} | {speed[1]:.1f} |")
            del bf16, fp8


def _prompt_logits(engine: LocalEngine, ids: list[int]) -> torch.Tensor:
    cfg = engine.config
    cache = KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, len(ids), torch.bfloat16, engine.device)
    with torch.inference_mode():
        tokens = torch.tensor([ids], device=engine.device)
        return engine.model(tokens, [cache], [0])[0].float().cpu()


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--fp8", action="store_true", help="FP8 weights against BF16 weights")
    parser.add_argument("--dtype", default="float32", help="weight dtype (float32 or bfloat16)")
    args = parser.parse_args()
    (bench_fp8 if args.fp8 else bench_moe)(args, tokenizer_of(args))


if __name__ == "__main__":
    main()
