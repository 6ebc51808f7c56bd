"""The status bar: which model answers, on what hardware, and how fast the last answer came."""

from __future__ import annotations

import gradio as gr

from app.display import model_line, stats_line
from engine import EngineInfo, Stats
from app.turns import Turn


class StatusBar:
    def __init__(self, info: EngineInfo) -> None:
        with gr.Row(elem_classes="status-bar"):
            self.model = gr.Markdown(f"**Model** {model_line(info)}")
            self.last_answer = gr.Markdown(last_answer_text(None), elem_id="status-last-answer")


def last_answer_text(stats: Stats | None) -> str:
    return f"**Last answer** {stats_line(stats) if stats else '—'}"


def last_stats(turns: list[Turn]) -> Stats | None:
    """The stats of the newest answer in a session, so a reopened session shows where it left off."""
    answered = [turn.stats for turn in turns if turn.kind != "unanswered" and turn.stats is not None]
    return answered[-1] if answered else None
