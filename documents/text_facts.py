"""Facts read from free text without a model: medications, problems, allergies, vitals, labs, procedures,
immunizations and follow-ups, each with the span of the words it was read from and what the text says of it.

How each is read:
- names of drugs and diseases come from two maintained dictionaries (documents.lexicons); vital signs and lab
  values from patterns (documents.measurements); rows of a table, one cell per line or cells joined by "|", by
  their column headings (documents.tables);
- a section decides what a list in it is (a numbered item under Discharge Diagnoses is a problem whatever its
  words; a drug under Allergies is an allergy, not a medication); in prose, a disease is a problem only after a
  diagnostic cue ("history of", "diagnosed with", "revealed", "admitted for"), since prose also names the diseases
  the patient does not have; a sign or symptom ("edema", "back pain") is a problem only as a numbered diagnosis;
- each mention's context (negated, historical, hypothetical, family, someone else) comes from ConText
  (documents.assertion). Negated, hypothetical and other people's mentions are kept as facts, for the claim checker
  and evidence, but `Fact.listable` keeps them off the patient's lists;
- the mentions of one drug or disease in a document are one fact: the most detailed mention, preferring the latest
  section (the discharge list over the admission one).

Work is bounded: each sentence is read once per kind of fact, and a sentence longer than `MAX_SENTENCE` characters
(OCR noise, a file of one huge line) only for its first `MAX_SENTENCE` characters, which the coverage report says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from documents import lexicons, measurements, tables
from documents.assertion import context
from documents.dates import find_dates
from documents.document import (
    Document, Fact, FactCategory, FhirSource, Page, Section, SectionKind, Skipped, Span,
)
from documents.sections import find_sections
from documents.sentences import sentence_spans, trim

# A sentence longer than this is read only this far: no clinical statement runs to it, OCR noise and junk do.
MAX_SENTENCE = 2_000

# Sections whose mentions are not the patient's current clinical facts of that kind.
_NOT_MEDICATIONS: frozenset[SectionKind | None] = frozenset({"allergies", "family_history", "social_history"})
_PROBLEM_LISTS: frozenset[SectionKind | None] = frozenset(
    {"past_medical_history", "problems", "diagnoses", "assessment", "assessment_and_plan"}
)
_NO_PROBLEMS: frozenset[SectionKind | None] = frozenset(
    {"family_history", "social_history", "review_of_systems", "physical_exam", "vital_signs", "labs", "allergies",
     "medications", "chief_complaint", "plan", "discharge_instructions", "immunizations", "procedures"}
)
# Words the disease dictionary holds that name a kind of problem, not a problem: "complaint of allergies".
_GENERIC = re.compile(r"allerg(?:y|ies|ic)|infections?|disease|disorders?|symptoms?|pain|injury|injuries", re.IGNORECASE)
# A list item longer than this is a sentence, not a problem's name: the disease it names is listed by its own words.
MAX_PROBLEM_WORDS = 8
_PROCEDURE_LISTS: frozenset[SectionKind | None] = frozenset({"past_surgical_history", "procedures"})

# A sentence that makes the diagnosis the sentence before suspected.
_CONFIRMED = re.compile(
    r"\b(?:given|made|confirmed|established|received)\s+(?:this|that|the)\s+diagnosis\b|"
    r"\b(?:this|that|the)\s+diagnosis\s+(?:was|is|has\s+been)\s+(?:confirmed|made|established)\b",
    re.IGNORECASE,
)
# Words that, before a disease in prose, say the patient has or had it.
_DIAGNOSTIC_CUE = re.compile(
    r"\b(?:history\s+of|h/o|diagnosed\s+(?:with|as)|diagnosis\s+of|known|found\s+to\s+have|revealed|showed|shows|"
    r"demonstrated|consistent\s+with|admitted\s+(?:for|with)|died\s+(?:of|from)|suffers?\s+from|suffering\s+from|"
    r"treated\s+for|presents?\s+with|developed|significant\s+for|positive\s+for|secondary\s+to|status\s+post|s/p|"
    r"(?:he|she|patient|they)\s+(?:also\s+)?(?:has|have|does\s+have))\b"
    r"(?P<gap>[^.;:]{0,60})$",
    re.IGNORECASE,
)
_LIST_LEAD = re.compile(
    r"^(?:(?:significant|positive|notable)\s+for|includes?|including|(?:he|she|the\s+patient|patient|they)\s+"
    r"(?:has|had|have|is|was|also\s+has|denies|also\s+denies|denied|suffers\s+from|also\s+suffers\s+from|reports|gives\s+a\s+history\s+of)"
    r"(?:\s+(?:a|an|the))?|(?:her|his|the)\s+(?:only\s+)?medications?\s+(?:currently\s+)?(?:is|are|include)|"
    r"(?:he|she|the\s+patient)\s+(?:is|was)\s+on|(?:a|an|the)|and|also|or)\s+",
    re.IGNORECASE,
)
_ITEM_END = re.compile(
    r"\s+(?:secondary\s+to|due\s+to|performed|which|that|for\s+which|on\s+medication|done|in\s+(?:19|20)\d\d|"
    r"with|perhaps|probably|likely|possibly|of\s+unknown\s+etiology|"
    r"some\s+\d+\s+years|\d+\s+years\s+ago|for\s+this|dating\s+back)\b.*$|[,;:(].*$",
    re.IGNORECASE | re.DOTALL,
)
_NUMBERED = re.compile(r"(?:^|(?<=[\s:.]))\d{1,2}[.)]\s+")
_SPLIT = re.compile(r",\s*(?:and\s+|or\s+)?|;\s*|\s+and\s+(?=[a-z])", re.IGNORECASE)

_STRENGTH = re.compile(
    r"\b\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?\s*(?:mg|mcg|µg|g|gm|ml|mL|units?|iu|meq|%)(?![A-Za-z])", re.IGNORECASE
)
_ROUTE = re.compile(
    r"\b(?:p\.?o\.?|by\s+mouth|orally|oral|sublingual|s\.?l\.?|iv|intravenous(?:ly)?|i\.?m\.?|subcu(?:taneous(?:ly)?)?|"
    r"sub-?q|s\.?c\.?|topical(?:ly)?|cream|ointment|inhaled|inhaler|nasal(?:\s+spray)?|spray|patch|transdermal|"
    r"eye\s+drops?|ophthalmic|rectal(?:ly)?|per\s+rectum)(?![A-Za-z])",
    re.IGNORECASE,
)
_FREQUENCY = re.compile(
    r"\b(?:daily|once\s+(?:a\s+)?day|twice\s+(?:a\s+)?day|three\s+times\s+(?:a\s+)?day|(?:one|two|three|four)\s+to\s+"
    r"(?:two|three|four)\s+times\s+a\s+day|b\.?i\.?d\.?|t\.?i\.?d\.?|q\.?i\.?d\.?|q\.?d\.?|q\.?h\.?s\.?|"
    r"q\.?\s?\d+\s?h(?:ours?|rs?)?\.?|every\s+\d+(?:\s+to\s+\d+)?\s+hours|at\s+bedtime|nightly|weekly|monthly|"
    r"p\.?r\.?n\.?|as\s+needed|in\s+the\s+morning|in\s+the\s+evening)(?![A-Za-z])",
    re.IGNORECASE,
)
_STOPPED = re.compile(
    r"\b(?:discontinued|stopped|stop|switched\s+from|off|not\s+(?:to\s+)?restart|instead\s+of|no\s+longer|"
    r"replaced)\b",
    re.IGNORECASE,
)
_HELD = re.compile(r"\b(?:held|hold|holding|on\s+hold)\b", re.IGNORECASE)
# What a medication list's heading says of its drugs: "Discharge medications", "Medications on admission".
_LIST_STATUS = [(re.compile(r"discharge", re.IGNORECASE), "discharge"),
                (re.compile(r"admission|on\s+transfer|prior\s+to", re.IGNORECASE), "on admission"),
                (re.compile(r"current|home|outpatient|active", re.IGNORECASE), "current")]
_STARTED = re.compile(r"\b(?:started|start|initiated|begun|began|rx\s+for|prescription\s+for|prescribed|switched\s+to)\b",
                      re.IGNORECASE)
# A name and a strength make a medication even when no dictionary knows the name: "Percocet 5/325 mg".
_NAMED_STRENGTH = re.compile(
    r"\b(?P<name>[A-Z][A-Za-z]+(?:[- ][A-Z][A-Za-z]+)?)(?:\s+(?:SR|XL|ER|CR|DR|XR|cream|spray|tabs?))?\s+"
    r"(?P<strength>\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?\s*(?:mg|mcg|µg|units?|meq)\b)",
)
_NOT_DRUG_WORDS = frozenset({"take", "takes", "taking", "the", "and", "with", "total", "dose", "then", "rx", "sig"})

_NKDA = re.compile(
    r"\b(?:NKDA|NKA|NKMA|no\s+known\s+(?:drug\s+|medication\s+|medicine\s+)?allergies|no\s+(?:drug\s+)?allergies|"
    r"not\s+allergic\s+to\s+any(?:\s+medications?)?|allergies:\s*none(?:\s+known)?)\b",
    re.IGNORECASE,
)
_ALLERGIC_TO = re.compile(r"\b(?:allergic\s+to|allergy\s+to|allergies\s+to|intolerant\s+(?:of|to))\s+", re.IGNORECASE)
_REACTION = re.compile(
    r"^\s*(?:\((?P<paren>[^)]{2,40})\)|(?:which\s+)?(?:causes?|caused|causing|with|leads?\s+to|-|–|:)\s+(?:a\s+|an\s+)?"
    r"(?P<words>[A-Za-z][A-Za-z ]{1,30}?)(?=[.,;)]|\s+and\b|$))",
    re.IGNORECASE,
)

_PROCEDURE_HEAD = re.compile(
    r"(?:\b[A-Za-z][\w/-]*\s+){0,4}?(?:\b\w*(?:ectomy|otomy|ostomy|plasty|pexy|scopy|graphy|gram)\b|"
    r"\b(?:fusion|repair|replacement|arthroplasty|biopsy|ligation|resection|transplant(?:ation)?|bypass|"
    r"catheterization|amputation|excision|implantation|reduction|fixation|debridement|(?:MRI|CT|PET)(?:\s+scan)?|"
    r"doppler(?:\s+study)?|ultrasound|x-ray|echocardiogram|colonoscopy|endoscopy)\b)",
    re.IGNORECASE,
)
# In a list of past operations, "knee surgery" names one; in prose "surgery" names none ("bariatric surgery service").
_SURGERY = re.compile(r"(?:\b[A-Za-z][\w/-]*\s+){1,3}?(?:surger(?:y|ies)|operations?)\b", re.IGNORECASE)
# Procedures that a head word alone does not name, but the words it was done to: "repair of a pelvic fracture".
_NAMED_BY_OBJECT = frozenset({"repair", "replacement", "reduction", "fixation", "excision", "resection", "biopsy"})
_OBJECT = re.compile(
    r"\s+(?:of\s+)?(?:(?:a|an|the|his|her|their)\s+)?(?P<object>(?:(?!(?:and|or|with|on|in|at|for|to)\b)[A-Za-z-]+\s+)"
    r"{0,2}(?!(?:and|or|with|on|in|at|for|to)\b)[A-Za-z-]+)",
    re.IGNORECASE,
)
# Words a procedure's name does not run back past: "a venous Doppler study", "his previous L1-L2 fusion".
_NOT_IN_PROCEDURE_NAME = frozenset(
    "a an the his her their previous prior recent underwent undergo had has have status post s/p with from of for "
    "including includes significant and or revealed showed shows was were is are by at to on in obtained after "
    "tenderness pain no".split()
)
_FOLLOW_UP = re.compile(
    r"\b(?:follow[- ]?up|followup|return\s+(?:to|in)\s+(?:clinic|the\s+clinic|\d+|one|two|three|four|six)|"
    r"appointment|recheck|to\s+be\s+obtained|pending|will\s+need|should\s+follow)\b",
    re.IGNORECASE,
)
# Vaccines as notes name them: a disease's name before "vaccine", "shot" or "booster", or a vaccine's own name.
# Written here: the drug dictionary knows few vaccines by the names clinicians write.
_VACCINE = re.compile(
    r"\b(?:(?:influenza|flu|tetanus|td|tdap|dtap|pneumococcal|hepatitis\s+[ab]|hep\s+[ab]|hpv|zoster|shingles|"
    r"covid(?:-19)?|mmr|varicella|meningococcal|rsv|polio|rabies|typhoid|yellow\s+fever)\s+"
    r"(?:vaccine|vaccination|shot|booster|immunization)s?|tdap|pneumovax|prevnar|shingrix|gardasil|zostavax)\b",
    re.IGNORECASE,
)
_ACTION_SECTIONS: frozenset[SectionKind | None] = frozenset(
    {"plan", "assessment_and_plan", "discharge_instructions", "assessment", "hospital_course"}
)


@dataclass
class _Region:
    """The text of one section on one page."""

    page: Page
    start: int
    end: int
    kind: SectionKind | None
    title: str | None


def read_facts(document: Document) -> tuple[list[Fact], list[Skipped]]:
    """The facts of a free-text document, and what was not read for them."""
    facts, cut = _read(_regions(document), wrapped=True)
    skipped = [] if not cut else [Skipped(
        what="characters of over-long sentences", count=cut,
        reason=f"a sentence is read for facts only up to its first {MAX_SENTENCE:,} characters",
    )]
    return facts, skipped


def read_narrative_facts(document: Document) -> list[Fact]:
    """The facts of the free text of a structured document (FHIR, C-CDA): the C-CDA sections no line of which an
    entry wrote (an Assessment, a History of Present Illness), and the notes a FHIR resource carries (a
    DocumentReference's text, a Composition's section narratives, a report's presented form), read by their own
    headings. A fact that a coded fact already names is not read twice."""
    structured = [source for page in document.pages for source in page.sources
                  if isinstance(source.source, FhirSource) or source.source.entry is not None]
    sections = [
        region for region in _regions(document)
        if not any(s.page == region.page.number and s.start < region.end and region.start < s.end for s in structured)
    ]
    notes = [region for page in document.pages for source in page.sources
             if isinstance(source.source, FhirSource) and source.source.narrative
             for region in _note_regions(page, source.start, source.end)]
    # A structured file's reader writes each element on a line of its own: no sentence wraps to the next line. A
    # note keeps its own line breaks, inside which its sentences wrap.
    facts = _read(sections, wrapped=False)[0] + _read(notes, wrapped=True)[0]
    return [fact for fact in facts if not any(_same_thing(fact, coded) for coded in document.facts)]


def _note_regions(page: Page, start: int, end: int) -> list[_Region]:
    """A note's text in regions by the note's own headings ("ALLERGIES:", "PLAN:"), found as in a free-text file."""
    return [_Region(page, start + span.start, start + span.end, section.kind, section.title)
            for section in find_sections([Page(number=page.number, text=page.text[start:end])])
            for span in section.spans]


def _read(regions: Iterable[_Region], wrapped: bool) -> tuple[list[Fact], int]:
    """The facts of the regions, and how many characters of over-long sentences were not read. A table's rows are
    entries, each a fact of its own; the mentions of one thing in prose are one fact (see `_one_per_thing`)."""
    rows: list[Fact] = []
    mentions: list[Fact] = []
    cut = 0
    for region in regions:
        table = tables.read_table(region.page.text, region.start, region.end)
        if table is not None:
            rows += _table_facts(region, table)
            continue
        for block_start, block_end in _blocks(region.page.text, _after_title(region), region.end, wrapped):
            previous: tuple[int, int] | None = None
            for start, end in sentence_spans(region.page.text, block_start, block_end):
                cut += max(0, end - start - MAX_SENTENCE)
                mentions += _sentence_facts(region, start, min(end, start + MAX_SENTENCE))
                if previous and _CONFIRMED.search(region.page.text, start, end):
                    mentions += _confirmed(region, *previous)
                previous = (start, min(end, start + MAX_SENTENCE))
    return rows + _one_per_thing(mentions), cut


def _confirmed(region: _Region, start: int, end: int) -> list[Fact]:
    """The diagnosis that a sentence such as "She was given this diagnosis" confirms: the last disease the sentence
    before it only suspected ("suspicious of a vasculitis such as Moya Moya disease")."""
    sentence = region.page.text[start:end]
    suspected = [m for m in _diseases(sentence, 0, len(sentence)) if context(sentence, m.start, m.end) == "hypothetical"]
    if not suspected:
        return []
    last = suspected[-1]
    return [_fact(region, "condition", sentence[last.start : last.end], start + last.start, start + last.end,
                  code=last.term.code)]


def _same_thing(fact: Fact, other: Fact) -> bool:
    """Whether two facts of a kind name one thing, one name's words holding the other's: "Type II diabetes mellitus"
    and "Type II diabetes mellitus with ulcer"."""
    if fact.category != other.category:
        return False
    words, other_words = ({word for word, _, _ in lexicons.words(f.name)} for f in (fact, other))
    return bool(words) and bool(other_words) and (words <= other_words or other_words <= words)


def _regions(document: Document) -> Iterable[_Region]:
    pages = {page.number: page for page in document.pages}
    sections = document.sections or [Section(title=None, spans=[Span(page=p.number, start=0, end=len(p.text))
                                                                  for p in document.pages])]
    for section in sections:
        for span in section.spans:
            yield _Region(pages[span.page], span.start, span.end, section.kind, section.title)


def _blocks(text: str, start: int, end: int, wrapped: bool) -> list[tuple[int, int]]:
    """Runs of prose lines, whose sentences may wrap from line to line (a PDF, a note), and each table row ("Abdominal
    CT | Clear evidence of appendicitis") alone, since no sentence runs from one row into the next; every line alone
    when the text is not `wrapped`."""
    blocks: list[tuple[int, int]] = []
    position = start
    prose_start = start
    while position < end:
        line_end = text.find("\n", position, end)
        line_end = end if line_end < 0 else line_end
        if "|" in text[position:line_end] or not wrapped:
            if prose_start < position:
                blocks.append((prose_start, position))
            blocks.append((position, line_end))
            prose_start = line_end + 1
        position = line_end + 1
    if prose_start < end:
        blocks.append((prose_start, end))
    return blocks


def _after_title(region: _Region) -> int:
    """Where a region's text starts after its section's title ("PAST MEDICAL HISTORY:"), which names no fact."""
    if not region.title:
        return region.start
    heading = re.match(rf"\s*{re.escape(region.title)}\s*:?", region.page.text[region.start : region.end], re.IGNORECASE)
    return region.start + heading.end() if heading else region.start


def _fact(region: _Region, category: FactCategory, name: str, start: int, end: int, **values) -> Fact:
    return Fact(
        category=category, name=" ".join(name.split()), span=Span(page=region.page.number, start=start, end=end), origin="text",
        section=region.title, **values,
    )


def _sentence_facts(region: _Region, start: int, end: int) -> list[Fact]:
    text = region.page.text
    sentence = text[start:end]
    facts: list[Fact] = []
    if region.kind != "family_history":
        facts += _medications(region, start, sentence)
        facts += _allergies(region, start, sentence)
    facts += _problems(region, start, sentence)
    facts += _procedures(region, start, sentence)
    date = _first_date(sentence)
    if region.kind != "family_history":
        for found in _VACCINE.finditer(sentence):
            facts.append(_fact(region, "immunization", found.group(), start + found.start(), start + found.end(),
                               date=date, context=context(sentence, found.start(), found.end())))
    if region.kind not in ("family_history", "review_of_systems"):
        for category, read in (("vital", measurements.vitals), ("lab", measurements.labs)):
            for found in read(sentence):
                facts.append(_fact(region, category, found.name, start + found.start, start + found.end,
                                   value=found.value, unit=found.unit, context=context(sentence, found.start, found.end),
                                   date=date))
    if _FOLLOW_UP.search(sentence) and (region.kind in _ACTION_SECTIONS or region.kind is None):
        description = " ".join(sentence.split())
        facts.append(_fact(region, "follow_up", description[:160], start, end, date=date))
    return facts


def _first_date(sentence: str) -> str | None:
    dates = find_dates(sentence)
    return dates[0].date if dates else None


# --- Medications ------------------------------------------------------------------------------------------------


def _medications(region: _Region, offset: int, sentence: str) -> list[Fact]:
    if region.kind in _NOT_MEDICATIONS:
        return []
    found: list[tuple[int, int, str, str | None]] = [
        (m.start, m.end, sentence[m.start : m.end], m.term.code) for m in lexicons.drugs().find(sentence)
    ]
    for match in _NAMED_STRENGTH.finditer(sentence):
        name = match.group("name")
        if name.isupper() and len(name) <= 3:
            continue  # "SR", "XL": a release form after a name, not a name
        if name.split()[0].casefold() in _NOT_DRUG_WORDS or any(s < match.end("name") and match.start() < e for s, e, _, _ in found):
            continue
        found.append((match.start("name"), match.end("name"), name, None))
    if region.kind == "medications" or _drug_list(sentence, found):
        found += _unlisted_items(sentence, found)
    facts = []
    for start, end, name, code in sorted(found):
        if _ALLERGIC_TO.search(sentence[max(0, start - 40) : start]):
            continue  # "allergic to penicillin": an allergy, read below
        detail = sentence[end : _detail_end(sentence, end, found)]
        strength = _STRENGTH.search(detail)
        route = _ROUTE.search(detail)
        frequency = _FREQUENCY.search(detail)
        before = sentence[max(0, start - 60) : start]
        status = ("held" if _HELD.search(before) else "stopped" if _STOPPED.search(before)
                  else "started" if _STARTED.search(before) else _list_status(region))
        details = [m for m in (strength, route, frequency) if m is not None]
        span_end = end + max((m.end() for m in details), default=0)
        facts.append(_fact(
            region, "medication", name, offset + start, offset + span_end,
            dose=strength.group().strip() if strength else None,
            route=route.group().strip() if route else None,
            frequency=frequency.group().strip() if frequency else None,
            status=status, code=code, context=context(sentence, start, end),
        ))
    return facts


def _list_status(region: _Region) -> str | None:
    """The status a section gives the drugs it lists: its heading's word, or "discharge" for discharge instructions."""
    if region.kind == "discharge_instructions":
        return "discharge"
    if region.kind != "medications" or not region.title:
        return None
    return next((status for pattern, status in _LIST_STATUS if pattern.search(region.title)), None)


def _detail_end(sentence: str, end: int, found: list[tuple[int, int, str, str | None]]) -> int:
    """Where a medication's dose, route and frequency stop: the next drug, or a comma after some detail."""
    following = [s for s, _, _, _ in found if s >= end]
    limit = min(following + [len(sentence), end + 80])
    comma = sentence.find(",", end + 1, limit)
    while comma >= 0 and not _STRENGTH.search(sentence, end, comma) and not _FREQUENCY.search(sentence, end, comma):
        comma = sentence.find(",", comma + 1, limit)
    return comma if comma >= 0 else limit


def _drug_list(sentence: str, found: list[tuple[int, int, str, str | None]]) -> bool:
    """Whether the sentence holds a list most of whose items, and at least two, are drugs the dictionaries know:
    "five medications for his back (Celebrex, tramadol, gabapentin, and the Vicodin ...)"."""
    items = _items(sentence, 0, len(sentence))
    drugs = sum(1 for start, end in items if any(start <= s and e <= end for s, e, _, _ in found))
    return drugs >= 2 and 2 * drugs > len(items)


def _unlisted_items(sentence: str, found: list[tuple[int, int, str, str | None]]) -> list[tuple[int, int, str, None]]:
    """Items of a medication list that no dictionary knows ("niacin", "Ortho Tri-Cyclen"): a short item whose first
    word is a name, read only under a Medications heading or in a list of drugs."""
    items = []
    for start, end in _items(sentence, 0, len(sentence)):
        start, end = _item_name(sentence, start, end)
        if end <= start or any(s < end and start < e for s, e, _, _ in found):
            continue
        words = sentence[start:end].split()
        if not 1 <= len(words) <= 3 or not re.fullmatch(r"[A-Za-z][A-Za-z-]+", words[0]):
            continue
        if not lexicons.rare(words[0].split("-")[0]):
            continue  # "On transfer": an everyday word opens no drug's name
        if words[0].casefold() in _NOT_DRUG_WORDS or lexicons.diseases().find(sentence[start:end]):
            continue
        if not (words[0][0].isupper() or len(words) == 1):
            continue
        items.append((start, end, sentence[start:end], None))
    return items


# --- Allergies --------------------------------------------------------------------------------------------------


def _allergies(region: _Region, offset: int, sentence: str) -> list[Fact]:
    facts = []
    for match in _NKDA.finditer(sentence):
        facts.append(_fact(region, "allergy", "No known drug allergies", offset + match.start(), offset + match.end(),
                           status="none known", code="allergy|none-known"))
    if facts:
        return facts
    if region.kind == "allergies":
        for start, end in _items(sentence, 0, len(sentence)):
            substance = _substance(sentence, start, end)
            if substance is None:
                continue
            s, e = substance
            facts.append(_allergy(region, offset, sentence, s, e))
        return facts
    for match in _ALLERGIC_TO.finditer(sentence):
        for mention in lexicons.drugs().find(sentence[match.end() : match.end() + 60])[:1]:
            s, e = match.end() + mention.start, match.end() + mention.end
            facts.append(_allergy(region, offset, sentence, s, e))
    return facts


def _substance(sentence: str, start: int, end: int) -> tuple[int, int] | None:
    """The substance an item under Allergies names: a drug the dictionary knows, else the item's first words."""
    item = sentence[start:end]
    drug = lexicons.drugs().find(item)
    if drug:
        return start + drug[0].start, start + drug[0].end
    cut = re.match(r"(?:(?:he|she|the patient|patient)\s+(?:is|has)\s+)?(?:allergic\s+to\s+|allergy\s+to\s+)?", item,
                   re.IGNORECASE)
    rest_start = start + (cut.end() if cut else 0)
    rest = sentence[rest_start:end]
    name = re.match(r"[A-Za-z][A-Za-z' -]{1,40}?(?=\s*(?:\(|which|causes?|-|–|:|$))", rest, re.IGNORECASE)
    if name is None or len(name.group().split()) > 4 or name.group().strip().casefold() in ("none", "no", "unknown"):
        return None
    return rest_start, rest_start + len(name.group().rstrip())


def _allergy(region: _Region, offset: int, sentence: str, start: int, end: int) -> Fact:
    reaction = _REACTION.match(sentence[end:])
    words = (reaction.group("paren") or reaction.group("words")) if reaction else None
    span_end = end + reaction.end() if reaction else end
    return _fact(region, "allergy", sentence[start:end], offset + start, offset + span_end,
                 reaction=words.strip().lower() if words else None, context=context(sentence, start, end),
                 code=next((f"{m.term.code}" for m in lexicons.drugs().find(sentence[start:end])), None))


# --- Problems ---------------------------------------------------------------------------------------------------


def _problems(region: _Region, offset: int, sentence: str) -> list[Fact]:
    if region.kind in _NO_PROBLEMS:
        return []
    facts = []
    if region.kind in _PROBLEM_LISTS:
        numbered = region.kind in ("diagnoses", "assessment", "assessment_and_plan") and _NUMBERED.search(sentence)
        for item_start, item_end in _items(sentence, 0, len(sentence)):
            diseases = _diseases(sentence, item_start, item_end)
            start, end = _item_name(sentence, item_start, item_end)
            named = [m for m in diseases if start <= m.start and m.end <= end]
            if named and len(sentence[start:end].split()) <= MAX_PROBLEM_WORDS:
                pass  # the item, as the clinician wrote it, names a disease
            elif numbered and end - start >= 3 and len(sentence[start:end].split()) <= MAX_PROBLEM_WORDS:
                pass  # a numbered diagnosis, whatever its words
            elif diseases:
                named = diseases[:1]  # a disease inside a longer item: its own words
                start, end = _widened(sentence, named[0].start, named[0].end)
            else:
                continue
            # The context of the disease's own words: an item "She denies liver disease" is a denial.
            s, e = (named[0].start, named[0].end) if named else (start, end)
            facts.append(_fact(region, "condition", sentence[start:end], offset + start, offset + end,
                               code=named[0].term.code if named else None, context=context(sentence, s, e)))
        return facts
    for mention in _diseases(sentence, 0, len(sentence)):
        if not _DIAGNOSTIC_CUE.search(sentence[max(0, mention.start - 80) : mention.start]):
            continue
        start, end = _widened(sentence, mention.start, mention.end)
        facts.append(_fact(region, "condition", sentence[start:end], offset + start, offset + end,
                           code=mention.term.code, context=context(sentence, mention.start, mention.end)))
    return facts


def _diseases(sentence: str, start: int, end: int) -> list[lexicons.Mention]:
    """The diseases named in sentence[start:end], with offsets into the sentence: diagnoses, not signs and symptoms
    nor words that name a kind of problem."""
    found = []
    for mention in lexicons.diseases().find(sentence[start:end]):
        s, e = start + mention.start, start + mention.end
        if not mention.term.symptom and not _GENERIC.fullmatch(sentence[s:e]):
            found.append(lexicons.Mention(s, e, mention.term))
    return found


def _widened(sentence: str, start: int, end: int) -> tuple[int, int]:
    """A disease's name with the words that qualify it before it ("old lacunar infarct", "stage IV squamous cell
    cancer") and the place after it ("of the cervix")."""
    before = re.search(r"(?:\b(?:old|acute|chronic|severe|mild|moderate|stage\s+[IV0-4]+|right|left|bilateral|"
                       r"recurrent|sudden\s+onset|degenerative|morbid|primary|secondary|metastatic)\s+)+$",
                       sentence[:start], re.IGNORECASE)
    after = re.match(r"\s+of\s+the\s+[a-z]+", sentence[end:])
    return (before.start() if before else start), (end + after.end() if after else end)


def _items(sentence: str, start: int, end: int) -> list[tuple[int, int]]:
    """The items of a list written in one sentence: numbered items, else the parts between commas, semicolons and
    "and", each trimmed."""
    text = sentence[start:end]
    numbered = list(_NUMBERED.finditer(text))
    if numbered:
        bounds = [m.end() for m in numbered] + [len(text)]
        pieces = [(bounds[i], numbered[i + 1].start() if i + 1 < len(numbered) else len(text))
                  for i in range(len(numbered))]
    else:
        pieces, position = [], 0
        for match in _SPLIT.finditer(text):
            pieces.append((position, match.start()))
            position = match.end()
        pieces.append((position, len(text)))
    items = []
    for s, e in pieces:
        s, e = trim(text, s, e)
        while e > s and text[e - 1] in ".;,":
            e -= 1
        if e > s:
            items.append((start + s, start + e))
    return items


def _item_name(sentence: str, start: int, end: int) -> tuple[int, int]:
    """An item with its lead-in ("significant for", "she has") and its trailing clause ("secondary to pain")
    taken off."""
    item = sentence[start:end]
    lead = _LIST_LEAD.match(item)
    while lead:
        start += lead.end()
        item = sentence[start:end]
        lead = _LIST_LEAD.match(item)
    tail = _ITEM_END.search(item)
    if tail:
        end = start + tail.start()
    return trim(sentence, start, end)


# --- Procedures -------------------------------------------------------------------------------------------------


def _procedures(region: _Region, offset: int, sentence: str) -> list[Fact]:
    if region.kind in ("family_history", "review_of_systems", "social_history", "allergies", "medications",
                       "vital_signs"):
        return []
    facts = []
    listed = region.kind in _PROCEDURE_LISTS
    items = _items(sentence, 0, len(sentence)) if listed else [(0, len(sentence))]
    for item_start, item_end in items:
        heads = list(_PROCEDURE_HEAD.finditer(sentence, item_start, item_end))
        if listed and not heads:
            heads = list(_SURGERY.finditer(sentence, item_start, item_end))
        for match in heads:
            start, end = match.start(), match.end()
            for word in re.finditer(r"\S+", sentence[start:end]):
                if word.group().casefold().strip(",.;:") in _NOT_IN_PROCEDURE_NAME:
                    start = match.start() + word.end()
            start, end = trim(sentence, start, end)
            if end - start < 3 or not (_PROCEDURE_HEAD.fullmatch(sentence, start, end)
                                       or listed and _SURGERY.fullmatch(sentence, start, end)):
                continue
            name = sentence[start:end]
            if name.casefold() in _NAMED_BY_OBJECT:
                # "surgery to repair a pelvic fracture": the operation is named by what it was done to.
                target = _OBJECT.match(sentence, end)
                if target is None:
                    continue
                name = f"{target.group('object')} {name}"
                end = target.end()
            found_context = context(sentence, start, end)
            if region.kind == "physical_exam" and found_context != "historical":
                continue  # an exam finds scars of past operations, and "dentition in good repair"
            if region.kind in ("plan", "discharge_instructions") and found_context is None:
                found_context = "hypothetical"  # a plan's procedure is one to come
            date = _first_date(sentence[item_start:item_end] if region.kind in _PROCEDURE_LISTS else sentence[end:])
            facts.append(_fact(region, "procedure", name, offset + start, offset + end, date=date,
                               context=found_context))
    return facts


# --- Tables -----------------------------------------------------------------------------------------------------

_TABLE_CATEGORY: dict[SectionKind, FactCategory] = {
    "allergies": "allergy", "problems": "condition", "medications": "medication", "labs": "lab",
    "procedures": "procedure", "immunizations": "immunization", "vital_signs": "vital",
}


def _table_facts(region: _Region, table: tables.Table) -> list[Fact]:
    category = _TABLE_CATEGORY.get(region.kind) if region.kind else None
    if category is None:
        return []
    facts = []
    for row in table.rows:
        values: dict[str, str | None] = {"status": row.status, "date": row.date}
        if category in ("lab", "vital"):
            values.update(value=row.value, unit=row.unit)
        facts.append(_fact(region, category, row.name, row.start, row.end,
                           **{key: value for key, value in values.items() if value is not None}))
    return facts


# --- One fact per thing -----------------------------------------------------------------------------------------


def _one_per_thing(facts: list[Fact]) -> list[Fact]:
    """The mentions of one drug, disease or allergy in a document as one fact: the listable mention with the most
    detail, the later one on a tie. Results, procedures and follow-ups each stay apart: each is its own event."""
    kept: dict[tuple[str, str], Fact] = {}
    rest: list[Fact] = []
    for fact in facts:
        if fact.category not in ("medication", "condition", "allergy"):
            rest.append(fact)
            continue
        key = (fact.category, fact.code or " ".join(fact.name.casefold().split()))
        other = kept.get(key)
        if other is None or _detail(fact) >= _detail(other):
            # A status one mention states ("not to restart his methadone") holds for the fact, unless this one says.
            status = fact.status or (other.status if other is not None else None)
            kept[key] = fact.model_copy(update={"status": status})
    return list(kept.values()) + _distinct(rest)


def _detail(fact: Fact) -> tuple[bool, int]:
    return fact.listable, sum(value is not None for value in (fact.dose, fact.route, fact.frequency, fact.reaction))


def _distinct(facts: list[Fact]) -> list[Fact]:
    """Facts that are not the same words read twice (a sentence in two overlapping regions)."""
    seen: set[tuple] = set()
    distinct = []
    for fact in facts:
        # A vital sign written twice with one value is one reading ("344 pounds and 5'9\"" in two sections).
        key = ((fact.category, fact.name, fact.value, fact.date) if fact.category == "vital"
               else (fact.category, fact.span.page, fact.span.start))
        if key not in seen:
            seen.add(key)
            distinct.append(fact)
    return distinct
