"""One check of the engine on a GPU, for the sessions that are lent one: AntAngelMed's shape at full width.

    python -m bench.gpu_check --out DIR             on a CUDA GPU (meant for an H200: under 5 minutes, 13 GB of disk)
    python -m bench.gpu_check --device cpu --small  the same steps on a tiny shape, on the CPU (seconds)

Without a GPU it says so and exits 0, so CI can run it as it is. With one, any failure exits non-zero.

The model is AntAngelMed's (engine-spec.md §1, bench/memory.py) at reduced depth: hidden 4096, 32 query and 4 KV
heads of 128 dims with partial RoPE (64 dims) and QK-norm, vocab 157184; one dense layer, then MoE layers of 256
experts top-8 (groups 8, top 4) with one shared expert, then the MTP layer. Its random weights are written as a
checkpoint in Ling's block-FP8 format (§7) and loaded through the engine's own loader with bf16 compute, FP8 KV,
YaRN stretching the 32K window four times (§5) and the MTP drafter (§6). Then:
- decoding after a 32K-token prompt and after a short one, without drafting and with MTP drafts: time to first
  token, prefill and decode tokens/s, drafts accepted;
- what one decode step, one verification of the drafts and one MTP draft cost, hence how many accepted drafts a
  step would need for MTP to pay off (random weights accept none: the drafter soon stops proposing);
- decode tokens/s against the memory roofline: the bytes a step reads (bench/moe.py, `step_bytes`) at the read
  bandwidth measured here; then the bytes of AntAngelMed's 32 layers, the tokens/s the same share of the roofline
  would give them, and the published "> 200 tokens/s on an H20" (§9) beside it;
- logit parity of the GPU against the CPU path (the same checkpoint in fp32) on a short prompt: the main model's
  logits and the MTP layer's.

The figures go to DIR/gpu-check.json after each step (a run cut short keeps what it measured) and, as markdown
tables, to stdout and DIR/gpu-check.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from bench import markdown
from bench.memory import ANTANGELMED
from bench.moe import compare_logits, kv_bytes_per_position, read_bandwidth, step_bytes, weight_reads
from bench.runners import engine_stats, sync
from engine import LocalEngine
from engine.fp8 import FP8, quantize_block_fp8
from engine.weights import resident_bytes

# Ling's block-FP8 checkpoint format, as its converter writes it into config.json (engine-spec.md §7).
LING_FP8 = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
# The published decode speed of Ling-flash-2.0 / AntAngelMed (engine-spec.md §9: the model card and AntAngelMed's
# README; batch, precision and prompt length unstated), and the memory bandwidth of the GPUs it is set beside
# (NVIDIA's datasheets).
PUBLISHED_TOK_S = 200
H20_BANDWIDTH = 4.0e12
H200_BANDWIDTH = 4.8e12
# How far (relative) the device's logits may be from the CPU's. Rounding alone moves them further than one would
# think: it tips some tokens' choice of experts. On the CPU, the GPU's numerics (bf16, W8A8 with FP8 activations,
# FP8 keys and values) emulated on this routing (256 experts, top-8, hidden 1024) put the main logits 0.19 from fp32
# and the MTP layer's 0.28. A device bug (scales, rotary, routing) leaves unrelated logits, about 1.4 apart.
PARITY_BOUND = 0.5


@dataclass(frozen=True)
class Shape:
    """What is checked: the model's config.json and the lengths of the runs."""

    config: dict[str, Any]
    context: int  # the window asked of the engine: YaRN stretches the model's own (max_position_embeddings) to it
    long_prompt: int
    short_prompt: int
    parity_prompt: int
    new_tokens: int
    prefill_chunk: int
    draft_tokens: int = 3  # MTP drafts per step, chained through the one layer as SGLang's NEXTN does


def full_shape(moe_layers: int) -> Shape:
    """AntAngelMed at full width with `moe_layers` MoE layers after its dense one: each holds 3.2 B expert weights
    (3.4 GB in FP8), so its depth is what the check's time and disk allow."""
    config = {**ANTANGELMED, "num_hidden_layers": ANTANGELMED["first_k_dense_replace"] + moe_layers}
    return Shape(config, context=4 * 32768, long_prompt=32768, short_prompt=128, parity_prompt=16, new_tokens=128,
                 prefill_chunk=512)


