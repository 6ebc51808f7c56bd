"""FHIR R4 JSON, a Bundle or a single resource: every resource a dated line under a heading.

A line keeps its resource's type and id as its source; the id itself stays out
of the text, where it would cost the model tokens and tell it nothing. The
clinical resources (allergies, conditions, medications, lab results and vital
signs, procedures, immunizations, encounters) are also read as facts, each
pointing to its resource's line.
"""

import base64
import binascii
import decimal
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from html.parser import HTMLParser
from typing import Any

from documents.cleaning import squeeze
from documents.dates import iso_date
from documents.document import Fact, FactCategory, FhirSource, SectionKind, Skipped
from documents.errors import DocumentError
from documents.lines import FactWithoutSpan, PageWriter, Structured

DAMAGED = "the FHIR record is damaged or incomplete"
NOT_JSON = "the file is not valid JSON; it may be damaged or incomplete"
NOT_FHIR = "the JSON file is not a FHIR health record"
NOTHING_CLINICAL = "the FHIR record holds no clinical information"

Json = dict[str, Any]

# Headings in the order they are written, with the kind of section each is.
# Each says what its lines' leading dates are, since every resource type dates
# something else.
_HEADINGS: dict[str, SectionKind | None] = {
    "Patient": "demographics",
    "Allergies and intolerances (by date recorded)": "allergies",
    "Conditions (by date of onset)": "problems",
    "Medications (by date prescribed)": "medications",
    "Laboratory results (by date collected)": "labs",
    "Vital signs (by date measured)": "vital_signs",
    "Social history (by date recorded)": "social_history",
    "Other observations (by date)": None,
    "Diagnostic reports (by date)": None,
    "Procedures (by date performed)": "procedures",
    "Immunizations (by date given)": "immunizations",
    "Encounters (by start date)": "encounters",
    "Clinical documents (by date)": None,
}
_ALLERGIES, _CONDITIONS, _MEDICATIONS, _LABS, _VITALS, _SOCIAL, _OBSERVATIONS, _REPORTS = list(_HEADINGS)[1:9]
_PROCEDURES, _IMMUNIZATIONS, _ENCOUNTERS, _DOCUMENTS = list(_HEADINGS)[9:]

_BILLING = frozenset(
    {
        "Account", "ChargeItem", "Claim", "ClaimResponse", "Contract", "Coverage", "CoverageEligibilityRequest",
        "CoverageEligibilityResponse", "EnrollmentRequest", "EnrollmentResponse", "ExplanationOfBenefit",
        "Invoice", "PaymentNotice", "PaymentReconciliation",
    }
)
# Read where other resources refer to them: "at EMERSON HOSPITAL", "with Dr. Samuel Predovic".
_ACTORS = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location", "Medication"})
_AUDIT = frozenset({"AuditEvent", "Provenance"})

_NESTED_BUNDLES = 4
# Decimals written with more places than any analyser reports are simulated
# data (Synthea writes 16 digits), and are rounded.
_MAX_WRITTEN_PLACES = 4
_MARITAL = {"A": "annulled", "D": "divorced", "I": "interlocutory", "L": "legally separated", "M": "married",
            "P": "polygamous", "S": "never married", "T": "domestic partner", "U": "unmarried", "W": "widowed"}
_ENCOUNTER_CLASSES = {"AMB": "ambulatory", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient acute",
                      "NONAC": "inpatient non-acute", "OBSENC": "observation", "PRENC": "pre-admission",
                      "SS": "short stay", "VR": "virtual", "HH": "home health", "FLD": "field"}
_INTERPRETATIONS = {"H": "high", "L": "low", "HH": "critically high", "LL": "critically low", "A": "abnormal",
                    "AA": "critically abnormal", "N": "normal", "POS": "positive", "NEG": "negative"}
_PERIOD_UNITS = {"s": "second", "min": "minute", "h": "hour", "d": "day", "wk": "week", "mo": "month", "a": "year"}
# LOINC codes of a blood pressure's components.
_SYSTOLIC, _DIASTOLIC = "8480-6", "8462-4"


