"""The structured chart summary: facts read from structured entries, items the model drafted from free text, and
the model's narrative, each tied to the span of the record that supports it or marked as found nowhere in it.

The model fills `SummaryDraft` under a JSON-schema grammar, so its output always parses. For FHIR and C-CDA
documents the clinical lists come from the entries themselves (`Document.facts`). A FHIR record is all entries, so
there the model writes only the narrative and the follow-ups around them; a C-CDA document also holds free-text
sections (assessment, history) whose problems and results no entry codes, so there the model drafts lists too, and
a drafted item that an entry already gives is dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rapidfuzz import fuzz

from app.grounding import Citation, Located, SentenceSupport, ground, locate
from app.safety import patient_mismatch
from documents import Document, Fact, FactCategory, Span, identify

# Formats whose every clinical statement is a coded entry, leaving the model nothing to list.
FULLY_CODED_KINDS = frozenset({"fhir"})

# What the model is asked to put at the front of a summary's record when the record has to be cut.
SUMMARY_QUERY = (
    "diagnosis problems assessment plan medications dose allergies reaction laboratory results vital signs "
    "procedures surgery admission discharge follow-up"
)

# Lists that would run to hundreds of lines in a long record show their most recent entries and say how many
# more there are. Results show at least this many tests, and every test of the last date shown.
MAX_RESULTS = 12
MAX_ENCOUNTERS = 10
MAX_PROCEDURES = 20

# A quote counts as the item's source only if it names the item: a true quote about something else is no support.
NAME_IN_QUOTE = 80


def _quote() -> str:
    return Field(max_length=160, description="the words of the record that state this, copied exactly")


class _Drafted(BaseModel):
    # No properties beyond these: the grammar would otherwise let the model write any JSON under a name of its own.
    model_config = ConfigDict(extra="forbid")


class DraftProblem(_Drafted):
    name: str = Field(max_length=80)
    status: str | None = Field(max_length=20)
    quote: str = _quote()


class DraftMedication(_Drafted):
    name: str = Field(max_length=80)
    dose: str | None = Field(max_length=40)
    route: str | None = Field(max_length=30)
    frequency: str | None = Field(max_length=40)
    status: str | None = Field(max_length=20)
    quote: str = _quote()


class DraftAllergy(_Drafted):
    substance: str = Field(max_length=60)
    reaction: str | None = Field(max_length=60)
    quote: str = _quote()


class DraftResult(_Drafted):
    name: str = Field(max_length=60)
    value: str = Field(max_length=30)
    unit: str | None = Field(max_length=20)
    date: str | None = Field(max_length=20)
    quote: str = _quote()


class DraftProcedure(_Drafted):
    name: str = Field(max_length=80)
    date: str | None = Field(max_length=20)
    quote: str = _quote()


class DraftEncounter(_Drafted):
    date: str | None = Field(max_length=20)
    description: str = Field(max_length=100)
    quote: str = _quote()


class DraftFollowUp(_Drafted):
    description: str = Field(max_length=120)
    due: str | None = Field(max_length=30)
    quote: str = _quote()


class SummaryDraft(_Drafted):
    """What the model writes. The narrative comes last, so it is written after the lists it sums up."""

    problems: list[DraftProblem] = Field(default=[], max_length=10)
    medications: list[DraftMedication] = Field(default=[], max_length=12)
    allergies: list[DraftAllergy] = Field(default=[], max_length=6)
    labs: list[DraftResult] = Field(default=[], max_length=10)
    vitals: list[DraftResult] = Field(default=[], max_length=6)
    procedures: list[DraftProcedure] = Field(default=[], max_length=6)
    encounters: list[DraftEncounter] = Field(default=[], max_length=6)
    follow_ups: list[DraftFollowUp] = Field(default=[], max_length=6)
    narrative: str = Field(default="", max_length=500)


SectionKey = Literal[
    "problems", "medications", "allergies", "labs", "vitals", "procedures", "encounters", "follow_ups"
]

# Each section of the summary, its title and the kind of fact that fills it from structured entries.
SECTIONS: dict[SectionKey, tuple[str, FactCategory | None]] = {
    "problems": ("Problems", "condition"),
    "medications": ("Medications", "medication"),
    "allergies": ("Allergies", "allergy"),
    "labs": ("Recent labs", "lab"),
    "vitals": ("Vital signs", "vital"),
    "procedures": ("Procedures", "procedure"),
    "encounters": ("Encounters", "encounter"),
    "follow_ups": ("Pending follow-ups", None),
}


class SummaryItem(BaseModel):
    text: str
    origin: Literal["record", "model"]  # read from a structured entry, or drafted by the model from free text
    citation: int | None  # the number of its Citation; None when its quote does not tie it to the record
    quote: str | None = None  # the model's quote, kept to show what was not found
    # Why a drafted item has no citation: its quote is nowhere in the record, or is there but does not name it.
    unsupported: Literal["quote not found", "quote does not name it"] | None = None


class SummarySection(BaseModel):
    key: SectionKey
    title: str
    items: list[SummaryItem]
    more: int = 0  # entries of the record not listed, older than those shown


class ChartSummary(BaseModel):
    patient: list[SummaryItem]
    sections: list[SummarySection]
    narrative: list[SentenceSupport]
    citations: list[Citation]
    warnings: list[str]
    # What the model did not read or write: a record cut to fit, a draft cut short.
    notes: list[str] = []

    def shown_as_fact(self) -> Iterable[tuple[SectionKey, SummaryItem]]:
        """The items that the summary presents as facts of the record: those it could tie to a span."""
        for section in self.sections:
            for item in section.items:
                if item.citation is not None:
                    yield section.key, item


def draft_schema(documents: Sequence[Document]) -> dict:
    """The JSON schema the model's draft must follow: the whole draft, or only the narrative and the follow-ups when
    every document is fully coded, since their lists are all read from the entries."""
    schema = SummaryDraft.model_json_schema()
    if fully_coded(documents):
        keep = {"follow_ups", "narrative"}
        schema["properties"] = {key: value for key, value in schema["properties"].items() if key in keep}
    schema["required"] = list(schema["properties"])
    return schema


def fully_coded(documents: Sequence[Document]) -> bool:
    return all(document.kind in FULLY_CODED_KINDS for document in documents)


def parse_draft(text: str) -> SummaryDraft | None:
    """The model's draft, keeping every item it finished when its tokens ran out before the JSON closed; None when
    it cannot be read at all."""
    try:
        values = pydantic_core.from_json(text or "{}", allow_partial=True)
    except ValueError:
        return None
    if not isinstance(values, dict):
        return None
    draft: dict[str, object] = {}
    for key, field in SummaryDraft.model_fields.items():
        if isinstance(values.get(key), list):
            item_type = field.annotation.__args__[0]  # type: ignore[union-attr]
            draft[key] = [item for item in values[key] if _valid(item_type, item)]
        elif isinstance(values.get(key), str):
            draft[key] = values[key]
    return SummaryDraft.model_validate(draft)


def _valid(model: type[BaseModel], value: object) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


class _Citations:
    """Numbers the spans a summary cites in order of first use; a span cited twice keeps its first number."""

    def __init__(self) -> None:
        self.citations: list[Citation] = []
        self._numbers: dict[tuple[str, int, int, int], int] = {}

    def add(self, located: Located) -> int:
        key = (located.document, located.page, located.start, located.end)
        if key not in self._numbers:
            self._numbers[key] = len(self.citations) + 1
            # A citation of an answer comes with its own number, which the summary's numbering replaces.
            self.citations.append(Citation(number=self._numbers[key], **located.model_dump(exclude={"number"})))
        return self._numbers[key]


def build_summary(documents: Sequence[Document], draft: SummaryDraft) -> ChartSummary:
    """The summary of `documents`: their structured facts, the draft's items checked against the record, and the
    draft's narrative labelled sentence by sentence."""
    citations = _Citations()
    facts = [(document, fact) for document in documents for fact in document.facts]
    sections = []
    for key, (title, category) in SECTIONS.items():
        read = [(document, fact) for document, fact in facts if fact.category == category]
        items, more = _fact_items(key, read, citations)
        drafted = [_draft_item(key, item, documents, citations) for item in getattr(draft, key)]
        items += [item for item in drafted if not _repeats(item, items)]
        sections.append(SummarySection(key=key, title=title, items=items, more=more))
    narrative = ground(draft.narrative, documents)
    renumber = {c.number: citations.add(c) for c in narrative.citations}
    sentences = [s.model_copy(update={"citations": [renumber[n] for n in s.citations]}) for s in narrative.sentences]
    identities = [(document.name, identify(document)) for document in documents]
    warning = patient_mismatch(identities)
    return ChartSummary(
        patient=_patient_items(documents, citations),
        sections=sections,
        narrative=sentences,
        citations=citations.citations,
        warnings=[] if warning is None else [warning],
    )


