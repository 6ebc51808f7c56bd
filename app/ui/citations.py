"""Answers and summaries as the chat shows them: each statement with its numbered sources or marked as not
supported by the record, and the sources listed under it with the page and the words that support it."""

from __future__ import annotations

from html import escape
from typing import Mapping, Sequence

from app.grounding import Citation, GroundedAnswer, SentenceSupport
from app.summary import ChartSummary, SummaryItem, unsupported_label

NOT_SUPPORTED = "not supported by the record"
# A source opens on its page around the cited words: this many characters either side, widened to whole lines. A
# FHIR or C-CDA record is one long page, where the whole page would bury the words.
PAGE_CONTEXT = 1200

# Page texts by (document name, page number), as `SessionView.page_texts` gives them.
Pages = Mapping[tuple[str, int], str]


def answer_html(text: str, grounding: GroundedAnswer, pages: Pages) -> str:
    """`text` with its sentences marked: the sentences' offsets point into it, and what follows the last one
    (the notes on what the model did not read) is shown as it is."""
    return grounding.marked(text, _sentence, escape) + _sources(grounding.citations, pages)


def summary_html(summary: ChartSummary, pages: Pages) -> str:
    parts = [f'<p class="warning"><b>Warning:</b> {escape(warning)}</p>' for warning in summary.warnings]
    if summary.patient:
        parts.append(_list("Patient", summary.patient))
    for section in summary.sections:
        if section.items:
            more = f"<li class=\"more\">… and {section.more:,} earlier, in the record</li>" if section.more else ""
            parts.append(_list(section.title, section.items, more))
    if summary.narrative:
        narrative = " ".join(_sentence(sentence) for sentence in summary.narrative)
        parts.append(f"<h4>Narrative</h4><p>{narrative}</p>")
    parts += [f'<p class="note">{escape(note)}</p>' for note in summary.notes]
    return '<div class="summary">' + "".join(parts) + "</div>" + _sources(summary.citations, pages)


def _list(title: str, items: Sequence[SummaryItem], more: str = "") -> str:
    return f"<h4>{escape(title)}</h4><ul>" + "".join(_item(item) for item in items) + more + "</ul>"


def _item(item: SummaryItem) -> str:
    origin = "read from a structured entry" if item.origin == "record" else "drafted by the model"
    if item.citation is not None:
        return f'<li title="{origin}">{escape(item.text)} {_reference(item.citation)}</li>'
    return (
        f'<li class="unsupported" title="{origin}">{escape(item.text)} '
        f'<span class="support-label">{escape(unsupported_label(item))}</span>'
        f'<span class="quote">quoted: “{escape(item.quote or "")}”</span></li>'
    )


def _sentence(sentence: SentenceSupport) -> str:
    text = escape(sentence.text)
    if sentence.label == "supported":
        return text + "".join(_reference(number) for number in sentence.citations)
    if sentence.label == "not_supported":
        return f'<span class="unsupported">{text} <span class="support-label">{NOT_SUPPORTED}</span></span>'
    return text


def _reference(number: int) -> str:
    return f'<sup class="cite">[{number}]</sup>'


def _sources(citations: Sequence[Citation], pages: Pages) -> str:
    if not citations:
        return ""
    items = "".join(_source(citation, pages) for citation in citations)
    return f'<details class="sources" open><summary>Sources ({len(citations)})</summary><ol>{items}</ol></details>'


def _source(citation: Citation, pages: Pages) -> str:
    """The source's document, page and words; opened, its page around them with the words highlighted."""
    where = (f'<span class="where">{escape(citation.document)}, page {citation.page}</span> '
             f"<mark>{escape(citation.quote.strip())}</mark>")
    text = pages.get((citation.document, citation.page))
    if text is None:  # no document of the session by that name: the words alone
        return f'<li value="{citation.number}">{where}</li>'
    return f'<li value="{citation.number}"><details><summary>{where}</summary>{_page(citation, text)}</details></li>'


def _page(citation: Citation, text: str) -> str:
    first = text.rfind("\n", 0, max(0, citation.start - PAGE_CONTEXT)) + 1
    last = text.find("\n", min(len(text), citation.end + PAGE_CONTEXT))
    last = len(text) if last < 0 else last
    before = "…\n" if first > 0 else ""
    after = "\n…" if last < len(text) else ""
    return (
        f'<div class="page" title="page {citation.page} of {escape(citation.document)}">{before}'
        f"{escape(text[first : citation.start])}<mark>{escape(text[citation.start : citation.end])}</mark>"
        f"{escape(text[citation.end : last])}{after}</div>"
    )
