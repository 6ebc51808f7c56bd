"""app.claims: statements labelled supported, contradicted or not found against real records, without a model."""

import time
from pathlib import Path

import pytest

import documents
from app.claims import Record, check_claims, check_text, same_number
from documents import Document, Page

RHINITIS = "mtsamples_allergic_rhinitis.txt"
TKA_PDF = "mtsamples_tka_discharge_summary.pdf"
DENNIS_FHIR = "synthea_fhir_dennis_durgan.json"
STEVIE_PDF = "synthea_summary_stevie_cormier.pdf"
BYPASS = "mtsamples_gastric_bypass_discussion.txt"


def labels(claims: list[str], record: list[Document]) -> list[str]:
    return [check.label for check in check_claims(claims, record)]


def text_document(text: str, name: str = "note.txt", kind: str = "txt") -> Document:
    return Document(name=name, sha256="0" * 64, kind=kind, pages=[Page(number=1, text=text)])


def test_true_false_and_unmentioned_statements_get_three_labels(corpus_documents: dict[str, Document]) -> None:
    rhinitis = corpus_documents[RHINITIS]
    checks = check_claims(
        [
            "She currently takes Ortho Tri-Cyclen and Allegra.",
            "She was given Nasonex samples, four sprays in each nostril.",  # the note says two
            "She was prescribed warfarin 5 mg daily.",
        ],
        [rhinitis],
    )
    assert [check.label for check in checks] == ["supported", "contradicted", "not_found"]
    supported, contradicted, _ = checks
    assert supported.citations[0].quote == "MEDICATIONS: Her only medication currently is Ortho Tri-Cyclen and the Allegra."
    # The contradiction cites what the record states instead.
    assert "Nasonex two sprays" in contradicted.citations[0].quote
    for check in checks:
        for citation in check.citations:
            assert rhinitis.pages[citation.page - 1].text[citation.start : citation.end] == citation.quote


def test_page_markers_are_stripped_and_a_wrong_page_is_reported(corpus_documents: dict[str, Document]) -> None:
    tka = corpus_documents[TKA_PDF]
    right, wrong = check_claims(
        [
            "The INR was 1.92 when Lovenox was discontinued [Document: mtsamples_tka_discharge_summary.pdf | page 2].",
            "The INR was 1.92 when Lovenox was discontinued [Document: mtsamples_tka_discharge_summary.pdf | page 1].",
        ],
        [tka],
    )
    assert (right.label, right.citations[0].page, right.note) == ("supported", 2, None)
    assert wrong.label == "supported" and wrong.note is not None
    assert "page 1" in wrong.note and "page 2" in wrong.note


def test_a_table_row_read_as_one_cell_a_line_supports_its_values(corpus_documents: dict[str, Document]) -> None:
    # The PDF's lab table comes out of the file a cell a line: name, value, unit, date.
    stevie = corpus_documents[STEVIE_PDF]
    assert "Triglycerides\n122.42\nmg/dL\n1987-09-19" in stevie.pages[1].text
    checks = check_claims(
        ["Triglycerides were 122.42 mg/dL on September 19, 1987.", "Triglycerides were 161.41 mg/dL."], [stevie]
    )
    assert [check.label for check in checks] == ["supported", "contradicted"]
    # 161.41 is the next row's value (total cholesterol): the contradiction cites the triglycerides' own row.
    assert "122.42" in checks[1].citations[0].quote and "161.41" not in checks[1].citations[0].quote


def test_a_lab_whose_name_and_value_sit_on_neighbouring_lines() -> None:
    table = text_document("Test\nResult\nUnit\nCreatinine\n1.82\nmg/dL\nSodium\n139\nmmol/L", "labs.pdf", "pdf")
    assert labels(["Creatinine 1.82 mg/dL", "Creatinine was 139.", "Sodium 139 mmol/L"], [table]) == [
        "supported", "contradicted", "supported",
    ]


@pytest.mark.parametrize(
    "claim",
    ["She has no known drug allergies.", "NKDA.", "She is not allergic to any medications.", "No known allergies to drugs."],
)
def test_no_known_allergies_in_any_words_is_supported_by_nkda(corpus_documents: dict[str, Document], claim: str) -> None:
    assert "ALLERGIES: NKDA." in corpus_documents[TKA_PDF].pages[0].text
    assert labels([claim], [corpus_documents[TKA_PDF]]) == ["supported"]