def read_fhir(text: str, name: str) -> Structured:
    root = _parse(text, name)
    context = _Context(_References(root))
    for resource in context.references.resources:
        context.read(resource)
    if not context.lines:
        raise DocumentError(name, NOTHING_CLINICAL)
    writer = PageWriter()
    for heading in list(_HEADINGS) + [h for h in context.lines if h not in _HEADINGS]:
        lines = context.lines.get(heading)
        if not lines:
            continue
        writer.heading(heading, _HEADINGS.get(heading))
        # Oldest first, as a chart reads; lines without a date after the dated ones.
        for line in sorted(lines, key=lambda line: (line.date is None, line.date or "")):
            text = f"{line.date} {line.text}" if line.date else line.text
            writer.line(text, line.source, keep_breaks=line.block, facts=line.facts)
    skipped = [Skipped(what=what, count=count, reason=reason) for (what, reason), count in context.skipped.items()]
    return writer.finish(skipped)


def _parse(text: str, name: str) -> Json:
    try:
        # Decimal keeps numbers as written: 13.20 stays 13.20, not 13.2.
        root = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise DocumentError(name, DAMAGED if '"resourceType"' in text else NOT_JSON) from exc
    if not isinstance(root, dict) or not isinstance(root.get("resourceType"), str):
        raise DocumentError(name, NOT_FHIR)
    return root


# --- Resources and references ----------------------------------------------------------


class _References:
    """The bundle's resources, and what a reference between them points to."""

    def __init__(self, root: Json) -> None:
        self.resources: list[Json] = []
        self.entries_without_resource = 0
        self._by_key: dict[str, Json] = {}
        self._collect(root, None, 0)

    def _collect(self, resource: Json, full_url: str | None, depth: int) -> None:
        if resource.get("resourceType") == "Bundle" and depth <= _NESTED_BUNDLES:
            for entry in _list(resource.get("entry")):
                inner = entry.get("resource")
                if isinstance(inner, dict):
                    self._collect(inner, _str(entry.get("fullUrl")), depth + 1)
                else:
                    self.entries_without_resource += 1
            return
        self.resources.append(resource)
        kind, id_ = _str(resource.get("resourceType")), _str(resource.get("id"))
        if full_url:
            self._by_key[full_url] = resource
        if kind and id_:
            self._by_key[f"{kind}/{id_}"] = resource

    def resolve(self, reference: object, within: Json) -> Json | None:
        target = _str(reference.get("reference")) if isinstance(reference, dict) else None
        if not target:
            return None
        if target.startswith("#"):
            return next((c for c in _list(within.get("contained")) if c.get("id") == target[1:]), None)
        # An absolute URL ends in Type/id.
        return self._by_key.get(target) or self._by_key.get("/".join(target.split("/")[-2:]))

    def name(self, reference: object, within: Json) -> str | None:
        resolved = self.resolve(reference, within)
        if resolved is not None and (label := _label(resolved)):
            return label
        return _str(reference.get("display")) if isinstance(reference, dict) else None

    def names(self, references: object, within: Json) -> list[str]:
        return [name for reference in _list(references) if (name := self.name(reference, within))]


@dataclass(frozen=True)
class _Line:
    date: str | None
    text: str
    source: FhirSource
    block: bool = False  # text with line breaks worth keeping: an attached note
    facts: tuple[FactWithoutSpan, ...] = ()


@dataclass
class _Context:
    references: _References
    lines: dict[str, list[_Line]] = field(default_factory=dict)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.references.entries_without_resource:
            self.skipped[("bundle entries", "they hold no resource")] += self.references.entries_without_resource

    def read(self, resource: Json) -> None:
        kind = _str(resource.get("resourceType")) or "resource"
        if kind in _BILLING:
            self.skipped[(kind, "billing record, not clinical")] += 1
        elif kind in _ACTORS:
            self.skipped[(kind, "named where other resources refer to it")] += 1
        elif kind in _AUDIT:
            self.skipped[(kind, "audit record, not clinical")] += 1
        else:
            source = FhirSource(resource_type=kind, id=_str(resource.get("id")))
            try:
                written = list(_READERS.get(kind, _generic)(resource, self))
                fact = _FACT_READERS[kind](resource, self) if kind in _FACT_READERS else None
            except (AttributeError, TypeError, ValueError, decimal.InvalidOperation):
                # A resource that breaks the standard's shapes is left out,
                # and said to be, rather than stopping the whole record.
                self.skipped[(kind, "malformed resource")] += 1
                return
            for position, (heading, date, text, block) in enumerate(written):
                # A reader's first line is the one that names its resource.
                facts = (fact,) if fact is not None and position == 0 else ()
                line_source = source.model_copy(update={"narrative": True}) if block else source
                self.lines.setdefault(heading, []).append(_Line(date, text, line_source, block, facts))

    def name(self, reference: object, within: Json) -> str | None:
        return self.references.name(reference, within)

    def names(self, references: object, within: Json) -> list[str]:
        return self.references.names(references, within)


