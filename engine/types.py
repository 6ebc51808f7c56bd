"""The engine's public vocabulary: what callers pass in and what they get back."""

from __future__ import annotations

from typing import Iterator, Literal, Protocol, Sequence, Union

from pydantic import BaseModel, Field


class EngineError(Exception):
    """A failure of the model, in words for the operator who runs it: what went wrong and where to look. The app
    tells a clinician what it means for them by the error's kind."""


class ModelUnreachable(EngineError):
    """The model server could not be reached: it is down, or its address is wrong."""


class ModelTimedOut(EngineError):
    """Nothing came from the model server within its time limit: it is overloaded or hung."""


class ModelBrokeOff(EngineError):
    """The model server stopped in the middle of an answer: it failed, restarted or gave up on the request."""


class PromptTooLong(EngineError):
    def __init__(self, prompt_tokens: int, max_new_tokens: int, context_window: int):
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.context_window = context_window
        super().__init__(
            f"The prompt has {prompt_tokens} tokens and {max_new_tokens} are reserved for the answer, "
            f"but the model's context window is {context_window} tokens."
        )


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationParams(BaseModel):
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)  # 0 means greedy
    top_k: int = Field(0, ge=0)  # 0 means no top-k filter
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    stop_token_ids: list[int] = Field(default_factory=list)
    ignore_eos: bool = False  # benchmarks need a fixed number of tokens
    # Speculative decoding with prompt lookup: up to this many tokens copied from the prompt or the answer so far
    # are checked in one forward pass. Lossless (greedy output is unchanged); 0 turns it off.
    draft_tokens: int = Field(8, ge=0)
    # The answer must be one JSON value following this JSON schema: tokens that would break it are never chosen.
    json_schema: dict | None = None


class TextDelta(BaseModel):
    kind: Literal["text"] = "text"
    text: str


class Stats(BaseModel):
    kind: Literal["stats"] = "stats"
    prompt_tokens: int
    cached_tokens: int = 0
    generated_tokens: int
    ttft_s: float
    decode_tok_s: float
    finish_reason: Literal["stop", "length"]
    drafted: int = 0
    accepted: int = 0


Event = Union[TextDelta, Stats]


class EngineInfo(BaseModel):
    model_name: str
    architecture: str
    precision: str
    device: str
    context_window: int


Prompt = Union[Sequence[ChatMessage], Sequence[int]]


class Engine(Protocol):
    """What the app needs of any backend: the embedded engine or a remote server."""

    info: EngineInfo

    @property
    def context_window(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int: ...

    def generate(self, prompt: Prompt, params: GenerationParams) -> Iterator[Event]: ...

    def forget(self) -> None:
        """Drops what earlier requests left in memory (their prefix cache), so that a deleted record's keys and
        values are not kept."""
