"""A session as one document, in Markdown or PDF: its documents and what of each was read, then every question
and answer with the answer's evidence, labels, sources and disclaimer, so that nothing leaves Clinidoc without the
warning and the evidence it was given with.

The PDF is the Markdown laid out by fpdf2 (headings, quotes, lists, bold and italic), in DejaVu Sans, the Unicode
font matplotlib ships, so "µg", "✓" and "→" print as they read.
"""

from __future__ import annotations

import importlib.util
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from app.display import coverage_lines
from app.render import layout, markdown
from app.turns import SUMMARY_REQUEST, Turn
from prompts import disclaimer

if TYPE_CHECKING:  # the assistant makes exports, so it imports this module
    from fpdf import FPDF

    from app.assistant import SessionView

ExportFormat = Literal["markdown", "pdf"]


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
    ]
    for document in view.documents:
        lines.append(
            f"- {document.name} ({document.kind}, {document.pages:,} page{'s' * (document.pages != 1)}, "
            f"{document.tokens:,} tokens, sha256 {document.sha256[:12]}…)"
        )
        if (coverage := view.coverage.get(document.id)) is not None:
            lines += [f"  - {line}" for line in coverage_lines(coverage)]
    for turn in view.turns:
        lines += ["", *_turn(turn)]
    return "\n".join(lines) + "\n"


def session_pdf(view: SessionView, now: datetime | None = None) -> bytes:
    """The export as a PDF: the same words as the Markdown, laid out."""
    # Imported here, not with the module: every `clinidoc ask` imports this module, and only an export needs fpdf2.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(f"Clinidoc session: {view.session.title}")
    pdf.set_creator("Clinidoc")
    for style, file in (("", "DejaVuSans.ttf"), ("B", "DejaVuSans-Bold.ttf"), ("I", "DejaVuSans-Oblique.ttf"),
                        ("BI", "DejaVuSans-BoldOblique.ttf")):
        pdf.add_font("DejaVu", style, str(_fonts() / file))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    for line in session_markdown(view, now).splitlines():
        _pdf_line(pdf, line)
    return bytes(pdf.output())


def _fonts() -> Path:
    """matplotlib's folder of TrueType fonts, found without importing matplotlib (a quarter of a second)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("matplotlib, whose DejaVu fonts the PDF export uses, is not installed")
    return Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf"

_HEADING_SIZES = {"#": 16, "##": 13, "###": 11}


def _pdf_line(pdf: FPDF, line: str) -> None:
    pdf.set_x(pdf.l_margin)
    if not line.strip():
        pdf.ln(2.5)
        return
    if heading := re.match(r"(#{1,3}) (.*)", line):
        pdf.set_font("DejaVu", "B", _HEADING_SIZES[heading.group(1)])
        pdf.ln(2)
        pdf.multi_cell(0, 7, _inline(heading.group(2)), markdown=True, align="L", new_x="LMARGIN", new_y="NEXT")
        return
    indent, size, text = 0.0, 10, line
    if quote := re.match(r">\s?(.*)", line):
        indent, text = 6, quote.group(1)
    elif item := re.match(r"(\s*)(?:[-*]|\d+\.)\s+(.*)", line):
        depth = len(item.group(1)) // 2
        indent, text, size = 4 + 6 * depth, f"• {item.group(2)}", 10 - depth
    pdf.set_font("DejaVu", "", size)
    pdf.set_x(pdf.l_margin + indent)
    pdf.multi_cell(0, 5, _inline(text), markdown=True, align="L", new_x="LMARGIN", new_y="NEXT")


def _inline(text: str) -> str:
    """Markdown's inline marks as fpdf2's: **bold** stays, *italic* becomes __italic__; fpdf2's own marks in the
    text (a "--" in a note) are escaped, so they print as written."""
    text = text.replace("\\", "\\\\").replace("--", "\\-\\-").replace("__", "\\_\\_")
    return re.sub(r"(?<![*\w])\*(?!\s)([^*]+?)(?<!\s)\*(?![*\w])", r"__\1__", text)


def _turn(turn: Turn) -> list[str]:
    when = f"{turn.created_at:%Y-%m-%d %H:%M} UTC" if turn.created_at else "time not kept"
    question = SUMMARY_REQUEST if turn.kind == "summary" else turn.question
    if turn.kind == "unanswered":
        return [f"## Question ({when})", "", question, "", markdown(layout(turn))]
    heading = "Summary" if turn.kind == "summary" else "Answer"
    return [
        f"## Question ({when})", "", question, "",
        f"## {heading} ({when}, {turn.model}, prompt {turn.prompt_version})", "", markdown(layout(turn)),
    ]