# What a reader yields: heading, date, text, whether the text keeps its line breaks.
Written = Iterator[tuple[str, str | None, str, bool]]


# --- Readers, one per resource type ------------------------------------------------------


def _patient(resource: Json, context: _Context) -> Written:
    parts = [_human_name(resource.get("name")) or "unnamed patient"]
    parts += [_str(resource.get("gender"))]
    if birth := _date(resource.get("birthDate")):
        parts.append(f"born {birth}")
    if died := _date(resource.get("deceasedDateTime")):
        parts.append(f"died {died}")
    elif resource.get("deceasedBoolean") is True:
        parts.append("deceased")
    marital = _concept(resource.get("maritalStatus"))
    if marital:
        parts.append(f"marital status: {_MARITAL.get(marital, marital)}")
    languages = [_concept(communication.get("language")) for communication in _list(resource.get("communication"))]
    parts += [f"language: {language}" for language in languages if language]
    parts += [_address(address) for address in _list(resource.get("address"))[:1]]
    for identifier in _list(resource.get("identifier")):
        if _codes(identifier.get("type")) & {"MR"} and (value := _str(identifier.get("value"))):
            parts.append(f"medical record number {value}")
    yield "Patient", None, "; ".join(part for part in parts if part), False


def _allergy(resource: Json, context: _Context) -> Written:
    details: list[str | None] = list(_strs(resource.get("category")))
    if criticality := _str(resource.get("criticality")):
        details.append(f"criticality {criticality}")
    details += _statuses(resource)
    text = _with_details(_concept(resource.get("code")) or "unnamed allergy", details)
    if onset := _date(resource.get("onsetDateTime")):
        text += f"; onset {onset}"
    for reaction in _list(resource.get("reaction")):
        manifestations = ", ".join(_concepts(reaction.get("manifestation")))
        severity = _str(reaction.get("severity"))
        if manifestations:
            text += f"; reaction: {manifestations}" + (f" ({severity})" if severity else "")
    yield _ALLERGIES, _date(resource.get("recordedDate")), text, False


def _condition(resource: Json, context: _Context) -> Written:
    onset = _onset(resource)
    text = _with_details(_concept(resource.get("code")) or "unnamed condition", _statuses(resource))
    if onset is None and (onset_text := _str(resource.get("onsetString"))):
        text += f"; onset {onset_text}"
    abatement = _date(resource.get("abatementDateTime")) or _date(_get(resource, "abatementPeriod", "start"))
    if abatement := abatement or _str(resource.get("abatementString")):
        text += f"; resolved {abatement}"
    if onset is None and (recorded := _date(resource.get("recordedDate"))):
        text += f"; recorded {recorded}"
    yield _CONDITIONS, onset, text, False


def _medication(resource: Json, context: _Context) -> Written:
    details = [_str(resource.get("status"))]
    if (intent := _str(resource.get("intent"))) not in (None, "order"):
        details.append(intent)
    text = _with_details(_medication_name(resource, context) or "unnamed medication", details)
    text += "".join(f"; {dosage}" for d in _dosages(resource) if (dosage := _dosage(d)))
    reasons = _concepts(resource.get("reasonCode")) + context.names(resource.get("reasonReference"), resource)
    if reasons:
        text += f"; for {', '.join(reasons)}"
    yield _MEDICATIONS, _prescribed(resource), text, False


def _observation(resource: Json, context: _Context) -> Written:
    heading = _observation_heading(resource)
    values = [value] if (value := _value(resource)) else []
    for component in _list(resource.get("component")):
        values.append(f"{_concept(component.get('code')) or 'component'} {_value(component) or 'no value'}")
    if not values:
        members = context.names(resource.get("hasMember"), resource)
        values.append(f"panel of {', '.join(members)}" if members else "no value recorded")
    text = f"{_concept(resource.get('code')) or 'unnamed observation'}: {'; '.join(values)}"
    interpretations = [_INTERPRETATIONS.get(i, i) for i in _concepts(resource.get("interpretation"))]
    details = interpretations + [_reference_range(r) for r in _list(resource.get("referenceRange"))[:1]]
    if (status := _str(resource.get("status"))) not in (None, "final", "amended", "corrected"):
        details.append(status)
    yield heading, _effective(resource), _with_details(text, details), False


