"""The remote backend against a real server: what Clinidoc adds to time to first token and decode speed.

    python -m bench.remote [--model GGUF] [--prompt-file FILE] [--new-tokens 128] [--runs 15] [--n-ctx 2048]

Starts llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, installed by the `bench` extra) on
a free port of 127.0.0.1 with the bundled SmolLM2 GGUF, and sends the same greedy chat requests two ways, in turns:
directly, as a plain httpx client reading the server-sent events line by line, and through `RemoteEngine`, as the
app does (its token count first, then the stream through httpx-sse). Time to first token runs from the call to the
first piece of text; decode tokens/s counts the tokens after the first over the time from the first piece to the
end of the stream. Two cases: every request opens with a line of its own, so the server prefills the whole note;
and every request the same, so the server's prefix cache holds the prompt and time to first token is little more
than the two clients' own overhead. Prints medians and the ratios of Clinidoc to direct (the target is within 5%),
and, as a measure that a busy machine disturbs less, the client's own CPU time per token of answer (the calling
thread's, which does all of the client's work: httpx runs no threads of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import markdown
from engine import ChatMessage, GenerationParams, RemoteEngine, Stats, TextDelta, default_model_path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
INSTRUCTION = "Summarise this clinical note: diagnoses, medications with doses, allergies and the plan.\n\n"


class LlamaServer:
    """llama-cpp-python's server in a process of its own on a free port of 127.0.0.1, its output written to `log`.
    Used as a context manager: entering waits until the server answers, leaving stops it."""

    def __init__(self, model: Path, n_ctx: int, log: Path):
        with socket.socket() as probe:  # a port that is free now; the server binds it a moment later
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self._command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(n_ctx),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LlamaServer:
        # Unbuffered, so that the log holds what the server has done by the time it answers.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300  # loading a model on a busy machine can take a while
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"llama_cpp.server did not answer within 300 s:\n{self.log_text()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn's graceful stop
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """Ends the server at once, as a crash or a pulled cable would, mid-answer if it is answering."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Run:
    text: str
    ttft_s: float
    decode_s: float  # from the first piece of text to the end of the stream
    tokens: int
    cpu_s: float  # the client's own work: this thread's CPU time over the request, the server's excluded


