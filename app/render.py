"""One layout for answers and summaries, written as Markdown (exports, the terminal) and as HTML (the chat).

The layout says what a clinician sees, in order: for an answer, the evidence found in the record before the model
wrote, the model's words with every sentence labelled (supported, with its sources; contradicted, with what the
record states instead; or not found), the app's own notes, the sources, the disclaimer. For a summary: a warning
when the documents may be about different patients, each patient's part, the narrative, the count of the model's
suggestions that the record did not bear out, the sources, the disclaimer. The two writers only spell it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Literal

from app.citations import Citation
from app.claims import CheckedSentence, CheckedText, Label
from app.omissions import Omission
from app.summary import ChartSummary, SummaryItem
from app.turns import AnswerTurn, SummaryTurn, Turn, UnansweredTurn
from app.words import fold_spaces

# Page texts by (document name, page number): what a source opens on.
Pages = Mapping[tuple[str, int], str]

# A source opens on its page around the cited words: this many characters after them and a few lines before,
# widened to whole lines. A FHIR or C-CDA record is one long page, where the whole page would bury the words; and
# the view is a short box, so the words stand near its top, where it opens.
PAGE_CONTEXT = 1200
PAGE_CONTEXT_BEFORE = 300

LABEL_WORDS: dict[Label, str] = {
    "supported": "supported by the record",
    "contradicted": "contradicted by the record",
    "not_found": "not found in the record",
}


# --- The layout ------------------------------------------------------------------------------------------------


@dataclass
class Heading:
    text: str


@dataclass
class Evidence:
    """The record's lines found for the question, each a citation; or, when none was found, what was searched."""

    citations: list[Citation]
    searched: str | None = None


@dataclass
class Checked:
    """Text whose sentences are labelled: an answer, or a summary's narrative."""

    text: str
    checked: CheckedText


@dataclass
class Items:
    title: str
    items: list[SummaryItem]
    hidden: list[SummaryItem] = field(default_factory=list)  # the rest of the section, behind "show all"
    more: int = 0  # how many are not shown first (a summary stored before `hidden` says only how many)


@dataclass
class Omitted:
    """What a checked text leaves out of the record, most weighty first."""

    omissions: list[Omission]


@dataclass
class Note:
    text: str
    tone: Literal["note", "warning"] = "note"


@dataclass
class Unverified:
    """The model's suggestions that the record did not bear out: one collapsed line, never items."""

    items: list[SummaryItem]


@dataclass
class Sources:
    citations: list[Citation]


@dataclass
class Disclaimer:
    text: str


Block = Heading | Evidence | Checked | Items | Omitted | Note | Unverified | Sources | Disclaimer


def layout(turn: Turn) -> list[Block]:
    if isinstance(turn, UnansweredTurn):
        return [Note(unanswered_text(turn), "warning")]
    return answer_layout(turn) if isinstance(turn, AnswerTurn) else summary_layout(turn)


# What the conversation says in place of an answer that never came, by how its turn ended.
_UNANSWERED = {
    "answering": "Being answered.",
    "stopped": "Stopped before the answer was complete: not answered.",
    "interrupted": "Interrupted — not answered: Clinidoc stopped while the model was writing. Ask again.",
    "failed": "Not answered.",
}


def unanswered_text(turn: UnansweredTurn) -> str:
    text = _UNANSWERED.get(turn.state, "Not answered.")
    return f"{text} {turn.reason}" if turn.reason else text


def answer_layout(turn: AnswerTurn) -> list[Block]:
    blocks: list[Block] = []
    if turn.evidence is not None:
        blocks.append(evidence_block(turn))
    if turn.text:
        blocks += [Checked(turn.text, turn.checked), Note(tally(turn.checked))]
    blocks += [Note(note) for note in turn.notes]
    return blocks + [Sources(turn.checked.citations), Disclaimer(turn.disclaimer)]


def evidence_block(turn: AnswerTurn) -> Evidence:
    by_number = {citation.number: citation for citation in turn.checked.citations}
    citations = [by_number[number] for number in turn.evidence_citations if number in by_number]
    searched = None
    if not citations and turn.evidence is not None:
        searched = ", ".join(turn.evidence.terms) or "the words of the question"
    return Evidence(citations, searched)


# How the tally names each label's count: "2 supported, 1 not found".
_TALLY_WORDS: dict[Label, str] = {"supported": "supported", "contradicted": "contradicted", "not_found": "not found"}


