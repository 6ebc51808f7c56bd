"""A session as one Markdown document: its documents, then every question and answer with the answer's evidence,
labels, sources and disclaimer, so that nothing leaves Clinidoc without the warning and the evidence it was given
with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.render import layout, markdown
from app.turns import SUMMARY_REQUEST, Turn
from prompts import disclaimer

if TYPE_CHECKING:  # the assistant makes exports, so it imports this module
    from app.assistant import SessionView


def session_markdown(view: SessionView, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    lines = [
        f"# Clinidoc session: {view.session.title}",
        "",
        f"Exported {now:%Y-%m-%d %H:%M} UTC by {view.session.user}. Session started "
        f"{view.session.created_at:%Y-%m-%d %H:%M} UTC.",
        "",
        f"> {disclaimer()}",
        *(f"> **Warning:** {warning}" for warning in view.warnings),
        "",
        "## Documents",
        *(
            f"- {document.name} ({document.kind}, {document.pages:,} page{'s' * (document.pages != 1)}, "
            f"{document.tokens:,} tokens, "
            f"sha256 {document.sha256[:12]}…)"
            for document in view.documents
        ),
    ]
    for turn in view.turns:
        lines += ["", *_turn(turn)]
    return "\n".join(lines) + "\n"


def _turn(turn: Turn) -> list[str]:
    when = f"{turn.created_at:%Y-%m-%d %H:%M} UTC" if turn.created_at else "time not kept"
    question = turn.question if turn.kind == "answer" else SUMMARY_REQUEST
    heading = "Summary" if turn.kind == "summary" else "Answer"
    return [
        f"## Question ({when})", "", question, "",
        f"## {heading} ({when}, {turn.model}, prompt {turn.prompt_version})", "", markdown(layout(turn)),
    ]
