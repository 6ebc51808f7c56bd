"""A model served by another machine: vLLM, SGLang, llama.cpp's servers or Ollama, through their OpenAI-compatible
HTTP API.

For sites that outgrow one machine. The app sees the same `Engine` as with the embedded one: chat messages in,
`TextDelta` pieces and one `Stats` out, and the served model's own token counts to budget the record with.
HTTP is httpx's, the answer's server-sent events are read by httpx-sse; what is left here is what each server
reports, and in which words.
"""

from __future__ import annotations

import functools
import json
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence
from urllib.parse import urlsplit

import httpx
from httpx_sse import EventSource, SSEError, connect_sse
from transformers import AutoTokenizer

from engine.tokenizer import Tokenizer
from engine.types import (
    ChatMessage,
    EngineError,
    EngineInfo,
    Event,
    GenerationParams,
    ModelBrokeOff,
    ModelTimedOut,
    ModelUnreachable,
    Prompt,
    PromptTooLong,
    Stats,
    TextDelta,
)

# How vLLM, SGLang and llama-cpp-python word a prompt that does not fit the model ("maximum context length",
# "the model's context length"): such a refusal is a PromptTooLong, which the app answers by asking for a shorter
# question. vLLM and llama-cpp-python also state the window itself.
_CONTEXT_EXCEEDED = re.compile(r"context length|context window", re.IGNORECASE)
_STATED_WINDOW = re.compile(r"maximum context length is (\d+)")
# The statuses of an endpoint a server does not have (404, 405), or has but not for this request (400, 422).
_NOT_SERVED = (400, 404, 405, 422)


class ServerError(EngineError):
    """The server answered with an HTTP error status; `message` is its own explanation."""

    def __init__(self, text: str, status: int, message: str):
        super().__init__(text)
        self.status = status
        self.message = message


class ServerPromptTooLong(PromptTooLong):
    """The server refused a prompt our count let through: its tokenizer or chat template differs from ours, or its
    window is smaller than the one configured here."""

    def __init__(self, text: str, prompt_tokens: int, max_new_tokens: int, context_window: int):
        super().__init__(prompt_tokens, max_new_tokens, context_window)
        self.args = (text,)  # the server's words, not the count it disagrees with


