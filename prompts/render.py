"""Render the template files in prompts/templates/ into chat messages.

A template file starts with a `version:` line, then a blank line, then its text. A chat template
splits its text into messages with section lines: `[system]`, `[user]` and `[assistant]` hold
`string.Template` text; an empty `[history]` section marks where earlier turns go.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from string import Template
from typing import Literal, Sequence

from pydantic import BaseModel

TEMPLATES_DIR = Path(__file__).parent / "templates"

_SECTION = re.compile(r"^\[(system|user|assistant|history)\]$", re.MULTILINE)
_RECORD_TAG = re.compile(r"</?\s*record\s*>", re.IGNORECASE)


class PromptMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class RenderedPrompt(BaseModel):
    messages: list[PromptMessage]
    version: str


class _TemplateFile(BaseModel):
    version: str
    text: str


@cache
def _read(name: str) -> _TemplateFile:
    path = TEMPLATES_DIR / f"{name}.txt"
    header, _, text = path.read_text(encoding="utf-8").partition("\n")
    key, _, version = header.partition(":")
    if key.strip() != "version" or not version.strip():
        raise ValueError(f"{path} must start with a 'version: <name>' line")
    return _TemplateFile(version=version.strip(), text=text.strip())


def _neutralize(text: str) -> str:
    """Keep text as data once it is inside a prompt.

    Breaking `<|` defuses chat-template control tokens (`<|im_start|>`, `<|eot_id|>`, ...), and
    escaping the record tags stops a document from closing the record early, so nothing a
    document or a question contains can open a new turn or pose as instructions.
    """
    text = text.replace("<|", "< |")
    return _RECORD_TAG.sub(lambda tag: tag.group(0).replace("<", "&lt;").replace(">", "&gt;"), text)


def render(name: str, *, history: Sequence[PromptMessage] = (), **values: str) -> RenderedPrompt:
    """Fill the chat template `name` with `values`; `history` fills its `[history]` section.

    Every value and every history turn goes through `_neutralize` first. A missing value raises KeyError.
    """
    template = _read(name)
    parts = _SECTION.split(template.text)
    if parts[0].strip():
        raise ValueError(f"template {name!r} has text before its first section")
    safe_values = {key: _neutralize(value) for key, value in values.items()}
    messages: list[PromptMessage] = []
    for role, body in zip(parts[1::2], parts[2::2]):
        if role == "history":
            messages.extend(
                PromptMessage(role=turn.role, content=_neutralize(turn.content)) for turn in history
            )
        else:
            # An empty value at a message's edge (no evidence before the question) leaves no blank line behind.
            content = Template(body.strip()).substitute(safe_values).strip()
            messages.append(PromptMessage(role=role, content=content))
    return RenderedPrompt(messages=messages, version=template.version)


def disclaimer() -> str:
    """The safety text shown under every answer and stored with it."""
    return _read("disclaimer").text
