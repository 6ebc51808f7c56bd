"""The check panel: a text written elsewhere (a draft discharge summary, another system's summary, a colleague's
note) checked sentence by sentence against the open session's record, without the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.accounts import User
from app.assistant import Assistant
from app.render import Checked, Note, Omitted, Sources, html, tally
from app.ui.plain_errors import plainly

HINT = (
    '<p class="hint">Paste a text to see which of its statements the record supports, contradicts or does not '
    "hold, and which of the record's facts it leaves out.</p>"
)


class CheckPanel:
    def __init__(self, assistant: Assistant, user_of: Callable[[gr.Request], User]) -> None:
        self.assistant = assistant
        self.user_of = user_of
        with gr.Accordion("Check a text against the record", open=False, elem_id="check-panel") as self.accordion:
            self.text = gr.Textbox(
                label="Text to check", lines=4, max_lines=20, placeholder="One statement or a whole draft",
                interactive=False, elem_id="check-text",
            )
            self.button = gr.Button("Check against the record", size="sm", interactive=False)
            self.result = gr.HTML(HINT, elem_id="check-result")

    @property
    def outputs(self) -> list[Any]:
        return [self.text, self.button, self.result]

    def show(self, open_: bool) -> list[Any]:
        return [gr.Textbox(value="", interactive=open_), gr.Button(interactive=open_), HINT]

    def register(self, session_id: gr.State) -> None:
        self.button.click(self.check, inputs=[session_id, self.text], outputs=self.result)

    @plainly("check")
    def check(self, session_id: int | None, text: str, request: gr.Request) -> str:
        user = self.user_of(request)
        if session_id is None or not text.strip():
            return HINT
        reviewed = self.assistant.check(user, session_id, text)
        checked = reviewed.checked
        blocks = [Checked(text, checked), Note(tally(checked)), Omitted(reviewed.omissions), Sources(checked.citations)]
        return f'<div class="checked-text">{html(blocks, self.assistant.pages(user, session_id))}</div>'