def _diagnostic_report(resource: Json, context: _Context) -> Written:
    details = [] if (status := _str(resource.get("status"))) in (None, "final") else [status]
    text = _with_details(_concept(resource.get("code")) or "unnamed report", details)
    if results := context.names(resource.get("result"), resource):
        text += f"; results: {', '.join(results)}"
    if conclusion := _str(resource.get("conclusion")):
        text += f"; conclusion: {conclusion}"
    text += "".join(f"; {code}" for code in _concepts(resource.get("conclusionCode")))
    yield _REPORTS, _effective(resource) or _date(resource.get("issued")), text, False
    for attachment in _list(resource.get("presentedForm")):
        yield from _attachment(attachment, _REPORTS, _effective(resource), context, resource)


def _procedure(resource: Json, context: _Context) -> Written:
    details = [] if (status := _str(resource.get("status"))) in (None, "completed") else [status]
    text = _with_details(_concept(resource.get("code")) or "unnamed procedure", details)
    if sites := _concepts(resource.get("bodySite")):
        text += f"; site: {', '.join(sites)}"
    reasons = _concepts(resource.get("reasonCode")) + context.names(resource.get("reasonReference"), resource)
    if reasons:
        text += f"; for {', '.join(reasons)}"
    if outcome := _concept(resource.get("outcome")):
        text += f"; outcome: {outcome}"
    yield _PROCEDURES, _performed(resource), text, False


def _immunization(resource: Json, context: _Context) -> Written:
    details = [] if (status := _str(resource.get("status"))) in (None, "completed") else [status]
    text = _with_details(_concept(resource.get("vaccineCode")) or "unnamed vaccine", details)
    yield _IMMUNIZATIONS, _date(resource.get("occurrenceDateTime")), text, False


def _encounter(resource: Json, context: _Context) -> Written:
    class_ = resource.get("class")
    class_code = _str(class_.get("code")) if isinstance(class_, dict) else None
    class_name = _str(class_.get("display")) if isinstance(class_, dict) else None
    details = [class_name or _ENCOUNTER_CLASSES.get(class_code or "", class_code)]
    if (status := _str(resource.get("status"))) not in (None, "finished"):
        details.append(status)
    text = _with_details(_concept(_named(resource.get("type"))) or "encounter", details)
    start, end = _date(_get(resource, "period", "start")), _date(_get(resource, "period", "end"))
    if end and end != start:
        text += f"; until {end}"
    reasons = _concepts(resource.get("reasonCode")) + context.names(resource.get("reasonReference"), resource)
    if reasons:
        text += f"; for {', '.join(reasons)}"
    if disposition := _concept(_get(resource, "hospitalization", "dischargeDisposition")):
        text += f"; discharged to {disposition}"
    places = context.names([location.get("location") for location in _list(resource.get("location"))], resource)
    places += [name] if (name := context.name(resource.get("serviceProvider"), resource)) else []
    if places:
        text += f"; at {', '.join(places)}"
    people = context.names([p.get("individual") for p in _list(resource.get("participant"))], resource)
    if people:
        text += f"; with {', '.join(people)}"
    yield _ENCOUNTERS, start, text, False


def _composition(resource: Json, context: _Context) -> Written:
    date = _date(resource.get("date"))
    title = _str(resource.get("title")) or _concept(resource.get("type")) or "clinical document"
    authors = context.names(resource.get("author"), resource)
    yield _DOCUMENTS, date, title + (f"; by {', '.join(authors)}" if authors else ""), False
    for section in _sections(_list(resource.get("section"))):
        name = _str(section.get("title")) or _concept(section.get("code")) or "section"
        if body := _narrative(section.get("text")):
            yield _DOCUMENTS, date, f"{name}:\n{body}", True


def _document_reference(resource: Json, context: _Context) -> Written:
    date = _date(resource.get("date")) or _date(_get(resource, "context", "period", "start"))
    name = _str(resource.get("description")) or _concept(resource.get("type")) or "clinical document"
    details = [] if (status := _str(resource.get("docStatus"))) in (None, "final") else [status]
    yield _DOCUMENTS, date, _with_details(name, details), False
    for content in _list(resource.get("content")):
        yield from _attachment(content.get("attachment"), _DOCUMENTS, date, context, resource)


