"""The chat panel: questions about the open record and its structured summary, answers streamed, each with its
sources and the disclaimer under it."""

from __future__ import annotations

from html import escape
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from app.accounts import User
from app.assistant import (
    Answer,
    AnswerDelta,
    Assistant,
    EvidenceFound,
    Notice,
    SessionView,
    Summary,
    SummaryProgress,
)
from app.render import Pages, evidence_html, turn_html
from app.turns import SUMMARY_REQUEST, Turn
from app.ui.plain_errors import plainly
from app.ui.status_bar import last_answer_text
from app.waiting import Waiting
from prompts import disclaimer

ChatHistory = list[dict[str, str]]

ASK, STOP = "Ask", "Stop"
# What to do next, said in the empty chat: before a record is open, and once it is read.
FIRST_STEP = "Upload a patient's record on the right, or reopen a session on the left, then ask about it here."
NEXT_STEP = ("The record is read. Press “Summarise the record” below for a summary with its sources, or ask a "
             "question about it. Documents added on the right join this record.")


class ChatPanel:
    def __init__(self, assistant: Assistant, user_of: Callable[[gr.Request], User]) -> None:
        self.assistant = assistant
        self.user_of = user_of
        self.chatbot = gr.Chatbot(
            show_label=False,
            height="62vh",
            placeholder=FIRST_STEP,
            buttons=["copy"],
            feedback_options=None,
            elem_id="chat",
        )
        self.question = gr.Textbox(
            label="Question about this record",  # for screen readers: the label itself is not shown
            placeholder="Ask a question about this record",
            show_label=False,
            lines=1,
            max_lines=6,
            submit_btn=ASK,
            interactive=False,
        )
        self.summarize_button = gr.Button("Summarise the record", size="sm", interactive=False)

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.chatbot, self.question, self.summarize_button]

    def show(self, view: SessionView | None) -> list[Any]:
        history = [] if view is None else [bubble for turn in view.turns for bubble in _bubbles(turn, view.pages)]
        open_ = view is not None
        return [
            gr.Chatbot(value=history, placeholder=NEXT_STEP if open_ else FIRST_STEP),
            gr.Textbox(value="", interactive=open_),
            gr.Button(interactive=open_),
        ]

    def register(
        self, session_id: gr.State, last_answer: gr.Markdown, concurrency: int
    ) -> list[gr.events.Dependency]:
        """Wire the question box and the summary button; returns their events, which add to the session, so the
        page can chain on them."""
        asking = self.question.submit(
            self.ask,
            inputs=[session_id, self.question, self.chatbot],
            outputs=[self.chatbot, self.question, last_answer],
            # One model in memory, whose scheduler decodes up to `concurrency` answers together (all browser tabs).
            concurrency_id="engine",
            concurrency_limit=concurrency,
            show_progress="minimal",
        )
        # Stopping closes the stream: the question's turn ends "stopped", its unchecked words not stored.
        self.question.stop(None, cancels=[asking])
        summarizing = self.summarize_button.click(
            self.summarize,
            inputs=[session_id, self.chatbot],
            outputs=[self.chatbot, last_answer],
            concurrency_id="engine",
            concurrency_limit=concurrency,
            show_progress="minimal",
        )
        # Runs whether the answer finished or was stopped.
        asked = asking.then(lambda: gr.Textbox(submit_btn=ASK, stop_btn=False), outputs=self.question, queue=False)
        return [asked, summarizing]

    @plainly("question")
    def ask(
        self, session_id: int | None, question: str, history: ChatHistory, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        user = self.user_of(request)
        question = question.strip()
        if session_id is None or not question:
            return
        history = [*history, {"role": "user", "content": question}]
        # Stop takes the place of Ask while the answer streams; until its first words arrive, the chat
        # shows that it is waiting.
        yield history, gr.Textbox(value="", submit_btn=False, stop_btn=STOP), gr.skip()
        answer, evidence = "", ""
        pages = self.assistant.pages(user, session_id)
        for event in self.assistant.ask(user, session_id, question):
            if isinstance(event, EvidenceFound):
                # The record's own lines come first, while the model is still reading.
                evidence = evidence_html(event.turn, pages)
                yield [*history, _assistant(evidence)], gr.skip(), gr.skip()
            elif isinstance(event, AnswerDelta):
                answer += event.text
                yield [*history, _assistant(_writing(evidence, answer))], gr.skip(), gr.skip()
            elif isinstance(event, Waiting):
                yield [*history, _assistant(_writing(evidence, answer, event.text))], gr.skip(), gr.skip()
            elif isinstance(event, Answer):
                done = _assistant(turn_html(event.turn, pages))
                yield [*history, done], gr.skip(), last_answer_text(event.turn.stats)
            elif isinstance(event, Notice):
                notice = f'<p class="notice"><b>Not answered.</b> {escape(event.text)}</p>'
                yield [*history, _assistant(notice)], gr.skip(), gr.skip()


    @plainly("summary")
    def summarize(
        self, session_id: int | None, history: ChatHistory, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        user = self.user_of(request)
        if session_id is None:
            return
        history = [*history, {"role": "user", "content": SUMMARY_REQUEST}]
        for event in self.assistant.summarize(user, session_id):
            if isinstance(event, SummaryProgress | Waiting):
                so_far = event.text if isinstance(event, Waiting) else f"{event.tokens:,} tokens so far…"
                drafting = f'<p class="hint drafting">Drafting the summary: {escape(so_far)}</p>'
                yield [*history, _assistant(drafting)], gr.skip()
            elif isinstance(event, Summary):
                done = _assistant(turn_html(event.turn, self.assistant.pages(user, session_id)))
                yield [*history, done], last_answer_text(event.turn.stats)
            elif isinstance(event, Notice):
                notice = f'<p class="notice"><b>Not summarised.</b> {escape(event.text)}</p>'
                yield [*history, _assistant(notice)], gr.skip()


def _bubbles(turn: Turn, pages: Pages) -> list[dict[str, str]]:
    question = SUMMARY_REQUEST if turn.kind == "summary" else turn.question
    return [{"role": "user", "content": question}, _assistant(turn_html(turn, pages))]


def _writing(evidence: str, answer: str, waiting: str | None = None) -> str:
    """The answer while the model writes it, or while it is waited for: not yet checked, and never shown without
    the disclaimer."""
    state = (
        escape(waiting) if waiting is not None
        else "the model is writing; each sentence is checked against the record when it ends."
    )
    return (
        f'{evidence}<div class="answer streaming">{escape(answer)}</div>'
        f'<p class="hint app-note">Clinidoc: {state}</p><p class="disclaimer">{escape(disclaimer())}</p>'
    )


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}
