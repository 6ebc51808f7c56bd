"""app.safety: documents about different patients are flagged, and questions outside the record are bounded."""

from pathlib import Path

import pytest

from app.safety import DECISION_BOUNDARY, OFF_TOPIC_BOUNDARY, patient_groups, patient_mismatch, scope_boundary
from documents import PatientIdentity, identify, load

EVE_CCD = "ccda_ccd_eve_betterhalf.xml"
EVE_REFERRAL = "ccda_referral_note_eve_betterhalf.xml"
ADAM = "ccda_progress_note_adam_everyman.xml"


def identified(corpus: Path, *file_names: str) -> list[tuple[str, PatientIdentity]]:
    return [(name, identify(load(corpus / name))) for name in file_names]


# --- patient_mismatch ---------------------------------------------------------------------


def test_two_documents_about_eve_agree(corpus: Path) -> None:
    assert patient_mismatch(identified(corpus, EVE_CCD, EVE_REFERRAL)) is None


def test_eve_and_adam_are_different_patients(corpus: Path) -> None:
    warning = patient_mismatch(identified(corpus, EVE_CCD, ADAM))
    assert warning is not None
    assert warning.startswith("These documents may be about different patients: ")
    assert f"name 'Eve Betterhalf' in {EVE_CCD} but 'Adam Frankie Everyman' in {ADAM}" in warning
    assert warning.endswith("Check before relying on any answer.")


def test_the_odd_document_out_is_named(corpus: Path) -> None:
    warning = patient_mismatch(identified(corpus, EVE_CCD, ADAM, EVE_REFERRAL))
    assert warning is not None
    assert f"name 'Eve Betterhalf' in {EVE_CCD} and {EVE_REFERRAL} but 'Adam Frankie Everyman' in {ADAM}" in warning


def test_same_name_different_birth_date() -> None:
    warning = patient_mismatch(
        [
            ("a.pdf", PatientIdentity(name="Eve Betterhalf", birth_date="1975-05-01")),
            ("b.pdf", PatientIdentity(name="Eve Betterhalf", birth_date="1957-05-01")),
        ]
    )
    assert warning is not None
    assert "date of birth '1975-05-01' in a.pdf but '1957-05-01' in b.pdf" in warning
    assert "name" not in warning.split(": ", 1)[1]


def test_different_record_numbers() -> None:
    warning = patient_mismatch(
        [("a.xml", PatientIdentity(mrn="444222222")), ("b.xml", PatientIdentity(mrn="12345"))]
    )
    assert warning is not None and "medical record number '444222222' in a.xml but '12345' in b.xml" in warning


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Betterhalf, Eve", "Eve M. Betterhalf"),
        ("EVE BETTERHALF", "Mrs. Eve Betterhalf"),
        ("Adam Frankie Everyman", "Everyman, Adam, Jr."),
        ("José García", "Jose Garcia"),
    ],
)
def test_names_written_differently_agree(first: str, second: str) -> None:
    assert patient_mismatch([("a", PatientIdentity(name=first)), ("b", PatientIdentity(name=second))]) is None


def test_record_numbers_written_differently_agree() -> None:
    assert patient_mismatch([("a", PatientIdentity(mrn="12-345")), ("b", PatientIdentity(mrn="12345"))]) is None


def test_unknown_identity_is_ignored(corpus: Path) -> None:
    identities = identified(corpus, EVE_CCD, "mtsamples_moyamoya.txt")
    # The note gives the patient's age, which the CCD does not: nothing to compare.
    assert (identities[1][1].name, identities[1][1].sex, identities[1][1].birth_date) == (None, None, None)
    assert patient_mismatch(identities) is None


