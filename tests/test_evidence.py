"""Evidence found without a model, on the corpus's documents: the lines a question needs come first, quoted as the
record writes them.

The recall on the whole corpus, its misses and the time: python -m bench.evidence
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.evidence import find_evidence
from bench.evidence import corpus_documents, evaluate, recall
from documents import Document, load
from documents.dates import find_dates

TKA = "mtsamples_tka_discharge_summary.pdf"


@pytest.fixture(scope="module")
def documents(corpus: Path) -> dict[str, Document]:
    return corpus_documents(corpus)


@pytest.mark.parametrize(
    "question",
    [
        "What is the patient's date of birth?",
        "What medications is the patient taking?",
        "What was the most recent value of 'Platelets [#/volume] in Blood by Automated count'?",
        "What was the rash attributed to?",
        "How many allergies are documented?",
    ],
)
def test_quotes_are_the_page_text_at_their_spans(documents: dict[str, Document], question: str) -> None:
    found = 0
    for document in documents.values():
        pages = {page.number: page for page in document.pages}
        for evidence in find_evidence(question, [document]).evidence:
            assert evidence.document == document.name
            assert pages[evidence.page].text[evidence.start : evidence.end] == evidence.quote
            found += 1
    assert found


def test_a_date_question_puts_a_dated_line_first(documents: dict[str, Document]) -> None:
    for name, question, date in [
        (TKA, "On what date was Lovenox discontinued?", "08/30/2007"),
        ("mtsamples_moyamoya.txt", "When did the patient die?", "9/24/92"),
        ("ccda_referral_note_eve_betterhalf.xml", "When is the influenza vaccine planned?", "November 15, 2013"),
    ]:
        search = find_evidence(question, [documents[name]])
        assert search.question_type == "date"
        first = search.evidence[0].quote
        assert find_dates(first), first
        assert date in first


def test_a_medication_question_finds_the_medication_lines_of_the_discharge_summary(
    documents: dict[str, Document],
) -> None:
    search = find_evidence("Which medications is she to continue after discharge?", [documents[TKA]])
    assert search.question_type == "medication"
    quotes = " ".join(evidence.quote for evidence in search.evidence)
    # The instructions at discharge, and the medications on transfer.
    assert "Celebrex 200 mg daily" in quotes
    assert "Synthroid" in quotes and "Toprol XL" in quotes


def test_a_dose_question_finds_the_dose(documents: dict[str, Document]) -> None:
    search = find_evidence("What is the current Coumadin dose?", [documents[TKA]])
    assert "Coumadin 7 mg daily" in search.evidence[0].quote


@pytest.mark.parametrize("question", ["What are the patient's allergies?", "Does she have any drug allergies?"])
def test_an_allergy_question_finds_nkda(documents: dict[str, Document], question: str) -> None:
    search = find_evidence(question, [documents[TKA]])
    assert search.question_type == "allergy"
    assert search.evidence[0].quote == "ALLERGIES: NKDA."


def test_abbreviations_meet_their_spelled_out_forms(documents: dict[str, Document]) -> None:
    abbreviated = find_evidence("What was her BP?", [documents[TKA]])
    assert "blood pressure 127/72" in abbreviated.evidence[0].quote
    assert "blood pressure" in abbreviated.terms
    spelled_out = find_evidence("What was the blood pressure?", [documents["mtsamples_moyamoya.txt"]])
    assert "BP118/66" in spelled_out.evidence[0].quote


def test_a_pdf_table_row_written_a_cell_a_line_is_quoted_whole(documents: dict[str, Document]) -> None:
    search = find_evidence(
        "What was the most recent value of 'Triglycerides'?", [documents["synthea_summary_stevie_cormier.pdf"]]
    )
    assert search.evidence[0].quote == "Triglycerides\n122.42\nmg/dL\n1987-09-19"


def test_a_coded_fact_is_quoted_from_its_line(documents: dict[str, Document]) -> None:
    search = find_evidence(
        "When was the condition 'Rheumatoid arthritis' first recorded?", [documents["synthea_fhir_asa_hermiston.json"]]
    )
    first = search.evidence[0]
    assert first.source == "fact"
    assert first.quote.startswith("2019-02-19 Rheumatoid arthritis")


def test_the_latest_of_several_results_comes_first(documents: dict[str, Document]) -> None:
    search = find_evidence(
        "What was the most recent value of 'Triglycerides'?", [documents["synthea_fhir_asa_hermiston.json"]]
    )
    assert search.evidence[0].quote == "2018-06-06 Triglycerides: 134.63 mg/dL"
    assert search.evidence[1].quote == "2014-09-24 Triglycerides: 109.94 mg/dL"


def test_an_irrelevant_question_finds_nothing_and_says_what_was_searched(documents: dict[str, Document]) -> None:
    search = find_evidence("What is the patient's favourite colour?", list(documents.values()))
    assert search.evidence == []
    assert search.terms == ["favourite", "colour"]


def test_evidence_comes_from_every_document_of_the_record(documents: dict[str, Document]) -> None:
    record = [documents[TKA], documents["mtsamples_moyamoya.txt"]]
    search = find_evidence("What was the blood pressure?", record)
    assert {evidence.document for evidence in search.evidence} == {TKA, "mtsamples_moyamoya.txt"}


def test_recall_at_3_on_the_dev_corpus(documents: dict[str, Document], corpus: Path) -> None:
    outcomes = evaluate(documents, corpus)
    misses = [outcome.question for outcome in outcomes if not outcome.yes_no and (outcome.rank or 4) > 3]
    assert recall(outcomes, 3) >= 0.9, misses


def test_a_medication_read_from_prose_ranks_its_sentence_for_a_medication_question(tmp_path: Path) -> None:
    # No Medications heading and no word "medication": only the fact read from the text says the line holds one.
    note = tmp_path / "note.txt"
    note.write_text(
        "HISTORY: She takes long walks every day and feels well.\n"
        "She takes Zestril 10 mg every day for her blood pressure.\n",
        encoding="utf-8",
    )
    found = find_evidence("What medications does she take every day?", [load(note)])
    assert "Zestril" in found.evidence[0].quote
