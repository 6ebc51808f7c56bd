"""What a loaded file becomes: a named document made of numbered pages of text.

Every place the documents package points into a document is a `Span`: a page
number and character offsets into that page's `text`, the text the model sees.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from documents.offsets import OffsetMap

Kind = Literal["pdf", "docx", "txt", "md", "fhir", "ccda"]

SectionKind = Literal[
    "demographics",
    "chief_complaint",
    "history_of_present_illness",
    "past_medical_history",
    "past_surgical_history",
    "problems",
    "medications",
    "allergies",
    "family_history",
    "social_history",
    "review_of_systems",
    "physical_exam",
    "vital_signs",
    "labs",
    "imaging",
    "procedures",
    "immunizations",
    "encounters",
    "assessment",
    "plan",
    "assessment_and_plan",
    "diagnoses",
    "hospital_course",
    "discharge_instructions",
]

# What a date is the date of, when the words before it say so.
DateLabel = Literal["note", "service", "admission", "discharge", "birth", "death"]

FactCategory = Literal[
    "medication", "allergy", "condition", "lab", "vital", "procedure", "immunization", "encounter", "follow_up"
]

# Where a fact was read: a structured entry (FHIR resource, C-CDA entry), or the words of free text.
FactOrigin = Literal["entry", "text"]

# What the text says of a thing it mentions, when not that the patient has it now (see documents.assertion).
FactContext = Literal["negated", "historical", "hypothetical", "family", "other"]


class Span(BaseModel):
    """`text[start:end]` of page `page`."""

    page: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class FhirSource(BaseModel):
    format: Literal["fhir"] = "fhir"
    resource_type: str
    id: str | None = None
    # The line is free text the resource carries (a note attached to it, a section's narrative), not one of its
    # coded elements: documents.text_facts reads facts from it.
    narrative: bool = False


class CcdaSource(BaseModel):
    format: Literal["ccda"] = "ccda"
    section: str | None = None  # the section's title; None for the document header
    code: str | None = None  # the section's LOINC code
    entry: int | None = None  # 1-based position among the section's structured entries
    entry_id: str | None = None  # that entry's id: root, or root:extension


Source = Annotated[FhirSource | CcdaSource, Field(discriminator="format")]


class SourceSpan(Span):
    """A line of the page and the part of the structured file it was written from."""

    source: Source


class Fact(BaseModel):
    """One clinical fact read from a structured entry (FHIR resource, C-CDA entry) or from free text by rule and
    dictionary (documents.text_facts); never generated."""

    category: FactCategory
    name: str  # as the source writes it: "Atenolol 25 MG Oral Tablet", "Penicillin", "Hemoglobin"
    date: str | None = None  # ISO YYYY-MM-DD (or YYYY / YYYY-MM when the source is coarser)
    end_date: str | None = None  # when it ended, where the source says: a problem resolved, a medication stopped
    status: str | None = None  # active, resolved, completed, stopped, ... as the source says
    value: str | None = None  # labs and vitals, as written: "13.2", "132/88", "Pending"
    unit: str | None = None
    # The reference range of a numeric result, where the source gives it in numbers.
    reference_low: float | None = None
    reference_high: float | None = None
    dose: str | None = None  # medications: dose, route, frequency when the source gives them
    route: str | None = None
    frequency: str | None = None
    reaction: str | None = None  # allergies
    code: str | None = None  # "system|code" of the coded concept when there is one (LOINC, SNOMED, RxNorm)
    span: Span  # the line of page text this fact was written into, or the words it was read from; they name it
    origin: FactOrigin = "entry"
    context: FactContext | None = None  # None: the patient has it, now or as the record's current state
    section: str | None = None  # the title of the section it was read from, for facts read from text

    @property
    def listable(self) -> bool:
        """Whether the fact belongs in the patient's lists: not denied, not hypothetical, not someone else's."""
        return self.context in (None, "historical")


class Page(BaseModel):
    number: int = Field(ge=1)
    text: str
    # Lines written from a structured file (FHIR, C-CDA), each with its source.
    sources: list[SourceSpan] = []
    # How `text` maps back to the text the reader extracted, when cleaning
    # changed it; None when `text` is exactly what was read.
    offsets: OffsetMap | None = None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The span of the extracted text that `text[start:end]` was cleaned from."""
        if self.offsets is None:
            if not 0 <= start <= end <= len(self.text):
                raise ValueError(f"span {start}:{end} is outside a page of {len(self.text)} characters")
            return start, end
        return self.offsets.to_original(start, end)


class DateMention(BaseModel):
    date: str  # ISO 8601: YYYY-MM-DD, or YYYY-MM where the text gives no day
    span: Span
    label: DateLabel | None = None


class Section(BaseModel):
    """A titled part of a document, from its heading to the next; one span per page it covers."""

    title: str | None  # as written; None for text before the first heading
    kind: SectionKind | None = None  # the common clinical section it is, when recognised
    code: str | None = None  # the LOINC section code of a C-CDA section
    spans: list[Span]
    dates: list[DateMention] = []


class Skipped(BaseModel):
    """Something in the file that is not in the text, and why."""

    what: str
    count: int = Field(default=1, ge=1)
    reason: str
    pages: list[int] = []  # the page numbers, when what was skipped is pages


class Coverage(BaseModel):
    """How much of the file made it into the text the model sees."""

    pages: int
    empty_pages: list[int]  # numbers of the pages with no text
    ocr_pages: list[int] = []  # numbers of the scanned pages whose text OCR read
    characters: int  # in the text the model sees
    extracted_characters: int  # read from the file, before cleaning
    repeated_lines_removed: int  # page headers and footers kept once, removed from the other pages
    skipped: list[Skipped] = []
    tokens: int | None = None  # filled by a caller that has the tokenizer (see coverage.with_tokens)
    # Said when the content is of another format than the file's name says: "named .pdf, but it is plain text".
    format_note: str | None = None


class Document(BaseModel):
    name: str
    sha256: str
    kind: Kind
    pages: list[Page]
    sections: list[Section] = []
    coverage: Coverage | None = None
    # Read from the entries of a structured file (FHIR, C-CDA); none for free text.
    facts: list[Fact] = []

    @property
    def char_count(self) -> int:
        return sum(len(page.text) for page in self.pages)

    @model_validator(mode="after")
    def _spans_point_into_pages(self) -> "Document":
        # A span that points past its page would send a citation to the wrong
        # words without any error, so a document never holds one.
        lengths = {page.number: len(page.text) for page in self.pages}
        spans: list[Span] = [source for page in self.pages for source in page.sources]
        for section in self.sections:
            spans += section.spans
            spans += [mention.span for mention in section.dates]
        spans += [fact.span for fact in self.facts]
        for span in spans:
            if span.page not in lengths or not span.start <= span.end <= lengths[span.page]:
                raise ValueError(f"span {span.start}:{span.end} does not lie in page {span.page}")
        for page in self.pages:
            if any(source.page != page.number for source in page.sources):
                raise ValueError(f"page {page.number} holds a source span of another page")
        return self