# The same layers a thousand times smaller, for running the check's code on a CPU in seconds.
SMALL = Shape(
    config={
        **ANTANGELMED, "hidden_size": 256, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
        "vocab_size": 512, "intermediate_size": 512, "moe_intermediate_size": 128,
        "moe_shared_expert_intermediate_size": 128, "num_experts": 16, "num_experts_per_tok": 4, "n_group": 4,
        "topk_group": 2, "max_position_embeddings": 256, "eos_token_id": 1,
    },
    context=4 * 256, long_prompt=384, short_prompt=32, parity_prompt=16, new_tokens=8, prefill_chunk=128,
)


class CheckFailed(Exception):
    """The check ran, and a figure says the engine is wrong on this device."""


class Record:
    """The figures as they are measured, written to DIR/gpu-check.json after each step when a DIR is given."""

    def __init__(self, out: Path | None):
        self.out = out
        self.figures: dict[str, Any] = {"seconds": {}}
        self.started = time.perf_counter()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

    def __setitem__(self, key: str, value: Any) -> None:
        self.figures[key] = value
        self.save()

    def __getitem__(self, key: str) -> Any:
        return self.figures[key]

    def save(self) -> None:
        if self.out is not None:
            (self.out / "gpu-check.json").write_text(json.dumps(self.figures, indent=1))

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step, saying on stderr when it starts (stdout is kept for the tables)."""
        print(f"gpu-check [{time.perf_counter() - self.started:6.1f} s] {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        yield
        self.figures["seconds"][name] = round(time.perf_counter() - started, 2)
        self.save()


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu-check: not run: it needs a CUDA GPU, and torch finds none here.")
        return 0
    record = Record(args.out)
    run_check(SMALL if args.small else full_shape(args.moe_layers), device, record, args.workdir)
    tables = report(record.figures)
    print(tables)
    if args.out is not None:
        (args.out / "gpu-check.md").write_text(tables + "\n")
    failures = failures_of(record.figures)
    if failures:
        raise CheckFailed("; ".join(failures))
    return 0


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where gpu-check.json and gpu-check.md go")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="a tiny shape instead of AntAngelMed's")
    parser.add_argument("--moe-layers", type=int, default=2, help="MoE layers after the dense one (default 2)")
    parser.add_argument("--workdir", type=Path, help="where the checkpoint is written (default: the temp folder)")
    return parser


def run_check(shape: Shape, device: torch.device, record: Record, workdir: Path | None) -> None:
    """Every step of the check, its figures into `record`."""
    record["setup"] = _setup(shape, device)
    with record.step("memory read bandwidth"):
        record["bandwidth"] = read_bandwidth(str(device))
    with tempfile.TemporaryDirectory(dir=workdir) as directory:
        with record.step("write a random block-FP8 checkpoint"):
            write_checkpoint(Path(directory), shape.config, device)
        with record.step("load it"):
            engine = LocalEngine(
                directory, device=str(device), dtype=torch.bfloat16, context=shape.context, kv_dtype=FP8,
                drafter="mtp", prefix_cache_bytes=0, prefill_chunk=shape.prefill_chunk,
            )
        record["memory"] = {
            "weights_resident": resident_bytes(engine.model),
            "weights_planned": engine.memory.weight_bytes,
            "rope_scaling": engine.config.rope_scaling.model_dump() if engine.config.rope_scaling else None,
        }
        with record.step("warm-up"):
            engine_stats(engine, prompt(2 * shape.prefill_chunk, shape), 8, draft_tokens=shape.draft_tokens)
        runs = []
        for prompt_tokens in (shape.long_prompt, shape.short_prompt):
            for drafts in (0, shape.draft_tokens):
                with record.step(f"decode after {prompt_tokens} tokens, {drafts} drafts"):
                    runs.append(decode_run(engine, prompt(prompt_tokens, shape), shape.new_tokens, drafts))
                record["runs"] = runs
        with record.step("step costs"):
            record["step_ms"] = step_costs(engine, prompt(shape.short_prompt, shape), shape.draft_tokens)
        plain = next(run for run in runs if run["prompt_tokens"] == shape.short_prompt and not run["draft_tokens"])
        record["antangelmed"] = extrapolated(engine, plain, record["bandwidth"])
        if device.type == "cuda":
            record["memory"] = {**record["memory"], "peak_gpu": torch.cuda.max_memory_allocated(device)}
        parity_ids = prompt(shape.parity_prompt, shape)
        with record.step("logits on the device"):
            on_device = prompt_logits(engine, parity_ids)
        with record.step("load on the CPU in fp32"):
            reference = LocalEngine(directory, context=shape.context, prefix_cache_bytes=0, drafter="none")
        with record.step("logits on the CPU"):
            on_cpu = prompt_logits(reference, parity_ids)
    record["parity"] = {
        part: dict(zip(("relative_error", "top1_agreement"), compare_logits(got, want)))
        for part, got, want in zip(("main", "mtp"), on_device, on_cpu)
    }
    record["seconds"]["total"] = round(time.perf_counter() - record.started, 1)
    record.save()


def _setup(shape: Shape, device: torch.device) -> dict[str, Any]:
    config = shape.config
    on_gpu = device.type == "cuda"
    return {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if on_gpu else "CPU",
        "capability": ".".join(map(str, torch.cuda.get_device_capability(device))) if on_gpu else None,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "config": config,
        "context": shape.context,
        "draft_tokens": shape.draft_tokens,
    }


def write_checkpoint(directory: Path, config: dict[str, Any], device: torch.device) -> None:
    """A BailingMoeV2 checkpoint with random weights in Ling's block-FP8 format (engine-spec.md §3, §7): the
    projections e4m3 with a float32 `weight_scale_inv` per 128×128 block; embedding, head, norms, routers and the
    MTP layer's own projection bf16; the routers' expert_bias fp32; the MTP layer as model.layers.{num_hidden_layers}
    (§6). The weights are made on `device`, and each layer is written before the next is made, so no more than one
    (3.4 GB at full width) is ever in memory. A stand-in tokenizer of the config's vocabulary goes beside them."""
    random = RandomWeights(device)
    layers = config["num_hidden_layers"]
    shards = layers + 2  # the embedding and head, the main layers, the MTP layer
    hidden, vocab = config["hidden_size"], config["vocab_size"]
    outer = {
        "model.word_embeddings.weight": random.normal(vocab, hidden),
        **random.norm("model.norm", hidden),
        "lm_head.weight": random.normal(vocab, hidden, std=hidden**-0.5),
    }
    save_file(outer, directory / f"model-00001-of-{shards:05d}.safetensors")
    for index in range(layers + 1):
        shard = directory / f"model-{index + 2:05d}-of-{shards:05d}.safetensors"
        save_file(_layer(config, index, random), shard)
    (directory / "config.json").write_text(json.dumps({**config, "quantization_config": LING_FP8}, indent=1))
    stand_in_tokenizer(vocab).save_pretrained(directory)


