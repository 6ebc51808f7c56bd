"""Speculative decoding on clinical notes: greedy summaries with each drafter against plain decoding.

    python -m bench.speculative [--new-tokens 256] [--drafters prompt-lookup,model] [--draft-model PATH] FILE...

Every file goes through the documents loader (PDF, DOCX, text, FHIR, C-CDA), as an upload would. One engine per
drafter loads the same weights; plain decoding is the prompt-lookup engine with `draft_tokens=0`. Each run starts
with the prefix cache emptied, so the runs differ only in drafting; the table says whether each drafter's output is
identical to plain decoding. Without `--draft-model` the draft model is the target model itself: every draft is
then the target's own choice, which shows the drafter's overhead and bookkeeping, not a speed-up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from documents import DocumentError, assemble, load
from engine import ChatMessage, GenerationParams, LocalEngine, Stats
from engine.checkpoint import default_model_path

INSTRUCTION = "Summarise this clinical note: diagnoses, medications with doses, allergies and the plan.\n\n"


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
    parser.add_argument("--drafters", default="prompt-lookup,model", help="comma-separated: prompt-lookup, mtp, model")
    parser.add_argument("--draft-model", help="the draft model for the 'model' drafter (default: the model itself)")
    parser.add_argument("--new-tokens", type=int, default=256)
    args = parser.parse_args()

    kinds = args.drafters.split(",")
    draft_model = args.draft_model or args.model or default_model_path()
    engines = {kind: LocalEngine(args.model, drafter=kind, draft_model=draft_model) for kind in kinds}
    plain_engine = next(iter(engines.values()))
    print(f"model: {plain_engine.info.model_name} ({plain_engine.info.precision}), threads {torch.get_num_threads()}, "
          f"greedy, {args.new_tokens} new tokens, prefix cache emptied before every run; draft model: "
          f"{Path(draft_model).name if 'model' in kinds else '-'}\n")
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
