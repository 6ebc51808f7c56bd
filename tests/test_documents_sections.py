"""documents: sections and dates of notes, the coverage report, and the provenance model."""

from pathlib import Path

import pydantic
import pytest

from documents import Document, FhirSource, Page, Section, SourceSpan, Span, load, with_tokens
from documents.dates import find_dates, iso_date
from documents.sections import find_sections, kind_of

TKA_PDF = "mtsamples_tka_discharge_summary.pdf"
MOYAMOYA = "mtsamples_moyamoya.txt"


def section_text(document: Document, title: str | None) -> str:
    section = next(s for s in document.sections if s.title == title)
    return "\n".join(document.pages[span.page - 1].text[span.start : span.end] for span in section.spans)


def test_note_sections_by_their_usual_headings(corpus: Path) -> None:
    document = load(corpus / MOYAMOYA)
    assert [(s.title, s.kind) for s in document.sections] == [
        ("CC", "chief_complaint"),
        ("HX , (primarily obtained from boyfriend)", "history_of_present_illness"),
        ("PMH", "past_medical_history"),
        ("FHX", "family_history"),
        ("SHX", "social_history"),
        ("ROS", "review_of_systems"),
        ("EXAM", "physical_exam"),
        ("INITIAL STUDIES", "labs"),
        ("COURSE", "hospital_course"),
    ]
    # The parts of the exam stay in it.
    assert "Reflexes: 2/2BUE" in section_text(document, "EXAM")


def test_heading_forms(corpus: Path) -> None:
    back_pain = load(corpus / "mtsamples_ed_back_pain.txt")
    kinds = {s.title: s.kind for s in back_pain.sections}
    assert kinds["PHYSICAL EXAMINATION VITAL SIGNS"] == "physical_exam"
    assert kinds["ASSESSMENT"] == "assessment"  # "ASSESSMENT 1. Lumbar muscle strain."
    assert "GENERAL" not in kinds and "HEART" not in kinds
    rhinitis = load(corpus / "mtsamples_allergic_rhinitis.txt")
    assert [s.kind for s in rhinitis.sections] == [
        "history_of_present_illness", "medications", "allergies", "physical_exam", "assessment", "plan"
    ]


def test_title_lines_are_headings_but_table_rows_are_not(corpus: Path) -> None:
    document = load(corpus / "synthea_summary_stevie_cormier.pdf")
    assert [(s.title, s.kind) for s in document.sections] == [
        (None, None),
        ("Allergies and intolerances", "allergies"),
        ("Problems / conditions", "problems"),
        ("Medications", "medications"),
        ("Most recent laboratory results", "labs"),
        ("Procedures", "procedures"),
        ("Immunizations", "immunizations"),
    ]


def test_a_section_spans_the_pages_it_covers(corpus: Path) -> None:
    document = load(corpus / TKA_PDF)
    course = next(s for s in document.sections if s.kind == "hospital_course")
    assert [span.page for span in course.spans] == [1, 2]
    first, second = course.spans
    assert document.pages[0].text[first.start :].startswith("HOSPITAL COURSE: As mentioned above")
    assert first.end == len(document.pages[0].text)
    assert document.pages[1].text[second.end :].lstrip().startswith("DISCHARGE DIAGNOSES:")


def test_dates_with_what_they_are_the_date_of(corpus: Path) -> None:
    document = load(corpus / TKA_PDF)
    course = next(s for s in document.sections if s.kind == "hospital_course")
    assert [(m.date, m.label) for m in course.dates] == [
        ("2007-08-24", "admission"),
        ("2007-08-30", None),
        ("2007-08-27", None),
        ("2007-08-28", None),
        ("2007-09-03", "discharge"),
    ]
    for mention in course.dates:
        written = document.pages[mention.span.page - 1].text[mention.span.start : mention.span.end]
        assert iso_date(f"{written[6:10]}-{written[:2]}-{written[3:5]}") == mention.date
    died = load(corpus / MOYAMOYA).sections[-1].dates[-1]
    assert (died.date, died.label) == ("1992-09-24", "death")


def test_text_before_the_first_heading_is_an_untitled_section(corpus: Path) -> None:
    document = load(corpus / "synthea_summary_dusty_stracke.docx")
    opening = document.sections[0]
    assert opening.title is None and opening.spans[0].start == 0
    assert [(m.date, m.label) for m in opening.dates] == [("2001-01-06", "birth"), ("2001-01-06", None)]


def test_structured_sections_come_from_the_structure(corpus: Path) -> None:
    ccda = load(corpus / "ccda_progress_note_adam_everyman.xml")
    kinds = {s.title: (s.kind, s.code) for s in ccda.sections}
    assert kinds["RESULTS"] == ("labs", "30954-2")
    assert kinds["SUBJECTIVE DATA"] == ("history_of_present_illness", "61150-9")
    fhir = load(corpus / "synthea_fhir_reyna_ziemann.json")
    assert {s.kind for s in fhir.sections} >= {"demographics", "allergies", "problems", "medications", "labs"}


