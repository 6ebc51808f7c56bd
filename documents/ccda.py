"""HL7 C-CDA XML: the header, then each section's narrative, the part of a CDA document meant for people.

The narrative is what the sending system attested as the human-readable
content, so it is what is read; tables become one line per row. A line keeps
its section, and the coded entry it shows, where that entry refers to the
line's narrative by ID. Names in the coded entries that the narrative lacks
follow it.

The coded entries of the clinical sections (allergies, medications, problems,
results, vital signs, procedures, immunizations, encounters) are also read as
facts. Each points to the narrative line that names it, or else to its
entry's "Coded entry" line, which names it for that reason.
"""

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from xml.etree.ElementTree import Element

from documents.cleaning import squeeze
from documents.dates import iso_date
from documents.document import CcdaSource, Fact, FactCategory, SectionKind, Skipped
from documents.errors import DocumentError
from documents.lines import FactWithoutSpan, PageWriter, Structured
from documents.sections import kind_of
from documents.xmlsafe import BadXml, UnsafeXml, parse

DAMAGED = "the C-CDA document is damaged or incomplete"
NOT_XML = "the file is not valid XML; it may be damaged or incomplete"
NOT_CCDA = "the XML file is not a C-CDA clinical document"
UNSAFE = "the XML file declares its own entities or document type, which is refused for safety"
NO_TEXT = "the C-CDA document contains no text"

_V3 = "{urn:hl7-org:v3}"
ROOT = f"{_V3}ClinicalDocument"

# LOINC section codes of C-CDA R2.1, by the kind of section each is.
_LOINC_KINDS: dict[str, SectionKind] = {
    "48765-2": "allergies",
    "10160-0": "medications",
    "75311-1": "medications",
    "10183-2": "medications",
    "42346-7": "medications",
    "29549-3": "medications",
    "11450-4": "problems",
    "11348-0": "past_medical_history",
    "47519-4": "procedures",
    "30954-2": "labs",
    "11493-4": "labs",
    "8716-3": "vital_signs",
    "11369-6": "immunizations",
    "46240-8": "encounters",
    "10164-2": "history_of_present_illness",
    "61150-9": "history_of_present_illness",
    "8648-8": "hospital_course",
    "8653-8": "discharge_instructions",
    "29545-1": "physical_exam",
    "10184-0": "physical_exam",
    "8709-8": "physical_exam",
    "61149-1": "physical_exam",
    "10187-3": "review_of_systems",
    "51848-0": "assessment",
    "18776-5": "plan",
    "51847-2": "assessment_and_plan",
    "10154-3": "chief_complaint",
    "46239-0": "chief_complaint",
    "29299-5": "chief_complaint",
    "42349-1": "chief_complaint",
    "10157-6": "family_history",
    "29762-2": "social_history",
    "42347-5": "diagnoses",
    "46241-6": "diagnoses",
    "11535-2": "diagnoses",
    "18748-4": "imaging",
}
# Observations whose value names a clinical thing (a problem, a reaction, a
# relative's disease, smoking status), unlike those whose value is a severity,
# a status or a priority.
_NAMING_OBSERVATIONS = frozenset(
    f"2.16.840.1.113883.10.20.22.4.{number}" for number in (4, 9, 38, 46, 78)
)
# SNOMED CT's semantic tags, which a narrative leaves off: "Pneumonia (disorder)" is "Pneumonia".
_SEMANTIC_TAG = re.compile(r"\s*\((?:disorder|finding|procedure|situation|substance|event|qualifier value)\)$")
_GENDERS = {"F": "female", "M": "male", "UN": "undifferentiated"}
# Narrative elements that start a line of their own.
_BLOCKS = frozenset({"paragraph", "list", "item", "caption", "footnote"})
_STATEMENTS = frozenset(
    {"act", "observation", "substanceAdministration", "supply", "procedure", "encounter", "organizer",
     "observationMedia", "regionOfInterest"}
)
_PROBLEM = "2.16.840.1.113883.10.20.22.4.4"
_INDICATION = "2.16.840.1.113883.10.20.22.4.19"
_REACTION = "2.16.840.1.113883.10.20.22.4.9"
# Problem Status and Allergy Status observations: "Active", "Resolved".
_STATUS_OBSERVATIONS = frozenset({"2.16.840.1.113883.10.20.22.4.6", "2.16.840.1.113883.10.20.22.4.28"})
# Common code systems' OIDs, as FHIR names the systems, so that a concept's
# code reads alike from either format.
_CODE_SYSTEMS = {
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "2.16.840.1.113883.12.292": "http://hl7.org/fhir/sid/cvx",
    "2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "2.16.840.1.113883.4.9": "http://fdasis.nlm.nih.gov",
}
_PERIOD_UNITS = {"s": "second", "min": "minute", "h": "hour", "d": "day", "wk": "week", "mo": "month", "a": "year"}


