"""Who a document is about: the patient's name, date of birth and medical record number, and where each was read.

FHIR and C-CDA files say it in one line their readers write, its parts joined by "; ":
"Mr. Dennis Durgan; male; born 1949-04-19; ...; medical record number 78f005f3-..." and
"Patient: Eve Betterhalf; female; born 1975-05-01; ...; record number 444222222".
Free text says it only in labelled fields ("Patient Name:", "DOB:", "MRN:"). A name or date
that no label introduces is never taken: notes are full of other people's names and other dates.
"""

import re
from collections.abc import Callable
from datetime import date
from typing import Literal

from pydantic import BaseModel

from documents.dates import find_dates, iso_date
from documents.document import CcdaSource, Document, FhirSource, Span

Field = Literal["name", "birth_date", "mrn", "sex", "age", "died"]
_FIELDS: tuple[Field, ...] = ("name", "birth_date", "mrn", "sex", "age", "died")


class PatientIdentity(BaseModel):
    name: str | None = None  # as written, without a title: "Dennis Durgan"
    birth_date: str | None = None  # ISO YYYY-MM-DD
    mrn: str | None = None  # the medical record number as written
    sex: Literal["female", "male"] | None = None
    age: int | None = None  # in years, as the document states it ("a 61-year-old woman")
    died: str | None = None  # ISO date of death, or "yes" when the document says only that the patient died
    spans: dict[Field, Span] = {}  # where each value above was read


def identify(document: Document) -> PatientIdentity:
    """Who `document` says it is about; fields it does not say stay None."""
    if document.kind in ("fhir", "ccda"):
        found = _from_patient_line(document)
    else:
        found = _from_labels(document)
    in_order = [(field, found[field]) for field in _FIELDS if field in found]
    return PatientIdentity(
        **{field: value for field, (value, _) in in_order},  # type: ignore[arg-type]
        spans={field: span for field, (_, span) in in_order},
    )


# Titles are not part of the name, in any kind of document: "Mr. Dennis Durgan" is Dennis Durgan.
_TITLE = re.compile(r"(?i:mr|mrs|ms|miss|mx|dr|prof)\.?[ \t]+")


# --- FHIR and C-CDA: the line the reader wrote from the patient resource or header ---------

_CCDA_PATIENT = "Patient: "
_PART = re.compile(r" *([^;]+)")
_BORN = re.compile(r"born (\S+)")
_DIED = re.compile(r"died (\S+)")
_SEXES = {"female": "female", "male": "male"}
_RECORD_NUMBER = re.compile(r"(?:medical )?record number (\S.*)")


def _from_patient_line(document: Document) -> dict[Field, tuple[str, Span]]:
    for page in document.pages:
        for line in page.sources:
            source, start = line.source, line.start
            if isinstance(source, CcdaSource):
                # The C-CDA header (section None) also holds the date, author and encounter lines.
                if source.section is not None or not page.text.startswith(_CCDA_PATIENT, start):
                    continue
                start += len(_CCDA_PATIENT)
            elif not (isinstance(source, FhirSource) and source.resource_type == "Patient"):
                continue
            return _read_patient_line(page.text, page.number, start, line.end)
    return {}


def _read_patient_line(text: str, page: int, start: int, end: int) -> dict[Field, tuple[str, Span]]:
    found: dict[Field, tuple[str, Span]] = {}
    for position, part in enumerate(_PART.finditer(text, start, end)):
        part_start, part_end = part.span(1)
        # The readers write every other part in lower case ("male", "born ...", "unnamed
        # patient"), so a first part in lower case means the file gives no name.
        if position == 0 and text[part_start].isupper():
            if title := _TITLE.match(text, part_start, part_end):
                part_start = title.end()
            found["name"] = (text[part_start:part_end], Span(page=page, start=part_start, end=part_end))
        elif (born := _BORN.fullmatch(text, part_start, part_end)) and (birth := _full_date(born[1])):
            found.setdefault("birth_date", (birth, Span(page=page, start=born.start(1), end=born.end(1))))
        elif record := _RECORD_NUMBER.fullmatch(text, part_start, part_end):
            found.setdefault("mrn", (record[1], Span(page=page, start=record.start(1), end=record.end(1))))
        elif (sex := _SEXES.get(text[part_start:part_end])) is not None:
            found.setdefault("sex", (sex, Span(page=page, start=part_start, end=part_end)))
        elif died := _DIED.fullmatch(text, part_start, part_end):
            found.setdefault("died", (iso_date(died[1]) or died[1], Span(page=page, start=died.start(1), end=died.end(1))))
        elif text[part_start:part_end] == "deceased":
            found.setdefault("died", ("yes", Span(page=page, start=part_start, end=part_end)))
    return found