class RandomWeights:
    """Random tensors on a device, handed back on the CPU for writing. Projections have unit-variance outputs for
    unit-variance inputs, so activations keep their scale through the layers."""

    def __init__(self, device: torch.device):
        self.device = device
        self.generator = torch.Generator(device).manual_seed(0)

    def normal(self, *shape: int, std: float = 1.0, mean: float = 0.0, dtype: torch.dtype = torch.bfloat16):
        values = torch.randn(shape, generator=self.generator, device=self.device) * std + mean
        return values.to(dtype).cpu()

    def norm(self, name: str, dim: int) -> dict[str, torch.Tensor]:
        # Near 1, as trained norms are, but not 1: a weight that failed to load would show.
        return {f"{name}.weight": self.normal(dim, std=0.1, mean=1.0)}

    def fp8(self, name: str, rows: int, columns: int) -> dict[str, torch.Tensor]:
        weight = torch.randn(rows, columns, generator=self.generator, device=self.device) * columns**-0.5
        values, scale_inv = quantize_block_fp8(weight)
        return {f"{name}.weight": values.cpu(), f"{name}.weight_scale_inv": scale_inv.cpu()}


def _layer(config: dict[str, Any], index: int, random: RandomWeights) -> dict[str, torch.Tensor]:
    """Decoder layer `index` under the checkpoint's names; the one after the main layers is the MTP layer."""
    hidden, head_dim = config["hidden_size"], config["head_dim"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    p = f"model.layers.{index}."
    tensors = {
        **random.norm(p + "input_layernorm", hidden),
        **random.norm(p + "attention.query_layernorm", head_dim),
        **random.norm(p + "attention.key_layernorm", head_dim),
        **random.fp8(p + "attention.query_key_value", (heads + 2 * kv_heads) * head_dim, hidden),
        **random.fp8(p + "attention.dense", hidden, heads * head_dim),
        **random.norm(p + "post_attention_layernorm", hidden),
    }
    if index < config["first_k_dense_replace"]:
        return {**tensors, **_mlp(p + "mlp", hidden, config["intermediate_size"], random)}
    experts = config["num_experts"]
    tensors[p + "mlp.gate.weight"] = random.normal(experts, hidden, std=hidden**-0.5)
    # Small, as a trained bias is: it tips which experts are chosen without deciding it for every token alike.
    tensors[p + "mlp.gate.expert_bias"] = random.normal(experts, std=0.05, dtype=torch.float32)
    for expert in range(experts):
        tensors.update(_mlp(f"{p}mlp.experts.{expert}", hidden, config["moe_intermediate_size"], random))
    tensors.update(_mlp(p + "mlp.shared_experts", hidden, config["moe_shared_expert_intermediate_size"], random))
    if index == config["num_hidden_layers"]:
        for norm in ("enorm", "hnorm", "final_layernorm"):
            tensors.update(random.norm(p + norm, hidden))
        tensors[p + "eh_proj.weight"] = random.normal(hidden, 2 * hidden, std=(2 * hidden) ** -0.5)
    return tensors


def _mlp(prefix: str, hidden: int, intermediate: int, random: RandomWeights) -> dict[str, torch.Tensor]:
    return {
        **random.fp8(f"{prefix}.gate_proj", intermediate, hidden),
        **random.fp8(f"{prefix}.up_proj", intermediate, hidden),
        **random.fp8(f"{prefix}.down_proj", hidden, intermediate),
    }


def stand_in_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of `vocab_size` entries ("t0", "t1", …). The check feeds token ids, so text never
    matters; but the engine loads a tokenizer beside the weights, and Ling's own (157,184 entries) cannot be had
    offline. With this one the embedding and head have their real size."""
    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def prompt(tokens: int, shape: Shape) -> list[int]:
    """Random token ids, the same for the same length."""
    generator = torch.Generator().manual_seed(tokens)
    return torch.randint(shape.config["vocab_size"], (tokens,), generator=generator).tolist()


def decode_run(engine: LocalEngine, ids: list[int], new_tokens: int, draft_tokens: int) -> dict[str, Any]:
    """One request through the scheduler, as the app sends it, and the bytes each of its decode steps reads."""
    stats = engine_stats(engine, ids, new_tokens, draft_tokens=draft_tokens)
    return {
        "prompt_tokens": len(ids),
        "new_tokens": new_tokens,
        "draft_tokens": draft_tokens,
        "ttft_s": stats.ttft_s,
        "prefill_tok_s": len(ids) / stats.ttft_s,
        "decode_tok_s": stats.decode_tok_s,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "step_bytes": step_bytes(engine, len(ids) + new_tokens // 2),
    }


@torch.inference_mode()
def step_costs(engine: LocalEngine, ids: list[int], draft_tokens: int, repeats: int = 10) -> dict[str, float]:
    """Median milliseconds, after `ids`, of a plain decode step (one token, the last logits), of the step that
    verifies `draft_tokens` drafts (every position's logits and hidden states, as the scheduler runs it for the MTP
    drafter) and of one MTP draft. A drafting step runs the MTP layer `draft_tokens` times (once over the states
    just accepted, then once per further draft), so MTP pays off above (verify + k·draft) / plain − 1 drafts
    accepted per step."""
    cache = engine.new_cache(len(ids) + draft_tokens + 1)
    engine.prefill(ids, cache)
    position, token = len(ids), ids[-1]
    _, hidden = engine.forward_hidden([[token]], [cache], [position])
    tokens = torch.tensor([[token]], device=engine.device)
    costs = {
        "plain": _median_ms(lambda: engine.forward([[token]], [cache], [position]), engine.device, repeats),
        "verify": _median_ms(
            lambda: engine.forward_hidden([[token] * (draft_tokens + 1)], [cache], [position], last_only=False),
            engine.device, repeats,
        ),
        "draft": _median_ms(
            lambda: engine.model.draft_next(hidden, tokens, [cache], [position])[0].argmax(), engine.device, repeats
        ),
    }
    costs["break_even_accepted"] = (costs["verify"] + draft_tokens * costs["draft"]) / costs["plain"] - 1
    return costs


def _median_ms(work: Callable[[], Any], device: torch.device, repeats: int) -> float:
    work()  # the first call may allocate and pick kernels
    times = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        work()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def extrapolated(engine: LocalEngine, run: dict[str, Any], bandwidth: float) -> dict[str, Any]:
    """AntAngelMed's 32 layers from the checked model: each missing MoE layer reads what the checked model's last
    one reads (weights and keys and values), at the same position as `run` (a plain decode after a short prompt);
    its tokens/s at the share of the roofline `run` reached; and the published figure's share of an H20's roofline
    by the same count. An MTP draft reads its layer, the embedding row and the head."""
    cfg = engine.config
    layers = ANTANGELMED["num_hidden_layers"]
    position = run["prompt_tokens"] + run["new_tokens"] // 2
    reads = weight_reads(engine)
    last, mtp = (f"model.layers.{i}." for i in (cfg.num_hidden_layers - 1, cfg.num_hidden_layers))
    moe_layer = sum(read for name, read in reads.items() if name.startswith(last))
    kv_layer = kv_bytes_per_position(engine) / cfg.num_hidden_layers * position
    full = run["step_bytes"] + (layers - cfg.num_hidden_layers) * (moe_layer + kv_layer)
    shared = ("lm_head.", "model.word_embeddings.")
    draft = sum(read for name, read in reads.items() if name.startswith(mtp) or name.startswith(shared)) + kv_layer
    share = run["decode_tok_s"] * run["step_bytes"] / bandwidth
    return {
        "layers": layers,
        "vocab_size": cfg.vocab_size,
        "position": position,
        "checked_share_of_roofline": share,
        "step_bytes": full,
        "draft_bytes": draft,
        "roofline_tok_s": bandwidth / full,
        "implied_tok_s": share * bandwidth / full,
        "h200_roofline_tok_s": H200_BANDWIDTH / full,
        "h20_roofline_tok_s": H20_BANDWIDTH / full,
        "published_tok_s": PUBLISHED_TOK_S,
        "published_share_of_h20_roofline": PUBLISHED_TOK_S * full / H20_BANDWIDTH,
    }


def prompt_logits(engine: LocalEngine, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits, on the CPU, of every position of a prefill of `ids`, and the MTP layer's after every position
    but the last (given the token that follows it)."""
    cache = engine.new_cache(len(ids))
    logits, hidden = engine.forward_hidden([ids], [cache], [0], last_only=False)
    with torch.inference_mode():
        following = torch.tensor([ids[1:]], device=engine.device)
        drafts, _ = engine.model.draft_next(hidden[:, :-1], following, [cache], [0])
    return logits[0].cpu(), drafts[0].cpu()


def failures_of(figures: dict[str, Any]) -> list[str]:
    """What in the figures says the engine is wrong here."""
    failures = [
        f"{part} logits {parity['relative_error']:.3f} from the CPU's (relative; at most {PARITY_BOUND})"
        for part, parity in figures["parity"].items()
        if not parity["relative_error"] <= PARITY_BOUND  # NaN fails too
    ]
    for run in figures["runs"]:
        if run["draft_tokens"] and not run["drafted"]:
            failures.append(f"the MTP drafter proposed nothing after {run['prompt_tokens']} tokens")
    return failures


def report(figures: dict[str, Any]) -> str:
    """The figures as markdown, for the output and docs/benchmarks.md."""
    setup, runs, costs, full = figures["setup"], figures["runs"], figures["step_ms"], figures["antangelmed"]
    config, memory, bandwidth = setup["config"], figures["memory"], figures["bandwidth"]
    moe_layers = config["num_hidden_layers"] - config["first_k_dense_replace"]
    scaling = memory["rope_scaling"]
    lines = [
        f"BailingMoeV2 with random block-FP8 weights on {setup['device']} ({setup['date']}, torch {setup['torch']}): "
        f"hidden {config['hidden_size']}, {config['num_attention_heads']}/{config['num_key_value_heads']} heads of "
        f"{config['head_dim']} (RoPE on {config['head_dim'] * config['partial_rotary_factor']:.0f} dims, QK-norm), "
        f"{config['first_k_dense_replace']} dense + {moe_layers} MoE layers of {config['num_experts']} experts "
        f"top-{config['num_experts_per_tok']} + {config['num_shared_experts']} shared, and the MTP layer; vocab "
        f"{config['vocab_size']:,} (a stand-in tokenizer). bf16 compute, FP8 KV cache, YaRN ×"
        f"{scaling['factor'] if scaling else 1:g} to {setup['context']:,} tokens.",
        f"Checkpoint written in {figures['seconds']['write a random block-FP8 checkpoint']:.1f} s, loaded in "
        f"{figures['seconds']['load it']:.1f} s: weights {memory['weights_resident'] / 1e9:.2f} GB resident "
        f"(planned {memory['weights_planned'] / 1e9:.2f} GB)"
        + (f", peak GPU memory {memory['peak_gpu'] / 1e9:.1f} GB" if "peak_gpu" in memory else "")
        + f"; the whole check {figures['seconds']['total']:.0f} s.",
        "",
        markdown.table(["prompt tokens", "drafts per step", "time to first token (s)", "prefill tokens/s",
                        "decode tokens/s", "drafted / accepted", "bytes per step (MB)", "share of the roofline"]),
    ]
    for run in runs:
        lines.append(markdown.row([
            f"{run['prompt_tokens']:,}", run["draft_tokens"] or "none", f"{run['ttft_s']:.2f}",
            f"{run['prefill_tok_s']:,.0f}", f"{run['decode_tok_s']:.1f}", f"{run['drafted']} / {run['accepted']}",
            f"{run['step_bytes'] / 1e6:,.0f}", f"{run['decode_tok_s'] * run['step_bytes'] / bandwidth:.0%}",
        ]))
    k = setup["draft_tokens"]
    lines += [
        "",
        f"Each run decodes {runs[0]['new_tokens']} tokens; the roofline is the bytes a step reads at the "
        f"{bandwidth / 1e9:,.0f} GB/s measured here by summing a large tensor. Random weights: the MTP layer's drafts "
        "are not trained to agree with the model, and the drafter stops after a few steps accept none.",
        "",
        markdown.table(["plain step (ms)", f"verifying {k} drafts (ms)", "one MTP draft (ms)",
                        "MTP pays off above, accepted drafts per step"]),
        markdown.row([f"{costs['plain']:.2f}", f"{costs['verify']:.2f}", f"{costs['draft']:.2f}",
                      f"{costs['break_even_accepted']:.2f} of {k}"]),
        "",
        markdown.table(["logits against the CPU path (fp32), same checkpoint", "relative error", "top-1 agreement"]),
    ]
    for part, parity in figures["parity"].items():
        label = "main model, every position" if part == "main" else "MTP layer, every position"
        lines.append(markdown.row([label, f"{parity['relative_error']:.4f}", f"{parity['top1_agreement']:.3f}"]))
    lines += [
        "",
        f"At AntAngelMed's depth of {full['layers']} layers, each missing MoE layer reading what the checked model's "
        f"last one reads (vocab {full['vocab_size']:,}, position {full['position']:,}):",
        "",
        markdown.table(["figure", "value"]),
        markdown.row(["bytes per decode step", f"{full['step_bytes'] / 1e9:.2f} GB"]),
        markdown.row(["bytes per MTP draft", f"{full['draft_bytes'] / 1e9:.2f} GB"]),
        markdown.row(["share of the roofline reached by the checked model",
                      f"{full['checked_share_of_roofline']:.0%}"]),
        markdown.row(["roofline here / on an H200 (4.8 TB/s) / on an H20 (4.0 TB/s)",
                      f"{full['roofline_tok_s']:.0f} / {full['h200_roofline_tok_s']:.0f} / "
                      f"{full['h20_roofline_tok_s']:.0f} tokens/s"]),
        markdown.row(["at the checked model's share of the roofline here", f"{full['implied_tok_s']:.0f} tokens/s"]),
        markdown.row(["published, on an H20", f"> {full['published_tok_s']} tokens/s, "
                      f"≥ {full['published_share_of_h20_roofline']:.0%} of its roofline"]),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
