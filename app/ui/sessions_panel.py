"""The sessions panel: start a new patient session, or reopen or delete an earlier one."""

from __future__ import annotations

from typing import Any

import gradio as gr

from storage import SessionInfo


class SessionsPanel:
    def __init__(self) -> None:
        self.new_button = gr.Button("New session", variant="primary", size="md")
        self.sessions = gr.Radio(
            label="Earlier sessions",
            info="Select one to reopen it and carry on the conversation.",
            choices=[],
            elem_classes="session-list",
        )
        # A link, not a file in Gradio's cache: /export/<id> makes the export when it is asked for, for the
        # session's owner only.
        self.export_link = gr.HTML(self.export(None))
        self.delete_button = gr.Button("Delete this session", variant="stop", size="sm", interactive=False)
        # Deleting is for good, so it takes a second, deliberate click.
        with gr.Column(visible=False, elem_classes="confirm-delete") as self.confirm:
            gr.Markdown("Delete this session with its documents and conversation? This cannot be undone.")
            with gr.Row():
                self.keep_button = gr.Button("Keep it", size="sm", min_width=90)
                self.confirm_button = gr.Button("Delete for good", variant="stop", size="sm", min_width=90)
        self.delete_button.click(lambda: gr.Column(visible=True), outputs=self.confirm, queue=False)
        self.keep_button.click(lambda: gr.Column(visible=False), outputs=self.confirm, queue=False)

    @property
    def outputs(self) -> list[gr.components.Component | gr.blocks.BlockContext]:
        return [self.sessions, self.delete_button, self.confirm]

    def show(self, sessions: list[SessionInfo], current: int | None) -> list[Any]:
        choices = [(_label(session), session.id) for session in sessions]
        return [
            gr.Radio(choices=choices, value=current),
            gr.Button(interactive=current is not None),
            gr.Column(visible=False),
        ]


    @staticmethod
    def export(current: int | None) -> str:
        forms = (("markdown", "Export this session (Markdown)"), ("pdf", "Export this session (PDF)"))
        if current is None:
            return "".join(f'<span class="export-link disabled" aria-disabled="true">{label}</span>'
                           for _, label in forms)
        return "".join(f'<a class="export-link" href="/export/{current}?form={form}" download>{label}</a>'
                       for form, label in forms)


def _label(session: SessionInfo) -> str:
    return f"{session.title} · {session.updated_at.astimezone():%d %b %Y %H:%M}"
