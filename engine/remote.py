"""A model served by another machine: vLLM or SGLang through their OpenAI-compatible HTTP API.

For sites that outgrow one machine. The app sees the same `Engine` as with the embedded one: chat messages in,
`TextDelta` pieces and one `Stats` out, and the served model's own token counts to budget the record with.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlsplit

from transformers import AutoTokenizer

from engine.tokenizer import Tokenizer
from engine.types import (
    ChatMessage,
    EngineError,
    EngineInfo,
    Event,
    GenerationParams,
    Prompt,
    PromptTooLong,
    Stats,
    TextDelta,
)

# How vLLM and SGLang word a prompt that does not fit the model ("maximum context length", "the model's context
# length"): such a refusal is a PromptTooLong, which the app answers by asking for a shorter question.
_CONTEXT_EXCEEDED = re.compile(r"context length|context window", re.IGNORECASE)


class ServerError(EngineError):
    """The server answered with an HTTP error status; `message` is its own explanation."""

    def __init__(self, text: str, status: int, message: str):
        super().__init__(text)
        self.status = status
        self.message = message


class ServerPromptTooLong(PromptTooLong):
    """The server refused a prompt our count let through: its tokenizer or chat template differs from ours."""

    def __init__(self, text: str, prompt_tokens: int, max_new_tokens: int, context_window: int):
        super().__init__(prompt_tokens, max_new_tokens, context_window)
        self.args = (text,)  # the server's words, not the count it disagrees with


class RemoteEngine:
    """A model behind an OpenAI-compatible server. Each call opens a connection of its own, so concurrent
    clinicians need no locking here: the server batches their requests."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        api_key: str | None = None,
        tokenizer: str | Path | None = None,
        context_window: int | None = None,
        timeout_s: float = 300.0,
    ):
        """`url` is the API's base, such as http://gpu-node:8000/v1; `model` the served model's id (None takes the
        first the server lists); `api_key` is sent as a Bearer token. Tokens are counted by the server's /tokenize;
        a server without one that takes chats (SGLang's takes text only) needs `tokenizer`, a local directory
        holding the served model's tokenizer. `context_window` overrides the window the server reports.
        `timeout_s` bounds each wait for the server: the connection, and each piece of a streamed answer."""
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"The model server's address {url!r} is not a URL such as http://gpu-node:8000/v1.")
        https = parts.scheme == "https"
        self._connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
        self._netloc = parts.netloc
        self._api = parts.path  # "/v1"
        # vLLM and SGLang serve /tokenize beside /v1, at the server's root.
        self._root = parts.path.removesuffix("/v1")
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s

        card = self._model_card(model)
        self.model: str = card["id"]
        window = context_window or card.get("max_model_len")
        if not isinstance(window, int):
            raise self._error(
                f"does not report {self.model}'s context window: set it with CLINIDOC_CONTEXT (or --context)."
            )
        self._context_window = window
        # A local tokenizer, when given, counts without a round trip per count: cutting a long record to fit the
        # window counts hundreds of passages.
        if tokenizer is None and self._server_tokenizes_chats():
            self._tokenizer = None
        else:
            self._tokenizer = self._local_tokenizer(tokenizer)
        self.info = EngineInfo(
            model_name=self.model, architecture="remote", precision="server", device=self._netloc,
            context_window=window,
        )

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text))
        return self._tokenize({"prompt": text, "add_special_tokens": False})

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode_chat(messages))
        return self._tokenize({"messages": [m.model_dump() for m in messages], "add_generation_prompt": True})

    def forget(self) -> None:
        """Nothing of a request stays here; the server's own prefix cache is its operator's to bound."""

    def generate(self, prompt: Prompt, params: GenerationParams) -> Iterator[Event]:
        if prompt and isinstance(prompt[0], int):
            raise self._error("takes chat messages, not token ids: token-id prompts need the embedded engine.")
        messages: list[ChatMessage] = list(prompt)
        prompt_tokens = self.count_prompt_tokens(messages)
        if prompt_tokens + params.max_new_tokens > self.context_window:
            raise PromptTooLong(prompt_tokens, params.max_new_tokens, self.context_window)
        started = time.perf_counter()
        try:
            exchange = self._exchange("POST", f"{self._api}/chat/completions", self._request(messages, params))
            with exchange as response:
                first_at: float | None = None
                pieces: list[str] = []
                finish: str | None = None
                usage: dict | None = None
                for chunk in self._stream(response):
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            first_at = first_at or time.perf_counter()
                            pieces.append(text)
                            yield TextDelta(text=text)
                        finish = choice.get("finish_reason") or finish
        except ServerError as err:
            if err.status == 400 and _CONTEXT_EXCEEDED.search(err.message):
                window = self.context_window
                raise ServerPromptTooLong(str(err), prompt_tokens, params.max_new_tokens, window) from None
            raise
        if finish == "abort":
            raise self._error("abandoned the answer (it may be shutting down).")
        yield self._stats(started, first_at, "".join(pieces), prompt_tokens, finish, usage)

    def _request(self, messages: Sequence[ChatMessage], params: GenerationParams) -> dict:
        """The chat completion request: OpenAI's fields, and vLLM's and SGLang's own for what OpenAI lacks."""
        request: dict = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},  # the final chunk carries the server's token counts
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        # Sent only when they change something, so a server that does not know them still answers plain requests.
        if params.top_k:
            request["top_k"] = params.top_k
        if params.repetition_penalty != 1.0:
            request["repetition_penalty"] = params.repetition_penalty
        if params.seed is not None:
            request["seed"] = params.seed
        if params.stop:
            request["stop"] = params.stop
        if params.stop_token_ids:
            request["stop_token_ids"] = params.stop_token_ids
        if params.ignore_eos:
            request["ignore_eos"] = True
        if params.json_schema is not None:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": params.json_schema, "strict": True},
            }
        return request

    def _stats(
        self, started: float, first_at: float | None, text: str, prompt_tokens: int, finish: str | None,
        usage: dict | None,
    ) -> Stats:
        finished_at = time.perf_counter()
        first_at = first_at or finished_at
        usage = usage or {}
        # A server that ignores include_usage leaves the counting to us, with its own tokenizer where it has one.
        generated = usage.get("completion_tokens")
        if not isinstance(generated, int):
            generated = self.count_tokens(text)
        decode_time = finished_at - first_at
        return Stats(
            prompt_tokens=usage.get("prompt_tokens") or prompt_tokens,
            cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
            generated_tokens=generated,
            ttft_s=first_at - started,
            decode_tok_s=(generated - 1) / decode_time if generated > 1 and decode_time > 0 else 0.0,
            finish_reason="length" if finish == "length" else "stop",
        )

    def _stream(self, response: http.client.HTTPResponse) -> Iterator[dict]:
        """The JSON chunks of a server-sent event stream, up to its `data: [DONE]`."""
        try:
            for raw in response:
                line = raw.decode("utf-8").strip()
                # Blank lines end events; lines starting ':' are keep-alive comments.
                if not line.startswith("data:"):
                    continue
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    raise ValueError(f"a chunk is not a JSON object: {data[:200]}")
                # vLLM reports a failure after the stream has started as one more chunk.
                if "error" in chunk or chunk.get("object") == "error":
                    raise self._error(f"failed mid-answer: {_message(chunk)}")
                yield chunk
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise self._error(f"broke off the answer: {self._reason(err)}") from None
        raise self._error("broke off the answer: the stream ended before [DONE].")

    def _model_card(self, model: str | None) -> dict:
        """The served model's entry in /v1/models: its id and, on vLLM and SGLang, its max_model_len."""
        listing = self._json("GET", f"{self._api}/models")
        cards = [card for card in listing.get("data") or [] if isinstance(card, dict) and "id" in card]
        if not cards:
            raise self._error(f"lists no models at {self._api}/models.")
        if model is None:
            return cards[0]
        for card in cards:
            if card["id"] == model:
                return card
        served = ", ".join(card["id"] for card in cards)
        raise self._error(f"serves {served}, not {model}.")

    def _server_tokenizes_chats(self) -> bool:
        """Whether /tokenize counts a chat as the model reads it (vLLM's does; SGLang's takes text only)."""
        try:
            self._tokenize({"messages": [{"role": "user", "content": "Hello"}]})
        except ServerError as err:
            # Missing (404, 405) or not taking messages (400, 422): the counting is done here instead.
            if err.status in (400, 404, 405, 422):
                return False
            raise
        return True

    def _local_tokenizer(self, path: str | Path | None) -> Tokenizer:
        if path is None:
            raise self._error(
                "cannot count the tokens of a chat (it has no /tokenize that takes messages): "
                f"set CLINIDOC_REMOTE_TOKENIZER to a local copy of {self.model}'s tokenizer directory."
            )
        try:
            # local_files_only: patient-facing machines do not reach the Hugging Face Hub, and must not try.
            hf = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise EngineError(f"The tokenizer directory {path} could not be loaded: {err}") from None
        if not hf.chat_template:
            raise EngineError(f"The tokenizer in {path} has no chat template, so it cannot count a chat's tokens.")
        return Tokenizer(hf, eos_ids=())

    def _tokenize(self, request: dict) -> int:
        answer = self._json("POST", f"{self._root}/tokenize", {"model": self.model, **request})
        count = answer.get("count")
        if not isinstance(count, int):
            raise self._error("answered /tokenize without a token count.")
        return count

    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        with self._exchange(method, path, body) as response:
            try:
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError) as err:
                raise self._error(f"sent an unreadable answer: {self._reason(err)}") from None
        if not isinstance(answer, dict):
            raise self._error(f"answered {path} with something other than a JSON object.")
        return answer

    @contextmanager
    def _exchange(self, method: str, path: str, body: dict | None = None) -> Iterator[http.client.HTTPResponse]:
        """The response to one request, its status checked; leaving the block closes the connection, which also
        tells the server to stop generating an answer nobody reads any more."""
        connection = self._connection_class(self._netloc, timeout=self.timeout_s)
        try:
            try:
                data = json.dumps(body).encode() if body is not None else None
                connection.request(method, path, data, self._headers)
                response = connection.getresponse()
                refusal = response.read() if response.status >= 400 else None
            except TimeoutError:
                raise self._error(f"gave no answer within {self.timeout_s:g} s.") from None
            except (OSError, http.client.HTTPException) as err:
                raise self._error(f"could not be reached: {self._reason(err)}") from None
            if refusal is not None:
                message = _message_of(refusal)
                raise ServerError(
                    f"The model server at {self.url} answered HTTP {response.status}: {message}",
                    response.status, message,
                )
            yield response
        finally:
            connection.close()

    def _error(self, what: str) -> EngineError:
        return EngineError(f"The model server at {self.url} {what}")

    def _reason(self, err: Exception) -> str:
        if isinstance(err, TimeoutError):
            return f"no answer within {self.timeout_s:g} s"
        return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _message_of(body: bytes) -> str:
    """The explanation in an error body: vLLM's and SGLang's {"message"} or {"error": {"message"}}, FastAPI's
    {"detail"}, or the start of whatever else came."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500] or "no explanation given"
    return _message(answer) if isinstance(answer, dict) else str(answer)[:500]


def _message(answer: dict) -> str:
    error = answer.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(answer.get("message") or answer.get("detail") or error or answer)[:500]