def _full_date(value: str) -> str | None:
    """`value` in ISO form; None for a year or a month alone, too coarse to compare."""
    iso = iso_date(value)
    return iso if iso and len(iso) == len("YYYY-MM-DD") else None


# --- Free text: labelled fields ---------------------------------------------------------

_UPPER = "A-ZÀ-ÖØ-Þ"
_LETTER = "A-Za-zÀ-ÖØ-öø-ÿ"

# The labels that introduce each field. A bare "Name:" counts only at the start of a
# line, since "Drug Name:" or "Provider Name:" name something else.
_LABELS: dict[Field, re.Pattern[str]] = {
    "name": re.compile(r"(?:\bpatient(?:'s)?(?:[ \t]+name)?|^[ \t]*name)[ \t]*:[ \t]*", re.I | re.M),
    # Only "Born:" needs its colon: "born 05/06/2010" may be anyone's birth in a sentence.
    "birth_date": re.compile(
        r"\b(?:(?:dob|d\.o\.b\.?|date[ \t]+of[ \t]+birth|birth[ \t]*date)[ \t]*:?|born[ \t]*:)[ \t]*", re.I
    ),
    # The colon is often left out after these labels: "DOB 03/04/1950", "MRN 12345", "MR# 12345".
    "mrn": re.compile(
        r"\b(?:mrn|mr[ \t]*#|medical[ \t]+record[ \t]+(?:number|no\.?|#))(?![a-z])[ \t]*#?[ \t]*:?[ \t]*", re.I
    ),
    "sex": re.compile(r"\b(?:sex|gender)[ \t]*:[ \t]*", re.I),
    "age": re.compile(r"\bage[ \t]*:[ \t]*", re.I),
    # A death the note states of the patient: "Deceased: 1987-11-24", "She died 9/24/92"; not "her father died".
    "died": re.compile(
        r"\b(?:(?:deceased|date[ \t]+of[ \t]+death)[ \t]*:|(?:she|he|patient)[ \t]+(?:died|expired|passed[ \t]+away)"
        r"(?:[ \t]+on)?)[ \t]*",
        re.I,
    ),
}
# Words that start another field of a header, where a name read on would run into it:
# "Patient: Stevie Cormier Sex: male", "Name: John Smith Phone Number: ...".
_OTHER_FIELDS = (
    "age sex gender phone tel address account acct visit admission admitted discharge room bed unit ward "
    "provider physician attending insurance race ethnicity language ssn date encounter dob mrn medical"
).split()
# Where a labelled value ends on its line: a column break, another "Label:" or "Label#",
# or a word of another field.
_VALUE_END = re.compile(rf"[;|\t]| {{2,}}|\b[{_LETTER}]+[ \t]*[:#]|\b(?:{'|'.join(_OTHER_FIELDS)})\b", re.I)

# A name of two to six words, each capitalised or an initial, "Last, First" included;
# lower-case particles ("van", "de la") only inside it.
_WORD = rf"[{_UPPER}]\.|[{_UPPER}](?:[{_LETTER}]|['’-](?=[{_LETTER}]))*"
_PARTICLE = r"(?:van|von|de|del|della|der|den|da|di|du|la|le|ten|ter|bin|ibn|al)"
_NAME = re.compile(rf"(?:{_TITLE.pattern})?(?P<name>(?:{_WORD})(?:,?[ \t]+(?:{_PARTICLE}[ \t]+)*(?:{_WORD})){{1,5}})")
# What may follow a name in its field: nothing, or a comma, bracket or full stop and
# whatever comes after it. Anything else means the words were a sentence, not a name:
# "PATIENT: THE PATIENT IS A 45-YEAR-OLD MALE".
_AFTER_NAME = re.compile(r"[ \t]*(?:[,(.]|$)")
_MRN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")

Reader = Callable[[str, int, int], tuple[str, int, int] | None]


