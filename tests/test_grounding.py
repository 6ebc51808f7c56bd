"""app.grounding: finding quotes in real corpus documents, and labelling an answer's sentences by the record."""

import time
from pathlib import Path

import pytest

import documents
from app.grounding import Citation, Located, ground, locate, verify
from documents import Document

RHINITIS = "mtsamples_allergic_rhinitis.txt"
TKA_PDF = "mtsamples_tka_discharge_summary.pdf"
DENNIS_FHIR = "synthea_fhir_dennis_durgan.json"


@pytest.fixture(scope="module")
def corpus_documents(corpus: Path) -> dict[str, Document]:
    files = [path for path in sorted(corpus.iterdir()) if path.is_file() and path.suffix != ".md"]
    return {path.name: documents.load(path) for path in files}


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


def test_ground_labels_true_false_wrong_number_and_no_claim_sentences(rhinitis: Document) -> None:
    answer = (
        "She currently takes Ortho Tri-Cyclen and Allegra. "
        "She was prescribed warfarin 5 mg daily. "
        "She was given Nasonex samples, four sprays in each nostril for three weeks. "
        "The record does not mention her blood type."
    )
    grounded = ground(answer, [rhinitis])
    assert [sentence.label for sentence in grounded.sentences] == [
        "supported",
        "not_supported",
        "not_supported",  # the note says two sprays
        "no_claim",
    ]
    assert [sentence.citations for sentence in grounded.sentences] == [[1], [], [], []]
    [citation] = grounded.citations
    assert citation.number == 1
    # The line that says so, not the whole note.
    assert citation.quote == "MEDICATIONS: Her only medication currently is Ortho Tri-Cyclen and the Allegra."
    assert "Allegra" in page_text(rhinitis, citation)[citation.start : citation.end]
    for sentence in grounded.sentences:
        assert answer[sentence.start : sentence.end] == sentence.text


def test_ground_cites_quotes_and_numbers_citations_in_order_of_first_use(rhinitis: Document) -> None:
    answer = (
        'The plan reads "She will try Zyrtec instead of Allegra again."\n'
        "- Her only medication currently is Ortho Tri-Cyclen and the Allegra.\n"
        '- The note says "She was started on montelukast."\n'
        '- Again: "She will try Zyrtec instead of Allegra again."'
    )
    grounded = ground(answer, [rhinitis])
    assert [sentence.label for sentence in grounded.sentences] == [
        "supported",
        "supported",
        "not_supported",  # a quote the note does not hold
        "supported",
    ]
    assert [sentence.citations for sentence in grounded.sentences] == [[1], [2], [], [1]]
    assert [citation.number for citation in grounded.citations] == [1, 2]
    assert grounded.citations[0].match == "exact"
    assert grounded.citations[0].quote == "She will try Zyrtec instead of Allegra again."
    assert "Allegra" in grounded.citations[1].quote


def test_sentences_split_at_their_ends_only(rhinitis: Document) -> None:
    answer = (
        "Dr. Smith saw her for allergies. Her INR was 1.92 on Aug. 30, 2007. She takes Allegra 25 mg. daily.\n"
        "* She has asthma.\n"
        "2. Her weight was 130 pounds."
    )
    assert [sentence.text for sentence in ground(answer, [rhinitis]).sentences] == [
        "Dr. Smith saw her for allergies.",
        "Her INR was 1.92 on Aug. 30, 2007.",
        "She takes Allegra 25 mg. daily.",
        "She has asthma.",
        "Her weight was 130 pounds.",
    ]


def test_a_sentence_without_content_words_makes_no_claim(rhinitis: Document) -> None:
    grounded = ground("Yes. That is all there is.", [rhinitis])
    assert [sentence.label for sentence in grounded.sentences] == ["no_claim", "no_claim"]
    assert grounded.citations == []


def test_a_fhir_lab_value_with_its_date_is_cited_to_its_line(corpus_documents: dict[str, Document]) -> None:
    dennis = corpus_documents[DENNIS_FHIR]
    # The record writes the date 2008-04-23; the answer writes it out.
    grounded = ground(
        "His creatinine was 0.394 mg/dL on April 23, 2008. His creatinine was 0.394 mg/dL on November 10, 2008.",
        [dennis],
    )
    assert [sentence.label for sentence in grounded.sentences] == ["supported", "not_supported"]
    [citation] = grounded.citations
    assert citation.quote == "2008-04-23 Creatinine: 0.394 mg/dL"
    line_start = dennis.pages[0].text.index("2008-04-23 Creatinine: 0.394 mg/dL")
    assert (citation.start, citation.end) == (line_start, line_start + len(citation.quote))


def test_verify_accepts_ground_citations_and_rejects_tampered_ones(corpus_documents: dict[str, Document]) -> None:
    record = [corpus_documents[RHINITIS], corpus_documents[TKA_PDF], corpus_documents[DENNIS_FHIR]]
    answer = (
        "She currently takes Ortho Tri-Cyclen and Allegra. "
        'The plan reads "She will try Zyrtec instead of Allegra again." '
        "The INR was 1.92 on 08/30/2007. "
        "His creatinine was 0.394 mg/dL on April 23, 2008. "
        'He was "switched from Percocet to oxycodone SR 20 mg b.i.d." '
    )
    citations = ground(answer, record).citations
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


def test_ground_time_on_the_largest_document_and_a_long_record(corpus_documents: dict[str, Document]) -> None:
    """Prints the time ground() takes; a figure to watch, not an assertion (the machine is shared)."""
    answer = "\n".join(
        [
            "His creatinine was 0.394 mg/dL on April 23, 2008.",
            "He takes Lasix 40 mg once a day for heart failure.",
            "He has hypertension, diagnosed in 1967.",
            "He is allergic to penicillin.",
            "His hemoglobin was 14.91 g/dL in August 2006.",
            'The record lists "Chronic congestive heart failure (disorder)".',
            'It says "Naproxen sodium 220 MG Oral Tablt".',
            "He was seen by Dr. Samuel Predovic at Emerson Hospital.",
            "The record does not mention his blood type.",
            "His potassium was 5.9 mmol/L on 2008-11-10.",
        ]
    )
    largest = max(corpus_documents.values(), key=lambda document: document.char_count)
    # Every corpus document six times over: a record of about 600,000 characters.
    long_record = [
        document.model_copy(update={"name": f"{copy}-{document.name}"})
        for copy in range(6)
        for document in corpus_documents.values()
    ]
    for record in ([largest], long_record):
        started = time.perf_counter()
        grounded = ground(answer, record)
        elapsed = time.perf_counter() - started
        characters = sum(document.char_count for document in record)
        print(f"\nground(): 10 sentences over {characters:,} characters in {elapsed * 1000:.0f} ms")
        assert [sentence.label for sentence in grounded.sentences].count("supported") == 6


def test_a_sentence_that_denies_what_the_record_states_is_not_supported(corpus: Path) -> None:
    note = documents.load(corpus / RHINITIS)
    assert "She does have asthma" in note.pages[0].text

    grounded = ground("She does have asthma. She does not have asthma.", [note])

    assert [s.label for s in grounded.sentences] == ["supported", "not_supported"]