def _generic(resource: Json, context: _Context) -> Written:
    """Any other resource: its dates, names and status, so that nothing is silently left out."""
    kind = _str(resource.get("resourceType")) or "resource"
    heading = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind).capitalize() + " records (by date)"
    texts = list(dict.fromkeys(_texts(resource)))
    text = "; ".join(texts[:12]) + (f"; and {len(texts) - 12} more" if len(texts) > 12 else "")
    text = text or _narrative(resource.get("text")) or kind
    status = _str(resource.get("status")) or _str(resource.get("lifecycleStatus"))
    yield heading, _first_date(resource), _with_details(text, [status]), False


_READERS: dict[str, Callable[[Json, _Context], Written]] = {
    "Patient": _patient,
    "AllergyIntolerance": _allergy,
    "Condition": _condition,
    "MedicationRequest": _medication,
    "MedicationStatement": _medication,
    "Observation": _observation,
    "DiagnosticReport": _diagnostic_report,
    "Procedure": _procedure,
    "Immunization": _immunization,
    "Encounter": _encounter,
    "Composition": _composition,
    "DocumentReference": _document_reference,
}


# --- Facts, one reader per resource type that holds them ----------------------------------


def _allergy_fact(resource: Json, context: _Context) -> FactWithoutSpan | None:
    reactions = [
        name for reaction in _list(resource.get("reaction")) for name in _concepts(reaction.get("manifestation"))
    ]
    return _fact(
        "allergy",
        _concept(resource.get("code")),
        resource.get("code"),
        date=_date(resource.get("onsetDateTime")) or _date(resource.get("recordedDate")),
        status=_status(resource),
        reaction=", ".join(reactions) or None,
    )


def _condition_fact(resource: Json, context: _Context) -> FactWithoutSpan | None:
    concept = resource.get("code")
    end = _date(resource.get("abatementDateTime")) or _date(_get(resource, "abatementPeriod", "start"))
    return _fact(
        "condition", _concept(concept), concept, date=_onset(resource), end_date=end, status=_status(resource)
    )


def _medication_fact(resource: Json, context: _Context) -> FactWithoutSpan | None:
    dosage = next(iter(_dosages(resource)), {})
    medication = context.references.resolve(resource.get("medicationReference"), resource)
    concept = resource.get("medicationCodeableConcept") or _get(medication, "code")
    how_often = _timing(dosage)
    if as_needed := _as_needed(dosage):
        how_often.append(as_needed)
    return _fact(
        "medication",
        _medication_name(resource, context),
        concept,
        date=_prescribed(resource),
        end_date=_date(_get(resource, "effectivePeriod", "end")),
        status=_str(resource.get("status")),
        # Instructions written only as text stand for the dose.
        dose=next(iter(_doses(dosage)), None) or _str(dosage.get("text")),
        route=_concept(dosage.get("route")),
        frequency=", ".join(how_often) or None,
    )


def _observation_fact(resource: Json, context: _Context) -> FactWithoutSpan | None:
    category = _OBSERVATION_FACTS.get(_observation_heading(resource))
    if category is None:
        return None  # social history and other observations are lines only
    value, unit = _measurement(resource)
    reference = next(iter(_list(resource.get("referenceRange"))), {})
    return _fact(
        category,
        _concept(resource.get("code")),
        resource.get("code"),
        date=_effective(resource),
        status=_str(resource.get("status")),
        value=value,
        unit=unit,
        reference_low=_bound(_get(reference, "low")),
        reference_high=_bound(_get(reference, "high")),
    )


def _procedure_fact(resource: Json, context: _Context) -> FactWithoutSpan | None:
    concept, status = resource.get("code"), _str(resource.get("status"))
    end = _date(_get(resource, "performedPeriod", "end"))
    return _fact("procedure", _concept(concept), concept, date=_performed(resource), end_date=end, status=status)


def _immunization_fact(resource: Json, context: _Context) -> FactWithoutSpan | None:
    concept, status = resource.get("vaccineCode"), _str(resource.get("status"))
    date = _date(resource.get("occurrenceDateTime"))
    return _fact("immunization", _concept(concept), concept, date=date, status=status)


def _encounter_fact(resource: Json, context: _Context) -> FactWithoutSpan | None:
    concept, status = _named(resource.get("type")), _str(resource.get("status"))
    date, end = _date(_get(resource, "period", "start")), _date(_get(resource, "period", "end"))
    return _fact("encounter", _concept(concept), concept, date=date, end_date=end, status=status)


