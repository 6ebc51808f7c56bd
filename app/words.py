"""The words of clinical text as the claim checker and the evidence ranking compare them, without a model.

Three things live here, each once:

- `answer_sentences`: where an answer's sentences start and end (a record's sentences: `documents.sentences`).
- `read`: the words of a text as `Word`s — a content word's stem (with common clinical abbreviations and
  paraphrases written out first: "b.i.d." and "twice daily", "BP" and "blood pressure", "NKDA" and "no known drug
  allergies" read alike), a number's value, a date in ISO form — each with where it stands, how much it says
  (a rare word says more than a common one) and whether a negation covers it ("denies chest pain").
- `page_markers`: the page markers an answer copies from its prompt, `[Document: note.pdf | page 2]`.

Stems come from the Snowball stemmer (PyStemmer), how much a word says from its frequency in general English
(wordfreq), and the negation triggers from negspacy's clinical NegEx term set; what those libraries do not hold
(which abbreviations mean what, which phrasings of a dose frequency are alike) is the table below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

import Stemmer
from negspacy.termsets import termset
from wordfreq import zipf_frequency

from documents.dates import find_dates
from documents.sentences import sentence_spans

WordKind = Literal["word", "number", "date"]
# A word as read: a phrase's word is one the table of abbreviations and paraphrases wrote out.
_RawKind = Literal["word", "phrase", "number", "date"]


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a text as it is compared: `key` is what two texts must share to say the same thing."""

    key: str  # a stem ("hypertens"), a number's value after "#" ("#12.1"), a date after "@" ("@2007-08-21")
    kind: WordKind
    start: int  # where the words it was read from stand in the text
    end: int
    weight: float  # how much it says; 0 for a word that says nothing on its own ("the", "patient")
    negated: bool = False  # a negation covers it: "no", "denies", "not documented", "NKDA"

    @property
    def value(self) -> str:
        return self.key[1:]


# --- Sentences ------------------------------------------------------------------------------------------------

_LINE = re.compile(r"[^\n]+")
# A list item's marker, which is not part of its sentence (nor a number it states).
_BULLET = re.compile(r"\s*(?:#{1,6}|[-*+•‣◦]|\(?\d{1,2}[.)])\s+")


