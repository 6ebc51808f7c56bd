"""documents: clinical facts read from FHIR resources and C-CDA entries, each on the line it was written into."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pydantic
import pytest
from conftest import CCDA_FILES, FHIR_FILES
from rapidfuzz import fuzz

from documents import Document, Fact, FhirSource, Page, Span, load

FREE_TEXT_FILES = [
    "mtsamples_allergic_rhinitis.txt",
    "synthea_summary_stevie_cormier.pdf",
    "synthea_summary_dusty_stracke.docx",
]
ASA = "synthea_fhir_asa_hermiston.json"
CCD = "ccda_ccd_eve_betterhalf.xml"
DISCHARGE = "ccda_discharge_summary_isabella_jones.xml"
V3 = 'xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'

# The truth file's lists, and the category of fact each is read as.
CATEGORIES = {
    "medications": "medication",
    "allergies": "allergy",
    "conditions": "condition",
    "labs": "lab",
    "procedures": "procedure",
    "vitals": "vital",
}
_HYPERTENSION = (
    "named only in the narrative's Indications column; the coded indication of atenolol is"
    " 'Hypertensive disorder, systemic arterial', a fact under that name"
)
_ASSESSMENT = "named only in the free-text assessment; no entry codes it"
_HPI_LABS = (
    "a value in the free-text history of present illness ('Lab at discharge'); the document has no results entries"
)
# Truth that no coded entry states, so that no fact can be read for it:
# (file, truth list, name) and why.
NOT_IN_ENTRIES: dict[tuple[str, str, str], str] = {
    ("ccda_ccd_eve_betterhalf.xml", "conditions", "Hypertension"): _HYPERTENSION,
    ("ccda_progress_note_adam_everyman.xml", "conditions", "Hypertension"): _HYPERTENSION,
    ("ccda_referral_note_eve_betterhalf.xml", "conditions", "Hypertension"): _HYPERTENSION,
    ("ccda_progress_note_adam_everyman.xml", "conditions", "Recurrent GI bleed"): _ASSESSMENT,
    ("ccda_progress_note_adam_everyman.xml", "conditions", "Hypotension"): _ASSESSMENT,
    ("ccda_progress_note_adam_everyman.xml", "conditions", "Acute on chronic anemia"): _ASSESSMENT,
    ("ccda_progress_note_adam_everyman.xml", "conditions", "Azotemia / acute renal failure"): _ASSESSMENT,
    ("ccda_progress_note_adam_everyman.xml", "conditions", "Hyperkalemia"): _ASSESSMENT,
    ("ccda_referral_note_eve_betterhalf.xml", "conditions", "Obesity"): _ASSESSMENT,
    ("ccda_referral_note_eve_betterhalf.xml", "conditions", "Pressure ulcer of left knee"): (
        "the free text's words; the coded wound observation says 'pressure ulcer stage 3', without the site,"
        " in a skin findings section, which is no problem list"
    ),
    **{
        ("ccda_discharge_summary_isabella_jones.xml", "labs", name): _HPI_LABS
        for name in (
            "Glucose", "BUN", "Creatinine", "Hematocrit (admission)", "Hematocrit (discharge)", "WBC",
            "Platelet count", "INR", "PTT",
        )
    },
}


def truth_of(corpus: Path, file_name: str) -> dict:
    return json.loads((corpus / "truth" / f"{Path(file_name).stem}.json").read_text())["facts"]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def same_name(truth: str, fact: str, exact: bool) -> bool:
    """Case and punctuation aside: the same words, or, unless `exact`, one's words all in the other or nearly so.

    The FHIR truth lists its resources' own names, so there a fact must have
    the same; the C-CDA truth follows the narrative, which words things its
    own way ("Eggs" for the coded "Egg", "Proventil ... (albuterol)").
    """
    truth_text, fact_text = " ".join(words(truth)), " ".join(words(fact))
    if truth_text == fact_text:
        return True
    if exact:
        return False
    contained = all(word in fact_text for word in words(truth)) or all(word in truth_text for word in words(fact))
    return contained or fuzz.token_set_ratio(truth_text, fact_text) >= 90


def number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def same_value(truth: float | int | str, fact: Fact) -> bool:
    """The truth's value as the fact writes it; the truth's raw floats rounded to the places the fact shows."""
    if truth == "Pending":
        # A result without a value yet, not final: C-CDA's "active" status.
        return fact.value is None and fact.status not in (None, "completed", "final")
    written = number(fact.value)
    if isinstance(truth, str) or written is None or fact.value is None:
        return str(truth).lower() == (fact.value or "").lower()
    places = len(fact.value.split(".")[1]) if "." in fact.value else 0
    return abs(truth - written) <= 0.5 * 10**-places + 1e-9


def matches(item: str | dict, fact: Fact, exact: bool) -> bool:
    if isinstance(item, str):
        return same_name(item, fact.name, exact)
    if not same_name(item["name"], fact.name, exact):
        return False
    return fact.category != "lab" or same_value(item["value"], fact)


def truth_name(item: str | dict) -> str:
    return item if isinstance(item, str) else item["name"]


def unmatched_truth(corpus: Path, file_name: str) -> set[tuple[str, str, str]]:
    facts = [fact for fact in load(corpus / file_name).facts if fact.origin == "entry"]
    truth = truth_of(corpus, file_name)
    return {
        (file_name, key, truth_name(item))
        for key, category in CATEGORIES.items()
        for item in truth.get(key, [])
        if not any(matches(item, fact, file_name in FHIR_FILES) for fact in facts if fact.category == category)
    }


@pytest.mark.parametrize("file_name", FHIR_FILES + CCDA_FILES)
def test_every_true_fact_is_read_from_the_entries(corpus: Path, file_name: str) -> None:
    # Everything the truth lists is a fact, but what no coded entry states.
    expected = {key for key in NOT_IN_ENTRIES if key[0] == file_name}
    assert unmatched_truth(corpus, file_name) == expected


@pytest.mark.parametrize("file_name", FHIR_FILES + CCDA_FILES)
def test_every_fact_points_to_a_written_line_that_names_it(corpus: Path, file_name: str) -> None:
    document = load(corpus / file_name)
    page = document.pages[0]
    lines = {(source.start, source.end) for source in page.sources}
    assert document.facts
    for fact in document.facts:
        if fact.origin == "entry":
            assert fact.span.page == 1 and (fact.span.start, fact.span.end) in lines
            line = page.text[fact.span.start : fact.span.end]
            assert fact.name.lower() in line.lower(), (fact.name, line)
        else:  # read from a narrative line: its words lie inside that line and, but a test's listed name, name it
            assert any(start <= fact.span.start < fact.span.end <= end for start, end in lines)
            words = page.text[fact.span.start : fact.span.end]
            assert fact.category in ("lab", "vital") or fact.name.lower() in words.lower(), (fact.name, words)


# --- FHIR ----------------------------------------------------------------------------

FHIR_CATEGORIES = {
    "AllergyIntolerance": "allergy",
    "Condition": "condition",
    "MedicationRequest": "medication",
    "MedicationStatement": "medication",
    "Procedure": "procedure",
    "Immunization": "immunization",
    "Encounter": "encounter",
}


def fhir_category(resource: dict) -> str | None:
    if resource["resourceType"] != "Observation":
        return FHIR_CATEGORIES.get(resource["resourceType"])
    codes = {coding["code"] for category in resource.get("category", []) for coding in category["coding"]}
    if "laboratory" in codes:
        return "lab"
    # Synthea writes one as "vital-sign".
    return "vital" if codes & {"vital-signs", "vital-sign"} else None


@pytest.mark.parametrize("file_name", FHIR_FILES)
def test_every_clinical_fhir_resource_is_one_fact_on_its_line(corpus: Path, file_name: str) -> None:
    document = load(corpus / file_name)
    entries = json.loads((corpus / file_name).read_text())["entry"]
    resources = {entry["resource"]["id"]: entry["resource"] for entry in entries}
    expected = Counter(category for resource in resources.values() if (category := fhir_category(resource)))
    assert Counter(fact.category for fact in document.facts) == expected
    sources = {(source.start, source.end): source.source for source in document.pages[0].sources}
    for fact in document.facts:
        source = sources[(fact.span.start, fact.span.end)]
        assert isinstance(source, FhirSource) and fhir_category(resources[source.id]) == fact.category


def test_fhir_facts_are_read_as_their_lines_write_them(corpus: Path) -> None:
    facts = load(corpus / ASA).facts
    assert Fact(
        category="lab",
        name="Triglycerides",
        date="2018-06-06",
        status="final",
        value="134.63",  # stored as 134.6303398426167, and written so
        unit="mg/dL",
        code="http://loinc.org|2571-8",
        span=next(f.span for f in facts if f.name == "Triglycerides" and f.date == "2018-06-06"),
    ) in facts
    pressure = next(f for f in facts if f.name == "Blood Pressure" and f.date == "2012-09-19")
    assert (pressure.category, pressure.value, pressure.unit) == ("vital", "122.16/85.12", "mm[Hg]")
    naproxen = [(f.date, f.status) for f in facts if f.category == "medication" and f.name.startswith("Naproxen")]
    assert ("2017-02-19", "active") in naproxen
    sinusitis = [f for f in facts if f.name == "Viral sinusitis (disorder)"]
    assert ("2016-05-23", "resolved") in [(f.date, f.status) for f in sinusitis]
    nut = next(f for f in facts if f.name == "Allergy to nut")
    assert (nut.category, nut.status, nut.code) == ("allergy", "active", "http://snomed.info/sct|91934008")


def test_fhir_medication_dosage_is_read_into_its_parts(tmp_path: Path) -> None:
    request = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "authoredOn": "2020-01-03",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "197361", "display": "Amlodipine 5 MG Oral Tablet"}]},
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            "route": {"text": "oral"},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            "asNeededBoolean": True,
        }],
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    [fact] = load(path).facts
    assert (fact.name, fact.date, fact.status) == ("Amlodipine 5 MG Oral Tablet", "2020-01-03", "active")
    assert (fact.dose, fact.route, fact.frequency) == ("1 tablet", "oral", "2 times per day, as needed")
    assert fact.code == "http://www.nlm.nih.gov/research/umls/rxnorm|197361"


# --- C-CDA ---------------------------------------------------------------------------


def line_of(document: Document, fact: Fact) -> str:
    return document.pages[0].text[fact.span.start : fact.span.end]


def test_ccda_medication_is_read_with_dose_route_and_frequency_on_its_row(corpus: Path) -> None:
    document = load(corpus / CCD)
    atenolol = next(fact for fact in document.facts if fact.name == "atenolol 25 MG Oral Tablet")
    assert atenolol.model_dump(exclude={"span"}) == {
        "category": "medication",
        "name": "atenolol 25 MG Oral Tablet",
        "date": "2012-03-18",
        "end_date": None,
        "status": "active",
        "value": None,
        "unit": None,
        "reference_low": None,
        "reference_high": None,
        "dose": "1",
        "route": "Oral Route of Administration",
        "frequency": "every 12 hours",
        "reaction": None,
        "code": "http://www.nlm.nih.gov/research/umls/rxnorm|197380",
        "origin": "entry",
        "context": None,
        "section": None,
    }
    assert line_of(document, atenolol).startswith("Atenolol 25 MG Oral Tablet | 1 every 12 hours Orally")
    # Coded under its generic name, which the narrative does not write: its coded line does.
    albuterol = next(fact for fact in document.facts if fact.name.startswith("albuterol"))
    assert (albuterol.dose, albuterol.frequency) == ("2 Puff", "every 6 hours")
    assert line_of(document, albuterol) == "Coded entry: albuterol 0.09 MG/ACTUAT [Proventil]; Aerosol"
    asthma = next(fact for fact in document.facts if fact.name == "Asthma")
    assert asthma.category == "condition" and line_of(document, asthma).startswith("Proventil 0.09 MG/ACTUAT")


def test_ccda_results_and_vitals_keep_their_values(corpus: Path) -> None:
    document = load(corpus / CCD)
    labs = {fact.name: fact for fact in document.facts if fact.category == "lab"}
    hemoglobin = labs["Hemoglobin"]
    assert (hemoglobin.value, hemoglobin.unit, hemoglobin.date) == ("13.2", "g/dL", "2008-03-19")
    assert line_of(document, hemoglobin).startswith("Hemoglobin | 13.2 g/dL")
    pending = labs["Urea nitrogen, Serum"]
    assert (pending.value, pending.status) == (None, "active")
    assert "Pending" in line_of(document, pending)
    # The vital signs table names them otherwise ("Weight"), so their coded line writes them.
    weight = next(fact for fact in document.facts if fact.category == "vital" and "Weight" in fact.name)
    assert (weight.value, weight.unit, weight.date) == ("86", "kg", "2012-09-10")
    assert "Patient Body Weight - Measured 86 kg (2012-09-10)" in line_of(document, weight)


def test_ccda_allergies_problems_and_procedures(corpus: Path) -> None:
    document = load(corpus / DISCHARGE)
    allergies = {fact.name: fact for fact in document.facts if fact.category == "allergy"}
    assert line_of(document, allergies["Egg"]) == "Eggs | Hives | Moderate | Active"
    assert (allergies["Egg"].reaction, allergies["Egg"].status) == ("Wheal", "active")
    assert line_of(document, allergies["penicillin G"]) == "Coded entry: penicillin G"
    stools = next(fact for fact in document.facts if fact.name == "Dark stools")
    assert (stools.category, stools.date, stools.status) == ("condition", "2014-09-06", "active")
    assert line_of(document, stools) == "Dark stools | Onset: Sept 6 2014 | Active"
    [procedure] = [fact for fact in document.facts if fact.category == "procedure" and fact.origin == "entry"]
    assert (procedure.name, procedure.date) == ("Laparoscopic appendectomy", "2014-09-10")
    assert procedure.status == "completed"
    # Two "Pneumonia" problems, one on each of the narrative's two rows that name it.
    pneumonias = [fact for fact in load(corpus / CCD).facts if fact.name == "Pneumonia" and fact.status]
    assert len({fact.span.start for fact in pneumonias}) == 2


def ccda(sections: str) -> str:
    return (
        f'<?xml version="1.0"?><ClinicalDocument {V3}><title>Clinic Note</title>'
        f"<component><structuredBody>{sections}</structuredBody></component></ClinicalDocument>"
    )


def test_ccda_names_from_the_narrative_refusals_and_results_the_narrative_lacks(tmp_path: Path) -> None:
    medications = (
        '<component><section><code code="10160-0"/><title>Medications</title>'
        '<text><table><tr><td ID="med1">Lisinopril 10 mg tablet</td><td>daily</td></tr></table></text>'
        '<entry><substanceAdministration moodCode="EVN"><statusCode code="active"/>'
        "<consumable><manufacturedProduct><manufacturedMaterial>"
        '<code code="314076" codeSystem="2.16.840.1.113883.6.88"><originalText><reference value="#med1"/>'
        "</originalText></code></manufacturedMaterial></manufacturedProduct></consumable>"
        "</substanceAdministration></entry></section></component>"
    )
    immunizations = (
        '<component><section><code code="11369-6"/><title>Immunizations</title>'
        "<text><paragraph>Flu shot refused</paragraph></text>"
        '<entry><substanceAdministration moodCode="EVN" negationInd="true"><effectiveTime value="20200105"/>'
        "<consumable><manufacturedProduct><manufacturedMaterial>"
        '<code code="141" codeSystem="2.16.840.1.113883.12.292" displayName="Influenza, seasonal, injectable"/>'
        "</manufacturedMaterial></manufacturedProduct></consumable></substanceAdministration></entry>"
        "</section></component>"
    )
    results = (
        '<component><section><code code="30954-2"/><title>Results</title><text/>'
        '<entry><organizer><effectiveTime value="20200102"/><component><observation>'
        '<code code="2345-7" codeSystem="2.16.840.1.113883.6.1" displayName="Glucose"/>'
        '<value xsi:type="PQ" value="95" unit="mg/dL"/></observation></component></organizer></entry>'
        "</section></component>"
    )
    path = tmp_path / "note.xml"
    path.write_text(ccda(medications + immunizations + results))
    document = load(path)
    lisinopril, flu, glucose = document.facts
    assert (lisinopril.name, lisinopril.code) == (
        "Lisinopril 10 mg tablet", "http://www.nlm.nih.gov/research/umls/rxnorm|314076"
    )
    assert line_of(document, lisinopril) == "Lisinopril 10 mg tablet | daily"
    assert (flu.category, flu.status, flu.date) == ("immunization", "not-done", "2020-01-05")
    assert line_of(document, flu) == "Coded entry: Influenza, seasonal, injectable"
    assert (glucose.value, glucose.unit, glucose.date) == ("95", "mg/dL", "2020-01-02")
    assert line_of(document, glucose) == "Coded entry: Glucose 95 mg/dL (2020-01-02)"


# --- The model -------------------------------------------------------------------------


def test_a_document_with_facts_round_trips_through_json(corpus: Path) -> None:
    for name in (ASA, CCD):
        document = load(corpus / name)
        assert document.facts
        assert Document.model_validate_json(document.model_dump_json()) == document


def test_a_fact_span_outside_its_page_is_refused() -> None:
    page = Page(number=1, text="Latex allergy")
    inside = Fact(category="allergy", name="Latex", span=Span(page=1, start=0, end=13))
    Document(name="a.json", sha256="0" * 64, kind="fhir", pages=[page], facts=[inside])
    for span in (Span(page=1, start=0, end=14), Span(page=2, start=0, end=5)):
        outside = Fact(category="allergy", name="Latex", span=span)
        with pytest.raises(pydantic.ValidationError, match=f"does not lie in page {span.page}"):
            Document(name="a.json", sha256="0" * 64, kind="fhir", pages=[page], facts=[outside])


@pytest.mark.parametrize("file_name", FREE_TEXT_FILES)
def test_free_text_facts_are_read_from_its_text(corpus: Path, file_name: str) -> None:
    facts = load(corpus / file_name).facts
    assert facts and all(fact.origin == "text" and fact.section is not None for fact in facts)