def direct(
    client: httpx.Client, url: str, messages: list[ChatMessage], new_tokens: int, engine: RemoteEngine
) -> Run:
    """One greedy request as a plain client makes it: POST, then the stream's `data:` lines parsed as they come.
    `engine` lends the model's id and, for an answer that ends before the limit, the server's token count."""
    body = {
        "model": engine.model, "messages": [m.model_dump() for m in messages], "stream": True,
        "max_tokens": new_tokens, "temperature": 0.0,
    }
    started, cpu_started = time.perf_counter(), time.thread_time()
    first_at: float | None = None
    pieces: list[str] = []
    finish = None
    with client.stream("POST", f"{url}/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            for choice in json.loads(line.removeprefix("data: "))["choices"]:
                piece = choice["delta"].get("content")
                if piece:
                    first_at = first_at or time.perf_counter()
                    pieces.append(piece)
                finish = choice["finish_reason"] or finish
    ended, cpu = time.perf_counter(), time.thread_time() - cpu_started
    assert first_at is not None, "the server answered with no text"
    text = "".join(pieces)
    # The tokens counted as RemoteEngine counts them when the server gives no usage: the limit, or the server's count.
    tokens = new_tokens if finish == "length" else engine.count_tokens(text)
    return Run(text, first_at - started, ended - first_at, tokens, cpu)


def through(engine: RemoteEngine, messages: list[ChatMessage], new_tokens: int) -> Run:
    """The same request through Clinidoc's remote backend, timed from outside as `direct` is."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    first_at: float | None = None
    pieces: list[str] = []
    stats: Stats | None = None
    for event in engine.generate(messages, GenerationParams(max_new_tokens=new_tokens)):
        if isinstance(event, TextDelta):
            first_at = first_at or time.perf_counter()
            pieces.append(event.text)
        else:
            stats = event
    ended, cpu = time.perf_counter(), time.thread_time() - cpu_started
    assert first_at is not None and stats is not None, "the server answered with no text"
    return Run("".join(pieces), first_at - started, ended - first_at, stats.generated_tokens, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--prompt-file", type=Path, default=CORPUS / "mtsamples_allergic_rhinitis.txt")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=15, help="requests each way, per case")
    parser.add_argument("--n-ctx", type=int, default=2048, help="the server's context window")
    args = parser.parse_args()

    model = args.model or default_model_path()
    note = args.prompt_file.read_text()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LlamaServer(model, args.n_ctx, Path(tmp) / "server.log") as server,
        httpx.Client(timeout=300) as client,
    ):
        # llama-cpp-python reports neither its window nor a chat's tokens: both come from here, as an operator sets.
        engine = RemoteEngine(server.url, tokenizer=model, context_window=args.n_ctx)
        prompt_tokens = engine.count_prompt_tokens(chat(note, ""))
        # What Clinidoc does before it sends a request, and a direct client does not: count the prompt's tokens.
        counting = []
        for _ in range(20):
            started = time.perf_counter()
            engine.count_prompt_tokens(chat(note, ""))
            counting.append(time.perf_counter() - started)
        print(f"model: {model.name}, llama-cpp-python server on 127.0.0.1 (--n_ctx {args.n_ctx}), greedy, "
              f"{prompt_tokens}-token prompt, {args.new_tokens} new tokens, median of {args.runs} each way; "
              f"counting the prompt's tokens takes Clinidoc {statistics.median(counting) * 1000:.1f} ms\n")
        print(markdown.table([
            "case", "TTFT direct (s)", "TTFT Clinidoc (s)", "TTFT ratio", "decode tok/s direct",
            "decode tok/s Clinidoc", "decode ratio", "client CPU per token direct (µs)",
            "client CPU per token Clinidoc (µs)", "identical text",
        ]))
        request = 0
        for case, fresh in (("prompt prefilled", True), ("prompt cached by the server", False)):
            through(engine, chat(note, ""), 8)  # warm-up; for the cached case, the prompt the runs repeat
            runs: dict[str, list[Run]] = {"direct": [], "Clinidoc": []}
            for turn in range(args.runs):
                # In turns, so that a busy moment of the machine falls on both, each going first every other turn.
                for way in sorted(runs, reverse=turn % 2 == 1):
                    request += 1
                    messages = chat(note, f"Request {request:04d}. " if fresh else "")
                    if way == "direct":
                        runs[way].append(direct(client, server.url, messages, args.new_tokens, engine))
                    else:
                        runs[way].append(through(engine, messages, args.new_tokens))
            ttft = {way: statistics.median(run.ttft_s for run in done) for way, done in runs.items()}
            cpu = {way: statistics.median(run.cpu_s / run.tokens for run in done) for way, done in runs.items()}
            decode = {
                way: statistics.median((run.tokens - 1) / run.decode_s for run in done) for way, done in runs.items()
            }
            # Only the cached case sends one prompt both ways; the prefilled case's prompts differ by their opening.
            texts = {run.text for done in runs.values() for run in done}
            identical = "—" if fresh else len(texts) == 1
            print(markdown.row([
                case, f"{ttft['direct']:.3f}", f"{ttft['Clinidoc']:.3f}", f"{ttft['Clinidoc'] / ttft['direct']:.3f}",
                f"{decode['direct']:.1f}", f"{decode['Clinidoc']:.1f}",
                f"{decode['Clinidoc'] / decode['direct']:.3f}", f"{cpu['direct'] * 1e6:.0f}",
                f"{cpu['Clinidoc'] * 1e6:.0f}", identical,
            ]))


def chat(note: str, opening: str) -> list[ChatMessage]:
    """The summary request; an opening of its own keeps the server's prefix cache from serving it."""
    return [ChatMessage(role="user", content=opening + INSTRUCTION + note)]


if __name__ == "__main__":
    main()
