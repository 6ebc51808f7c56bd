"""The structured chart summary: facts read from structured entries, items the model drafted from free text, and
the model's narrative, each tied to the span of the record that supports it.

Documents about different patients (by name, date of birth, record number, sex or age) get a summary each, so no
list or trend ever combines two people's values. A patient who died is said to have died, and their medications
are "last recorded active", not active. Items the model suggested that the record does not bear out are not listed:
the summary says how many there were. An item read from several entries is listed once, with all their citations.

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

from app.citations import Citation, CitationNumbers, Located
from app.claims import CheckedSentence, Record, check_text
from app.quotes import locate
from app.safety import patient_groups, patient_mismatch
from documents import Document, Fact, FactCategory, PatientIdentity, Span, identify

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
    "problems", "medications", "allergies", "labs", "vitals", "procedures", "immunizations", "encounters", "follow_ups"
]

# Each section of the summary, its title and the kind of fact that fills it from structured entries.
SECTIONS: dict[SectionKey, tuple[str, FactCategory | None]] = {
    "problems": ("Problems", "condition"),
    "medications": ("Medications", "medication"),
    "allergies": ("Allergies", "allergy"),
    "labs": ("Recent labs", "lab"),
    "vitals": ("Vital signs", "vital"),
    "procedures": ("Procedures", "procedure"),
    # Read from entries and from text only: the model's draft has no list of them.
    "immunizations": ("Immunizations", "immunization"),
    "encounters": ("Encounters", "encounter"),
    "follow_ups": ("Pending follow-ups", "follow_up"),
}


class SummaryItem(BaseModel):
    text: str
    # Read from a structured entry, read from free text by rule and dictionary (documents.text_facts), or drafted
    # by the model and bearing a verified quote.
    origin: Literal["record", "text", "model"]
    citations: list[int]  # the numbers of its Citations; empty when nothing in the record ties it there
    quote: str | None = None  # the model's quote, kept to show what was not found
    # Why a drafted item has no citation: its quote is nowhere in the record, or is there but does not name it.
    unsupported: Literal["quote not found", "quote does not name it"] | None = None


class SummarySection(BaseModel):
    key: SectionKey
    title: str
    items: list[SummaryItem]  # shown first, most weighty first
    # The rest of what the record holds, older than those shown, behind a "show all" control: nothing read is left
    # out of the summary.
    hidden: list[SummaryItem] = []
    more: int = 0  # how many items are not shown first: len(hidden), or what a summary stored before it said


class PatientSummary(BaseModel):
    """What the record says of one patient: who, and each section's items from that patient's documents alone."""

    label: str  # the name, or what the documents say of an unnamed patient
    documents: list[str]
    identity: list[SummaryItem]  # name, birth, record number, sex, age, death: one line per document saying them
    died: str | None = None  # ISO date, or "yes" when the record says only that the patient died
    sections: list[SummarySection]


class ChartSummary(BaseModel):
    patients: list[PatientSummary]
    narrative: list[CheckedSentence]  # the model's narrative, each sentence checked against the record
    citations: list[Citation]
    warnings: list[str]
    # The model's suggestions that the record does not bear out: counted, shown only on request, never as items.
    unverified: list[SummaryItem] = []
    # What the model did not read or write: a record cut to fit, a draft cut short.
    notes: list[str] = []

    def shown_as_fact(self) -> Iterable[tuple[SectionKey, SummaryItem]]:
        """The items that the summary presents as facts of the record, shown or behind "show all": those it could tie
        to a span."""
        for patient in self.patients:
            for section in patient.sections:
                for item in section.items + section.hidden:
                    if item.citations:
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


def build_summary(documents: Sequence[Document], draft: SummaryDraft, record: Record | None = None) -> ChartSummary:
    """The summary of `documents`, one part per patient: their structured facts, the draft's items checked against
    the record, and the draft's narrative labelled sentence by sentence."""
    record = record or Record(documents)
    numbers = CitationNumbers()
    identities = [(document, identify(document)) for document in documents]
    groups = patient_groups([(document.name, identity) for document, identity in identities])
    drafted = _drafted_items(draft, documents)
    patients = []
    for group in groups:
        members = [(document, identity) for document, identity in identities if document.name in group]
        patients.append(_patient_summary(members, drafted, numbers))
    unverified = [item for _, item, place in drafted if place is None]
    notes: list[str] = []
    narrative: list[CheckedSentence] = []
    if len(patients) > 1 and draft.narrative:
        notes.append("The documents are about different patients, so no narrative is written across them.")
    elif draft.narrative:
        narrative = check_text(draft.narrative, record, numbers).sentences
    warning = patient_mismatch([(document.name, identity) for document, identity in identities])
    return ChartSummary(
        patients=patients, narrative=narrative, citations=numbers.citations, unverified=unverified,
        warnings=[] if warning is None else [warning], notes=notes,
    )