def test_unnamed_notes_about_different_patients_are_told_apart_by_age_and_sex(corpus: Path) -> None:
    identities = identified(corpus, "mtsamples_tka_discharge_summary.pdf", "mtsamples_allergic_rhinitis.txt")
    warning = patient_mismatch(identities)
    assert warning is not None and "age '61' in mtsamples_tka_discharge_summary.pdf but '23' in" in warning
    assert patient_groups(identities) == [["mtsamples_tka_discharge_summary.pdf"], ["mtsamples_allergic_rhinitis.txt"]]
    male = identified(corpus, "mtsamples_ed_back_pain.txt")
    assert "sex 'female'" in (patient_mismatch(identities[:1] + male) or "")


def test_documents_of_one_patient_are_one_group(corpus: Path) -> None:
    identities = identified(corpus, EVE_CCD, ADAM, EVE_REFERRAL, "mtsamples_moyamoya.txt")
    assert patient_groups(identities) == [[EVE_CCD, EVE_REFERRAL, "mtsamples_moyamoya.txt"], [ADAM]]
    assert patient_groups([("a", PatientIdentity(age=61)), ("b", PatientIdentity(age=62))]) == [["a", "b"]]


def test_fields_are_compared_only_where_both_documents_give_them() -> None:
    identities = [
        ("a.pdf", PatientIdentity(name="Eve Betterhalf")),
        ("b.pdf", PatientIdentity(birth_date="1975-05-01", mrn="1")),
    ]
    assert patient_mismatch(identities) is None


def test_nothing_to_compare() -> None:
    assert patient_mismatch([]) is None
    assert patient_mismatch([("a.pdf", PatientIdentity(name="Eve Betterhalf"))]) is None


# --- scope_boundary -----------------------------------------------------------------------

IN_SCOPE = [
    "What medications is she taking?",
    "What dose of atenolol is the patient taking?",
    "Was warfarin stopped?",
    "What did the doctor recommend?",
    "What is the plan?",
    "Is she allergic to penicillin?",
    "What treatment did he receive?",
    "When should he follow up?",
    "Why was lisinopril discontinued?",
    "What was her last INR?",
    "Was the patient given aspirin in the emergency department?",
    "Does the record say it is safe to restart anticoagulation?",
    "Does her asthma get worse in cold weather?",
    "What is the patient's email address?",
    "What is the ICD code for her diagnosis?",
    "Who is the primary care physician?",
    "What were the discharge instructions?",
    "Which antibiotics was he treated with?",
]

DECISIONS = [
    "Should I prescribe amoxicillin?",
    "Should we stop the warfarin?",
    "Can I increase her lisinopril to 20 mg?",
    "What dose of metoprolol should I give?",
    "What would you recommend for her hypertension?",
    "Do you recommend surgery?",
    "What treatment is best for his pneumonia?",
    "What's the best antibiotic for this infection?",
    "Is it safe to give her ibuprofen?",
    "Should she be started on a statin?",
    "What do you think I should do?",
    "Is it OK to discharge him today?",
]

OFF_TOPIC = [
    "Write a poem about spring.",
    "Write me a short story about a dragon",
    "Write Python code to sort a list",
    "Draft an email to my manager about the schedule",
    "Tell me a joke",
    "What's the weather today?",
    "What's the latest news?",
    "Hello!",
    "How are you?",
    "Who are you?",
    "What medications is the other patient taking?",
    "Tell me about another patient",
]


@pytest.mark.parametrize("question", IN_SCOPE)
def test_record_questions_are_answered(question: str) -> None:
    assert scope_boundary(question) is None


@pytest.mark.parametrize("question", DECISIONS)
def test_treatment_decisions_are_the_clinicians(question: str) -> None:
    assert scope_boundary(question) == DECISION_BOUNDARY


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_unrelated_requests_are_declined(question: str) -> None:
    assert scope_boundary(question) == OFF_TOPIC_BOUNDARY


def test_boundary_messages_say_what_clinidoc_does() -> None:
    assert "does not make treatment decisions" in DECISION_BOUNDARY
    assert "only questions about this patient's" in OFF_TOPIC_BOUNDARY