def answer_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of an answer; each line (a list item, say) ends one, and a list marker is no
    part of its item."""
    spans = []
    for line in _LINE.finditer(text):
        bullet = _BULLET.match(text, line.start(), line.end())
        spans += sentence_spans(text, bullet.end() if bullet else line.start(), line.end())
    return spans


# --- Page markers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageMarker:
    start: int
    end: int
    document: str | None  # None when the marker names only a page
    page: int


# "[Document: note.pdf | page 2]" as the answer prompt asks, and the shorter forms a model writes instead:
# "[note.pdf, page 2]", "(page 2)", "[p. 2]".
_MARKERS = [
    re.compile(
        r"[\[(]\s*(?:Document:\s*)?(?P<document>[^\[\]()|\n]*?)\s*[|,;]\s*(?:page|p\.?)\s*(?P<page>\d+)\s*[\])]", re.I
    ),
    re.compile(r"[\[(]\s*(?:see\s+)?(?:page|p\.?)\s*(?P<page>\d+)\s*[\])]", re.I),
]


def page_markers(text: str) -> list[PageMarker]:
    found: list[PageMarker] = []
    for pattern in _MARKERS:
        for match in pattern.finditer(text):
            if any(marker.start < match.end() and match.start() < marker.end for marker in found):
                continue
            document = (match.groupdict().get("document") or "").strip() or None
            found.append(PageMarker(match.start(), match.end(), document, int(match.group("page"))))
    return sorted(found, key=lambda marker: marker.start)


def without_markers(text: str, markers: Sequence[PageMarker]) -> str:
    """`text` with each marker blanked out, so every other character keeps its offset."""
    for marker in markers:
        text = text[: marker.start] + " " * (marker.end - marker.start) + text[marker.end :]
    return text


# --- Abbreviations and paraphrases ----------------------------------------------------------------------------

# Each pattern and the words it is read as. Patterns in (?i:...) ignore case; the others are capitals that would
# be ordinary words in lower case ("BP", "HR", "DM"). Longer phrasings come before the shorter ones they contain.
# Written by hand: no maintained library on the package index maps prescription Latin and the common bedside
# abbreviations to their words without a model.
_PHRASES: list[tuple[str, str]] = [
    # How often and how a medicine is taken.
    (r"(?i:b\.\s?i\.\s?d\.?|\bbid\b|twice\s+(?:a\s+day|daily)|(?:two|2)\s+times\s+(?:a|per)\s+day|(?:two|2)\s+times\s+daily)", "bid"),
    (r"(?i:t\.\s?i\.\s?d\.?|\btid\b|(?:three|3)\s+times\s+(?:a\s+day|daily|per\s+day))", "tid"),
    (r"(?i:q\.\s?i\.\s?d\.?|\bqid\b|(?:four|4)\s+times\s+(?:a\s+day|daily|per\s+day))", "qid"),
    (r"(?i:q\.\s?h\.\s?s\.?|\bqhs\b|\bh\.s\.|at\s+bedtime|at\s+night|nightly)", "bedtime"),
    (r"(?i:p\.\s?r\.\s?n\.?|\bprn\b|as\s+needed|as\s+necessary|when\s+needed)", "prn"),
    (r"(?i:\bq\.?\s?(?P<hours>\d{1,2})\s?h(?:ours?|rs?)?\b\.?|every\s+(?P<every>\d{1,2})\s+hours?)", "q{hours}h"),
    (r"(?i:q\.\s?d\.?|\bqd\b|once\s+(?:a\s+day|daily)|(?:one|1)\s+times?\s+(?:a|per)\s+day|every\s+day|\bdaily\b)", "daily"),
    (r"(?i:p\.\s?o\.?|\bpo\b|by\s+mouth|\borally\b|\boral\b)", "oral"),
    (r"(?i:\bsubcut?\b|\bsubq\b|\bs\.c\.|\bsq\b|subcutaneous(?:ly)?)", "subcutaneous"),
    (r"(?i:\bi\.v\.|intravenous(?:ly)?)|\bIV\b", "intravenous"),
    (r"(?i:intramuscular(?:ly)?|\bi\.m\.)|\bIM\b", "intramuscular"),
    # Units. A unit of concentration or rate is one word: "mg/dL", "mmol/L", "mL/min".
    (r"(?i:\b(?:mg|g|mcg|µg|ug|ng|pg|meq|mmol|umol|µmol|iu|u|ml|cells|k)\s?/\s?(?:dl|l|ml|ul|µl|kg|hr?|min|day|d)\b)", "{unit}"),
    (r"(?i:\bmilligrams?\b|\bmgs?\b)", "mg"),
    (r"(?i:\bmicrograms?\b|\bmcg\b|µg\b|\bug\b)", "mcg"),
    (r"(?i:\bkilograms?\b|\bkgs?\b)", "kg"),
    (r"(?i:\bpounds?\b|\blbs?\b)", "lb"),
    (r"(?i:\bmillilit(?:er|re)s?\b|\bml\b)", "ml"),
    (r"(?i:\bmm\s?hg\b|millimeters\s+of\s+mercury)", "mmhg"),
    (r"(?i:beats\s+per\s+minute|\bbpm\b)", "per minute"),
    (r"(?i:°\s?f\b|degrees?\s+(?:f\b|fahrenheit))|(?<=\d)F\b", "fahrenheit"),
    (r"(?i:°\s?c\b|degrees?\s+(?:c\b|celsius|centigrade))|(?<=\d)C\b", "celsius"),
    (r"(?i:(?<=\d)\s?/\s?min\b|\bper\s+min(?:ute)?\b|breaths\s+per\s+minute)", "per minute"),
    # Vital signs.
    (r"(?i:high\s+blood\s+pressure)", "hypertension"),
    # A vital sign's abbreviation is often glued to its value: "BP118/66. HR83. T36.8C."
    (r"(?i:blood\s+pressures?)|\bBP(?=\b|\d)|\bB/P\b", "blood pressure"),
    (r"(?i:heart\s+rate|pulse\s+rate|\bpulse\b)|\bHR(?=\b|\d)|\bP\b(?=\s*:?\s*\d)", "pulse"),
    (r"(?i:respiratory\s+rate|respirations?|resp\.?\s+rate)|\bRR(?=\b|\d)|\bR\b(?=\s*:?\s*\d)", "respiratory rate"),
    (r"(?i:\btemp\b\.?|temperature)|\bT(?=\s*:?\s*\d)", "temperature"),
    (r"(?i:o2\s+sat(?:uration)?s?|oxygen\s+sat(?:uration)?s?|pulse\s+ox(?:imetry)?|\bsp\s?o2\b|\bsa\s?o2\b)", "oxygen saturation"),
    (r"(?i:\bwt\b\.?|\bweigh(?:s|ed|t|ts)?\b)", "weight"),
    (r"(?i:\bht\b\.?|\bheight\b)", "height"),
    (r"(?i:body\s+mass\s+index)|\bBMI\b", "bmi"),
    # Laboratory tests.
    (r"(?i:hemoglobin\s+a1c|\bhb\s?a1c\b|\ba1c\b)", "hba1c"),
    (r"(?i:\bhgb\b|\bhb\b|haemoglobin)", "hemoglobin"),
    (r"(?i:\bhct\b|haematocrit)", "hematocrit"),
    (r"(?i:\bplts?\b)", "platelets"),
    (r"(?i:white\s+(?:blood\s+)?(?:cell\s+)?count|white\s+blood\s+cells?|leukocytes?|\bwbcs?\b)", "wbc"),
    (r"(?i:red\s+blood\s+cells?(?:\s+count)?|erythrocytes?|\brbcs?\b)", "rbc"),
    (r"\bCr\b|\bCreat\b", "creatinine"),
    # Electrolytes by their symbols, only before a value: "K 4.1", "Na: 140".
    (r"\bNa\b(?=\s*:?\s*\d)", "sodium"),
    (r"\bK\b(?=\s*:?\s*\d)", "potassium"),
    (r"\bCl\b(?=\s*:?\s*\d)", "chloride"),
    (r"(?i:\bglu\b)(?=\s*:?\s*\d)", "glucose"),
    (r"(?i:blood\s+urea\s+nitrogen)", "bun"),
    (r"(?i:low[\s-]density\s+lipoprotein(?:\s+cholesterol)?|\bldl\b)", "ldl"),
    (r"(?i:high[\s-]density\s+lipoprotein(?:\s+cholesterol)?|\bhdl\b)", "hdl"),
    (r"(?i:glomerular\s+filtration\s+rate|\begfr\b|\bgfr\b)", "gfr"),
    (r"(?i:international\s+normali[sz]ed\s+ratio)", "inr"),
    (r"\bUA\b|(?i:\bu/a\b)", "urinalysis"),
    # Problems.
    (r"\bHTN\b", "hypertension"),
    (r"(?i:diabetes\s+mellitus)|\bT2DM\b|\bDM2?\b|\bNIDDM\b|\bIDDM\b", "diabetes"),
    (r"\bCHF\b", "congestive heart failure"),
    (r"\bCAD\b", "coronary artery disease"),
    (r"\bCOPD\b", "chronic obstructive pulmonary disease"),
    (r"\bGERD\b", "gastroesophageal reflux disease"),
    (r"\bDVT\b", "deep vein thrombosis"),
    (r"\bPE\b(?!\s*:)", "pulmonary embolism"),
    (r"\bMI\b", "myocardial infarction"),
    (r"\bCVA\b", "stroke"),
    (r"(?i:\ba[\s-]?fib\b)|\bAF\b", "atrial fibrillation"),
    (r"\bUTI\b", "urinary tract infection"),
    (r"\bDJD\b", "degenerative joint disease"),
    (r"\bOA\b", "osteoarthritis"),
    (r"\bTKA\b|\bTKR\b|(?i:total\s+knee\s+arthroplasty)", "total knee replacement"),
    (r"\bTHA\b|\bTHR\b|(?i:total\s+hip\s+arthroplasty)", "total hip replacement"),
    (r"(?i:shortness\s+of\s+breath)|\bSOB\b", "dyspnea"),
    # Who the patient is.
    (r"(?i:date\s+of\s+birth|birth\s?date|\bd\.?o\.?b\b\.?|\bborn(?:\s+on)?\b)", "born"),
    (r"(?i:\b(?:female|woman|lady|girl)\b)", "female sex"),
    (r"(?i:\b(?:male|man|gentleman|boy)\b)", "male sex"),
    (r"(?i:passed\s+away|\bexpired\b|\bdeceased\b|\bdeath\b|\bdied\b|\bdies\b)", "died"),
    (r"(?i:\bfollow[\s-]?ups?\b)", "followup"),
    # The parts of a note, by their abbreviations.
    (r"\bPMH(?:x)?\b", "past medical history"),
    (r"\bPSH(?:x)?\b", "past surgical history"),
    (r"\bFHx?\b", "family history"),
    (r"\bSHx?\b", "social history"),
    (r"\bHPI\b", "history of present illness"),
    (r"\bROS\b", "review of systems"),
    (r"(?i:\bhx\b)", "history"),
    (r"(?i:\bprior\b|\bpreviously\b|\bearlier\b)", "previous"),
    (r"(?i:\bcurrently\b|\bpresently\b|\bat\s+present\b)", "current"),
    (r"\bRx\b", "prescription"),
    (r"(?i:attributed\s+to|due\s+to|secondary\s+to|caused\s+by|because\s+of)", "cause"),
    (r"(?i:heart\s+attack)", "myocardial infarction"),
    (r"(?i:blood\s+sugar)", "glucose"),
    (r"\bHCTZ\b", "hydrochlorothiazide"),
    # Phrases of history and allergy.
    (r"(?i:\bs/p\b)", "status post"),
    (r"(?i:\bh/o\b)", "history of"),
    (r"(?i:\bc/o\b)", "complains of"),
    (r"(?i:\by/?o\b|\by\.o\.|years?[\s-]old|year-old)", "year old"),
    (r"\bNKDA\b|(?i:no\s+known\s+(?:drug|medication|medicine)\s+allerg(?:y|ies))", "no medication allergy"),
    (r"\bNKA\b|(?i:no\s+known\s+allerg(?:y|ies))", "no allergy"),
]

# Words read as another word of the same meaning, after the phrases above: word forms the stemmer leaves apart
# ("allergic" and "allergy") and plain synonyms.
_SAME_AS = {
    "allergic": "allergy",
    "allergies": "allergy",
    "diabetic": "diabetes",
    "hypertensive": "hypertension",
    "asthmatic": "asthma",
    "anemic": "anemia",
    "obese": "obesity",
    "pregnant": "pregnancy",
    "medications": "medication",
    "medicine": "medication",
    "medicines": "medication",
    "meds": "medication",
    "drug": "medication",
    "drugs": "medication",
    "arthroplasty": "replacement",
    "prescribe": "prescription",
    "prescribed": "prescription",
    "prescriptions": "prescription",
    "gave": "give",
    "given": "give",
    "took": "take",
    "taken": "take",
    "began": "start",
    "begun": "start",
    "started": "start",
    "stopped": "discontinue",
    "stop": "discontinue",
    "discontinued": "discontinue",
    "ceased": "discontinue",
}

_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
}

# Words that say nothing about the patient on their own: function words, and the words any statement about a
# record uses ("the patient", "is documented", "was noted"). They neither support nor block a claim, and are not
# searched for.
_STOPWORDS = frozenset(
    """
    a an as at be by do if in is it no of on or so to up us we
    about above after again against all also among and any are around because been before being below between
    both but can could did does doing done down during each either few for from further had has have having her
    here hers herself him himself his into its itself just more most neither nor not now off once only other our
    ours out over own same she should some such than that the their theirs them themselves then there these they
    this those through too under until upon very was were while will with would yes you your how what when where
    which who whom whose why its per via
    according chart document documented documents include included includes including indicate indicated
    indicates list listed lists mention mentioned mentions note noted notes patient patients record recorded
    records report reported reports show showed shows shown state stated states take taking
    takes also value values level levels reading readings measured found finding see seen
    none nil deny denies denied never without appear appears appeared underwent undergo undergone
    """.split()
)
# Words that say which part of a record a statement speaks of ("her past medical history", "the labs showed"):
# searched for, since they find the section, but of no weight in a claim, which they only frame.
_FRAMING = frozenset(
    """
    diagnose diagnosed diagnosis diagnoses history past medical prescription sex gender lab labs
    laboratory problem problems result results current
    """.split()
)

# Canonical words that the phrases above produce and that say something, but little on their own: a claim is not
# about "mg" or "daily", though a wrong frequency is a wrong claim.
_MINOR = frozenset(
    "bid tid qid bedtime prn daily oral subcutaneous intravenous intramuscular mg mcg kg lb ml mmhg fahrenheit "
    "celsius minute".split()
) | {f"q{hours}h" for hours in range(1, 73)}
MINOR_WEIGHT = 1.0
# The other words the table above produces name clinical things ("blood pressure", "hemoglobin"): they say at
# least this much, however common their words are in English.
PHRASE_WEIGHT = 2.5
# Words this common in English (by wordfreq's Zipf scale: "is" 7.3, "has" 6.6) say nothing on their own.
COMMON_ZIPF = 6.3

# Tried only where no letter comes before (a word's start, or just after a digit: "36.8C", "105/min"), so the
# engine does not try every alternative at every character of a long record.
_PHRASE_PATTERN = re.compile(
    r"(?<![^\W\d_])(?:" + "|".join(f"(?P<p{index}>{pattern})" for index, (pattern, _) in enumerate(_PHRASES)) + ")"
)
_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?: ?/ ?\d+(?:\.\d+)?)?|[^\W\d_]+(?:['’][^\W\d_]+)?")
_STEMMER = Stemmer.Stemmer("english")


@dataclass(frozen=True, slots=True)
class _Raw:
    """A word before it is keyed: its canonical lower-case spelling, or a number or a date."""

    text: str
    kind: _RawKind
    start: int
    end: int


def _raw_words(text: str) -> list[_Raw]:
    """The words of `text` in order: dates, then the phrases above, then plain words and numbers in between."""
    words: list[_Raw] = []
    position = 0
    for date in find_dates(text):
        words += _phrases(text, position, date.start)
        words.append(_Raw(date.date, "date", date.start, date.end))
        position = date.end
    words += _phrases(text, position, len(text))
    return words


def _phrases(text: str, start: int, end: int) -> list[_Raw]:
    words: list[_Raw] = []
    position = start
    for match in _PHRASE_PATTERN.finditer(text, start, end):
        words += _plain(text, position, match.start())
        meaning = _PHRASES[int(match.lastgroup[1:])][1]  # type: ignore[index]
        if "{hours}" in meaning:
            meaning = meaning.format(hours=match.group("hours") or match.group("every"))
        elif meaning == "{unit}":
            meaning = "".join(match.group().lower().replace("µ", "u").split())
        words += [_Raw(word, "phrase", match.start(), match.end()) for word in meaning.split()]
        position = match.end()
    return words + _plain(text, position, end)


def _plain(text: str, start: int, end: int) -> list[_Raw]:
    words = []
    for token in _TOKEN.finditer(text, start, end):
        word = token.group()
        if word[0].isdigit():
            words.append(_Raw(normal_number(word), "number", token.start(), token.end()))
            continue
        lower = word.lower().replace("’", "'")
        if lower in _NUMBER_WORDS:
            words.append(_Raw(_NUMBER_WORDS[lower], "number", token.start(), token.end()))
        else:
            words.append(_Raw(_SAME_AS.get(lower, lower), "word", token.start(), token.end()))
    return words


def spelled_out(text: str) -> list[str]:
    """What the abbreviations of `text` stand for, as words: "BP" is "blood pressure"."""
    meanings = []
    for match in _PHRASE_PATTERN.finditer(text):
        meaning = _PHRASES[int(match.lastgroup[1:])][1]  # type: ignore[index]
        if "{" not in meaning and fold_spaces(match.group()).lower() != meaning:
            meanings.append(meaning)
    return meanings


def fold_spaces(text: str) -> str:
    return " ".join(text.split())


def normal_number(text: str) -> str:
    """One spelling per value: "1.90" and "1.9", "04" and "4", "1,000" and "1000"; "127/72" keeps its parts."""
    return "/".join(_one_number(part.strip()) for part in text.split("/"))


def _one_number(text: str) -> str:
    whole, _, fraction = text.replace(",", "").partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


# --- Negation: NegEx over the words, with negspacy's clinical term set -------------------------------------------

# Negations of a verb, which deny what the verb says of its subject: "pneumonia is not among her diagnoses".
_VERBAL_NEGATIONS = frozenset({"not", "never", "cannot"})
# A negation reaches this many words: "denies any urological symptoms such as dysuria".
NEGATION_REACH = 8
# Ways of saying that the record lacks something, which a claim about a record uses and NegEx's lists, written for
# notes about patients, do not hold: "her latex allergy is not documented".
_ABSENCE_AFTER = [
    "is not documented", "not documented", "not mentioned", "not listed", "not recorded", "not stated", "not noted",
    "not found", "not reported", "not present",
]
# Words that deny the label they answer ("Allergies: none", "Hepatitis B: negative"), but only after a colon: in a
# table's empty cell ("| -none-") or a sentence ("which was negative") they deny nothing before them.
_AFTER_LABEL = frozenset({"none", "negative", "denied", "absent", "nil", "no"})


# Each kind of NegEx term, by its first word: a word is compared only with the terms that start with it.
_Terms = dict[str, list[tuple[str, ...]]]


@cache
def _negation_terms() -> dict[str, _Terms]:
    patterns = termset("en_clinical").get_patterns()
    terms = {kind: [tuple(_term_words(term)) for term in phrases] for kind, phrases in patterns.items()}
    terms["following_negations"] += [tuple(_term_words(term)) for term in _ABSENCE_AFTER]
    indexed: dict[str, _Terms] = {}
    for kind, phrases in terms.items():
        by_first: _Terms = {}
        # Longest first, so "no evidence of" is one trigger, not "no" alone.
        for phrase in sorted(set(phrases), key=len, reverse=True):
            if phrase:
                by_first.setdefault(phrase[0], []).append(phrase)
        indexed[kind] = by_first
    return indexed


def _term_words(term: str) -> list[str]:
    return [word.text for word in _plain(term, 0, len(term))]


# Between two words, any of these ends a negation's reach: a sentence's end, a blank line; and, for the subject
# a statement's negation reaches back to, a clause's end.
_SCOPE_END = re.compile(r"[.;!?]\s|\n\s*\n")
_CLAUSE_END = re.compile(r"[,:(]")


def _negations(text: str, words: Sequence[_Raw], statement: bool) -> list[bool]:
    """Which words a negation covers, by NegEx: a trigger covers the words after it (or, for a trigger that
    follows, before it) up to `NEGATION_REACH` words, a terminating word ("but", "except") or a sentence's end.

    In a `statement` (one claim, not a record's line), a verb's negation also denies its clause's subject:
    "Pneumonia is not among her diagnoses" denies pneumonia, while "a concussion with no loss of consciousness"
    denies no concussion.
    """
    terms = _negation_terms()
    spelled = [word.text if word.kind in ("word", "phrase") else "" for word in words]
    negated = [False] * len(words)
    # ends[i]: a sentence ends between word i and the next; clause_ends[i]: a clause does (a comma, a colon).
    gaps = [text[words[i].end : words[i + 1].start] for i in range(len(words) - 1)]
    ends = [bool(_SCOPE_END.search(gap + " ")) or _ends_a_cell(text, words[i].end, gap) for i, gap in enumerate(gaps)]
    ends.append(True)
    clause_ends = [end or bool(_CLAUSE_END.search(gap)) for end, gap in zip(ends, gaps)] + [True]

    def reach(start: int, step: int, stops: list[bool]) -> None:
        j = start
        while 0 <= j < len(words) and abs(j - start) < NEGATION_REACH:
            if _term_at(spelled, j, terms["termination"]) is not None:
                return
            # Going forward, a stop after the previous word ends the reach; going back, one after this word does.
            if (step > 0 and j > start and stops[j - 1]) or (step < 0 and stops[j]):
                return
            negated[j] = True
            j += step

    i = 0
    while i < len(words):
        if (length := _term_at(spelled, i, terms["pseudo_negations"])) is not None:
            pass
        elif (length := _term_at(spelled, i, terms["preceding_negations"])) is not None:
            if not ends[i + length - 1]:
                reach(i + length, 1, ends)
            if statement and i > 0 and (spelled[i] in _VERBAL_NEGATIONS or spelled[i].endswith("n't")):
                reach(i - 1, -1, clause_ends)
        elif (length := _term_at(spelled, i, terms["following_negations"])) is not None or (
            spelled[i] in _AFTER_LABEL and i > 0 and ":" in gaps[i - 1]
        ):
            length = length or 1
            reach(i - 1, -1, ends)
        else:
            length = 1
        i += length
    return negated


# A line this short that ends at a line break is a table's cell, not a wrapped line of a sentence: no negation reaches
# past it ("Concussion with no loss of consciousness" does not deny the next row's "Viral sinusitis").
CELL_CHARS = 60


def _ends_a_cell(text: str, end: int, gap: str) -> bool:
    if "\n" not in gap:
        return False
    return end - (text.rfind("\n", 0, end) + 1) <= CELL_CHARS


def _term_at(words: Sequence[str], i: int, terms: _Terms) -> int | None:
    for term in terms.get(words[i], ()):
        if tuple(words[i : i + len(term)]) == term:
            return len(term)
    return None


# --- Keys and weights -----------------------------------------------------------------------------------------


def read(text: str, statement: bool = False) -> list[Word]:
    """The words of `text` that can be compared, keyed, weighted and marked where a negation covers them; a
    `statement` is one claim, whose negation denies its subject too (see `_negations`)."""
    raw = _raw_words(text)
    negated = _negations(text, raw, statement)
    words = []
    for word, denied in zip(raw, negated):
        if word.kind == "number":
            words.append(Word("#" + word.text, "number", word.start, word.end, 0.0, denied))
        elif word.kind == "date":
            words.append(Word("@" + word.text, "date", word.start, word.end, 0.0, denied))
        elif (keyed := _keyed(word.text)) is not None:
            key, weight = keyed
            if word.kind == "phrase" and weight > MINOR_WEIGHT:
                weight = max(weight, PHRASE_WEIGHT)
            words.append(Word(key, "word", word.start, word.end, weight, denied))
    return words


@lru_cache(maxsize=32)
def read_page(text: str) -> tuple[Word, ...]:
    """`read` for a whole page of a record, kept for the pages read last: checking statements and ranking evidence
    read the same pages."""
    return tuple(read(text))


@lru_cache(maxsize=1 << 16)
def _keyed(word: str) -> tuple[str, float] | None:
    """A word's key and weight, or None for a stop word; a record repeats its words, so each is keyed once."""
    if len(word) < 2 or word in _STOPWORDS or "'" in word:
        return None
    if word in _MINOR or "/" in word:  # a unit such as "mg/dl", written out by the table above
        return word, MINOR_WEIGHT
    if word in _FRAMING:
        return _STEMMER.stemWord(word), 0.0
    if zipf_frequency(word, "en") >= COMMON_ZIPF:
        return None
    return _STEMMER.stemWord(word), word_weight(word)


# Words that make a statement about someone other than the patient: "her mother has diabetes".
FAMILY = frozenset(
    _STEMMER.stemWord(word)
    for word in "family mother father sister brother son daughter aunt uncle grandmother grandfather cousin maternal "
    "paternal sibling siblings parent parents mom dad wife husband".split()
)


def word_weight(word: str) -> float:
    """How much a word says, by how rare it is in English: "takes" little, "hypertension" more, "Nasonex" most."""
    return round(min(6.0, max(0.5, 6.5 - zipf_frequency(word, "en"))), 2)




def keys(text: str) -> Iterator[str]:
    """The keys of `text`'s words, for ranking: a question and a line share them when they speak of the same."""
    return (word.key for word in read(text))