def _patient_summary(
    members: list[tuple[Document, PatientIdentity]],
    drafted: list[tuple[SectionKey, SummaryItem, Located | None]],
    numbers: CitationNumbers,
) -> PatientSummary:
    names = {document.name for document, _ in members}
    died = next((identity.died for _, identity in members if identity.died), None)
    identity = _identity_items(members, numbers)
    # Denied, hypothetical and other people's mentions are facts of the text, never items of the patient's lists.
    facts = [(document, fact) for document, _ in members for fact in document.facts if fact.listable]
    sections = []
    for key, (title, category) in SECTIONS.items():
        read = [(document, fact) for document, fact in facts if fact.category == category]
        items, hidden = _fact_items(key, read, numbers, died)
        for section_key, item, place in drafted:
            if section_key == key and place is not None and place.document in names:
                _merge(items, item, numbers.add(place))
        sections.append(SummarySection(key=key, title=title, items=items, hidden=hidden, more=len(hidden)))
    return PatientSummary(
        label=_label(members), documents=[document.name for document, _ in members], identity=identity, died=died,
        sections=sections,
    )


def _label(members: list[tuple[Document, PatientIdentity]]) -> str:
    """Who the patient is, in a few words: the name, else what the documents say of them."""
    for _, identity in members:
        if identity.name:
            return identity.name
    cues = next(((identity.age, identity.sex) for _, identity in members if identity.age or identity.sex), (None, None))
    age, sex = cues
    described = " ".join(part for part in (f"{age}-year-old" if age else None, sex) if part)
    return f"Unnamed {described} patient" if described else "Unnamed patient"


_IDENTITY_FIELDS = [("name", "Name"), ("birth_date", "Born"), ("mrn", "Record number"), ("sex", "Sex"), ("age", "Age"),
                    ("died", "Died")]


def _identity_items(members: list[tuple[Document, PatientIdentity]], numbers: CitationNumbers) -> list[SummaryItem]:
    items: list[SummaryItem] = []
    for document, identity in members:
        known = [
            (label, getattr(identity, field), field) for field, label in _IDENTITY_FIELDS if getattr(identity, field)
        ]
        if not known:
            continue
        text = "; ".join(f"{label}: {value}" for label, value, _ in known)
        citations = [numbers.add(span_located(document, identity.spans[field])) for _, _, field in known[:1]]
        items.append(SummaryItem(text=f"{text} ({document.name})", origin="record", citations=citations))
    return items


def _drafted_items(
    draft: SummaryDraft, documents: Sequence[Document]
) -> list[tuple[SectionKey, SummaryItem, Located | None]]:
    """Each item the model drafted, with where its quote lies; None when the record does not bear it out."""
    return [(key, *_draft_item(key, item, documents)) for key in SECTIONS for item in getattr(draft, key, [])]


def _merge(items: list[SummaryItem], item: SummaryItem, citation: int) -> None:
    """Adds a drafted item to a section, unless an item already there says the same: then only its citation."""
    name = item.text.split(";")[0].casefold()
    for other in items:
        if fuzz.token_set_ratio(name, other.text.split(";")[0].casefold()) >= 90:
            if citation not in other.citations:
                other.citations.append(citation)
            return
    items.append(item.model_copy(update={"citations": [citation]}))


def _fact_items(
    key: SectionKey, read: list[tuple[Document, Fact]], numbers: CitationNumbers, died: str | None
) -> tuple[list[SummaryItem], list[SummaryItem]]:
    """A section's items shown first and those behind its "show all" control."""
    if key in ("labs", "vitals"):
        recent, older = recent_results(read)
        # Within the recent draws, a result out of its range comes before the normal ones.
        recent.sort(key=lambda group: not is_abnormal(group[-1][1]))
        return [_result_item(group, numbers) for group in recent], [_result_item(group, numbers) for group in older]
    if key == "encounters":
        dated = sorted(read, key=lambda pair: pair[1].date or "", reverse=True)
        items = [_fact_item(fact_text(f), [(d, f)], numbers) for d, f in dated]
        # Shown in date order, the latest last, as a visit history reads.
        return list(reversed(items[:MAX_ENCOUNTERS])), items[MAX_ENCOUNTERS:]
    groups = by_concept(read)
    # Current entries first: an active medication or problem matters more than a resolved one.
    groups.sort(key=lambda group: (not is_active(group[-1][1]), -_latest(group)))
    items = [_group_item(group, numbers, died) for group in groups]
    limit = MAX_PROCEDURES if key == "procedures" else len(groups)
    return items[:limit], items[limit:]