def mentions_cda(text: str) -> bool:
    """Whether XML text looks meant to be a CDA document, before it is parsed."""
    return "ClinicalDocument" in text and "urn:hl7-org:v3" in text


def read_ccda(data: bytes, name: str, meant_as_cda: bool) -> Structured:
    """`meant_as_cda`: the content said CDA before parsing, so a parse failure is a damaged CDA."""
    try:
        root = parse(data)
    except UnsafeXml as exc:
        raise DocumentError(name, UNSAFE) from exc
    except BadXml as exc:
        raise DocumentError(name, DAMAGED if meant_as_cda else NOT_XML) from exc
    if root.tag != ROOT:
        raise DocumentError(name, NOT_CCDA)
    writer = PageWriter()
    skipped: list[Skipped] = []
    try:
        _header(root, writer)
        body = root.find(f"{_V3}component/{_V3}structuredBody")
        if body is not None:
            for section in _sections(body):
                _section(section, writer, skipped)
        else:
            _unstructured(root, writer, name)
    except RecursionError as exc:
        raise DocumentError(name, DAMAGED) from exc
    structured = writer.finish(skipped)
    if not structured.page.sources:
        raise DocumentError(name, NO_TEXT)
    return structured


def _header(root: Element, writer: PageWriter) -> None:
    title = _text(root.find(f"{_V3}title")) or "Clinical document"
    writer.heading(title, "demographics")
    source = CcdaSource()
    if date := _date(root.find(f"{_V3}effectiveTime")):
        writer.line(f"Date: {date}", source)
    role = root.find(f"{_V3}recordTarget/{_V3}patientRole")
    if role is not None:
        writer.line(_patient(role), source)
    authors = [
        _person(author.find(f"{_V3}assignedAuthor/{_V3}assignedPerson/{_V3}name"))
        for author in root.findall(f"{_V3}author")
    ]
    if authors := [author for author in authors if author]:
        writer.line(f"Author: {', '.join(dict.fromkeys(authors))}", source)
    encounter = root.find(f"{_V3}componentOf/{_V3}encompassingEncounter")
    if encounter is not None:
        start = _date(encounter.find(f"{_V3}effectiveTime/{_V3}low")) or _date(encounter.find(f"{_V3}effectiveTime"))
        end = _date(encounter.find(f"{_V3}effectiveTime/{_V3}high"))
        place = _text(encounter.find(f"{_V3}location/{_V3}healthCareFacility/{_V3}location/{_V3}name"))
        parts = [f"from {start}" if start else None, f"to {end}" if end else None, f"at {place}" if place else None]
        if any(parts):
            writer.line("Encounter " + " ".join(part for part in parts if part), source)


def _patient(role: Element) -> str:
    patient = role.find(f"{_V3}patient")
    parts = [_person(patient.find(f"{_V3}name")) if patient is not None else None]
    if patient is not None:
        gender = patient.find(f"{_V3}administrativeGenderCode")
        if gender is not None:
            parts.append(gender.get("displayName", "").lower() or _GENDERS.get(gender.get("code", "")))
        if birth := _date(patient.find(f"{_V3}birthTime")):
            parts.append(f"born {birth}")
        if died := _date(patient.find("{urn:hl7-org:sdtc}deceasedTime")):
            parts.append(f"died {died}")
        marital = patient.find(f"{_V3}maritalStatusCode")
        if marital is not None and marital.get("displayName"):
            parts.append(f"marital status: {marital.get('displayName', '').lower()}")
    ids = [element.get("extension") for element in role.findall(f"{_V3}id") if element.get("extension")]
    if ids:
        parts.append(f"record number {ids[0]}")
    return "Patient: " + "; ".join(part for part in parts if part)


