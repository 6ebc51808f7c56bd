"""app.quotes: finding the words a model copied in real corpus documents, as written or with small slips."""

import pytest

from app.citations import Citation, Located, verify
from app.claims import check_text
from app.quotes import locate
from documents import Document

RHINITIS = "mtsamples_allergic_rhinitis.txt"
TKA_PDF = "mtsamples_tka_discharge_summary.pdf"
DENNIS_FHIR = "synthea_fhir_dennis_durgan.json"


@pytest.fixture(scope="module")
def rhinitis(corpus_documents: dict[str, Document]) -> Document:
    return corpus_documents[RHINITIS]


def page_text(document: Document, found: Located) -> str:
    assert found.document == document.name
    return document.pages[found.page - 1].text


def test_an_exact_quote_is_located_where_it_is_written(rhinitis: Document) -> None:
    found = locate("She has used Allegra also.", [rhinitis])
    assert found is not None
    assert (found.match, found.score, found.page) == ("exact", 100.0, 1)
    assert found.quote == "She has used Allegra also."
    assert page_text(rhinitis, found)[found.start : found.end] == found.quote


def test_a_quote_with_other_case_spacing_dashes_and_quotes_maps_back_to_the_page_text(rhinitis: Document) -> None:
    # The model's copy: curly quotes around it, a capitalised word, a doubled
    # space, a line break and an en dash where the note has a hyphen.
    found = locate("“her only medication  currently is ORTHO Tri–Cyclen\nand the Allegra”", [rhinitis])
    assert found is not None
    assert (found.match, found.score) == ("normalized", 100.0)
    written = "Her only medication currently is Ortho Tri-Cyclen and the Allegra"
    assert found.quote == written
    text = page_text(rhinitis, found)
    assert (found.start, found.end) == (text.index(written), text.index(written) + len(written))


def test_a_quote_across_a_pdf_line_break_is_located(corpus_documents: dict[str, Document]) -> None:
    tka = corpus_documents[TKA_PDF]
    found = locate("status post right total knee replacement", [tka])
    assert found is not None
    assert found.match == "normalized"
    assert found.quote == "status post right total knee\nreplacement"


def test_a_quote_across_a_page_break_is_located_on_the_page_holding_most_of_it(
    corpus_documents: dict[str, Document],
) -> None:
    tka = corpus_documents[TKA_PDF]
    # Page 1 ends "...using the Percocet only for"; page 2 starts "breakthrough pain."
    found = locate("using the Percocet only for breakthrough pain", [tka])
    assert found is not None
    assert found.page == 1
    assert found.quote == "using the Percocet only for"
    assert page_text(tka, found).endswith(found.quote)


def test_a_quote_with_a_typo_is_located_fuzzily(rhinitis: Document) -> None:
    found = locate("Samples of Nasonex two sprays in each nostril givn for three weeks", [rhinitis])
    assert found is not None
    assert found.match == "fuzzy"
    assert 90 <= found.score < 100
    assert found.quote == "Samples of Nasonex two sprays in each nostril given for three weeks"
    assert page_text(rhinitis, found)[found.start : found.end] == found.quote


def test_a_slip_in_a_number_is_another_fact_not_a_typo(corpus_documents: dict[str, Document]) -> None:
    dennis = corpus_documents[DENNIS_FHIR]
    assert locate("2008-04-23 Creatinine: 0.394 mg/dL", [dennis]) is not None
    # One digit off scores 97 with rapidfuzz, far above the threshold.
    assert locate("2008-04-23 Creatinine: 0.494 mg/dL", [dennis]) is None


def test_made_up_short_and_empty_quotes_are_not_located(corpus_documents: dict[str, Document]) -> None:
    everything = list(corpus_documents.values())
    assert locate("She was prescribed warfarin 5 mg daily", everything) is None
    assert locate("Allergy to penicillin (active)", everything) is None
    assert locate("TM", everything) is None  # "TMs were clear." holds it, as would any record
    assert locate(" -- ... ", everything) is None


def test_verify_accepts_checked_citations_and_rejects_tampered_ones(corpus_documents: dict[str, Document]) -> None:
    record = [corpus_documents[RHINITIS], corpus_documents[TKA_PDF], corpus_documents[DENNIS_FHIR]]
    answer = (
        "She currently takes Ortho Tri-Cyclen and Allegra. "
        'The plan reads "She will try Zyrtec instead of Allegra again." '
        "The INR was 1.92 on 08/30/2007. "
        "His creatinine was 0.394 mg/dL on April 23, 2008. "
        'He was "switched from Percocet to oxycodone SR 20 mg b.i.d." '
    )
    citations = check_text(answer, record).citations
    assert len(citations) == 5
    assert all(verify(citation, record) for citation in citations)
    citation = citations[0]
    tampered: list[Citation] = [
        citation.model_copy(update={"start": citation.start + 1}),
        citation.model_copy(update={"end": citation.end - 1}),
        citation.model_copy(update={"quote": citation.quote.upper()}),
        citation.model_copy(update={"end": len(corpus_documents[RHINITIS].pages[0].text) + 1}),
        citation.model_copy(update={"page": 2}),
        citation.model_copy(update={"document": "another.txt"}),
    ]
    assert not any(verify(changed, record) for changed in tampered)