def test_an_allergy_claimed_against_nkda_is_contradicted_and_one_claimed_absent_is_contradicted_where_listed() -> None:
    nkda = text_document("HPI: knee pain.\nALLERGIES: NKDA.\nMEDICATIONS: Celebrex 200 mg daily.")
    listed = text_document("ALLERGIES: Latex (hives), penicillin.\nMEDICATIONS: none.")
    assert labels(["She is allergic to penicillin."], [nkda]) == ["contradicted"]
    assert labels(
        ["No, the patient's latex allergy is not documented.", "She has no known drug allergies.", "She is allergic to latex."],
        [listed],
    ) == ["contradicted", "contradicted", "supported"]
    # A record that lists some allergies says nothing of the others.
    assert labels(["She is allergic to sulfa drugs."], [listed]) == ["not_found"]


def test_a_denial_against_the_record_is_contradicted_and_one_about_something_unmentioned_is_not_found(
    corpus_documents: dict[str, Document],
) -> None:
    tka = corpus_documents[TKA_PDF]
    assert labels(
        [
            "There is no history of hypertension.",  # the past medical history lists it
            "The patient is not taking Celebrex.",
            "She denies dysuria.",
            "She has dysuria.",  # "She denies any urological symptoms such as dysuria"
            "There is no history of diabetes.",  # the record never speaks of diabetes
        ],
        [tka],
    ) == ["contradicted", "contradicted", "supported", "contradicted", "not_found"]


def test_abbreviations_and_paraphrases_read_alike(corpus_documents: dict[str, Document]) -> None:
    tka = corpus_documents[TKA_PDF]
    assert labels(
        [
            "Colace 100 mg twice daily.",  # the record: b.i.d.
            "BP 127/72.",  # the record: blood pressure 127/72
            "Pulse was 70 and SpO2 95% on room air.",
            "Oxycodone SR 20 mg by mouth twice a day.",  # the record: oxycodone SR 20 mg b.i.d.
            "The total knee arthroplasty was performed on August 21, 2007.",
            "The TKA was performed on 8/21/2007.",
            "Lovenox was discontinued on 2007-08-30.",
        ],
        [tka],
    ) == ["supported"] * 7


def test_a_changed_number_or_date_is_contradicted_with_the_stated_value(corpus_documents: dict[str, Document]) -> None:
    tka = corpus_documents[TKA_PDF]
    checks = check_claims(
        [
            "The hematocrit was 12.1.",  # 12.1 is the hemoglobin, in the same sentence
            "Synthroid 150 mcg daily.",
            "The right total knee replacement was performed on 08/22/2007.",
            "Blood pressure was 128/72 mmHg.",
        ],
        [tka],
    )
    assert [check.label for check in checks] == ["contradicted"] * 4
    assert "hematocrit was 35.3" in checks[0].citations[0].quote
    assert "Synthroid 137 mcg" in checks[1].citations[0].quote
    assert "08/21/2007" in checks[2].citations[0].quote


def test_a_fhir_lab_value_with_its_date_is_cited_to_its_line(corpus_documents: dict[str, Document]) -> None:
    dennis = corpus_documents[DENNIS_FHIR]
    checked = check_text(
        "His creatinine was 0.394 mg/dL on April 23, 2008. His creatinine was 0.394 mg/dL on November 10, 2008.",
        [dennis],
    )
    assert checked.labels()[0] == "supported"
    assert checked.labels()[1] != "supported"
    citation = checked.citations[0]
    assert citation.quote == "2008-04-23 Creatinine: 0.394 mg/dL"


def test_quoted_words_stand_or_fall_by_the_quote(corpus_documents: dict[str, Document]) -> None:
    rhinitis = corpus_documents[RHINITIS]
    checked = check_text(
        'The plan reads "She will try Zyrtec instead of Allegra again."\n'
        "- Her only medication currently is Ortho Tri-Cyclen and the Allegra.\n"
        '- The note says "She was started on montelukast for her asthma."\n'
        '- Again: "She will try Zyrtec instead of Allegra again."',
        [rhinitis],
    )
    assert checked.labels() == ["supported", "supported", "not_found", "supported"]
    assert [sentence.citations for sentence in checked.sentences] == [[1], [2], [], [1]]
    assert checked.citations[0].quote == "She will try Zyrtec instead of Allegra again."


def test_a_sentence_that_says_nothing_checkable_is_not_found(corpus_documents: dict[str, Document]) -> None:
    assert check_text("Yes. That is all there is. She is doing well.", [corpus_documents[RHINITIS]]).labels() == [
        "not_found"
    ] * 3


