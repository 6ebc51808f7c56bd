"""The documents panel: the upload that starts a session, then the session's documents and record size."""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

import gradio as gr

from app.assistant import FileFailure, SessionView
from app.display import record_line

FILE_TYPES = [".pdf", ".docx", ".txt", ".md"]


class DocumentsPanel:
    def __init__(self) -> None:
        self.upload = gr.File(
            label="Patient record (PDF, DOCX, TXT, MD)",
            file_count="multiple",
            file_types=FILE_TYPES,
            height=150,
        )
        self.summary = gr.HTML(elem_classes="documents-summary")

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.upload, self.summary]

    def show(self, view: SessionView | None, failures: Sequence[FileFailure] = ()) -> list[Any]:
        # The upload always starts a new session, so it is offered only while no session is open.
        return [gr.File(value=None, visible=view is None), _summary(view, failures)]


def _summary(view: SessionView | None, failures: Sequence[FileFailure]) -> str:
    parts: list[str] = []
    if failures:
        items = "".join(f"<li><b>{escape(f.name)}</b>: {escape(f.reason)}</li>" for f in failures)
        parts.append(f'<div class="upload-failed"><p>Not read:</p><ul>{items}</ul></div>')
    if view is None:
        if not failures:
            parts.append('<p class="hint">Upload one or more files of one patient\'s record to start a session.</p>')
        return "".join(parts)
    items = "".join(
        f"<li><b>{escape(d.name)}</b> <span>{d.kind.upper()} · {d.pages} page{'s' * (d.pages != 1)} · "
        f"{d.tokens:,} tokens</span></li>"
        for d in view.documents
    )
    fits = "fits" if view.record.fits else "too-long"
    parts.append(f'<ul class="document-list">{items}</ul>')
    parts.append(f'<p class="record-size {fits}">{escape(record_line(view.record))}</p>')
    return "".join(parts)