def _sections(parent: Element) -> list[Element]:
    """The sections under `parent`, each followed by those nested in it."""
    found = []
    for section in parent.findall(f"{_V3}component/{_V3}section"):
        found.append(section)
        found += _sections(section)
    return found


def _section(section: Element, writer: PageWriter, skipped: list[Skipped]) -> None:
    code_element = section.find(f"{_V3}code")
    code = code_element.get("code") if code_element is not None else None
    named = code_element.get("displayName") if code_element is not None else None
    title = _text(section.find(f"{_V3}title")) or named or "Untitled section"
    kind = _LOINC_KINDS.get(code or "") or kind_of(title)
    entries = section.findall(f"{_V3}entry")
    narrative = section.find(f"{_V3}text")
    lines = _Narrative().lines_of(narrative) if narrative is not None else []
    texts = _narrative_texts(narrative)
    readings = [_readings(entry, kind, texts) for entry in entries]
    facts_on_line, coded = _place(entries, readings, lines)
    if not lines:
        reason = "empty section"
        if entries:
            reason = "its narrative is empty; only the names in its coded entries are read"
        skipped.append(Skipped(what=f"section {title}", reason=reason))
        if not coded:
            return
    writer.heading(title, kind, code)
    links = _Links(title, code, entries)
    for (text, ids), facts in zip(lines, facts_on_line):
        entry = next((links.entry[id_] for id_ in sorted(ids) if id_ in links.entry), None)
        writer.line(text, links.source(entry), facts=facts)
    for line in coded:
        writer.line(f"Coded entry: {'; '.join(line.names)}", links.source(line.entry), facts=line.facts)


class _Links:
    """Which coded entry each narrative ID is the text of, and each entry's own id."""

    def __init__(self, section: str, code: str | None, entries: list[Element]) -> None:
        self._section = section
        self._code = code
        self.entry: dict[str, int] = {}  # narrative ID: 1-based index of the entry that refers to it
        self.entry_ids: dict[int, str | None] = {}
        for index, entry in enumerate(entries, start=1):
            statement = _statement(entry)
            self.entry_ids[index] = _instance_id(statement.find(f"{_V3}id")) if statement is not None else None
            for reference in entry.iter(f"{_V3}reference"):
                value = reference.get("value", "")
                if value.startswith("#"):
                    self.entry.setdefault(value[1:], index)

    def source(self, entry: int | None) -> CcdaSource:
        entry_id = self.entry_ids.get(entry) if entry else None
        return CcdaSource(section=self._section, code=self._code, entry=entry, entry_id=entry_id)


def _coded_names(entry: Element) -> list[str]:
    """What an entry is about, by its codes' display names: drugs, vaccines, allergens, problems, procedures."""
    elements = [
        element.find(f"{_V3}code")
        for tag in ("manufacturedMaterial", "playingEntity", "procedure")
        for element in entry.iter(f"{_V3}{tag}")
    ]
    for observation in entry.iter(f"{_V3}observation"):
        if _templates(observation) & _NAMING_OBSERVATIONS:
            elements.append(observation.find(f"{_V3}value"))
    names = [squeeze(element.get("displayName", "")) for element in elements if element is not None]
    return list(dict.fromkeys(name for name in names if name))


# --- Facts: what the coded entries of the clinical sections say ------------------------


@dataclass(frozen=True)
class _Reading:
    """A fact read from a coded entry, before the line it is written into is chosen."""

    name: str
    label: str  # how an entry's coded line names it: the name, with a measurement's value and date
    ids: frozenset[str]  # the narrative IDs its statement refers to
    fact: FactWithoutSpan


@dataclass(frozen=True)
class _CodedLine:
    """A line for what an entry names that the narrative does not, and the facts written into it."""

    entry: int  # 1-based position among the section's entries
    names: list[str]
    facts: list[FactWithoutSpan]


