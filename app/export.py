"""A session as one Markdown document: its documents, then every question and answer with the answer's sources and
its disclaimer, so that nothing leaves Clinidoc without the warning and the evidence it was given with."""

from __future__ import annotations

from datetime import UTC, datetime

from app.assistant import SessionView
from app.grounding import GroundedAnswer
from app.summary import ChartSummary, citation_line, sentence_text, summary_text
from prompts import disclaimer
from storage import MessageInfo


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
    for message in view.messages:
        lines += ["", *_message(message)]
    return "\n".join(lines) + "\n"


def _message(message: MessageInfo) -> list[str]:
    when = f"{message.created_at:%Y-%m-%d %H:%M} UTC"
    if message.role == "user":
        return [f"## Question ({when})", "", message.text]
    heading = "Summary" if message.kind == "summary" else "Answer"
    lines = [f"## {heading} ({when}, {message.model}, prompt {message.prompt_version})", "", _body(message)]
    return lines + ["", f"*{message.disclaimer}*"]


def _body(message: MessageInfo) -> str:
    if message.grounding is None:
        return message.text
    if message.kind == "summary":
        return summary_text(ChartSummary.model_validate({**message.grounding, "citations": message.citations}))
    grounding = GroundedAnswer.model_validate({**message.grounding, "citations": message.citations})
    sources = "\n".join(citation_line(citation) for citation in grounding.citations)
    return grounding.marked(message.text, sentence_text).strip() + (f"\n\nSources:\n{sources}" if sources else "")
