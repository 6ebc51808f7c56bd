"""The results-over-time and timeline panel of the open record: drawn when opened, since a long record has dozens of
plots, and drawn again for each session. Every point, and every line of the timeline's list, cites its source."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from itertools import groupby
from typing import Any

import gradio as gr

from app.accounts import User
from app.assistant import Assistant
from app.plots import event_label, series_svg, timeline_svg
from app.render import references, sources_html
from app.trends import Series, Trends
from app.ui.plain_errors import plainly

HINT = '<p class="hint">Open a record to see its results over time and its timeline.</p>'
DRAWING = '<p class="hint">Drawing the record\'s results over time and its timeline…</p>'


class TrendsPanel:
    def __init__(self, assistant: Assistant, user_of: Callable[[gr.Request], User]) -> None:
        self.assistant = assistant
        self.user_of = user_of
        with gr.Accordion("Results over time and timeline", open=False, elem_id="trends-panel") as self.accordion:
            self.content = gr.HTML(HINT, elem_id="trends")

    @property
    def outputs(self) -> list[Any]:
        return [self.accordion, self.content]

    def show(self, open_: bool) -> list[Any]:
        # Closed on every change of session, so that opening it draws the record now open.
        return [gr.Accordion(open=False), DRAWING if open_ else HINT]

    def register(self, session_id: gr.State) -> None:
        self.accordion.expand(self.draw, inputs=session_id, outputs=self.content)

    @plainly("trends")
    def draw(self, session_id: int | None, request: gr.Request) -> str:
        if session_id is None:
            return HINT
        user = self.user_of(request)
        return trends_html(self.assistant.trends(user, session_id), self.assistant.pages(user, session_id))


def trends_html(trends: Trends, pages: dict[tuple[str, int], str]) -> str:
    parts: list[str] = []
    for patient, events in groupby(trends.events, key=lambda event: event.patient):
        events = list(events)
        whose = f" of {escape(patient)}" if patient else ""
        items = "".join(
            f"<li>{escape(event_label(event))}{references([event.citation])}</li>" for event in events
        )
        parts.append(
            f'<section class="timeline"><h3>Timeline{whose}</h3>{timeline_svg(events)}'
            f"<details><summary>The timeline as a list ({len(events)})</summary><ol>{items}</ol></details></section>"
        )
    if trends.series:
        figures = "".join(_figure(series) for series in trends.series)
        parts.append(
            f'<section class="results-over-time"><h3>Results over time</h3><p class="hint">Each test with two or more '
            f'dated values, most recently measured first; the shaded band is its reference range where the record '
            f'gives one. Follow a point to its source.</p><div class="plots">{figures}</div></section>'
        )
    if not parts:
        return '<p class="hint">The record holds no dated results, encounters, problems, procedures or medications.</p>'
    return "".join(parts) + sources_html(trends.citations, pages, shown=False)


def _figure(series: Series) -> str:
    latest = series.points[-1]
    unit = f" ({escape(series.unit)})" if series.unit else ""
    whose = f" — {escape(series.patient)}" if series.patient else ""
    reference = ""
    if series.reference_low is not None or series.reference_high is not None:
        low = "" if series.reference_low is None else f"{series.reference_low:g}"
        high = "" if series.reference_high is None else f"{series.reference_high:g}"
        reference = f"; reference {low}–{high}"
    return (
        f"<figure>{series_svg(series)}<figcaption><b>{escape(series.name)}</b>{unit}{whose}: latest "
        f"{escape(latest.written)} on {latest.date}{reference}, {len(series.points)} values"
        f"{references([latest.citation])}</figcaption></figure>"
    )
