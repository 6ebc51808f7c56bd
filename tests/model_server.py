"""An OpenAI-compatible model server for tests: the part of vLLM's API Clinidoc uses, served in a thread by the real
SmolLM2 engine, so what comes back over the wire is a real model's answer, with faults and stalls made to order."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from engine import ChatMessage, GenerationParams, LocalEngine, TextDelta

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

# How the server misbehaves: "error" answers every completion with HTTP 500, "cut" closes the connection after
# the first piece of the answer, as a crashed or restarted server does, and "silent" closes the stream before its
# first chunk, as llama-cpp-python's server does with a prompt longer than its window.
Fault = Literal["error", "cut", "silent"]


class ModelServer(ThreadingHTTPServer):
    """vLLM's API as far as Clinidoc uses it, answering with `engine`. `max_model_len` is the window it reports
    (a small one makes a record too long); `tokenize=False` is a server without /tokenize; `props=True` reports the
    window as llama.cpp's llama-server does, in /props rather than in the model's card."""

    def __init__(
        self, engine: LocalEngine, max_model_len: int | None = None, tokenize: bool = True, props: bool = False,
        fault: Fault | None = None, hold: threading.Event | None = None, pieces_before_hold: int = 0,
        hold_counts: threading.Event | None = None, port: int = 0,
    ):
        super().__init__(("127.0.0.1", port), Handler)
        # A slow or stalled server: the answer stops after `pieces_before_hold` pieces until `hold` is set, and
        # every count waits for `hold_counts`.
        self.hold = hold
        self.pieces_before_hold = pieces_before_hold
        self.hold_counts = hold_counts
        self.counts_waiting = threading.Event()  # set once a count has been held
        self.engine = engine
        self.max_model_len = max_model_len or engine.context_window
        self.tokenize = tokenize
        self.props = props
        self.fault = fault
        self.requests: list[dict] = []  # the chat completion requests, as sent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: ModelServer

    def do_GET(self) -> None:
        if self.path == "/props" and self.server.props:
            return self.send_json({"default_generation_settings": {"n_ctx": self.server.max_model_len}})
        if self.path != "/v1/models":
            return self.send_error(404)
        card = {"id": MODEL, "object": "model", "owned_by": "vllm"}
        if not self.server.props:
            card["max_model_len"] = self.server.max_model_len
        self.send_json({"object": "list", "data": [card]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/tokenize" and self.server.tokenize:
            self.tokenize(body)
        elif self.path == "/v1/chat/completions":
            self.server.requests.append(body)
            self.complete(body)
        else:
            self.send_error(404)

    def tokenize(self, body: dict) -> None:
        if self.server.hold_counts is not None and not self.server.hold_counts.is_set():
            self.server.counts_waiting.set()
            self.server.hold_counts.wait()
        tokenizer = self.server.engine.tokenizer
        if "messages" in body:
            tokens = tokenizer.encode_chat([ChatMessage(**message) for message in body["messages"]])
        else:
            tokens = tokenizer.encode(body["prompt"])
        self.send_json({"tokens": tokens, "count": len(tokens), "max_model_len": self.server.max_model_len})

    def complete(self, body: dict) -> None:
        if self.server.fault == "error":
            return self.send_json({"object": "error", "message": "CUDA out of memory", "code": 500}, status=500)
        messages = [ChatMessage(**message) for message in body["messages"]]
        prompt_tokens = self.server.engine.count_prompt_tokens(messages)
        if prompt_tokens + body["max_tokens"] > self.server.max_model_len:
            message = (
                f"This model's maximum context length is {self.server.max_model_len} tokens. However, you requested "
                f"{prompt_tokens + body['max_tokens']} tokens. Please reduce the length of the messages or completion."
            )
            return self.send_json({"object": "error", "message": message, "code": 400}, status=400)
        if not body.get("stream"):
            return self.answer_whole(messages, body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()  # no length: the stream ends when the connection closes, as HTTP/1.0 allows
        if self.server.fault == "silent":
            return
        for pieces, event in enumerate(self.server.engine.generate(messages, generation_params(body))):
            if pieces == self.server.pieces_before_hold and self.server.hold is not None:
                self.server.hold.wait()
            if isinstance(event, TextDelta):
                self.send_event({"choices": [{"index": 0, "delta": {"content": event.text}, "finish_reason": None}]})
                if self.server.fault == "cut":
                    return
            else:
                self.send_event({"choices": [{"index": 0, "delta": {}, "finish_reason": event.finish_reason}]})
                usage = {
                    "prompt_tokens": event.prompt_tokens,
                    "completion_tokens": event.generated_tokens,
                    "total_tokens": event.prompt_tokens + event.generated_tokens,
                    "prompt_tokens_details": {"cached_tokens": event.cached_tokens},
                }
                self.send_event({"choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")

    def answer_whole(self, messages: list[ChatMessage], body: dict) -> None:
        """A request without `stream`, answered in one JSON object, as vLLM does."""
        events = list(self.server.engine.generate(messages, generation_params(body)))
        *deltas, stats = events
        message = {"role": "assistant", "content": "".join(delta.text for delta in deltas)}
        usage = {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated_tokens}
        self.send_json({"object": "chat.completion", "model": MODEL, "usage": usage,
                        "choices": [{"index": 0, "message": message, "finish_reason": stats.finish_reason}]})

    def send_event(self, chunk: dict) -> None:
        data = json.dumps({"object": "chat.completion.chunk", "model": MODEL, **chunk})
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def send_json(self, answer: dict, status: int = 200) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # pytest's output is for failures


def generation_params(body: dict) -> GenerationParams:
    """A chat completion request read as vLLM reads it, top_k and repetition_penalty included."""
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    return GenerationParams(
        max_new_tokens=body["max_tokens"],
        temperature=body.get("temperature", 1.0),
        top_p=body.get("top_p", 1.0),
        top_k=max(body.get("top_k", 0), 0),  # vLLM reads -1 and 0 alike: no top-k
        repetition_penalty=body.get("repetition_penalty", 1.0),
        seed=body.get("seed"),
        stop=body.get("stop", []),
        json_schema=schema,
    )