def _result_item(group: list[tuple[Document, Fact]], numbers: CitationNumbers) -> SummaryItem:
    """The latest value of a test, with the values before it as its trend."""
    document, latest = group[-1]
    earlier = [f"{_value(fact)} ({fact.date})" if fact.date else _value(fact) for _, fact in group[-3:-1]]
    text = fact_text(latest)
    if earlier:
        text += f" {_trend(group)}; before: {', '.join(reversed(earlier))}"
    return _fact_item(text, [(document, latest)], numbers)


def is_abnormal(fact: Fact) -> bool:
    """Whether a result lies outside its reference range."""
    try:
        value = float(fact.value or "")
    except ValueError:
        return False
    return (fact.reference_low is not None and value < fact.reference_low) or (
        fact.reference_high is not None and value > fact.reference_high
    )


Read = list[tuple[Document, Fact]]  # facts with the document each was read from


def recent_results(read: Read) -> tuple[list[Read], list[Read]]:
    """Each test's values, in date order: the recent tests (most recently measured first, at least MAX_RESULTS of
    them, in whole draws) and the older ones."""
    groups = by_concept(_blood_pressures(read))
    groups.sort(key=lambda group: group[-1][1].date or "", reverse=True)
    # Whole draws: the tests of the date that reaches the limit stay together, as a panel is read together.
    shown = 0
    while shown < len(groups) and (
        shown < MAX_RESULTS or groups[shown][-1][1].date == groups[shown - 1][-1][1].date
    ):
        shown += 1
    return groups[:shown], groups[shown:]


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


def _group_item(group: list[tuple[Document, Fact]], numbers: CitationNumbers, died: str | None) -> SummaryItem:
    """The entries about one thing as one item: the latest, with the dates of the others and all their citations."""
    _, latest = group[-1]
    text = fact_text(latest, died)
    dates = sorted({fact.date for _, fact in group if fact.date})
    if len(group) > 1 and len(dates) > 1:
        text += f"; also {', '.join(dates[:-1][-3:])}"
    return _fact_item(text, list(reversed(group)), numbers)


def _fact_item(text: str, sources: list[tuple[Document, Fact]], numbers: CitationNumbers) -> SummaryItem:
    citations = numbers.add_all([span_located(document, fact.span) for document, fact in sources])
    origin = "text" if all(fact.origin == "text" for _, fact in sources) else "record"
    return SummaryItem(text=text, origin=origin, citations=citations)


def span_located(document: Document, span: Span) -> Located:
    page = next(page for page in document.pages if page.number == span.page)
    quote = page.text[span.start : span.end]
    return Located(
        document=document.name, page=span.page, start=span.start, end=span.end, quote=quote, match="record",
        score=100.0,
    )


def fact_text(fact: Fact, died: str | None = None) -> str:
    """A fact in one line, in the order a clinician reads it: what, how much, how, when, whether still so. Of a
    patient who died, nothing is still so: an "active" entry is the last state recorded."""
    parts = [fact.name]
    if fact.value is not None:
        parts[0] += f": {_value(fact)}"
    parts += [part for part in (fact.dose, fact.route, fact.frequency) if part]
    if fact.context == "historical":
        parts.append("history")
    if fact.reaction:
        parts.append(f"reaction: {fact.reaction}")
    if fact.date:
        parts.append(fact.date)
    status = _status(fact)
    if status and died and status.casefold() == "active":
        status = "last recorded active"
    parts += [status] if status else []
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


def by_concept(read: list[tuple[Document, Fact]]) -> list[list[tuple[Document, Fact]]]:
    """The facts grouped by what they are about (code, else name), each group in date order."""
    groups: dict[str, list[tuple[Document, Fact]]] = defaultdict(list)
    for document, fact in read:
        groups[fact.code or fact.name.casefold()].append((document, fact))
    return [sorted(group, key=lambda pair: pair[1].date or "") for group in groups.values()]


def is_active(fact: Fact) -> bool:
    return fact.status is None or fact.status.casefold() in ("active", "recurrence", "relapse")


def _latest(group: list[tuple[Document, Fact]]) -> int:
    date = group[-1][1].date or "0"
    return int(date[:4]) if date[:4].isdigit() else 0


def _draft_item(key: SectionKey, item: BaseModel, documents: Sequence[Document]) -> tuple[SummaryItem, Located | None]:
    """A drafted item and its quote's place, when the quote is in the record and names the item; else None."""
    text = draft_text(key, item)
    quote = getattr(item, "quote")
    drafted = SummaryItem(text=text, origin="model", citations=[], quote=quote)
    place = locate(quote, documents)
    if place is None:
        return drafted.model_copy(update={"unsupported": "quote not found"}), None
    if fuzz.partial_ratio(_name(item).casefold(), place.quote.casefold()) < NAME_IN_QUOTE:
        return drafted.model_copy(update={"unsupported": "quote does not name it"}), None
    return drafted, place


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
