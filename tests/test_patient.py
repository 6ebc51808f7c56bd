"""documents.identify: who a document is about, read from FHIR, C-CDA and labelled free text, never guessed."""

import json
import re
from pathlib import Path

import pytest

from documents import Document, Page, PatientIdentity, identify, load
from documents.dates import find_dates

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def corpus_files() -> list[str]:
    return sorted(path.name for path in CORPUS.glob("*.*") if path.suffix != ".md") if CORPUS.is_dir() else []


def text_document(text: str, kind: str = "txt") -> Document:
    return Document(name=f"note.{kind}", sha256="0" * 64, kind=kind, pages=[Page(number=1, text=text)])


def read(text: str) -> tuple[str | None, str | None, str | None]:
    identity = identify(text_document(text))
    return identity.name, identity.birth_date, identity.mrn


def first_and_last(name: str) -> tuple[str, str]:
    words = re.findall(r"\w+", name.lower())
    return words[0], words[-1]


@pytest.mark.parametrize("file_name", corpus_files())
def test_corpus_identity_matches_truth(corpus: Path, file_name: str) -> None:
    document = load(corpus / file_name)
    identity = identify(document)
    truth = json.loads((corpus / "truth" / f"{Path(file_name).stem}.json").read_text())["facts"].get("patient")
    if truth is None:
        # Notes with no labelled patient fields: no name, birth date or record number is guessed from their
        # sentences; only the age and sex the note introduces its patient with.
        assert (identity.name, identity.birth_date, identity.mrn) == (None, None, None)
        return
    # Truth gives "Adam Frankie Everyman" where the record says "Mr. Adam Frankie Everyman".
    assert identity.name is not None and first_and_last(identity.name) == first_and_last(truth["name"])
    assert identity.birth_date == truth["birth_date"]
    if document.kind in ("fhir", "ccda"):
        assert identity.mrn

    assert identity.sex == truth["gender"]
    assert identity.died == truth.get("deceased")
    # Each value was read where a span says: the name and number as written, dates in any spelling.
    values = identity.model_dump(exclude={"spans"}, exclude_none=True)
    assert set(identity.spans) == set(values)
    for field, span in identity.spans.items():
        written = document.pages[span.page - 1].text[span.start : span.end]
        if field in ("birth_date", "died"):
            assert [found.date for found in find_dates(written)] == [values[field]]
        else:
            assert written.lower() == str(values[field]).lower()


def test_fhir_name_drops_the_title(corpus: Path) -> None:
    identity = identify(load(corpus / "synthea_fhir_dennis_durgan.json"))
    assert (identity.name, identity.birth_date) == ("Dennis Durgan", "1949-04-19")
    assert identity.mrn == "78f005f3-7b33-4a5b-84d9-28417b36dbab"


def test_ccda_header(corpus: Path) -> None:
    identity = identify(load(corpus / "ccda_progress_note_adam_everyman.xml"))
    assert (identity.name, identity.birth_date, identity.mrn) == ("Adam Frankie Everyman", "1954-11-25", "12345")


def test_labelled_text_fields() -> None:
    assert read("Patient: John Smith\nDOB: 03/04/1950\nMRN: 12345") == ("John Smith", "1950-03-04", "12345")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Fields on one line, in columns, "Last, First", a two-digit year of birth.
        ("Patient Name: SMITH, JOHN A    DOB: 3/4/50    MR# 00123", ("SMITH, JOHN A", "1950-03-04", "00123")),
        # A printed header whose fields follow each other on one line.
        (
            "Patient: Stevie Cormier Sex: male Date of birth: April 23, 1920 (1920-04-23)",
            ("Stevie Cormier", "1920-04-23", None),
        ),
        ("Name: Mr. José García-López Age: 45\nBorn: 1975-05-01", ("José García-López", "1975-05-01", None)),
        ("Patient's name: Ludwig van Beethoven.\nMedical Record Number: A-778", ("Ludwig van Beethoven", None, "A-778")),
        ("Patient: Eve Betterhalf, 38-year-old female (DOB 05/01/1975)", ("Eve Betterhalf", "1975-05-01", None)),
    ],
)
def test_labelled_field_spellings(text: str, expected: tuple[str | None, str | None, str | None]) -> None:
    assert read(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # No labels: the names and dates in sentences are anyone's.
        "John Smith, born 03/04/1950, was seen by Dr. Jones on 05/06/2020 for chest pain.",
        # Other things that have a name, and a label with no number after it.
        "Drug Name: Lisinopril 10 mg\nMRN: pending",
        # A birth date in the future, written with its century, is a mistake, not a date to compare.
        "DOB: 01/02/2090",
    ],
)
def test_nothing_is_guessed(text: str) -> None:
    assert identify(text_document(text)) == PatientIdentity()


@pytest.mark.parametrize(
    ("text", "sex", "age"),
    [
        # A label followed by a sentence is no name, but the sentence introduces the patient.
        ("PATIENT: THE PATIENT IS A 45-YEAR-OLD MALE WITH CHEST PAIN.", "male", 45),
        ("Patient: 45-year-old male.", "male", 45),
        ("The patient is a 61-year-old white female status post right total knee replacement.", "female", 61),
        ("HPI: 23 y/o woman with allergies. Her father, a 70-year-old man, has asthma.", "female", 23),
        ("Sex: F\nAge: 7", "female", 7),
    ],
)
def test_age_and_sex_are_read_where_the_note_introduces_its_patient(text: str, sex: str, age: int) -> None:
    identity = identify(text_document(text))
    assert (identity.name, identity.sex, identity.age) == (None, sex, age)


def test_a_death_is_read_only_when_the_note_says_the_patient_died() -> None:
    assert identify(text_document("She died 9/24/92 of cervical cancer.")).died == "1992-09-24"
    assert identify(text_document("Deceased: 1987-11-24")).died == "1987-11-24"
    assert identify(text_document("Her father died 9/24/92 of a stroke.")).died is None


def test_first_labelled_value_on_any_page() -> None:
    document = Document(
        name="scan.pdf",
        sha256="0" * 64,
        kind="pdf",
        pages=[
            Page(number=1, text="Discharge summary"),
            Page(number=2, text="Patient: Eve Betterhalf"),
            Page(number=3, text="Patient: Adam Everyman"),
        ],
    )
    identity = identify(document)
    assert identity.name == "Eve Betterhalf"
    assert identity.spans["name"].page == 2