def _read_name(text: str, start: int, end: int) -> tuple[str, int, int] | None:
    match = _NAME.match(text, start, end)
    if match is None or not _AFTER_NAME.match(text, match.end(), end):
        return None
    return match["name"], match.start("name"), match.end("name")


def _read_birth_date(text: str, start: int, end: int) -> tuple[str, int, int] | None:
    found = find_dates(text, start, end)
    if not found or found[0].start != start or len(found[0].date) != len("YYYY-MM-DD"):
        return None
    birth, written = found[0].date, text[found[0].start : found[0].end]
    if birth > date.today().isoformat():
        if re.search(r"\d{4}", written):
            return None  # a birth date after today is a mistake in the note, not the patient's
        # A two-digit year up to 68 reads as 20xx ("03/04/50" as 2050), but nobody is born
        # in the future: the year is in the century before.
        birth = f"{int(birth[:4]) - 100}{birth[4:]}"
    return birth, found[0].start, found[0].end


def _read_mrn(text: str, start: int, end: int) -> tuple[str, int, int] | None:
    match = _MRN.match(text, start, end)
    # A record number has digits; without them the label was a word in a sentence.
    if match is None or not any(character.isdigit() for character in match[0]):
        return None
    return match[0], match.start(), match.end()


_SEX_WORDS = {"f": "female", "female": "female", "m": "male", "male": "male", "woman": "female", "man": "male"}


def _read_sex(text: str, start: int, end: int) -> tuple[str, int, int] | None:
    match = re.match(r"[A-Za-z]+", text[start:end])
    if match is None or (sex := _SEX_WORDS.get(match[0].lower())) is None:
        return None
    return sex, start, start + match.end()


def _read_age(text: str, start: int, end: int) -> tuple[str, int, int] | None:
    match = re.match(r"(\d{1,3})(?!\d)", text[start:end])
    return None if match is None else (str(int(match[1])), start, start + match.end(1))


def _read_death(text: str, start: int, end: int) -> tuple[str, int, int] | None:
    found = find_dates(text, start, end)
    if not found or found[0].start != start:
        return None
    return found[0].date, found[0].start, found[0].end


_READERS: dict[Field, Reader] = {
    "name": _read_name, "birth_date": _read_birth_date, "mrn": _read_mrn, "sex": _read_sex, "age": _read_age,
    "died": _read_death,
}

# How a note introduces its patient: "a 61-year-old white female", "23 y/o male", "This 45-year-old gentleman".
_AGE_AND_SEX = re.compile(
    r"\b(?P<age>\d{1,3})[ \t-]*(?:years?[ \t-]*old|y/?o|y\.o\.)(?:[ \t,]+(?:[a-z]+[ \t]+){0,2}?"
    r"(?P<sex>female|male|woman|man|lady|gentleman|girl|boy))?\b",
    re.I,
)
_SEX_OF = {"female": "female", "woman": "female", "lady": "female", "girl": "female",
           "male": "male", "man": "male", "gentleman": "male", "boy": "male"}


def _from_labels(document: Document) -> dict[Field, tuple[str, Span]]:
    found: dict[Field, tuple[str, Span]] = {}
    for field, label in _LABELS.items():
        if (labelled := _first_labelled(document, label, _READERS[field])) is not None:
            found[field] = labelled
    # A note that labels no age or sex says them where it introduces the patient, the first time.
    for page in document.pages:
        if (introduced := _AGE_AND_SEX.search(page.text)) is None:
            continue
        age = Span(page=page.number, start=introduced.start("age"), end=introduced.end("age"))
        found.setdefault("age", (str(int(introduced["age"])), age))
        if introduced["sex"]:
            sex = Span(page=page.number, start=introduced.start("sex"), end=introduced.end("sex"))
            found.setdefault("sex", (_SEX_OF[introduced["sex"].lower()], sex))
        break
    return found


def _first_labelled(document: Document, label: re.Pattern[str], read: Reader) -> tuple[str, Span] | None:
    for page in document.pages:
        text = page.text
        for match in label.finditer(text):
            start = match.end()
            line_end = text.find("\n", start)
            if line_end < 0:
                line_end = len(text)
            next_field = _VALUE_END.search(text, start, line_end)
            end = next_field.start() if next_field else line_end
            if (value := read(text, start, end)) is not None:
                return value[0], Span(page=page.number, start=value[1], end=value[2])
    return None