def tally(checked: CheckedText) -> str:
    labels = checked.labels()
    parts = [f"{labels.count(label)} {words}" for label, words in _TALLY_WORDS.items() if label in labels]
    return "Each sentence checked against the record: " + (", ".join(parts) or "no statements") + "."


def summary_layout(turn: SummaryTurn) -> list[Block]:
    summary: ChartSummary = turn.summary
    blocks: list[Block] = [Note(warning, "warning") for warning in summary.warnings]
    for patient in summary.patients:
        if len(summary.patients) > 1:
            blocks.append(Heading(f"{patient.label} ({', '.join(patient.documents)})"))
        if patient.identity:
            blocks.append(Items("Patient", patient.identity))
        blocks += [
            Items(section.title, section.items, section.hidden, section.more)
            for section in patient.sections
            if section.items
        ]
    if summary.narrative:
        text = " ".join(sentence.text for sentence in summary.narrative)
        blocks.append(Heading("Narrative"))
        blocks.append(Checked(text, _rebased(summary.narrative, summary.citations)))
    if summary.unverified:
        blocks.append(Unverified(summary.unverified))
    blocks += [Note(note) for note in summary.notes]
    return blocks + [Sources(summary.citations), Disclaimer(turn.disclaimer)]


def _rebased(sentences: Sequence[CheckedSentence], citations: list[Citation]) -> CheckedText:
    """The narrative's sentences with offsets into their joined text (each followed by one space)."""
    rebased, position = [], 0
    for sentence in sentences:
        rebased.append(sentence.model_copy(update={"start": position, "end": position + len(sentence.text)}))
        position += len(sentence.text) + 1
    return CheckedText(sentences=rebased, citations=citations)


def show_all_line(shown: int, more: int) -> str:
    return f"Show all {shown + more:,} ({more:,} more, older, in the record)"


def omitted_line(omissions: Sequence[Omission]) -> str:
    if not omissions:
        return "The text mentions every allergy, medication, problem, recent result and follow-up of the record."
    return f"The text leaves out {len(omissions):,} of the record's facts, most weighty first:"


def unverified_line(items: Sequence[SummaryItem]) -> str:
    count = len(items)
    return (
        f"{count} item{'s' * (count != 1)} the model suggested could not be verified in the record and "
        f"{'are' if count != 1 else 'is'} not listed."
    )


# --- Markdown --------------------------------------------------------------------------------------------------


def markdown(blocks: Sequence[Block]) -> str:
    parts: list[str] = []
    shown: set[int] = set()  # citations quoted already, in the evidence: the sources list does not repeat them
    for block in blocks:
        match block:
            case Heading(text):
                parts.append(f"### {text}")
            case Evidence(citations, searched):
                if searched is not None:
                    parts.append(f"*No line of the record matched the question (searched for: {searched}).*")
                else:
                    shown.update(c.number for c in citations)
                    parts.append(_evidence_markdown(citations))
            case Checked(text, checked):
                parts.append(checked.marked(text, _sentence_markdown).strip())
            case Items(title, items, hidden, more):
                lines = [f"- {_item_markdown(item)}" for item in items]
                if hidden:
                    lines.append(f"- {show_all_line(len(items), more)}")
                    lines += [f"  - {_item_markdown(item)}" for item in hidden]
                elif more:
                    lines.append(f"- … and {more:,} earlier, in the record")
                parts.append(f"**{title}**\n" + "\n".join(lines))
            case Omitted(omissions):
                lines = [f"- {o.fact} _({o.category})_ [{o.citation.number}]" for o in omissions]
                parts.append(f"**{omitted_line(omissions)}**" + "".join(f"\n{line}" for line in lines))
            case Note(text, tone):
                # The app's own words are marked as the app's, apart from the model's.
                parts.append(f"**Warning:** {text}" if tone == "warning" else f"Clinidoc: {text}")
            case Unverified(items):
                parts.append(f"Clinidoc: {unverified_line(items)}")
            case Sources(citations):
                if listed := [c for c in citations if c.number not in shown]:
                    one = len({c.document for c in citations}) == 1
                    parts.append("**Sources**\n" + "\n".join(citation_line(c, name=not one) for c in listed))
            case Disclaimer(text):
                parts.append(f"*{text}*")
    return "\n\n".join(parts)


