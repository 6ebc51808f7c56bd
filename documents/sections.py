"""Sections of free-text notes (HPI, Medications, Assessment and Plan...) and the dates in each."""

import re
from dataclasses import dataclass

from documents.dates import find_dates
from documents.document import DateMention, Page, Section, SectionKind, Span

# Headings as clinicians write them, lower case, for each kind of section.
_HEADINGS: dict[SectionKind, tuple[str, ...]] = {
    "chief_complaint": ("chief complaint", "chief complaints", "cc", "reason for visit", "reason for referral",
                        "presenting complaint", "chief complaint and reason for visit"),
    "history_of_present_illness": ("history of present illness", "hpi", "history of the present illness",
                                   "present illness", "hx", "history", "interval history", "subjective"),
    "past_medical_history": ("past medical history", "pmh", "pmhx", "medical history", "past history"),
    "past_surgical_history": ("past surgical history", "psh", "surgical history", "previous surgeries"),
    "problems": ("problem list", "problems", "active problems"),
    "medications": ("medications", "medication", "meds", "current medications", "home medications",
                    "discharge medications", "admission medications", "medications on admission",
                    "medications on discharge", "outpatient medications"),
    "allergies": ("allergies", "allergy", "drug allergies", "allergies to medications", "medication allergies",
                  "allergies and adverse reactions", "adverse reactions", "allergies and intolerances"),
    "family_history": ("family history", "fhx", "fh"),
    "social_history": ("social history", "shx", "sh"),
    "review_of_systems": ("review of systems", "ros"),
    "physical_exam": ("physical examination", "physical exam", "exam", "examination", "objective", "pe",
                      "objective data", "discharge physical"),
    "vital_signs": ("vital signs", "vitals"),
    "labs": ("labs", "laboratory", "laboratory data", "laboratory results", "lab results", "results",
             "initial studies", "studies", "diagnostic studies", "pertinent results", "most recent laboratory results"),
    "imaging": ("imaging", "radiology"),
    "procedures": ("procedures", "procedure", "operations", "procedures performed"),
    "immunizations": ("immunizations", "immunization", "vaccinations", "vaccines"),
    "encounters": ("encounters", "visits"),
    "assessment": ("assessment", "impression", "clinical impression"),
    "plan": ("plan", "treatment plan", "plan of care", "recommendations"),
    "assessment_and_plan": ("assessment and plan", "assessment/plan", "a/p", "a&p", "impression and plan",
                            "impression/plan"),
    "diagnoses": ("diagnosis", "diagnoses", "discharge diagnosis", "discharge diagnoses", "admission diagnosis",
                  "admission diagnoses", "admitting diagnosis", "final diagnosis", "final diagnoses"),
    "hospital_course": ("hospital course", "course", "clinical course", "course in hospital"),
    "discharge_instructions": ("discharge instructions", "instructions", "hospital discharge instructions",
                               "follow-up instructions", "discharge plan", "disposition"),
}
_KIND_OF = {heading: kind for kind, headings in _HEADINGS.items() for heading in headings}

# Parts of a physical exam. Written as headings ("HEENT:", "NECK:"), they stay
# inside the exam instead of starting sections of their own.
_EXAM_PARTS = frozenset(
    """general heent head eyes ears nose throat neck lungs chest heart cardiovascular cv abdomen abd back
    extremities skin neuro neurologic neurological musculoskeletal msk psych psychiatric mental status ms cn
    motor sensory coordination station gait reflexes genitourinary gu rectal breasts lymph lymphatics pulses
    respiratory resp cardiac bp hr rr temp pulse weight height bmi spo2""".split()
) | {"mental status", "general exam", "o2 sat"}

# Column headings of tables, which a title line of one such word is more likely to be.
_COLUMN_WORDS = frozenset({"allergy", "medication", "procedure", "immunization", "diagnosis", "history"})

_NAME = r"[A-Za-z][A-Za-z/&'-]*(?:[ \t]+[A-Za-z/&'-]+){0,11}"
# A heading at the start of a line: a name followed by a colon, optionally with
# a short qualifier before it ("HX , (primarily obtained from boyfriend):").
_LINE_HEADING = re.compile(
    rf"^[ \t]*(?P<number>\d{{1,2}}[.)][ \t]*)?(?P<title>{_NAME})(?P<qualifier>[ \t]*[,(][^:\n]{{0,60}})?[ \t]*:"
    r"(?P<value>[ \t]*[\d<>])?",
    re.M,
)
# A heading alone on its line, as in documents laid out with title lines.
_TITLE_LINE = re.compile(rf"^[ \t]*(?P<title>{_NAME})[ \t]*$", re.M)
# An upper-case heading without a colon, before numbered items: "ASSESSMENT 1. Lumbar strain."
_CAPS_BEFORE_LIST = re.compile(r"^[ \t]*(?P<title>[A-Z][A-Z/& ]*[A-Z])[ \t]+(?=1[.)])", re.M)
# An upper-case heading after a sentence on the same line (PDF lines wrap anywhere).
_CAPS_INLINE = re.compile(r"(?<=[.!?] )(?P<title>[A-Z][A-Z/&' -]*[A-Z])(?=:)")