_OBSERVATION_FACTS: dict[str, FactCategory] = {_LABS: "lab", _VITALS: "vital"}

_FACT_READERS: dict[str, Callable[[Json, _Context], FactWithoutSpan | None]] = {
    "AllergyIntolerance": _allergy_fact,
    "Condition": _condition_fact,
    "MedicationRequest": _medication_fact,
    "MedicationStatement": _medication_fact,
    "Observation": _observation_fact,
    "Procedure": _procedure_fact,
    "Immunization": _immunization_fact,
    "Encounter": _encounter_fact,
}


def _fact(
    category: FactCategory, name: str | None, concept: object, **details: str | float | None
) -> FactWithoutSpan | None:
    """A fact about `name`, the words the resource's line names it with, and `concept`, its coded concept.

    A resource that names nothing ("unnamed allergy" on its line) is no fact.
    """
    if name is None:
        return None
    # Named as the line shows it, squeezed onto one line.
    return partial(Fact, category=category, name=squeeze(name), code=_code(concept), **details)


def _measurement(observation: Json) -> tuple[str | None, str | None]:
    """An observation's value and unit as its line writes them; a blood pressure's two components as "120/80"."""
    if measured := _measured(observation.get("valueQuantity")):
        return measured
    components = {
        code: component.get("valueQuantity")
        for component in _list(observation.get("component"))
        for code in _codes(component.get("code"))
    }
    systolic, diastolic = _measured(components.get(_SYSTOLIC)), _measured(components.get(_DIASTOLIC))
    if systolic and diastolic:
        return f"{systolic[0]}/{diastolic[0]}", systolic[1]
    return _value(observation), None


def _code(concept: object) -> str | None:
    """"system|code" of a concept's first coding that has both."""
    if not isinstance(concept, dict):
        return None
    for coding in _list(concept.get("coding")):
        if (system := _str(coding.get("system"))) and (code := _str(coding.get("code"))):
            return f"{system}|{code}"
    return None


# --- Pieces of resources ------------------------------------------------------------------


def _attachment(attachment: object, heading: str, date: str | None, context: _Context, resource: Json) -> Written:
    if not isinstance(attachment, dict):
        return
    content_type = (_str(attachment.get("contentType")) or "").split(";")[0].strip().lower()
    title = _str(attachment.get("title"))
    data = _str(attachment.get("data"))
    if data is None:
        return  # a link to elsewhere (attachment.url), which is not fetched
    if content_type not in ("text/plain", "text/html", "application/xhtml+xml"):
        kind = _str(resource.get("resourceType")) or "resource"
        what = f"{kind} attachment ({content_type or 'unknown type'})"
        context.skipped[(what, "only text attachments are read")] += 1
        return
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        raise ValueError("attachment data is not base64") from None
    if content_type != "text/plain":
        text = _html_text(text)
    if text.strip():
        yield heading, date, (f"{title}:\n" if title else "") + text, True


def _dosage(dosage: Json) -> str | None:
    if text := _str(dosage.get("text")):
        return text
    parts = [f"dose {dose}" for dose in _doses(dosage)] + _timing(dosage)
    if route := _concept(dosage.get("route")):
        parts.append(route)
    if as_needed := _as_needed(dosage):
        parts.append(as_needed)
    return ", ".join(part.strip() for part in parts) or None


def _dosages(resource: Json) -> list[Json]:
    return _list(resource.get("dosageInstruction")) + _list(resource.get("dosage"))


def _doses(dosage: Json) -> list[str]:
    return [dose for rate in _list(dosage.get("doseAndRate")) if (dose := _quantity(rate.get("doseQuantity")))]


def _timing(dosage: Json) -> list[str]:
    """How often: "2 times per day", and the timing's code ("BID") when it has one."""
    parts = []
    repeat = _get(dosage, "timing", "repeat")
    if isinstance(repeat, dict) and (frequency := repeat.get("frequency")) is not None:
        period, unit = repeat.get("period", 1), _PERIOD_UNITS.get(_str(repeat.get("periodUnit")) or "", "")
        times = "1 time" if frequency == 1 else f"{_number(frequency)} times"
        parts.append(f"{times} per {unit}" if period == 1 else f"{times} per {_number(period)} {unit}s")
    if timing := _concept(_get(dosage, "timing", "code")):
        parts.append(timing)
    return parts


