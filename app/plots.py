"""Results over time and the timeline drawn as SVG with matplotlib, inline in the page: no script, no asset from
anywhere, and every point a link to its source.

matplotlib rather than Gradio's LinePlot, Plotly or Altair: those draw in the browser from a JSON spec, where a
point cannot be a keyboard-reachable link to the cited line, and Plotly's and Vega's scripts are heavy for a page
that shows dozens of small plots. matplotlib's SVG keeps each point's URL (`set_urls`) as an `<a>` element, which
the page's sources script (app/ui/sources.py) follows like a `[n]` marker.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import date
from html import escape
from typing import TYPE_CHECKING

from app.trends import LANES, Event, Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Colours that keep 4.5:1 against white, as text and marks must.
INK, LINE, SECOND, RANGE = "#1f2937", "#1d4ed8", "#b45309", "#dcfce7"
LANE_COLOURS = {"Encounters": "#4b5563", "Problems": "#b91c1c", "Procedures": "#6d28d9", "Medications": "#1d4ed8"}

_LINK = re.compile(r'<a xlink:href="#source-(\d+)"[^>]*>')
# Dropped from each drawing: its metadata, its stylesheet (a `*` rule would reach the whole page) and the ids of
# its groups, which every drawing repeats ("figure_1") and a page must not.
_DROPPED = re.compile(r"\s*<metadata>.*?</metadata>|\s*<defs>\s*<style[^>]*>.*?</style>\s*</defs>|(?<=<g) id=\"[^\"]*\"",
                      re.DOTALL)


def series_svg(series: Series) -> str:
    """One test's values over time, its reference range shaded where the record gives one."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.4, 1.7), dpi=96, facecolor="white")
    axes = figure.add_subplot()
    when = [_day(point.date) for point in series.points]
    low, high = series.reference_low, series.reference_high
    if low is not None or high is not None:
        values = [point.value for point in series.points]
        axes.axhspan(low if low is not None else min(values + [high or 0]),
                     high if high is not None else max(values + [low or 0]), color=RANGE, zorder=0)
    axes.plot(when, [point.value for point in series.points], color=LINE, linewidth=1.2, zorder=2)
    marks = axes.scatter(when, [point.value for point in series.points], s=18, color=LINE, zorder=3)
    marks.set_urls([f"#source-{point.citation}" for point in series.points])
    labels = [f"{series.name}: {point.written} on {point.date}" for point in series.points]
    if all(point.second is not None for point in series.points):
        seconds = [point.second for point in series.points]
        axes.plot(when, seconds, color=SECOND, linewidth=1.2, linestyle="--", zorder=2)
        lower = axes.scatter(when, seconds, s=18, color=SECOND, marker="s", zorder=3)
        lower.set_urls([f"#source-{point.citation}" for point in series.points])
        labels += labels
    locator = AutoDateLocator(minticks=2, maxticks=5)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    _style(axes)
    return _svg(figure, labels, f"{series.name} over time", salt=f"{series.name} {series.patient}")


def timeline_svg(events: Sequence[Event]) -> str:
    """Encounters, problems, procedures and medications on one time axis, a lane each; a line where an event has
    an end (a stay, a resolved problem, a stopped medication)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 2.2), dpi=96, facecolor="white")
    axes = figure.add_subplot()
    labels: list[str] = []
    for row, lane in enumerate(LANES):
        lane_events = [event for event in events if event.lane == lane]
        if not lane_events:
            continue
        for event in lane_events:
            if event.end and event.end != event.start:
                axes.plot([_day(event.start), _day(event.end)], [row, row], color=LANE_COLOURS[lane],
                          linewidth=3, alpha=0.5, solid_capstyle="butt", zorder=2)
        marks = axes.scatter([_day(event.start) for event in lane_events], [row] * len(lane_events), s=30,
                             color=LANE_COLOURS[lane], marker="o", zorder=3)
        marks.set_urls([f"#source-{event.citation}" for event in lane_events])
        labels += [event_label(event) for event in lane_events]
    axes.set_yticks(range(len(LANES)), LANES)
    axes.set_ylim(-0.6, len(LANES) - 0.4)
    axes.invert_yaxis()
    locator = AutoDateLocator(minticks=3, maxticks=9)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    _style(axes)
    axes.grid(axis="x", color="#e5e7eb", linewidth=0.6)
    patients = sorted({event.patient or "" for event in events})
    return _svg(figure, labels, "Timeline of encounters, problems, procedures and medications", salt=str(patients))


def event_label(event: Event) -> str:
    until = f" until {event.end}" if event.end and event.end != event.start else ""
    return f"{event.lane[:-1]}: {event.name}, {event.what} {event.start}{until}"


def _style(axes: Axes) -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.tick_params(labelsize=8, colors=INK)
    for side in ("left", "bottom"):
        axes.spines[side].set_color(INK)


def _svg(figure: object, labels: list[str], title: str, salt: str) -> str:
    """The figure as an inline <svg>: text kept as text, each point's link named for a screen reader and titled
    for a mouse, with the class that the sources script follows."""
    from matplotlib import rc_context

    buffer = io.StringIO()
    # The salt keeps the ids of the page's many plots apart; no date, so the same record draws the same file.
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.family": "DejaVu Sans"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = _DROPPED.sub("", svg[svg.index("<svg"):])
    named = iter(labels)

    def link(match: re.Match[str]) -> str:
        label = escape(next(named, ""), quote=True)
        href = f"#source-{match[1]}"
        return (f'<a class="cite-link" href="{href}" xlink:href="{href}" aria-label="{label}, source {match[1]}">'
                f"<title>{label}</title>")

    svg = _LINK.sub(link, svg)
    # Sized by the page, not in points: the plot shrinks with a narrow column.
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="group"', svg, count=1)
    return svg.replace("<svg", f'<svg aria-label="{escape(title, quote=True)}"', 1)


def _day(iso: str) -> date:
    """A record's date as a day to plot: a year alone is its 1 January, a month its first day."""
    parts = [int(part) for part in iso.split("-")[:3]]
    return date(*(parts + [1, 1][: 3 - len(parts)]))