def _evidence_markdown(citations: Sequence[Citation]) -> str:
    """The evidence lines; one document is named once, in the heading, several on each line."""
    documents = {citation.document for citation in citations}
    one = next(iter(documents)) if len(documents) == 1 else None
    lines = [citation_line(citation, name=one is None) for citation in citations]
    return f"**From the record{f' ({one})' if one else ''}:**\n" + "\n".join(lines)


def citation_line(citation: Citation, name: bool = True) -> str:
    """A source as a line, as the evidence is quoted: its words, where they are (the document's name when the
    record has several), its number."""
    where = f"{citation.document}, page {citation.page}" if name else f"page {citation.page}"
    return f"> “{fold_spaces(citation.quote)}” — {where} [{citation.number}]"


def _sentence_markdown(sentence: CheckedSentence) -> str:
    """The sentence and its label in words, so a terminal or a printed export shows it as the screen does."""
    references = "".join(f" [{number}]" for number in sentence.citations)
    note = f"; {sentence.note}" if sentence.note else ""
    if sentence.label == "supported":
        return f"{sentence.text} ⟨supported:{references}{note}⟩"
    if sentence.label == "contradicted":
        return f"{sentence.text} ⟨{LABEL_WORDS['contradicted']}: see{references}⟩"
    return f"{sentence.text} ⟨{LABEL_WORDS['not_found']}⟩"


# How an item came to be listed, said beside it when not read from a structured entry: a clinician weighs a fact a
# rule read from prose, or one the model suggested and the record bore out, differently from a coded entry.
ORIGIN_WORDS = {"text": "read from text", "model": "suggested by the model, quote verified"}


def _origin(item: SummaryItem) -> str | None:
    return ORIGIN_WORDS.get(item.origin)


def _item_markdown(item: SummaryItem) -> str:
    origin = f" _({_origin(item)})_" if _origin(item) else ""
    return item.text + origin + "".join(f" [{number}]" for number in item.citations)




# --- HTML ------------------------------------------------------------------------------------------------------


def _origin_html(item: SummaryItem) -> str:
    return f' <span class="origin">{escape(origin)}</span>' if (origin := _origin(item)) else ""



def _item_html(item: SummaryItem) -> str:
    return f"<li>{escape(item.text)}{_origin_html(item)}{references(item.citations)}</li>"


def html(blocks: Sequence[Block], pages: Pages) -> str:
    parts: list[str] = []
    for block in blocks:
        match block:
            case Heading(text):
                parts.append(f"<h4>{escape(text)}</h4>")
            case Evidence(citations, searched):
                parts.append(_evidence_html(citations, searched, pages))
            case Checked(text, checked):
                parts.append(f'<div class="answer">{checked.marked(text, _sentence_html, escape)}</div>')
            case Items(title, items, hidden, more):
                extra = f'<li class="more">… and {more:,} earlier, in the record</li>' if more else ""
                if hidden:
                    rest = "".join(_item_html(item) for item in hidden)
                    extra = (f'<li class="more"><details><summary>{escape(show_all_line(len(items), more))}</summary>'
                             f"<ul>{rest}</ul></details></li>")
                lines = "".join(_item_html(item) for item in items)
                parts.append(f"<h4>{escape(title)}</h4><ul>{lines}{extra}</ul>")
            case Omitted(omissions):
                lines = "".join(
                    f'<li>{escape(o.fact)} <span class="origin">{escape(o.category)}</span>'
                    f"{references([o.citation.number])}</li>"
                    for o in omissions
                )
                parts.append(f'<h4 class="omissions">{escape(omitted_line(omissions))}</h4><ul>{lines}</ul>')
            case Note(text, tone):
                parts.append(f'<p class="{tone} app-note"><span class="app-name">Clinidoc:</span> {escape(text)}</p>')
            case Unverified(items):
                listed = "".join(
                    f'<li>{escape(item.text)} <span class="quote">quoted: “{escape(item.quote or "")}”</span></li>'
                    for item in items
                )
                parts.append(
                    f'<details class="unverified"><summary>{escape(unverified_line(items))}</summary><ul>{listed}</ul>'
                    "</details>"
                )
            case Sources(citations):
                parts.append(sources_html(citations, pages))
            case Disclaimer(text):
                parts.append(f'<p class="disclaimer">{escape(text)}</p>')
    return "".join(parts)


def turn_html(turn: Turn, pages: Pages) -> str:
    """A turn as the chat shows it, in a block that says which kind it is."""
    kind = {"answer": "answer-turn", "summary": "summary", "unanswered": "unanswered"}[turn.kind]
    return f'<div class="{kind}">{html(layout(turn), pages)}</div>'


