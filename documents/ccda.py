"""HL7 C-CDA XML: the header, then each section's narrative, the part of a CDA document meant for people.

The narrative is what the sending system attested as the human-readable
content, so it is what is read; tables become one line per row. A line keeps
its section, and the coded entry it shows, where that entry refers to the
line's narrative by ID. Names in the coded entries that the narrative lacks
follow it.
"""

import base64
import binascii
import re
from xml.etree.ElementTree import Element

from documents.cleaning import squeeze
from documents.dates import iso_date
from documents.document import CcdaSource, SectionKind, Skipped
from documents.errors import DocumentError
from documents.lines import PageWriter, Structured
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
    entries = section.findall(f"{_V3}entry")
    narrative = section.find(f"{_V3}text")
    lines = _Narrative().lines_of(narrative) if narrative is not None else []
    # The coded entries name things the narrative may not: the generic name of
    # a brand ("Proventil" is coded as albuterol), a standard spelling of a
    # dose. Those names follow the narrative, one line per entry.
    narrative_text = " ".join(" ".join(text.lower().split()) for text, _ in lines)
    coded = [
        (index, names)
        for index, entry in enumerate(entries, start=1)
        if (names := [n for n in _coded_names(entry) if _SEMANTIC_TAG.sub("", n).lower() not in narrative_text])
    ]
    if not lines:
        reason = "empty section"
        if entries:
            reason = "its narrative is empty; only the names in its coded entries are read"
        skipped.append(Skipped(what=f"section {title}", reason=reason))
        if not coded:
            return
    writer.heading(title, _LOINC_KINDS.get(code or "") or kind_of(title), code)
    links = _Links(title, code, entries)
    for text, ids in lines:
        writer.line(text, links.source(next((links.entry[id_] for id_ in sorted(ids) if id_ in links.entry), None)))
    for index, names in coded:
        writer.line(f"Coded entry: {'; '.join(names)}", links.source(index))


class _Links:
    """Which coded entry each narrative ID is the text of, and each entry's own id."""

    def __init__(self, section: str, code: str | None, entries: list[Element]) -> None:
        self._section = section
        self._code = code
        self.entry: dict[str, int] = {}  # narrative ID: 1-based index of the entry that refers to it
        self.entry_ids: dict[int, str | None] = {}
        for index, entry in enumerate(entries, start=1):
            statement = next((child for child in entry if _local(child.tag) in _STATEMENTS), None)
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
        if {template.get("root") for template in observation.findall(f"{_V3}templateId")} & _NAMING_OBSERVATIONS:
            elements.append(observation.find(f"{_V3}value"))
    names = [squeeze(element.get("displayName", "")) for element in elements if element is not None]
    return list(dict.fromkeys(name for name in names if name))


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