def test_check_text_numbers_citations_after_those_already_given(corpus_documents: dict[str, Document]) -> None:
    from app.citations import CitationNumbers
    from app.quotes import locate

    rhinitis = corpus_documents[RHINITIS]
    numbers = CitationNumbers()
    evidence = locate("She has used Allegra also.", [rhinitis])
    assert evidence is not None and numbers.add(evidence) == 1
    checked = check_text("She has used Allegra also. She has asthma.", [rhinitis], numbers)
    assert checked.sentences[0].citations == [1]  # the same words keep their number
    assert checked.sentences[1].citations == [2]


def test_same_number_allows_rounding_and_cutting_never_another_value() -> None:
    assert same_number("12.1", "12.14") and same_number("134.63", "134.6303") and same_number("13.5", "13.52")
    assert same_number("127/72", "127/72") and not same_number("127/73", "127/72")
    assert not same_number("12.2", "12.14") and not same_number("12.14", "12.1") and not same_number("1.92", "1.9")


def test_checking_a_long_record_is_quick(corpus_documents: dict[str, Document]) -> None:
    """Prints the time; a figure to watch, not an assertion (the machine is shared)."""
    claims = [
        "His creatinine was 0.394 mg/dL on April 23, 2008.",
        "He takes Lasix 40 mg once a day for heart failure.",
        "He has hypertension.",
        "He is allergic to penicillin.",
        "The record does not mention his blood type.",
    ]
    # Every corpus document six times over: a record of about 600,000 characters.
    long_record = [
        document.model_copy(update={"name": f"{copy}-{document.name}"})
        for copy in range(6)
        for document in corpus_documents.values()
    ]
    started = time.perf_counter()
    record = Record(long_record)
    indexed = time.perf_counter()
    checks = [record.check(claim) for claim in claims]
    checked = time.perf_counter()
    characters = sum(document.char_count for document in long_record)
    print(f"\n{characters:,} characters indexed in {indexed - started:.2f} s, 5 claims in {checked - indexed:.3f} s")
    assert [check.label for check in checks][:3] == ["supported"] * 3


def test_a_list_is_supported_only_when_every_item_is(corpus_documents: dict[str, Document]) -> None:
    tka = corpus_documents[TKA_PDF]
    assert labels(
        [
            # One line holds all four, each with its dose.
            "She was discharged on Celebrex 200 mg daily, Colace 100 mg b.i.d., Protonix 40 mg b.i.d. and Synthroid "
            "137 mcg daily.",
            # Two of three are on the transfer list; warfarin is nowhere in the record.
            "She takes Celebrex, Colace and warfarin.",
            "She takes Celebrex 400 mg daily and Colace.",  # a changed dose among true items
        ],
        [tka],
    ) == ["supported", "not_found", "contradicted"]


def test_a_list_item_is_read_after_what_opens_the_list(corpus_documents: dict[str, Document]) -> None:
    dennis = corpus_documents[DENNIS_FHIR]  # allergic to tree pollen, wheat, shellfish and nut
    assert labels(["Allergies: shellfish, nut and tree pollen.", "Allergies: shellfish, nut and latex."], [dennis]) == [
        "supported", "not_found",
    ]
    # A negation inside one item denies no other: the concussion had no loss of consciousness, the neoplasm is there.
    stevie = corpus_documents[STEVIE_PDF]
    assert labels(["Problems: concussion with no loss of consciousness and neoplasm of prostate."], [stevie]) == [
        "supported"
    ]


def test_a_clause_after_a_comma_is_part_of_its_item_not_an_item_of_its_own(corpus: Path) -> None:
    dusty = documents.load(corpus / "synthea_summary_dusty_stracke.docx")  # hydrochlorothiazide; acute bronchitis
    assert labels(
        ["He takes Hydrochlorothiazide 25 MG, which is used to treat acute bronchitis."], [dusty]
    ) == ["not_found"]


def test_a_date_from_the_next_sentence_does_not_support_a_claim(corpus_documents: dict[str, Document]) -> None:
    # "...follow up with her primary care physician, Dr. B. As mentioned above, the patient will be discharged on
    # 09/03/2007": the date is the discharge's, not the follow-up's.
    tka = corpus_documents[TKA_PDF]
    assert labels(
        [
            "The patient is encouraged to follow up with her primary care physician, Dr. B, on 09/03/2007.",
            "The follow-up appointment with Dr. A is on 09/21/2007 at noon.",
        ],
        [tka],
    ) == ["not_found", "supported"]


def test_commas_without_a_conjunction_make_no_list(corpus_documents: dict[str, Document]) -> None:
    # Two facts of two lines joined into one false one: the follow-up with Dr. B has no date; Dr. A's is 09/21/2007.
    assert labels(
        ["The patient is encouraged to follow up with her primary care physician, Dr. B. on 09/21/2007 at noon."],
        [corpus_documents[TKA_PDF]],
    ) == ["not_found"]
