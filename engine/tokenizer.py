"""Tokenization and chat templates through `transformers`, plus streaming detokenization."""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Sequence

from platformdirs import user_cache_dir
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from engine.types import ChatMessage


class Tokenizer:
    def __init__(self, hf: PreTrainedTokenizerBase, eos_ids: Sequence[int], fallback_template: str | None = None):
        self.hf = hf
        if not hf.chat_template and fallback_template:
            hf.chat_template = fallback_template
        ids = set(eos_ids)
        if hf.eos_token_id is not None:
            ids.add(hf.eos_token_id)
        self.eos_ids = frozenset(ids)
        # Message content is encoded by a copy of the fast tokenizer that reads special-token text as plain text.
        # Passing `split_special_tokens=True` to `hf.encode` instead flips a flag on the one shared tokenizer, which
        # races when requests are tokenized on several threads at once.
        self._plain = copy.deepcopy(hf.backend_tokenizer)
        self._plain.encode_special_tokens = True

    @classmethod
    def from_directory(cls, path: Path, eos_ids: Sequence[int], fallback_template: str | None = None) -> "Tokenizer":
        return cls(AutoTokenizer.from_pretrained(path), eos_ids, fallback_template)

    @classmethod
    def from_gguf(cls, path: Path, eos_ids: Sequence[int], fallback_template: str | None = None) -> "Tokenizer":
        # Converting a GGUF vocabulary takes a while; keep the converted tokenizer beside the user's cache. The
        # generic class reads only the tokenizer's keys: AutoTokenizer would first read the file as a transformers
        # model config, which it refuses for architectures transformers does not run from GGUF (bailingmoe2).
        cache = _gguf_tokenizer_cache(path)
        if not (cache / "tokenizer_config.json").exists():
            hf = PreTrainedTokenizerFast.from_pretrained(path.parent, gguf_file=path.name)
            hf.save_pretrained(cache)
        return cls(AutoTokenizer.from_pretrained(cache), eos_ids, fallback_template)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return self.hf.apply_chat_template(
            [m.model_dump() for m in messages], tokenize=False, add_generation_prompt=True
        )

    def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The chat as the model reads it, where only the template's own text can become control tokens.

        The template is rendered around placeholders, then its pieces are encoded with special tokens parsed
        and each message's content with them split into plain text: a document that contains `<|im_start|>`
        or `<|eot_id|>` reaches the model as those characters, never as a new turn.
        """
        placeholders = [f"\x00{i}\x00" for i in range(len(messages))]
        stand_ins = [m.model_copy(update={"content": p}) for m, p in zip(messages, placeholders)]
        rendered = self.render_chat(stand_ins)
        ids: list[int] = []
        for placeholder, message in zip(placeholders, messages):
            template, found, rendered = rendered.partition(placeholder)
            if not found:
                raise ValueError("the chat template changed a message's content; it cannot be encoded safely")
            ids += self.encode(template)
            ids += self._plain.encode(message.content, add_special_tokens=False).ids
        return ids + self.encode(rendered)


def _gguf_tokenizer_cache(path: Path) -> Path:
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(os.environ.get("CLINIDOC_CACHE_DIR") or user_cache_dir("clinidoc"))
    return root / "tokenizers" / key


class StreamDecoder:
    """Turns a growing list of token ids into text pieces without splitting multi-byte characters.

    Decoding token by token breaks characters that span tokens; instead decode a short window that
    ends at the newest token and emit only what is new and complete.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset])
        after = self.tokenizer.decode(self.ids[self.prefix_offset :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before) :]
        return ""