def _place(
    entries: list[Element], readings: list[list[_Reading]], lines: list[tuple[str, set[str]]]
) -> tuple[list[list[FactWithoutSpan]], list[_CodedLine]]:
    """The facts each narrative line names, and the coded lines for what no narrative line names.

    The coded entries name things the narrative may not: the generic name of
    a brand ("Proventil" is coded as albuterol), a standard spelling of a
    dose. Those names follow the narrative, one line per entry.
    """
    narrative_text = " ".join(" ".join(text.lower().split()) for text, _ in lines)
    facts_on_line: list[list[FactWithoutSpan]] = [[] for _ in lines]
    coded = []
    for index, (entry, entry_readings) in enumerate(zip(entries, readings), start=1):
        names = [n for n in _coded_names(entry) if _SEMANTIC_TAG.sub("", n).lower() not in narrative_text]
        facts = []
        for reading in entry_readings:
            taken = {position for position, placed in enumerate(facts_on_line) if placed}
            if (line := _line_naming(reading, lines, taken)) is not None:
                facts_on_line[line].append(reading.fact)
                continue
            # Nothing of an entry is lost: its coded line names what no narrative line does.
            if not any(reading.label.lower() in name.lower() for name in names):
                names.append(reading.label)
            facts.append(reading.fact)
        if names:
            coded.append(_CodedLine(index, names, facts))
    return facts_on_line, coded


def _line_naming(reading: _Reading, lines: list[tuple[str, set[str]]], taken: set[int]) -> int | None:
    """The narrative line that names the reading's fact; None if none does.

    Of several, one its statement refers to by ID; else the first that holds
    no fact yet, since a narrative lists its entries in their order (two
    "Pneumonia" problems are two rows); else the first.
    """
    naming = [index for index, (text, _) in enumerate(lines) if reading.name.lower() in text.lower()]
    linked = [index for index in naming if lines[index][1] & reading.ids]
    free = [index for index in naming if index not in taken]
    return next(iter(linked + free + naming), None)


# What reads an entry's facts: (category, entry, the section's narrative texts by ID).
# It yields None for a statement that names nothing.
_EntryReader = Callable[[FactCategory, Element, dict[str, str]], Iterator[_Reading | None]]


def _readings(entry: Element, kind: SectionKind | None, texts: dict[str, str]) -> list[_Reading]:
    readings: list[_Reading | None] = []
    if kind in _ENTRY_READERS:
        category, read = _ENTRY_READERS[kind]
        readings += read(category, entry, texts)
    # A medication's indication or an encounter's reason is a condition the
    # patient has, though the problem list may not hold it.
    readings += [
        _indication(observation, texts)
        for observation in entry.iter(f"{_V3}observation")
        if _INDICATION in _templates(observation)
    ]
    return [reading for reading in readings if reading]


def _indication(observation: Element, texts: dict[str, str]) -> _Reading | None:
    value = observation.find(f"{_V3}value")
    return _reading("condition", observation, _concept_name(value, texts), value, label_prefix="indication: ")


def _allergies(category: FactCategory, entry: Element, texts: dict[str, str]) -> Iterator[_Reading | None]:
    """Each substance the entry names (participant/participantRole/playingEntity), with its reactions."""
    concern = _statement(entry)
    for statement in entry.iter():
        entity = statement.find(f"{_V3}participant/{_V3}participantRole/{_V3}playingEntity")
        if _local(statement.tag) not in _STATEMENTS or entity is None:
            continue
        code = entity.find(f"{_V3}code")
        yield _reading(
            category,
            statement,
            _concept_name(code, texts) or _text(entity.find(f"{_V3}name")),
            code,
            date=_start(statement) or _start(concern),
            status=_tracked_status(statement, concern),
            reaction=", ".join(_reactions(statement, texts)) or None,
        )


def _administrations(category: FactCategory, entry: Element, texts: dict[str, str]) -> Iterator[_Reading | None]:
    """Each medication or vaccine given: its material, with dose, route and how often."""
    for administration in _outermost(entry, "substanceAdministration"):
        material = administration.find(f"{_V3}consumable/{_V3}manufacturedProduct/{_V3}manufacturedMaterial")
        if material is None:
            continue
        code = material.find(f"{_V3}code")
        yield _reading(
            category,
            administration,
            _concept_name(code, texts) or _text(material.find(f"{_V3}name")),
            code,
            date=_start(administration),
            end_date=_end(administration),
            status=_status_code(administration),
            dose=_dose(administration),
            route=_concept_name(administration.find(f"{_V3}routeCode"), texts),
            frequency=_frequency(administration),
        )


