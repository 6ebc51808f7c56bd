"""Facts read from free text without a model (documents.text_facts and the modules it uses), on real files."""

import base64
import json
from pathlib import Path

import pytest

from bench.documents import hard_texts
from documents import Fact, load
from documents.assertion import context
from documents.measurements import labs, vitals
from documents.tables import read_table

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _note(tmp_path: Path, text: str, name: str = "note.txt") -> list[Fact]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load(path).facts


def _names(facts: list[Fact], category: str, listable: bool = True) -> set[str]:
    return {fact.name.casefold() for fact in facts if fact.category == category and fact.listable == listable}


@pytest.mark.parametrize(
    ("sentence", "mention", "expected"),
    [
        ("She denies chest pain and fever.", "fever", "negated"),
        ("No history of diabetes.", "diabetes", "negated"),
        ("History of migraine headaches.", "migraine headaches", "historical"),
        ("Her mother has breast cancer.", "breast cancer", "family"),
        ("Return if fever develops.", "fever", "hypothetical"),
        ("She has hypertension.", "hypertension", None),
        ("No fever, but she has a cough.", "cough", None),
        ("She denies liver disease, kidney disease, cirrhosis, hepatitis, thyroid disease and gout.", "gout", "negated"),
        ("Lives with boyfriend, who has asthma.", "asthma", "other"),
    ],
)
def test_context_reads_negation_history_hypothesis_and_experiencer(sentence, mention, expected):
    start = sentence.index(mention)
    assert context(sentence, start, start + len(mention)) == expected


def test_vitals_in_prose_with_units_and_without_thresholds():
    text = "EXAM: BP118/66. HR83. RR 20. T36.8C. Weight: 130 pounds, 95% O2 saturation on room air. He is 5'9\"."
    read = {(m.name, m.value, m.unit) for m in vitals(text)}
    assert read == {
        ("Blood pressure", "118/66", "mmHg"), ("Heart rate", "83", "/min"), ("Respiratory rate", "20", "/min"),
        ("Temperature", "36.8", "C"), ("Weight", "130", "pounds"), ("O2 saturation", "95", "%"),
        ("Height", "5'9\"", None),
    }
    assert vitals("His ideal body weight is 160 pounds.") == []


def test_labs_in_prose_skip_thresholds_and_read_qualitative_results():
    text = ("Lovenox until the INR was greater than 1.7; it was stopped when the INR was 1.92. A UA, which was negative. "
            "CBC showed a white count of 6.3, platelets were 278,000, anion gap was slightly decreased at 5. "
            "Na 140, Cr 1.2 mg/dL. Take 40 mg daily.")
    read = [(m.name, m.value, m.unit) for m in labs(text)]
    assert read == [
        ("INR", "1.92", None), ("Urinalysis", "negative", None), ("WBC", "6.3", None), ("Platelets", "278,000", None),
        ("Anion gap", "5", None), ("Sodium", "140", None), ("Creatinine", "1.2", "mg/dL"),
    ]


def test_a_pdf_table_written_one_cell_per_line_is_read_row_by_row():
    text = ("Problems\nCondition\nStatus\nOnset\nResolved\nBody mass index 30+ - obesity\n(finding)\nactive\n1968-05-18\n"
            "Otitis media\nresolved\n1981-12-06\n1982-07-17\n")
    table = read_table(text, 0, len(text))
    assert table is not None
    assert [(row.name, row.status, row.date) for row in table.rows] == [
        ("Body mass index 30+ - obesity (finding)", "active", "1968-05-18"),
        ("Otitis media", "resolved", "1981-12-06"),
    ]


def test_a_note_gives_medications_with_dose_problems_allergies_and_no_denied_problem(tmp_path):
    facts = _note(tmp_path, (
        "PAST MEDICAL HISTORY: Significant for hypertension. She denies liver disease, kidney disease and gout.\n"
        "MEDICATIONS: Crestor 20 mg p.o. daily, hydrochlorothiazide 25 mg daily and Ortho Tri-Cyclen.\n"
        "ALLERGIES: Bactrim which causes a rash.\n"
        "FAMILY HISTORY: Significant for type II diabetes on her mother's side.\n"
    ))
    medications = {fact.name: fact for fact in facts if fact.category == "medication"}
    assert set(medications) == {"Crestor", "hydrochlorothiazide", "Ortho Tri-Cyclen"}
    assert (medications["Crestor"].dose, medications["Crestor"].route, medications["Crestor"].frequency) == (
        "20 mg", "p.o.", "daily")
    assert _names(facts, "condition") == {"hypertension"}
    assert {"liver disease", "kidney disease", "gout"} <= _names(facts, "condition", listable=False)
    allergy = next(fact for fact in facts if fact.category == "allergy")
    assert (allergy.name, allergy.reaction) == ("Bactrim", "rash")
    assert "bactrim" not in {name.casefold() for name in medications}
    for fact in facts:  # every fact points to words of the page that name it
        page = load(tmp_path / "note.txt").pages[fact.span.page - 1].text
        assert fact.name.split()[0].casefold() in page[fact.span.start : fact.span.end].casefold()