def evidence_html(turn: AnswerTurn, pages: Pages) -> str:
    """The evidence alone, shown while the model is still writing."""
    block = evidence_block(turn)
    return html([block, Sources(block.citations)], pages)


def _evidence_html(citations: Sequence[Citation], searched: str | None, pages: Pages) -> str:
    if searched is not None:
        return (
            '<p class="evidence none app-note"><span class="app-name">Clinidoc:</span> No line of the record matched '
            f"the question (searched for: {escape(searched)}).</p>"
        )
    lines = "".join(f"<li>{_evidence_line(citation, pages)}</li>" for citation in citations)
    return f'<div class="evidence"><p class="evidence-title">From the record</p><ul>{lines}</ul></div>'


def _evidence_line(citation: Citation, pages: Pages) -> str:
    """The quoted line with its document and page; opened, its page around it with the line highlighted."""
    line = (
        f"<q>{escape(fold_spaces(citation.quote))}</q> <span class=\"where\">{escape(citation.document)}, page "
        f"{citation.page}</span>"
    )
    text = pages.get((citation.document, citation.page))
    if text is None:
        return line + _reference(citation.number)
    # The line opens its own page, so its number is plain text here: a link inside the summary that opens the
    # page would be a control inside a control, which keyboards and screen readers cannot tell apart.
    number = f'<sup class="cite">[{citation.number}]</sup>'
    return f"<details><summary>{line}{number}</summary>{_page(citation, text)}</details>"


def _sentence_html(sentence: CheckedSentence) -> str:
    text = escape(sentence.text)
    badge = f'<span class="label {sentence.label}">{_BADGES[sentence.label]}</span>'
    note = f'<span class="label-note">{escape(sentence.note)}</span>' if sentence.note else ""
    return f'<span class="sentence {sentence.label}">{text}{badge}{references(sentence.citations)}{note}</span>'


# A supported sentence's badge is short, as most sentences of a good answer carry it; the other two say it all.
_BADGES: dict[Label, str] = {
    "supported": '✓<span class="visually-hidden"> supported by the record</span>',
    "contradicted": LABEL_WORDS["contradicted"],
    "not_found": LABEL_WORDS["not_found"],
}


def references(numbers: Sequence[int]) -> str:
    return "".join(_reference(number) for number in numbers)


def _reference(number: int) -> str:
    # A link, so a keyboard reaches it; the page's script (app/ui/sources.py) opens source `number` of the same
    # answer at its highlighted words. The chat keeps only plain attributes, so the number travels in the href.
    return f'<sup class="cite"><a class="cite-link" href="#source-{number}">[{number}]</a></sup>'


def sources_html(citations: Sequence[Citation], pages: Pages, shown: bool = True) -> str:
    """The numbered sources a text cites, open under an answer; closed under the plots, until a point is followed."""
    if not citations:
        return ""
    items = "".join(_source(citation, pages) for citation in citations)
    opened = " open" if shown else ""
    return f'<details class="sources"{opened}><summary>Sources ({len(citations)})</summary><ol>{items}</ol></details>'


def _source(citation: Citation, pages: Pages) -> str:
    """The source's document, page and words; opened, its page around them with the words highlighted."""
    where = (f'<span class="where">{escape(citation.document)}, page {citation.page}</span> '
             f"<mark>{escape(citation.quote.strip())}</mark>")
    text = pages.get((citation.document, citation.page))
    if text is None:  # no document of the session by that name: the words alone
        return f'<li value="{citation.number}">{where}</li>'
    return f'<li value="{citation.number}"><details><summary>{where}</summary>{_page(citation, text)}</details></li>'


def _page(citation: Citation, text: str) -> str:
    first = text.rfind("\n", 0, max(0, citation.start - PAGE_CONTEXT_BEFORE)) + 1
    last = text.find("\n", min(len(text), citation.end + PAGE_CONTEXT))
    last = len(text) if last < 0 else last
    before = "…\n" if first > 0 else ""
    after = "\n…" if last < len(text) else ""
    return (
        # Focusable, so a keyboard can scroll a long page's text too.
        f'<div class="page" tabindex="0" title="page {citation.page} of {escape(citation.document)}">{before}'
        f"{escape(text[first : citation.start])}<mark>{escape(text[citation.start : citation.end])}</mark>"
        f"{escape(text[citation.end : last])}{after}</div>"
    )