def _problems(category: FactCategory, entry: Element, texts: dict[str, str]) -> Iterator[_Reading | None]:
    """Each problem observation of a concern: what its value names."""
    concern = _statement(entry)
    for observation in _outermost(entry, "observation"):
        templates = _templates(observation)
        if templates and _PROBLEM not in templates:
            continue  # a priority or a comment beside the problem, not one
        value = observation.find(f"{_V3}value")
        yield _reading(
            category,
            observation,
            _concept_name(value, texts),
            value,
            date=_start(observation) or _start(concern),
            end_date=_end(observation),
            status=_tracked_status(observation, concern),
        )


def _measurements(category: FactCategory, entry: Element, texts: dict[str, str]) -> Iterator[_Reading | None]:
    """Each result or vital sign: what its code names, and its value."""
    organizer = _statement(entry)
    for observation in _outermost(entry, "observation"):
        code = observation.find(f"{_V3}code")
        value, unit = _observed(observation.find(f"{_V3}value"), texts)
        yield _reading(
            category,
            observation,
            _concept_name(code, texts),
            code,
            date=_start(observation) or _start(organizer),
            status=_status_code(observation),
            value=value,
            unit=unit,
            **_reference_range(observation),
        )


def _acts(category: FactCategory, entry: Element, texts: dict[str, str]) -> Iterator[_Reading | None]:
    """The entry's statement, a procedure or an encounter, by what its code names."""
    statement = _statement(entry)
    if statement is None:
        return
    code = statement.find(f"{_V3}code")
    name = _concept_name(code, texts)
    yield _reading(
        category, statement, name, code, date=_start(statement), end_date=_end(statement),
        status=_status_code(statement),
    )


_ENTRY_READERS: dict[SectionKind, tuple[FactCategory, _EntryReader]] = {
    "allergies": ("allergy", _allergies),
    "medications": ("medication", _administrations),
    "immunizations": ("immunization", _administrations),
    "problems": ("condition", _problems),
    "past_medical_history": ("condition", _problems),
    "diagnoses": ("condition", _problems),
    "labs": ("lab", _measurements),
    "vital_signs": ("vital", _measurements),
    "procedures": ("procedure", _acts),
    "encounters": ("encounter", _acts),
}


def _reading(
    category: FactCategory,
    statement: Element,
    name: str | None,
    code: Element | None,
    label_prefix: str = "",
    **details: str | float | None,
) -> _Reading | None:
    """The fact `statement` states about what `name` names; None when nothing names it."""
    if not name:
        return None
    if statement.get("negationInd") == "true":
        # The source says it did not happen (a refused vaccine) or is not so
        # (no allergy to it), in the words FHIR uses for each.
        details["status"] = "refuted" if _local(statement.tag) == "observation" else "not-done"
    fact = partial(Fact, category=category, name=name, code=_code(code), **details)
    references = [reference.get("value", "") for reference in statement.iter(f"{_V3}reference")]
    ids = frozenset(value[1:] for value in references if value.startswith("#"))
    return _Reading(name, label_prefix + _label(name, details), ids, fact)


def _label(name: str, details: dict[str, str | None]) -> str:
    """A fact as its coded line writes it: a measurement with its value and date, anything else by its name."""
    if details.get("value") is None:
        return name
    measured = " ".join(part for part in (name, details["value"], details.get("unit")) if part)
    return f"{measured} ({details['date']})" if details.get("date") else measured


def _concept_name(code: Element | None, texts: dict[str, str]) -> str | None:
    """What a coded concept is called: its displayName, else its original text, as the code writes it or as the
    narrative does where the code refers to it (`<reference value="#id"/>`).

    SNOMED CT's semantic tag is left off, as the narrative leaves it off.
    """
    if code is None:
        return None
    name = squeeze(code.get("displayName") or _original_text(code, texts) or "")
    return _SEMANTIC_TAG.sub("", name) or None


