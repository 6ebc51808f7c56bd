"""The documents panel: the upload that starts a session or adds to the open one, its progress and cancel, a
password for an encrypted PDF, then the session's documents, what of each was read, the record size, and taking a
document out of the record."""

from __future__ import annotations

from html import escape
from typing import Any, Sequence

import gradio as gr

from app.assistant import FileFailure, SessionView, Upload
from app.display import coverage_lines, record_line
from documents import Coverage
from storage import DocumentInfo

# An encrypted PDF of the last upload, waiting for its password: [path on this machine, name the user gave it].
LockedFile = list[str]


NEW_RECORD = "Patient record (PDF, DOCX, TXT, MD, FHIR JSON, C-CDA XML)"
MORE_OF_THE_RECORD = "Add documents to this patient's record"


class DocumentsPanel:
    def __init__(self) -> None:
        # No `file_types`: Gradio would refuse other files in the browser with a toast that outlives the next
        # upload. Every file reaches the reader, which says in this panel, once, what it could not read and why.
        self.upload = gr.File(label=NEW_RECORD, file_count="multiple", height=150)
        # Shown only while an upload is being read: the progress has a place of its own, over no other text.
        self.reading = gr.HTML("", visible=False, elem_classes="reading-progress", elem_id="reading-progress")
        self.cancel_button = gr.Button("Cancel reading", variant="stop", size="sm", visible=False)
        with gr.Column(visible=False, elem_classes="unlock") as self.unlock:
            self.password = gr.Textbox(type="password", max_lines=1, elem_id="pdf-password")
            self.unlock_button = gr.Button("Open with this password", size="sm")
        self.summary = gr.HTML(_summary(None, None), elem_classes="documents-summary")
        # Offered when the record has more than one document: the last one goes with the session.
        with gr.Row(visible=False, elem_classes="remove-document") as self.remove:
            self.remove_choice = gr.Dropdown(label="Take a document out of this record", choices=[], scale=3)
            self.remove_button = gr.Button("Remove", variant="stop", size="sm", scale=1, min_width=80)
        self.locked = gr.State([])

    @property
    def outputs(self) -> list[Any]:
        return [self.upload, self.unlock, self.password, self.summary, self.remove, self.remove_choice, self.locked]

    def show(
        self, view: SessionView | None, upload: Upload | None = None, locked: Sequence[LockedFile] = ()
    ) -> list[Any]:
        # Without a session an upload starts one; with one open, it adds to that patient's record.
        waiting = f"Password for {locked[0][1]}" if locked else "Password"
        documents = [] if view is None else view.documents
        return [
            gr.File(value=None, label=NEW_RECORD if view is None else MORE_OF_THE_RECORD),
            gr.Column(visible=bool(locked)),
            gr.Textbox(value="", label=waiting),
            _summary(view, upload),
            gr.Row(visible=len(documents) > 1),
            gr.Dropdown(choices=[(d.name, d.id) for d in documents], value=None),
            [list(file) for file in locked],
        ]


def _summary(view: SessionView | None, upload: Upload | None) -> str:
    parts: list[str] = []
    if upload is not None and upload.cancelled:
        parts.append('<p class="upload-failed">Reading was cancelled; nothing of that upload was kept.</p>')
    if upload is not None and upload.failures:
        parts.append(_failures(upload.failures))
    if view is None:
        if not parts:
            parts.append('<p class="hint">Upload one or more files of one patient\'s record to start a session.</p>')
        return "".join(parts)
    parts += [f'<p class="patient-warning"><b>Warning:</b> {escape(warning)}</p>' for warning in view.warnings]
    # A file whose content is not what its name says is said at once, not only under "What was read".
    parts += [f'<p class="format-note"><b>{escape(info.name)}</b>: {escape(coverage.format_note)}.</p>'
              for info in view.documents if (coverage := view.coverage.get(info.id)) and coverage.format_note]
    items = "".join(_document(d, view.coverage.get(d.id)) for d in view.documents)
    fits = "fits" if view.record.fits else "too-long"
    parts.append(f'<ul class="document-list">{items}</ul>')
    parts.append(f'<p class="record-size {fits}">{escape(record_line(view.record))}</p>')
    return "".join(parts)


def _failures(failures: Sequence[FileFailure]) -> str:
    items = "".join(
        f"<li><b>{escape(f.name)}</b>: {escape(f.reason)}"
        + (" — enter its password below to read it." if f.needs_password else "")
        + "</li>"
        for f in failures
    )
    # A refusal the clinician can act on: a password typed below, or another copy of the file.
    others = [f for f in failures if f.refused and not f.needs_password]
    next_step = (
        '<p class="hint">Nothing of these files was kept. Check that each is the patient\'s record as exported '
        "(PDF, Word, text, FHIR JSON or C-CDA XML) and upload it again, or ask for another copy.</p>"
        if others else ""
    )
    return f'<div class="upload-failed"><p>Not read:</p><ul>{items}</ul>{next_step}</div>'


def _document(info: DocumentInfo, coverage: Coverage | None) -> str:
    head = (
        f"<b>{escape(info.name)}</b> <span>{info.kind.upper()} · {info.pages} page{'s' * (info.pages != 1)} · "
        f"{info.tokens:,} tokens</span>"
    )
    if coverage is None:
        return f"<li>{head}</li>"
    # Collapsed, so a session of many files still fits the panel; open it to see what was not read and why.
    lines = "".join(f"<li>{escape(line)}</li>" for line in coverage_lines(coverage))
    return f'<li>{head}<details class="coverage"><summary>What was read</summary><ul>{lines}</ul></details></li>'