def _patient_items(documents: Sequence[Document], citations: _Citations) -> list[SummaryItem]:
    items: list[SummaryItem] = []
    for document in documents:
        identity = identify(document)
        fields = [("Name", identity.name), ("Born", identity.birth_date), ("Record number", identity.mrn)]
        known = [(label, value) for label, value in fields if value]
        if not known:
            continue
        text = "; ".join(f"{label}: {value}" for label, value in known)
        number = citations.add(_span_located(document, identity.spans[0])) if identity.spans else None
        items.append(SummaryItem(text=f"{text} ({document.name})", origin="record", citation=number))
    return items


def _fact_items(
    key: SectionKey, read: list[tuple[Document, Fact]], citations: _Citations
) -> tuple[list[SummaryItem], int]:
    if key in ("labs", "vitals"):
        return _result_items(read, citations)
    if key == "encounters":
        dated = sorted(read, key=lambda pair: pair[1].date or "")
        shown = dated[-MAX_ENCOUNTERS:]
        return [_fact_item(fact_text(f), d, f, citations) for d, f in shown], len(dated) - len(shown)
    groups = _by_name(read)
    # Current entries first: an active medication or problem matters more than a resolved one.
    groups.sort(key=lambda group: (not _is_active(group[-1][1]), -_latest(group)))
    limit = MAX_PROCEDURES if key == "procedures" else len(groups)
    items = [_group_item(group, citations) for group in groups[:limit]]
    return items, len(groups) - len(items)