def test_no_known_allergies_is_a_fact_not_an_empty_list(tmp_path):
    facts = _note(tmp_path, "ALLERGIES: She has no known medicine allergies.\nPLAN: Zyrtec 10 mg daily.\n")
    allergies = [fact for fact in facts if fact.category == "allergy"]
    assert [(fact.name, fact.status) for fact in allergies] == [("No known drug allergies", "none known")]


def test_discharge_diagnoses_numbered_are_problems_and_hypothetical_plans_are_not(tmp_path):
    facts = _note(tmp_path, (
        "DISCHARGE DIAGNOSES: 1. Status post right total knee replacement secondary to degenerative joint disease. "
        "2. Insomnia secondary to pain. 3. Distant history of migraine headaches.\n"
        "PLAN: He wants to proceed with workup for laparoscopic gastric bypass. Return if fever develops.\n"
    ))
    problems = {fact.name: fact for fact in facts if fact.category == "condition" and fact.listable}
    assert set(problems) == {"Status post right total knee replacement", "Insomnia",
                             "Distant history of migraine headaches"}
    # The operation the first diagnosis names is a procedure; the one the plan only considers is not listed.
    assert _names(facts, "procedure") == {"right total knee replacement"}


def test_the_tka_discharge_pdf_gives_its_labs_vitals_and_discharge_medications():
    document = load(CORPUS / "mtsamples_tka_discharge_summary.pdf")
    labs_read = {fact.name: fact.value for fact in document.facts if fact.category == "lab"}
    assert labs_read["Hemoglobin"] == "12.1" and labs_read["Creatinine"] == "0.8" and labs_read["INR"] == "1.92"
    vitals_read = {fact.name: fact.value for fact in document.facts if fact.category == "vital"}
    assert vitals_read["Blood pressure"] == "127/72"
    coumadin = next(fact for fact in document.facts if fact.name == "Coumadin")
    assert (coumadin.dose, coumadin.frequency, coumadin.status) == ("7 mg", "daily", "discharge")
    assert any(fact.category == "allergy" and fact.status == "none known" for fact in document.facts)


def test_an_over_long_line_is_read_in_bounded_time_and_reported(tmp_path):
    path = tmp_path / "noise.txt"
    path.write_text("MEDICATIONS: " + "x" * 50_000 + " Coumadin 5 mg daily\n" + "Hypertension.\n" * 5_000,
                    encoding="utf-8")
    document = load(path)
    assert any("over-long" in skipped.what for skipped in document.coverage.skipped)


def test_signs_and_symptoms_are_problems_only_as_numbered_diagnoses(tmp_path):
    facts = _note(tmp_path, (
        "PAST MEDICAL HISTORY: Hypertension, back pain and snoring.\n"
        "HOSPITAL COURSE: An MRI revealed edema and an old lacunar infarct.\n"
        "ASSESSMENT: 1. Chronic back pain. 2. Lumbar muscle strain.\n"
    ))
    assert _names(facts, "condition") == {"hypertension", "old lacunar infarct", "chronic back pain",
                                          "lumbar muscle strain"}


def test_a_ccda_assessment_written_as_free_text_gives_its_problems_beside_the_coded_ones(corpus):
    document = load(corpus / "ccda_progress_note_adam_everyman.xml")
    read = [fact for fact in document.facts if fact.origin == "text" and fact.category == "condition"]
    assert {"hyperkalemia", "azotemia", "acute on chronic anemia"} <= {fact.name.casefold() for fact in read}
    # Sections whose lines the entries wrote are left to the entries: nothing is read from them twice.
    assert {fact.section for fact in read} == {"ASSESSMENT"}
    coded = {fact.name.casefold() for fact in document.facts if fact.origin == "entry"}
    assert not coded & {fact.name.casefold() for fact in read}


@pytest.mark.parametrize("name", sorted(hard_texts()))
def test_hard_free_text_is_read_without_failing(tmp_path, name):
    # Long, repetitive, noisy or foreign text: read whole, with facts only where the words make them.
    text = hard_texts()[name]
    facts = _note(tmp_path, text, name)
    assert len(facts) <= text.count("\n") + 1
    if name.startswith("medication_list"):
        assert _names(facts, "medication") == {"lisinopril", "metformin", "atorvastatin", "niacin"}
    if name.startswith("ocr_noise"):
        assert facts == []