def _as_needed(dosage: Json) -> str | None:
    if dosage.get("asNeededBoolean") is True:
        return "as needed"
    as_needed = _concept(dosage.get("asNeededCodeableConcept"))
    return f"as needed for {as_needed}" if as_needed else None


def _value(holder: Json) -> str | None:
    """The value[x] of an observation or component, as text."""
    if quantity := _quantity(holder.get("valueQuantity")):
        return quantity
    if concept := _concept(holder.get("valueCodeableConcept")):
        return concept
    for key in ("valueString", "valueDateTime", "valueTime"):
        if text := _str(holder.get(key)):
            return text
    if isinstance(holder.get("valueBoolean"), bool):
        return "yes" if holder["valueBoolean"] else "no"
    if isinstance(value := holder.get("valueInteger"), int):
        return str(value)
    if isinstance(range_ := holder.get("valueRange"), dict):
        return f"{_quantity(range_.get('low')) or '?'} to {_quantity(range_.get('high')) or '?'}"
    if isinstance(ratio := holder.get("valueRatio"), dict):
        return f"{_quantity(ratio.get('numerator')) or '?'} / {_quantity(ratio.get('denominator')) or '?'}"
    if absent := _concept(holder.get("dataAbsentReason")):
        return f"no value ({absent})"
    return None


def _quantity(quantity: object) -> str | None:
    measured = _measured(quantity)
    return " ".join(part for part in measured if part) if measured else None


def _bound(quantity: object) -> float | None:
    """A reference range's low or high as a number; None without one, or with a comparator ("<5" bounds nothing
    exactly)."""
    if not isinstance(quantity, dict) or _str(quantity.get("comparator")):
        return None
    value = quantity.get("value")
    return float(value) if isinstance(value, (int, Decimal)) and not isinstance(value, bool) else None


def _measured(quantity: object) -> tuple[str, str | None] | None:
    """A quantity's number as written, with its comparator ("<0.5"), and its unit; None when it has no number."""
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), (int, Decimal)):
        return None
    number = (_str(quantity.get("comparator")) or "") + _number(quantity["value"])
    return number, _str(quantity.get("unit")) or _str(quantity.get("code"))


def _number(value: object) -> str:
    if not isinstance(value, Decimal) or -int(value.as_tuple().exponent) <= _MAX_WRITTEN_PLACES:
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    # Two decimals, or three significant digits for values below 0.1.
    places = max(2, 2 - value.adjusted())
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return format(rounded, "f").rstrip("0").rstrip(".")


def _reference_range(range_: object) -> str | None:
    if not isinstance(range_, dict):
        return None
    if text := _str(range_.get("text")):
        return f"reference {text}"
    low, high = _quantity(range_.get("low")), _quantity(range_.get("high"))
    if low and high:
        return f"reference {low} to {high}"
    return f"reference above {low}" if low else (f"reference below {high}" if high else None)


def _statuses(resource: Json) -> list[str | None]:
    verification = _concept(resource.get("verificationStatus"))
    return [_concept(resource.get("clinicalStatus")), None if verification == "confirmed" else verification]


def _status(resource: Json) -> str | None:
    """A condition's or allergy's one status: clinical, else verification ("refuted" has no clinical status)."""
    return _concept(resource.get("clinicalStatus")) or _concept(resource.get("verificationStatus"))


def _observation_heading(resource: Json) -> str:
    categories = {code.lower() for category in _list(resource.get("category")) for code in _codes(category)}
    if "laboratory" in categories:
        return _LABS
    if categories & {"vital-signs", "vital-sign"}:
        return _VITALS
    if "social-history" in categories:
        return _SOCIAL
    return _OBSERVATIONS


def _medication_name(resource: Json, context: _Context) -> str | None:
    name = _concept(resource.get("medicationCodeableConcept"))
    return name or context.name(resource.get("medicationReference"), resource)


def _onset(resource: Json) -> str | None:
    return _date(resource.get("onsetDateTime")) or _date(_get(resource, "onsetPeriod", "start"))


def _prescribed(resource: Json) -> str | None:
    return (
        _date(resource.get("authoredOn"))
        or _date(resource.get("effectiveDateTime"))
        or _date(_get(resource, "effectivePeriod", "start"))
        or _date(resource.get("dateAsserted"))
    )


def _performed(resource: Json) -> str | None:
    return _date(resource.get("performedDateTime")) or _date(_get(resource, "performedPeriod", "start"))