def _result_items(read: list[tuple[Document, Fact]], citations: _Citations) -> tuple[list[SummaryItem], int]:
    """The latest value of each test, most recently measured first, with the values before it as its trend."""
    groups = _by_name(_blood_pressures(read))
    groups.sort(key=lambda group: group[-1][1].date or "", reverse=True)
    # Whole draws: the tests of the date that reaches the limit stay together, as a panel is read together.
    shown = 0
    while shown < len(groups) and (
        shown < MAX_RESULTS or groups[shown][-1][1].date == groups[shown - 1][-1][1].date
    ):
        shown += 1
    items = []
    for group in groups[:shown]:
        document, latest = group[-1]
        earlier = [f"{_value(fact)} ({fact.date})" if fact.date else _value(fact) for _, fact in group[-3:-1]]
        text = fact_text(latest)
        if earlier:
            text += f" {_trend(group)}; before: {', '.join(reversed(earlier))}"
        items.append(_fact_item(text, document, latest, citations))
    return items, len(groups) - len(items)


SYSTOLIC, DIASTOLIC = "http://loinc.org|8480-6", "http://loinc.org|8462-4"


def _blood_pressures(read: list[tuple[Document, Fact]]) -> list[tuple[Document, Fact]]:
    """A systolic and a diastolic pressure of one document, date and page, as the one reading a clinician knows:
    C-CDA codes them apart, FHIR already as one."""
    diastolic = {
        (document.name, fact.date, fact.span.page): fact for document, fact in read if fact.code == DIASTOLIC
    }
    merged: list[tuple[Document, Fact]] = []
    paired: set[int] = set()
    for document, fact in read:
        low = diastolic.get((document.name, fact.date, fact.span.page)) if fact.code == SYSTOLIC else None
        if low is None or fact.value is None or low.value is None:
            continue
        span = Span(page=fact.span.page, start=min(fact.span.start, low.span.start), end=max(fact.span.end, low.span.end))
        reading = fact.model_copy(
            update={"name": "Blood pressure", "value": f"{fact.value}/{low.value}", "code": "blood-pressure", "span": span}
        )
        merged.append((document, reading))
        paired.update({id(fact), id(low)})
    return [pair for pair in read if id(pair[1]) not in paired] + merged


def _trend(group: list[tuple[Document, Fact]]) -> str:
    before, latest = _number(group[-2][1].value), _number(group[-1][1].value)
    if before is None or latest is None:
        return ""
    return "↑" if latest > before else "↓" if latest < before else "→"


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _group_item(group: list[tuple[Document, Fact]], citations: _Citations) -> SummaryItem:
    document, latest = group[-1]
    text = fact_text(latest)
    dates = sorted({fact.date for _, fact in group if fact.date})
    if len(group) > 1 and len(dates) > 1:
        text += f"; also {', '.join(dates[:-1][-3:])}"
    return _fact_item(text, document, latest, citations)


def _fact_item(text: str, document: Document, fact: Fact, citations: _Citations) -> SummaryItem:
    return SummaryItem(text=text, origin="record", citation=citations.add(_span_located(document, fact.span)))


def _span_located(document: Document, span: Span) -> Located:
    page = next(page for page in document.pages if page.number == span.page)
    quote = page.text[span.start : span.end]
    return Located(
        document=document.name, page=span.page, start=span.start, end=span.end, quote=quote, match="record",
        score=100.0,
    )


def fact_text(fact: Fact) -> str:
    """A fact in one line, in the order a clinician reads it: what, how much, how, when, whether still so."""
    parts = [fact.name]
    if fact.value is not None:
        parts[0] += f": {_value(fact)}"
    parts += [part for part in (fact.dose, fact.route, fact.frequency) if part]
    if fact.reaction:
        parts.append(f"reaction: {fact.reaction}")
    if fact.date:
        parts.append(fact.date)
    parts += [status] if (status := _status(fact)) else []
    return "; ".join(parts)