@pytest.mark.parametrize(
    ("written", "iso"),
    [
        ("seen 03/19/2008.", "2008-03-19"),
        ("seen 3/19/08.", "2008-03-19"),
        ("seen 2/12/92.", "1992-02-12"),
        ("seen March 19, 2008.", "2008-03-19"),
        ("seen Mar. 19 2008.", "2008-03-19"),
        ("seen 19 March 2008.", "2008-03-19"),
        ("seen 2008-03-19T10:00:00Z.", "2008-03-19"),
        ("seen in March 2008.", "2008-03"),
        ("admitted in 9/92.", "1992-09"),
    ],
)
def test_date_forms(written: str, iso: str) -> None:
    [found] = find_dates(written)
    assert found.date == iso


@pytest.mark.parametrize(
    "written", ["Reflexes 2/2 and 3/3.", "on 02/30/2020", "13/01/2020", "dose 1/2 tablet", "in 2008"]
)
def test_what_is_not_a_date(written: str) -> None:
    assert find_dates(written) == []


def test_date_labels_come_from_the_same_clause() -> None:
    text = "DOB: 01/02/1950. Admission Date: 03/04/2020; discharged 03/09/2020. Seen 03/10/2020. Date: 03/11/2020"
    assert [found.label for found in find_dates(text)] == ["birth", "admission", "discharge", None, "note"]


def test_kind_of_headings() -> None:
    assert kind_of("Past Medical History") == "past_medical_history"
    assert kind_of("HPI") == "history_of_present_illness"
    assert kind_of("Assessment and Plan") == "assessment_and_plan"
    assert kind_of("Discharge Instructions") == "discharge_instructions"
    assert kind_of("ALLERGIES, ADVERSE REACTIONS, ALERTS") == "allergies"
    assert kind_of("Allergy to nut", whole=True) is None
    assert kind_of("Favourite colours") is None


def test_sections_of_a_plain_page_list() -> None:
    pages = [Page(number=1, text="Progress note\nHPI: Cough.\nMeds: none"), Page(number=2, text="A/P: Viral URI.")]
    sections = find_sections(pages)
    assert [(s.title, s.kind, [(sp.page, sp.start, sp.end) for sp in s.spans]) for s in sections] == [
        (None, None, [(1, 0, 13)]),
        ("HPI", "history_of_present_illness", [(1, 14, 25)]),
        ("Meds", "medications", [(1, 26, 36)]),
        ("A/P", "assessment_and_plan", [(2, 0, 15)]),
    ]


# --- Coverage ------------------------------------------------------------------------


def test_coverage_of_a_text_note(corpus: Path) -> None:
    coverage = load(corpus / MOYAMOYA).coverage
    assert (coverage.pages, coverage.empty_pages, coverage.repeated_lines_removed, coverage.skipped) == (1, [], 0, [])
    assert coverage.characters == len((corpus / MOYAMOYA).read_text().strip())
    assert coverage.extracted_characters == len((corpus / MOYAMOYA).read_text())
    assert coverage.tokens is None


def test_tokens_are_counted_by_the_callers_tokenizer(corpus: Path) -> None:
    def words(text: str) -> int:
        return len(text.split())

    document = load(corpus / TKA_PDF, count_tokens=words)
    assert document.coverage.tokens == sum(words(page.text) for page in document.pages)
    assert with_tokens(load(corpus / TKA_PDF), words) == document


def test_a_document_built_elsewhere_gets_coverage_with_its_tokens() -> None:
    pages = [Page(number=1, text="one two"), Page(number=2, text="")]
    document = Document(name="a.txt", sha256="0" * 64, kind="txt", pages=pages)
    counted = with_tokens(document, lambda text: len(text.split()))
    assert (counted.coverage.tokens, counted.coverage.empty_pages, counted.coverage.characters) == (2, [2], 7)


# --- The provenance model ------------------------------------------------------------


def test_documents_survive_a_round_trip_through_json(corpus: Path) -> None:
    for name in ("synthea_fhir_asa_hermiston.json", "ccda_ccd_eve_betterhalf.xml", TKA_PDF):
        document = load(corpus / name)
        assert Document.model_validate_json(document.model_dump_json()) == document


def test_a_span_outside_its_page_is_refused() -> None:
    source = SourceSpan(page=1, start=0, end=9, source=FhirSource(resource_type="Condition", id="c1"))
    with pytest.raises(pydantic.ValidationError, match="does not lie in page 1"):
        Document(name="a.json", sha256="0" * 64, kind="fhir", pages=[Page(number=1, text="Asthma", sources=[source])])
    with pytest.raises(pydantic.ValidationError, match="does not lie in page 2"):
        Document(
            name="a.txt",
            sha256="0" * 64,
            kind="txt",
            pages=[Page(number=1, text="Asthma")],
            sections=[Section(title="PMH", spans=[Span(page=2, start=0, end=1)])],
        )