def _original_text(code: Element, texts: dict[str, str]) -> str | None:
    original = code.find(f"{_V3}originalText")
    if original is None:
        return None
    reference = original.find(f"{_V3}reference")
    if reference is not None:
        return texts.get(reference.get("value", "").removeprefix("#"))
    return _text(original)


def _narrative_texts(narrative: Element | None) -> dict[str, str]:
    """The text of each narrative element that has an ID, which coded entries refer to by `#ID`."""
    if narrative is None:
        return {}
    texts = {element.get("ID", ""): squeeze(" ".join(element.itertext())) for element in narrative.iter()}
    return {id_: text for id_, text in texts.items() if id_ and text}


def _reactions(allergy: Element, texts: dict[str, str]) -> list[str]:
    """What the allergy manifests as: its reaction observations' values."""
    reactions = [
        name
        for relationship in allergy.findall(f"{_V3}entryRelationship")
        for observation in relationship.findall(f"{_V3}observation")
        if relationship.get("typeCode") == "MFST" or _REACTION in _templates(observation)
        if (name := _concept_name(observation.find(f"{_V3}value"), texts))
    ]
    return list(dict.fromkeys(reactions))


def _observed(value: Element | None, texts: dict[str, str]) -> tuple[str | None, str | None]:
    """An observation's value as written, and its unit: "13.2", "g/dL"; a coded value's name; a text."""
    if value is None or value.get("nullFlavor"):
        return None, None
    if number := value.get("value"):
        return number, value.get("unit")
    return _concept_name(value, texts) or _text(value), None


def _dose(administration: Element) -> str | None:
    quantity = administration.find(f"{_V3}doseQuantity")
    number = quantity.get("value") if quantity is not None else None
    if quantity is None or not number:
        return None
    # A dose without a unit counts the administration unit: "2 Puff".
    unit = quantity.get("unit") or _concept_name(administration.find(f"{_V3}administrationUnitCode"), {})
    return f"{number} {unit}" if unit else number


def _frequency(administration: Element) -> str | None:
    """How often, from the periodic effectiveTime (PIVL_TS): "every 6 hours"."""
    period = administration.find(f"{_V3}effectiveTime/{_V3}period")
    number = period.get("value") if period is not None else None
    if period is None or not number:
        return None
    unit = period.get("unit", "")
    if unit not in _PERIOD_UNITS:
        return f"every {number} {unit}".strip()
    return f"every {_PERIOD_UNITS[unit]}" if number == "1" else f"every {number} {_PERIOD_UNITS[unit]}s"


def _tracked_status(statement: Element, concern: Element | None) -> str | None:
    """A problem's or allergy's status: as its status observation says, else whether its concern is still tracked."""
    for observation in statement.iter(f"{_V3}observation"):
        if _templates(observation) & _STATUS_OBSERVATIONS:
            if status := _concept_name(observation.find(f"{_V3}value"), {}):
                return status.lower()
    return _status_code(concern)


def _start(statement: Element | None) -> str | None:
    """When a statement happened or began: its first effectiveTime (a medication's second is how often), or its low."""
    time = statement.find(f"{_V3}effectiveTime") if statement is not None else None
    if time is None:
        return None
    return _date(time) or _date(time.find(f"{_V3}low"))


def _end(statement: Element | None) -> str | None:
    """When a statement ended: the high of its first effectiveTime."""
    time = statement.find(f"{_V3}effectiveTime") if statement is not None else None
    return _date(time.find(f"{_V3}high")) if time is not None else None


def _reference_range(observation: Element) -> dict[str, float]:
    """The numeric low and high of a result's first reference range (referenceRange/observationRange/value)."""
    bounds: dict[str, float] = {}
    for side in ("low", "high"):
        bound = observation.find(f"{_V3}referenceRange/{_V3}observationRange/{_V3}value/{_V3}{side}")
        try:
            bounds[f"reference_{side}"] = float(bound.get("value") if bound is not None else None)
        except (TypeError, ValueError):  # no bound, or not a number
            continue
    return bounds


def _status_code(statement: Element | None) -> str | None:
    status = statement.find(f"{_V3}statusCode") if statement is not None else None
    return status.get("code") if status is not None else None


