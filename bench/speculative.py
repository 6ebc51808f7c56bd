"""Speculative decoding on clinical notes: greedy summaries with each drafter against plain decoding.

    python -m bench.speculative [--new-tokens 256] [--drafters prompt-lookup,model] [--draft-model PATH] FILE...
    python -m bench.speculative --drafters prompt-lookup,eagle3 --model LING_DIR --eagle3-draft DRAFT_DIR FILE...
    python -m bench.speculative --random-heads [--new-tokens 64] FILE...

Every file goes through the documents loader (PDF, DOCX, text, FHIR, C-CDA), as an upload would. One engine per
drafter loads the same weights; plain decoding is the prompt-lookup engine with `draft_tokens=0`. Each run starts
with the prefix cache emptied, so the runs differ only in drafting; the table says whether each drafter's output is
identical to plain decoding. Without `--draft-model` the draft model is the target model itself: every draft is
then the target's own choice, which shows the drafter's overhead and bookkeeping, not a speed-up. "tokens per step"
is the mean acceptance length: tokens committed per target forward pass (accepted drafts + 1).

`--random-heads` writes a random BailingMoeV2 (SmolLM2's tokenizer) with a random MTP layer and a random EAGLE3
draft beside it (engine/reference.py) to a temporary directory and compares prompt-lookup, mtp and eagle3 on it: no
trained MTP layer or EAGLE3 draft exists for a model this machine can run, so this shows that each runs and stays
lossless, and what random heads accept (next to nothing: drafting then pauses, see engine/speculative.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from documents import DocumentError, assemble, load
from engine import ChatMessage, GenerationParams, LocalEngine, Stats
from engine.checkpoint import Checkpoint, default_model_path
from engine.reference import add_random_mtp_layer, random_glm4_moe, save_as_bailing, write_random_eagle3

INSTRUCTION = "Summarise this clinical note: diagnoses, medications with doses, allergies and the plan.\n\n"
# The --random-heads target: 8 layers, so that EAGLE3's default layers [2, L//2, L-3] = [2, 4, 5] are distinct.
RANDOM_TARGET = dict(
    hidden_size=256, intermediate_size=512, moe_intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
    num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, n_routed_experts=16, num_experts_per_tok=4,
    n_group=4, topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5, first_k_dense_replace=1,
)
RANDOM_DRAFT_VOCAB = 8192  # of SmolLM2's 49152, as Ling's draft keeps 32000 of 157184


def random_heads(directory: Path) -> tuple[Path, Path]:
    """A random BailingMoeV2 with an MTP layer, and a random EAGLE3 draft for it: (target, draft) directories."""
    smollm2 = Checkpoint(default_model_path())
    target = directory / "bailing"
    target.mkdir()
    save_as_bailing(random_glm4_moe(smollm2.config.vocab_size, eos_token_id=2, **RANDOM_TARGET), target)
    smollm2.tokenizer().hf.save_pretrained(target)
    add_random_mtp_layer(target)
    write_random_eagle3(directory / "eagle3", Checkpoint(target).config, RANDOM_DRAFT_VOCAB)
    return target, directory / "eagle3"


def note_text(path: Path, engine: LocalEngine, room: int) -> tuple[str, bool]:
    """The note as the model would read it, cut at a page boundary or line to fit `room` tokens; whether it was cut."""
    record = assemble([load(path)], room, engine.count_tokens)
    if record.fits:
        return record.text, False
    lines = record.text.splitlines()
    low, high = 0, len(lines)
    while low < high:  # the most whole lines that fit
        middle = (low + high + 1) // 2
        if engine.count_tokens("\n".join(lines[:middle])) <= room:
            low = middle
        else:
            high = middle - 1
    return "\n".join(lines[:low]), True


def run(engine: LocalEngine, messages: list[ChatMessage], new_tokens: int, draft_tokens: int) -> tuple[str, Stats]:
    engine.prefix_cache.clear()
    params = GenerationParams(max_new_tokens=new_tokens, draft_tokens=draft_tokens)
    events = list(engine.generate(messages, params))
    return "".join(e.text for e in events[:-1]), events[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--model", help="GGUF file or HF directory (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--drafters", help="comma-separated: prompt-lookup, mtp, eagle3, model "
                        "(default: prompt-lookup,model; with --random-heads prompt-lookup,mtp,eagle3)")
    parser.add_argument("--draft-model", help="the draft model for the 'model' drafter (default: the model itself)")
    parser.add_argument("--eagle3-draft", help="the EAGLE3 draft directory for the 'eagle3' drafter")
    parser.add_argument("--random-heads", action="store_true",
                        help="a random BailingMoeV2 with random MTP and EAGLE3 heads instead of --model")
    parser.add_argument("--new-tokens", type=int, default=256)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.random_heads:
            args.model, args.eagle3_draft = random_heads(Path(scratch))
        default = "prompt-lookup,mtp,eagle3" if args.random_heads else "prompt-lookup,model"
        compare(args, (args.drafters or default).split(","))


def compare(args: argparse.Namespace, kinds: list[str]) -> None:
    """Print the table: one row per file, each drafter against plain decoding."""
    draft_model = args.draft_model or args.model or default_model_path()
    engines = {
        kind: LocalEngine(args.model, drafter=kind, draft_model=args.eagle3_draft if kind == "eagle3" else draft_model)
        for kind in kinds
    }
    plain_engine = next(iter(engines.values()))
    print(f"model: {plain_engine.info.model_name} ({plain_engine.info.precision}), threads {torch.get_num_threads()}, "
          f"greedy, {args.new_tokens} new tokens, prefix cache emptied before every run; draft model: "
          f"{Path(draft_model).name if 'model' in kinds else '-'}; EAGLE3 draft: "
          f"{Path(args.eagle3_draft).name if 'eagle3' in kinds else '-'}\n")
    header = "| document | prompt tokens | plain tok/s |"
    rule = "|---|---|---|"
    for kind in kinds:
        header += f" {kind} tok/s | speed-up | accepted / drafted | tokens per step | identical |"
        rule += "---|---|---|---|---|"
    print(header)
    print(rule)
    room = plain_engine.context_window - args.new_tokens - plain_engine.count_tokens(INSTRUCTION) - 64
    for path in args.files:
        try:
            text, cut = note_text(path, plain_engine, room)
        except DocumentError as error:
            print(f"| {path.name} | {error} |")
            continue
        messages = [ChatMessage(role="user", content=INSTRUCTION + text)]
        run(plain_engine, messages, 8, 0)  # warm-up
        plain_text, plain = run(plain_engine, messages, args.new_tokens, 0)
        name = f"{path.name} (first {plain.prompt_tokens} tokens)" if cut else path.name
        row = f"| {name} | {plain.prompt_tokens} | {plain.decode_tok_s:.1f} |"
        for kind, engine in engines.items():
            fast_text, fast = run(engine, messages, args.new_tokens, 8)
            steps = fast.generated_tokens - fast.accepted
            rate = f"{fast.accepted}/{fast.drafted} ({fast.accepted / fast.drafted:.0%})" if fast.drafted else "0/0"
            row += (f" {fast.decode_tok_s:.1f} | {fast.decode_tok_s / plain.decode_tok_s:.2f}x | {rate} "
                    f"| {fast.generated_tokens / max(steps, 1):.2f} | {fast_text == plain_text} |")
        print(row, flush=True)


if __name__ == "__main__":
    main()