def _effective(resource: Json) -> str | None:
    return (
        _date(resource.get("effectiveDateTime"))
        or _date(_get(resource, "effectivePeriod", "start"))
        or _date(resource.get("effectiveInstant"))
    )


_DATE_KEYS = ("effectiveDateTime", "occurrenceDateTime", "performedDateTime", "authoredOn", "recordedDate",
              "onsetDateTime", "date", "started", "issued", "created", "dateAsserted", "sent")
_PERIOD_KEYS = ("effectivePeriod", "occurrencePeriod", "performedPeriod", "period")


def _first_date(resource: Json) -> str | None:
    for key in _DATE_KEYS:
        if date := _date(resource.get(key)):
            return date
    for key in _PERIOD_KEYS:
        if date := _date(_get(resource, key, "start")):
            return date
    return None


# Parts of a resource that name no clinical thing: who, where, which record.
_NOT_NAMES = frozenset({"extension", "modifierExtension", "meta", "identifier", "contained", "subject", "patient",
                        "encounter", "requester", "performer", "recorder", "asserter", "author", "text"})


def _texts(value: object, key: str = "") -> Iterator[str]:
    """The names a resource gives, anywhere in it: coded concepts, titles, descriptions."""
    if isinstance(value, dict):
        if "coding" in value or ("text" in value and isinstance(value.get("text"), str) and len(value) <= 2):
            if concept := _concept(value):
                yield concept
            return
        for inner_key, inner in value.items():
            if inner_key not in _NOT_NAMES:
                yield from _texts(inner, inner_key)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, key)
    elif isinstance(value, str) and key in ("title", "description", "name", "display") and value.strip():
        yield value.strip()


def _sections(sections: list[Json]) -> Iterator[Json]:
    for section in sections:
        yield section
        yield from _sections(_list(section.get("section")))


def _narrative(text: object) -> str | None:
    div = _str(text.get("div")) if isinstance(text, dict) else None
    return _html_text(div) if div else None


class _HtmlText(HTMLParser):
    _BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()).strip(" |") for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _label(resource: Json) -> str | None:
    """What a resource that another refers to is called."""
    if name := _human_name(resource.get("name")):
        return name
    if name := _str(resource.get("name")):
        return name
    for key in ("code", "medicationCodeableConcept", "vaccineCode", "type"):
        if concept := _concept(resource.get(key)):
            return concept
    return None


def _human_name(names: object) -> str | None:
    candidates = _list(names)
    if not candidates:
        return None
    name = next((n for n in candidates if n.get("use") == "official"), candidates[0])
    if text := _str(name.get("text")):
        return text
    parts = [*_strs(name.get("prefix")), *_strs(name.get("given")), _str(name.get("family"))]
    parts += _strs(name.get("suffix"))
    return " ".join(part for part in parts if part) or None


def _address(address: object) -> str | None:
    if not isinstance(address, dict):
        return None
    if text := _str(address.get("text")):
        return text
    parts = [_str(address.get(key)) for key in ("city", "state", "country")]
    return ", ".join(part for part in parts if part) or None


def _concept(concept: object) -> str | None:
    """The words of a CodeableConcept: its text, else its first coding's display, else that code."""
    if not isinstance(concept, dict):
        return None
    if text := _str(concept.get("text")):
        return text
    for coding in _list(concept.get("coding")):
        if label := _str(coding.get("display")) or _str(coding.get("code")):
            return label
    return None


def _concepts(concepts: object) -> list[str]:
    return [text for concept in _list(concepts) if (text := _concept(concept))]


def _named(concepts: object) -> Json | None:
    """The first of a list of concepts that has words."""
    return next((concept for concept in _list(concepts) if _concept(concept)), None)


def _codes(concept: object) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {code for coding in _list(concept.get("coding")) if (code := _str(coding.get("code")))}


def _with_details(text: str, details: list[str | None]) -> str:
    details = [detail for detail in details if detail]
    return f"{text} ({'; '.join(details)})" if details else text  # type: ignore[arg-type]


def _get(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _date(value: object) -> str | None:
    return iso_date(value) if isinstance(value, str) else None


def _str(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _strs(values: object) -> list[str]:
    return [text for value in values if (text := _str(value))] if isinstance(values, list) else []


def _list(value: object) -> list[Json]:
    """The objects of a JSON array; anything else, and anything in it that is no object, reads as nothing."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