class RemoteEngine:
    """A model behind an OpenAI-compatible server. One httpx client, shared by the threads of concurrent clinicians
    (httpx allows that), keeps connections open between requests; the server batches the requests."""

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
        first the server lists); `api_key` is sent as a Bearer token. Tokens are counted by the server where it can
        count them; a server that cannot count a chat (llama-cpp-python's, and SGLang's where its /tokenize takes text)
        needs `tokenizer`, a local copy of the served model's tokenizer: a directory, or the GGUF file the server
        loaded. `context_window` overrides the window the server reports, and stands in where it reports none.
        `timeout_s` bounds each wait for the server: the connection, and each piece of a streamed answer."""
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(f"The model server's address {url!r} is not a URL such as http://gpu-node:8000/v1.")
        self._api = parts.path  # "/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Paths are the server's own: /v1/... for the API, and the tokenizers and /props beside /v1, at its root.
        self._client = httpx.Client(base_url=f"{parts.scheme}://{parts.netloc}", headers=headers, timeout=timeout_s)
        self.timeout_s = timeout_s

        card = self._model_card(model)
        self.model: str = card["id"]
        # "No top-k" is -1 to vLLM and SGLang (which refuses 0), and 0 to llama.cpp's servers (which refuse -1).
        self._no_top_k = -1 if card.get("owned_by") in ("vllm", "sglang") else 0
        self._context_window = context_window or self._reported_window(card)
        hello = _chat_request([ChatMessage(role="user", content="Hi")])
        self._counts_chats = bool(self._probe_count("/tokenize", hello))  # vLLM's /tokenize takes chats
        self._count_text = self._text_counter()
        # A local tokenizer counts only what the server cannot: the server's count is the one its window holds.
        needs_local = self._count_text is None or not self._counts_chats
        self._tokenizer = self._local_tokenizer(tokenizer) if needs_local else None
        self.info = EngineInfo(
            model_name=short_name(self.model), architecture="remote", precision="server", device=parts.netloc,
            context_window=self._context_window,
        )

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        if self._count_text is not None:
            return self._count_text(text)
        assert self._tokenizer is not None  # __init__ loads it when the server cannot count
        return len(self._tokenizer.encode(text))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        if self._counts_chats:
            return self._count("/tokenize", _chat_request(messages))
        assert self._tokenizer is not None
        return len(self._tokenizer.encode_chat(messages))

    def forget(self) -> None:
        """Nothing of a request stays here; the server's own prefix cache is its operator's to bound."""

    def generate(self, prompt: Prompt, params: GenerationParams) -> Iterator[Event]:
        """The answer as the server streams it. Stopping the iteration closes the connection, which tells the server
        to stop generating an answer nobody reads any more."""
        if prompt and isinstance(prompt[0], int):
            raise self._error("takes chat messages, not token ids: token-id prompts need the embedded engine.")
        messages: list[ChatMessage] = list(prompt)
        prompt_tokens = self.count_prompt_tokens(messages)
        if prompt_tokens + params.max_new_tokens > self.context_window:
            raise PromptTooLong(prompt_tokens, params.max_new_tokens, self.context_window)
        started = time.perf_counter()
        first_at: float | None = None
        pieces: list[str] = []
        finish: str | None = None
        usage: dict | None = None
        try:
            with self._events(f"{self._api}/chat/completions", self._request(messages, params)) as events:
                for chunk in self._chunks(events):
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
                stated = _STATED_WINDOW.search(err.message)
                window = int(stated.group(1)) if stated else self.context_window
                raise ServerPromptTooLong(str(err), prompt_tokens, params.max_new_tokens, window) from None
            raise
        if finish == "abort":
            raise self._error("abandoned the answer (it may be shutting down).", ModelBrokeOff)
        yield self._stats(started, first_at, "".join(pieces), prompt_tokens, params.max_new_tokens, finish, usage)

    def _request(self, messages: Sequence[ChatMessage], params: GenerationParams) -> dict:
        """The chat completion request: OpenAI's fields, and vLLM's, SGLang's and llama.cpp's own for what OpenAI
        lacks. Every sampling setting is sent, in each name a server may read it by, so that no server's own
        default (llama.cpp's repeat_penalty 1.1 and top_k 40, Ollama's) changes what one model answers: greedy
        decoding gives the same text embedded and remote. Servers ignore the names they do not know."""
        request: dict = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},  # the final chunk carries the server's token counts
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k or self._no_top_k,
            "min_p": 0.0,
            "repetition_penalty": params.repetition_penalty,  # vLLM, SGLang
            "repeat_penalty": params.repetition_penalty,  # llama.cpp, Ollama
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
        }
        if params.seed is not None:
            request["seed"] = params.seed
        if params.stop:
            request["stop"] = params.stop
        if params.stop_token_ids:
            request["stop_token_ids"] = params.stop_token_ids
        if params.ignore_eos:
            request["ignore_eos"] = True
        if params.json_schema is not None:
            if self._schema_format is None:
                raise self._error(
                    "cannot hold an answer to a JSON schema (it takes neither OpenAI's json_schema nor a json_object "
                    "with a schema), which the structured summary needs: serve the model with vLLM, SGLang or "
                    "llama.cpp's server."
                )
            request["response_format"] = _response_format(self._schema_format, params.json_schema)
        return request

    @functools.cached_property
    def _schema_format(self) -> str | None:
        """How this server takes a JSON schema that constrains an answer, found once by a one-token request in each
        form: OpenAI's `json_schema` (vLLM, SGLang, llama-server), or a `json_object` with a `schema`
        (llama-cpp-python's server, which refuses the first); None for a server that takes neither."""
        for kind in ("json_schema", "json_object"):
            probe = {
                "model": self.model, "messages": [{"role": "user", "content": "{}"}], "max_tokens": 1,
                "response_format": _response_format(kind, {"type": "object"}),
            }
            try:
                self._json("POST", f"{self._api}/chat/completions", probe)
                return kind
            except ServerError:
                continue
        return None

    def _stats(
        self, started: float, first_at: float | None, text: str, prompt_tokens: int, max_new_tokens: int,
        finish: str | None, usage: dict | None,
    ) -> Stats:
        finished_at = time.perf_counter()
        first_at = first_at or finished_at
        usage = usage or {}
        # A server that ignores include_usage (llama-cpp-python's) leaves the counting to us: an answer cut at the
        # limit has exactly that many tokens, and any other is counted by the server's tokenizer where it has one.
        generated = usage.get("completion_tokens")
        if not isinstance(generated, int):
            generated = max_new_tokens if finish == "length" else self.count_tokens(text)
        decode_time = finished_at - first_at
        return Stats(
            prompt_tokens=usage.get("prompt_tokens") or prompt_tokens,
            cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
            generated_tokens=generated,
            ttft_s=first_at - started,
            decode_tok_s=(generated - 1) / decode_time if generated > 1 and decode_time > 0 else 0.0,
            finish_reason="length" if finish == "length" else "stop",
        )

    def _chunks(self, events: EventSource) -> Iterator[dict]:
        """The JSON chunks of the answer's server-sent events, up to its `data: [DONE]`."""
        began = False
        try:
            for event in events.iter_sse():
                if event.data == "[DONE]":
                    return
                chunk = json.loads(event.data)
                if not isinstance(chunk, dict):
                    raise ValueError(f"a chunk is not a JSON object: {event.data[:200]}")
                # vLLM and SGLang report a failure after the stream has started as one more chunk.
                if "error" in chunk or chunk.get("object") == "error":
                    raise self._error(f"failed mid-answer: {_message(chunk)}", ModelBrokeOff)
                began = True
                yield chunk
        except httpx.TimeoutException:
            raise self._error(f"stopped answering: nothing came for {self.timeout_s:g} s.", ModelTimedOut) from None
        except (httpx.TransportError, SSEError, ValueError) as err:
            raise self._error(f"broke off the answer: {_reason(err)}.", ModelBrokeOff) from None
        if not began:
            # llama-cpp-python refuses a prompt longer than its window this way, once the stream has begun.
            raise self._error(
                "closed the answer before it began, without a reason (its log has one). A prompt longer than the "
                "server's context window does this on llama-cpp-python: check CLINIDOC_CONTEXT against its --n_ctx."
            )
        raise self._error("broke off the answer: the stream ended before [DONE].", ModelBrokeOff)

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

    def _reported_window(self, card: dict) -> int:
        """The context window the server was started with, as it reports it: vLLM's and SGLang's max_model_len in
        the model's card, or llama.cpp's n_ctx in its /props. llama-cpp-python's server reports none."""
        window = card.get("max_model_len")
        if isinstance(window, int):
            return window
        try:
            settings = self._json("GET", "/props").get("default_generation_settings")
        except ServerError as err:
            if err.status not in _NOT_SERVED:
                raise
            settings = None
        window = settings.get("n_ctx") if isinstance(settings, dict) else None
        if isinstance(window, int):
            return window
        # Ollama states a model's window in its parameters only where it was set (num_ctx); its model_info holds the
        # window the model was trained with, which Ollama does not serve unless told to, cutting longer prompts.
        stated = re.search(r"^num_ctx\s+(\d+)", str((self._ollama_model or {}).get("parameters", "")), re.MULTILINE)
        if stated:
            return int(stated.group(1))
        raise self._error(
            f"does not report {self.model}'s context window: set CLINIDOC_CONTEXT (or --context) to the one it was "
            "started with (llama-cpp-python's --n_ctx; Ollama's num_ctx or OLLAMA_CONTEXT_LENGTH)."
        )

    @functools.cached_property
    def _ollama_model(self) -> dict | None:
        """Ollama's description of the served model (/api/show): its parameters and its Modelfile; None elsewhere."""
        try:
            return self._json("POST", "/api/show", {"model": self.model})
        except ServerError as err:
            if err.status in _NOT_SERVED:
                return None
            raise

    def _text_counter(self) -> Callable[[str], int] | None:
        """The server's own count of a text's tokens, where it has an endpoint for it: /tokenize on vLLM and SGLang,
        /extras/tokenize/count on llama-cpp-python's server; None where it has neither."""
        if self._probe_count("/tokenize", {"prompt": "Hi", "add_special_tokens": False}):
            return lambda text: self._count("/tokenize", {"prompt": text, "add_special_tokens": False})
        # llama.cpp's llama-server reads `content` (and answers a request without it with no tokens at all).
        if self._probe_count("/tokenize", {"content": "Hi", "add_special": False}):
            return lambda text: self._count("/tokenize", {"content": text, "add_special": False})
        # llama-cpp-python cannot be asked to leave out the tokens the model starts every text with (a BOS token, for
        # many models): an empty text's count is what it adds.
        added = self._probe_count("/extras/tokenize/count", {"input": ""})
        if added is not None:
            return lambda text: self._count("/extras/tokenize/count", {"input": text}) - added
        return None

    def _probe_count(self, path: str, request: dict) -> int | None:
        """The server's count for `request` at `path`; None where it has no such endpoint or refuses such a request."""
        try:
            return self._count(path, request)
        except ServerError as err:
            if err.status in _NOT_SERVED:
                return None
            raise

    def _local_tokenizer(self, path: str | Path | None) -> Tokenizer:
        path = path or self._served_gguf()
        if path is None:
            raise self._error(
                "cannot count the tokens of a chat (it has no /tokenize that takes messages): "
                f"set CLINIDOC_REMOTE_TOKENIZER to a local copy of {self.model}'s tokenizer directory "
                "(or the GGUF file it serves)."
            )
        path = Path(path)
        try:
            if _is_gguf(path):
                local = Tokenizer.from_gguf(path, eos_ids=())
            else:
                # local_files_only: patient-facing machines do not reach the Hugging Face Hub, and must not try.
                local = Tokenizer(AutoTokenizer.from_pretrained(path, local_files_only=True), eos_ids=())
        except (OSError, ValueError) as err:
            raise EngineError(f"The tokenizer at {path} could not be loaded: {err}") from None
        if not local.hf.chat_template:
            raise EngineError(f"The tokenizer at {path} has no chat template, so it cannot count a chat's tokens.")
        return local

    def _served_gguf(self) -> Path | None:
        """The GGUF file the server loaded, where this machine can read it: llama-cpp-python names a model by the
        path of its file, and Ollama's Modelfile says FROM which blob it was made."""
        modelfile = str((self._ollama_model or {}).get("modelfile", ""))
        blob = re.search(r"^FROM\s+(\S+)", modelfile, re.MULTILINE)
        for candidate in (self.model, blob.group(1) if blob else None):
            if candidate and _is_gguf(Path(candidate)):
                return Path(candidate)
        return None

    def _count(self, path: str, request: dict) -> int:
        """The server's count of the tokens in `request`: vLLM's and llama-cpp-python's `count`, or as many as the
        `tokens` llama-server lists."""
        answer = self._json("POST", path, {"model": self.model, **request})
        count = answer.get("count")
        if isinstance(count, int):
            return count
        if isinstance(answer.get("tokens"), list):
            return len(answer["tokens"])
        raise self._error(f"answered {path} without a token count.")

    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        with self._reaching():
            response = self._client.request(method, path, json=body)
        self._check(response)
        try:
            answer = response.json()
        except ValueError as err:
            raise self._error(f"sent an unreadable answer to {path}: {err}") from None
        if not isinstance(answer, dict):
            raise self._error(f"answered {path} with something other than a JSON object.")
        return answer

    @contextmanager
    def _events(self, path: str, body: dict) -> Iterator[EventSource]:
        """The server-sent events answering a POST, its status checked; leaving the block closes the connection."""
        with self._reaching():
            with connect_sse(self._client, "POST", path, json=body) as events:
                self._check(events.response)
                yield events

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Failures to reach the server, or to hear from it in time, as errors that say so."""
        try:
            yield
        except httpx.TimeoutException:
            raise self._error(f"gave no answer within {self.timeout_s:g} s.", ModelTimedOut) from None
        except httpx.TransportError as err:
            raise self._error(
                f"could not be reached: {_reason(err)}. Check that it is running and that its address is right.",
                ModelUnreachable,
            ) from None

    def _check(self, response: httpx.Response) -> None:
        """An HTTP error status as a ServerError, in the server's own words."""
        if response.status_code < 400:
            return
        message = _message_of(response.read())
        raise ServerError(
            f"The model server at {self.url} answered HTTP {response.status_code}: {message}",
            response.status_code, message,
        )

    def _error(self, what: str, kind: type[EngineError] = EngineError) -> EngineError:
        return kind(f"The model server at {self.url} {what}")


def _is_gguf(path: Path) -> bool:
    """A GGUF file, by its magic bytes: Ollama's blobs are GGUF files named by their hash, without the suffix."""
    try:
        with path.open("rb") as file:
            return file.read(4) == b"GGUF"
    except OSError:
        return False


def _response_format(kind: str, schema: dict) -> dict:
    if kind == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def _chat_request(messages: Sequence[ChatMessage]) -> dict:
    """A /tokenize request for a chat as the model reads it, the assistant's turn opened (vLLM's fields)."""
    return {"messages": [m.model_dump() for m in messages], "add_generation_prompt": True}


def _reason(err: Exception) -> str:
    """What the operating system said (such as "Connection refused"), else the error's own words."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(err) or type(err).__name__


def short_name(model: str) -> str:
    """The name a clinician and the stored messages see: a Hugging Face id as it is ("MedAIBase/AntAngelMed-FP8"),
    a file path without its directory and `.gguf` (llama.cpp's servers name a model by the path they loaded)."""
    if model.startswith(("/", ".", "~")) or model.endswith(".gguf") or model.count("/") > 1:
        return model.rstrip("/").rsplit("/", 1)[-1].removesuffix(".gguf")
    return model


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
        return str(error.get("message") or error)[:500]
    return str(answer.get("message") or answer.get("detail") or error or answer)[:500]