def _code(code: Element | None) -> str | None:
    """"system|code" of a coded concept."""
    if code is None or not (value := code.get("code", "").strip()) or not (system := code.get("codeSystem")):
        return None
    return f"{_CODE_SYSTEMS.get(system, f'urn:oid:{system}')}|{value}"


def _statement(entry: Element) -> Element | None:
    """The entry's own clinical statement: an allergy's or problem's concern, a result's organizer."""
    return next((child for child in entry if _local(child.tag) in _STATEMENTS), None)


def _outermost(element: Element, tag: str) -> Iterator[Element]:
    """The `tag` elements under `element` that no other `tag` element holds: not a problem's status observation."""
    for child in element:
        if child.tag == f"{_V3}{tag}":
            yield child
        else:
            yield from _outermost(child, tag)


def _templates(statement: Element) -> set[str]:
    return {template.get("root", "") for template in statement.findall(f"{_V3}templateId")}


def _unstructured(root: Element, writer: PageWriter, name: str) -> None:
    """A document whose body is a file (nonXMLBody): read when it is plain text."""
    text = root.find(f"{_V3}component/{_V3}nonXMLBody/{_V3}text")
    if text is None:
        raise DocumentError(name, NO_TEXT)
    media_type = text.get("mediaType", "text/plain")
    if media_type != "text/plain":
        raise DocumentError(
            name, f"the C-CDA document holds only an attached file ({media_type}), which cannot be read here"
        )
    content = text.text or ""
    if text.get("representation") == "B64":
        try:
            content = base64.b64decode(content, validate=False).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError) as exc:
            raise DocumentError(name, DAMAGED) from exc
    writer.heading("Document text")
    writer.line(content, CcdaSource(section="Document text"), keep_breaks=True)


class _Narrative:
    """A section's narrative block as lines, each with the IDs of the narrative elements in it."""

    def __init__(self) -> None:
        self._lines: list[tuple[str, set[str]]] = []
        self._parts: list[str] = []
        self._ids: set[str] = set()

    def lines_of(self, text: Element) -> list[tuple[str, set[str]]]:
        self._walk(text)
        self._end_line()
        return self._lines

    def _walk(self, element: Element) -> None:
        tag = _local(element.tag)
        if tag == "table":
            self._table(element)
            return
        if tag == "br":
            self._end_line()
            return
        if tag == "renderMultiMedia":
            return  # a reference to an image, which has no text
        block = tag in _BLOCKS
        if block:
            self._end_line()
        if id_ := element.get("ID"):
            self._ids.add(id_)
        self._parts.append(element.text or "")
        for child in element:
            self._walk(child)
            self._parts.append(child.tail or "")
        if block:
            self._end_line()

    def _table(self, table: Element) -> None:
        self._end_line()
        for part in table:
            tag = _local(part.tag)
            if tag == "caption":
                self._walk(part)
            rows = [part] if tag == "tr" else [row for row in part if _local(row.tag) == "tr"]
            for row in rows:
                cells = [squeeze(" ".join(cell.itertext())) for cell in row if _local(cell.tag) in ("td", "th")]
                self._ids |= {id_ for element in row.iter() if (id_ := element.get("ID"))}
                self._parts.append(" | ".join(cells))
                self._end_line()

    def _end_line(self) -> None:
        text = squeeze("".join(self._parts))
        if text.strip(" |"):
            self._lines.append((text, self._ids))
        self._parts = []
        self._ids = set()


def _person(name: Element | None) -> str | None:
    if name is None:
        return None
    parts = [
        squeeze(part.text or "")
        for tag in ("prefix", "given", "family", "suffix")
        for part in name.findall(f"{_V3}{tag}")
    ]
    return " ".join(part for part in parts if part) or squeeze(name.text or "") or None


def _instance_id(element: Element | None) -> str | None:
    if element is None or element.get("nullFlavor"):
        return None
    root, extension = element.get("root"), element.get("extension")
    return f"{root}:{extension}" if root and extension else root or extension


def _date(element: Element | None) -> str | None:
    value = element.get("value") if element is not None else None
    return iso_date(value) if value else None


def _text(element: Element | None) -> str | None:
    return squeeze("".join(element.itertext())) or None if element is not None else None


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