def test_a_procedure_named_by_what_it_was_done_to(tmp_path):
    facts = _note(tmp_path, (
        "HISTORY OF PRESENT ILLNESS: He has a screw in his right hip from a previous surgery to repair a pelvic "
        "fracture.\nPHYSICAL EXAMINATION: HEENT: Dentition in good repair.\n"
    ))
    procedures = {fact.name: fact.context for fact in facts if fact.category == "procedure"}
    assert procedures == {"pelvic fracture repair": "historical"}


def test_immunizations_and_follow_ups_in_prose_carry_their_dates(tmp_path):
    facts = _note(tmp_path, (
        "HISTORY: She received a flu shot on 10/01/2020. She declined the pneumococcal vaccine.\n"
        "PLAN: Follow-up appointment with Dr. A on 09/21/2007. Hold Coumadin until the INR is below 3.\n"
    ))
    immunizations = {(fact.name, fact.date, fact.listable) for fact in facts if fact.category == "immunization"}
    assert immunizations == {("flu shot", "2020-10-01", True), ("pneumococcal vaccine", None, False)}
    [follow_up] = [fact for fact in facts if fact.category == "follow_up"]
    assert follow_up.date == "2007-09-21" and "Dr. A" in follow_up.name
    coumadin = next(fact for fact in facts if fact.name == "Coumadin")
    assert coumadin.status == "held"


def test_everyday_names_and_names_split_in_two_words_are_diseases(tmp_path):
    facts = _note(tmp_path, (
        "PAST MEDICAL HISTORY: She suffers from high cholesterol. He is a diabetic, on medication.\n"
        "HOSPITAL COURSE: The angiogram was suspicious of a large caliber vasculitis such as Moya Moya disease. "
        "She was subsequently given this diagnosis. She developed a pressure ulcer on her left knee.\n"
    ))
    problems = {fact.name.casefold(): fact for fact in facts if fact.category == "condition" and fact.listable}
    assert {"high cholesterol", "diabetic", "moya moya disease"} <= set(problems)
    codes = {problems[name].code for name in ("high cholesterol", "diabetic", "moya moya disease")}
    assert len(codes) == 3 and None not in codes
    assert any("pressure ulcer" in name for name in problems)


def test_this_diagnosis_confirms_only_a_suspected_one(tmp_path):
    facts = _note(tmp_path, "COURSE: An MRI was unremarkable. She was given this diagnosis.\n")
    assert _names(facts, "condition") == set()


def test_an_unknown_name_in_a_list_of_drugs_is_a_drug_and_a_list_of_other_things_is_not(tmp_path):
    facts = _note(tmp_path, (
        "PLAN: He is already on five medications for his back (Celebrex, tramadol, amitriptyline, gabapentin, and "
        "the Vicodin that he was given last night). DVT prophylaxis with Coumadin, Lovenox, SCD boots, and TED "
        "stockings.\n"
    ))
    medications = _names(facts, "medication")
    assert "vicodin" in medications
    assert not any("scd" in name or "ted" in name for name in medications)


def test_a_past_surgical_history_names_surgeries_that_prose_does_not(tmp_path):
    facts = _note(tmp_path, (
        "PAST SURGICAL HISTORY: Includes orthopedic or knee surgery.\n"
        "ASSESSMENT: He presents to the bariatric surgery service.\n"
    ))
    assert _names(facts, "procedure") == {"knee surgery"}


def test_a_note_a_fhir_bundle_carries_is_read_by_its_own_headings_beside_the_coded_entries(tmp_path):
    note = ("HISTORY: She has a history of migraine headaches. She denies diabetes.\n"
            "MEDICATIONS: Lisinopril 10 mg daily.\nALLERGIES: Penicillin (rash).\nASSESSMENT: Hypertension.\n")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p", "name": [{"family": "Doe", "given": ["Jane"]}]}},
        {"resource": {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},
                      "code": {"text": "Hypertension"}, "clinicalStatus": {"coding": [{"code": "active"}]}}},
        {"resource": {"resourceType": "DocumentReference", "id": "d", "status": "current",
                      "subject": {"reference": "Patient/p"}, "date": "2024-03-01T10:00:00Z",
                      "description": "Clinic note", "content": [{"attachment": {
                          "contentType": "text/plain", "data": base64.b64encode(note.encode()).decode()}}]}},
    ]}
    facts = _note(tmp_path, json.dumps(bundle), name="bundle.json")
    from_text = {(fact.category, fact.name.casefold()) for fact in facts if fact.origin == "text" and fact.listable}
    assert {("medication", "lisinopril"), ("allergy", "penicillin"), ("condition", "migraine headaches")} <= from_text
    # The coded Hypertension is not read a second time from the note, and the denied diabetes is no problem.
    assert [fact.origin for fact in facts if fact.name.casefold() == "hypertension"] == ["entry"]
    assert ("condition", "diabetes") not in from_text
    lisinopril = next(fact for fact in facts if fact.name == "Lisinopril")
    assert (lisinopril.dose, lisinopril.frequency) == ("10 mg", "daily")
