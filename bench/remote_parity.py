"""One model's greedy answers embedded and behind llama.cpp's server: identical or not, and where not, how close a
call the first differing token was for the embedded model.

    python -m bench.remote_parity [--new-tokens 64] [--n-ctx 2048]

Starts llama-cpp-python's server (the `bench` extra) with the bundled SmolLM2 GGUF and loads the same file in the
embedded engine, twice: its Q4_1 blocks computed in fp32 (`--quantize none`), and held as int4 (the default on a
CPU). Each question of the corpus's plain-text notes is put to both, with its note, greedy and with every sampling
setting pinned as RemoteEngine sends it. Where the answers differ, the embedded model's logits at the first
differing token say how far apart its choice and the server's were: the gap in probability between them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from bench import markdown
from bench.remote import CORPUS, LlamaServer
from engine import (
    ChatMessage, Event, GenerationParams, LocalEngine, RemoteEngine, TextDelta, default_model_path, load_engine,
)

# The part of a note that goes with its question: the server's window holds it with the answer.
NOTE_TOKENS = 1200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=2048, help="the server's context window")
    args = parser.parse_args()

    params = GenerationParams(max_new_tokens=args.new_tokens)
    with (
        tempfile.TemporaryDirectory() as tmp,
        LlamaServer(default_model_path(), args.n_ctx, Path(tmp) / "server.log") as server,
    ):
        remote = RemoteEngine(server.url, context_window=args.n_ctx)
        prompts = questions(remote)
        served = [answer(remote.generate(messages, params)) for messages in prompts]
        print(f"{len(prompts)} questions of the corpus's plain-text notes, greedy, up to {args.new_tokens} new tokens; "
              "llama-cpp-python's server vs the embedded engine on the same GGUF file\n")
        print(markdown.table(["embedded weights", "identical answers", "first difference: gap in probability "
                              "between the embedded choice and the server's (each differing answer)"]))
        for quantize in ("none", "int4"):
            local = load_engine(quantize=quantize)
            gaps = []
            for messages, theirs in zip(prompts, served):
                ours = answer(local.generate(messages, params))
                if ours != theirs:
                    gaps.append(first_gap(local, messages, ours, theirs))
            same = len(prompts) - len(gaps)
            print(markdown.row([
                "Q4_1 blocks in fp32" if quantize == "none" else "int4 (the default)", f"{same} of {len(prompts)}",
                ", ".join(f"{gap:.3f}" for gap in gaps) or "—",
            ]))


def questions(engine: RemoteEngine) -> list[list[ChatMessage]]:
    """Each question of the plain-text notes with the start of its note, cut to NOTE_TOKENS."""
    prompts = []
    for truth in sorted((CORPUS / "truth").glob("mtsamples_*.json")):
        case = json.loads(truth.read_text())
        note = CORPUS / case["doc"]
        if note.suffix != ".txt":
            continue
        text = note.read_text()
        while engine.count_tokens(text) > NOTE_TOKENS:
            text = text[: int(len(text) * 0.9)]
        for qa in case["qa"]:
            prompts.append([ChatMessage(role="user", content=f"{text}\n\nQuestion: {qa['q']}")])
    return prompts


def answer(events: Iterator[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def first_gap(engine: LocalEngine, messages: list[ChatMessage], ours: str, theirs: str) -> float:
    """At the first token where the two answers part, the embedded model's probability of its own choice minus its
    probability of the server's: near 0, a near-tie that rounding decides."""
    prompt = engine.tokenizer.encode_chat(messages)
    mine, other = engine.tokenizer.encode(ours), engine.tokenizer.encode(theirs)
    common = next((i for i, (a, b) in enumerate(zip(mine, other)) if a != b), min(len(mine), len(other)))
    # An answer that ends where the other goes on chose its end there.
    end = min(engine.tokenizer.eos_ids)
    choice, theirs_next = (mine + [end])[common], (other + [end])[common]
    ids = prompt + mine[:common]
    cache = engine.new_cache(len(ids))
    probabilities = torch.softmax(engine.forward([ids], [cache], [0])[0], dim=-1)
    return float(probabilities[choice] - probabilities[theirs_next])


if __name__ == "__main__":
    main()