def _status(fact: Fact) -> str | None:
    if fact.category not in ("lab", "vital") or fact.status is None:
        return fact.status
    status = fact.status.casefold()
    # A result still open has no value yet: C-CDA says "active", FHIR "registered" or "preliminary".
    if fact.value is None and status in ("active", "registered", "preliminary"):
        return "pending"
    # Every reported result is final; saying so on each line would bury the ones that are not.
    return None if status in ("final", "completed") else fact.status


def _value(fact: Fact) -> str:
    return f"{fact.value} {fact.unit}".strip() if fact.unit else str(fact.value)


def _by_name(read: list[tuple[Document, Fact]]) -> list[list[tuple[Document, Fact]]]:
    """The facts grouped by what they are about (code, else name), each group in date order."""
    groups: dict[str, list[tuple[Document, Fact]]] = defaultdict(list)
    for document, fact in read:
        groups[fact.code or fact.name.casefold()].append((document, fact))
    return [sorted(group, key=lambda pair: pair[1].date or "") for group in groups.values()]


def _is_active(fact: Fact) -> bool:
    return fact.status is None or fact.status.casefold() in ("active", "recurrence", "relapse")


def _latest(group: list[tuple[Document, Fact]]) -> int:
    date = group[-1][1].date or "0"
    return int(date[:4]) if date[:4].isdigit() else 0


def _draft_item(key: SectionKey, item: BaseModel, documents: Sequence[Document], citations: _Citations) -> SummaryItem:
    """A drafted item tied to its quote's span, when the quote is in the record and names the item."""
    text = draft_text(key, item)
    quote = getattr(item, "quote")
    located = locate(quote, documents)
    if located is None:
        return SummaryItem(text=text, origin="model", citation=None, quote=quote, unsupported="quote not found")
    if fuzz.partial_ratio(_name(item).casefold(), located.quote.casefold()) < NAME_IN_QUOTE:
        return SummaryItem(text=text, origin="model", citation=None, quote=quote, unsupported="quote does not name it")
    return SummaryItem(text=text, origin="model", citation=citations.add(located), quote=quote)


def _name(item: BaseModel) -> str:
    for field in ("name", "substance", "description"):
        if hasattr(item, field):
            return getattr(item, field)
    raise TypeError(f"a drafted {type(item).__name__} has no name")


def draft_text(key: SectionKey, item: BaseModel) -> str:
    values = item.model_dump(exclude={"quote"})
    if key in ("labs", "vitals"):
        values["name"] = f"{values.pop('name')}: {values.pop('value')} {values.pop('unit') or ''}".strip()
    if key == "allergies" and values.get("reaction"):
        values["reaction"] = f"reaction: {values['reaction']}"
    return "; ".join(str(value).strip() for value in values.values() if value and str(value).strip())


def _repeats(item: SummaryItem, read: list[SummaryItem]) -> bool:
    """A drafted item that a structured entry already lists adds nothing but a second, less certain copy."""
    name = item.text.split(";")[0].casefold()
    return any(fuzz.token_set_ratio(name, other.text.split(";")[0].casefold()) >= 90 for other in read)


def summary_text(summary: ChartSummary) -> str:
    """The summary as Markdown, as it is stored and exported: citations as [n], their sources listed at the end,
    and every item that could not be tied to the record marked so."""
    lines = [*(f"**Warning:** {warning}" for warning in summary.warnings)]
    if summary.patient:
        lines += ["", "**Patient**", *(f"- {_item_text(item)}" for item in summary.patient)]
    for section in summary.sections:
        if not section.items:
            continue
        lines += ["", f"**{section.title}**", *(f"- {_item_text(item)}" for item in section.items)]
        if section.more:
            lines.append(f"- … and {section.more:,} earlier, in the record")
    if summary.narrative:
        lines += ["", "**Narrative**", " ".join(sentence_text(sentence) for sentence in summary.narrative)]
    lines += ["", *summary.notes] if summary.notes else []
    lines += ["", "**Sources**", *(citation_line(citation) for citation in summary.citations)]
    return "\n".join(lines).strip()


def _item_text(item: SummaryItem) -> str:
    if item.citation is not None:
        return f"{item.text} [{item.citation}]"
    return f"{item.text} ({unsupported_label(item)}; the model quoted: \"{item.quote}\")"


def unsupported_label(item: SummaryItem) -> str:
    if item.unsupported == "quote does not name it":
        return "not found in the record: the quote given does not mention it"
    return "not found in the record"


def sentence_text(sentence: SentenceSupport) -> str:
    if sentence.label == "supported":
        return sentence.text + "".join(f" [{number}]" for number in sentence.citations)
    if sentence.label == "not_supported":
        return f"{sentence.text} (not supported by the record)"
    return sentence.text


def citation_line(citation: Citation) -> str:
    return f"[{citation.number}] {citation.document}, page {citation.page}: \"{citation.quote.strip()}\""