def kind_of(title: str, whole: bool = False) -> SectionKind | None:
    """The kind of section a heading names, if it is a common one.

    `whole`: the heading must be a known name, or known names joined by "/";
    otherwise a known start is enough ("PHYSICAL EXAMINATION VITAL SIGNS").
    """
    key = " ".join(re.sub(r"[^a-z/&' -]", " ", title.lower()).split())
    if key in _KIND_OF:
        return _KIND_OF[key]
    if whole:
        # "Problems / conditions"
        return _KIND_OF.get(key.split("/")[0].strip()) if "/" in key else None
    words = key.replace("/", " / ").split()
    for size in range(len(words) - 1, 0, -1):
        start = " ".join(words[:size])
        if start in _KIND_OF:
            return _KIND_OF[start]
    return None


@dataclass(frozen=True)
class _Heading:
    page: int
    start: int
    title: str
    kind: SectionKind | None


def find_sections(pages: list[Page]) -> list[Section]:
    """The sections of a free-text document, from each heading to the next, across pages."""
    headings = [heading for page in pages for heading in _headings(page)]
    if pages and (not headings or (headings[0].page, headings[0].start) != (pages[0].number, 0)):
        # The text before the first heading is a section too, with no title,
        # so that its dates (often the note's own) have a place.
        headings.insert(0, _Heading(page=pages[0].number, start=0, title="", kind=None))
    sections = []
    for position, heading in enumerate(headings):
        following = headings[position + 1] if position + 1 < len(headings) else None
        spans = _spans(pages, heading, following)
        if not spans:
            continue
        sections.append(
            Section(
                title=heading.title or None,
                kind=heading.kind,
                spans=spans,
                dates=dates_in(pages, spans),
            )
        )
    return sections


def dates_in(pages: list[Page], spans: list[Span]) -> list[DateMention]:
    texts = {page.number: page.text for page in pages}
    return [
        DateMention(date=found.date, span=Span(page=span.page, start=found.start, end=found.end), label=found.label)
        for span in spans
        for found in find_dates(texts[span.page], span.start, span.end)
    ]


def _headings(page: Page) -> list[_Heading]:
    found: dict[int, _Heading] = {}
    text = page.text
    for pattern, needs_known in (
        (_LINE_HEADING, False),
        (_TITLE_LINE, True),
        (_CAPS_BEFORE_LIST, True),
        (_CAPS_INLINE, True),
    ):
        for match in pattern.finditer(text):
            title = match.group("title").strip()
            start = match.start("title")
            if start in found or not _is_heading(title, match, needs_known):
                continue
            qualifier = (match.groupdict().get("qualifier") or "").strip()
            written = f"{title} {qualifier}".strip() if qualifier else title
            found[start] = _Heading(page=page.number, start=start, title=written, kind=kind_of(title))
    return [found[start] for start in sorted(found)]


def _is_heading(title: str, match: re.Match[str], needs_known: bool) -> bool:
    lowered = " ".join(title.lower().split())
    if lowered in _EXAM_PARTS:
        return False
    if needs_known:
        # Without a colon, only a whole known name is a heading: a line
        # "Allergy to nut" in a table is not the start of an allergy section.
        return kind_of(title, whole=True) is not None and lowered not in _COLUMN_WORDS
    known = kind_of(title) is not None
    groups = match.groupdict()
    if groups["number"]:
        # "1. HTN: controlled" is an item of a list; "1. HISTORY:" a heading.
        return known
    if known:
        return title.isupper() or groups["qualifier"] is None
    # Any other upper-case name before a colon is a heading too, unless a
    # value follows it ("GLUCOSE: 112" is a result).
    return title.isupper() and sum(char.isalpha() for char in title) >= 5 and groups["value"] is None


def _spans(pages: list[Page], heading: _Heading, following: _Heading | None) -> list[Span]:
    spans = []
    for page in pages:
        if page.number < heading.page or (following and page.number > following.page):
            continue
        start = heading.start if page.number == heading.page else 0
        end = following.start if following and page.number == following.page else len(page.text)
        while end > start and page.text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append(Span(page=page.number, start=start, end=end))
    return spans
