"""Claim-checking benchmark: how well `app.claims.check_claims` labels the sentences of an answer against the record.

    python -m bench.claims [--corpus ../shared/corpus] [--json] [--failures 20]

The claim set is written from the corpus's ground truth (`truth/*.json`), not by hand: each fact a truth file lists
becomes true claims in at least three phrasings, each also with the page marker the answer prompt asks for
(`[Document: NAME | page N]`, the page the fact is on), and false claims: a lab or vital value changed, a dose
changed, a date shifted, the fact denied (all `contradicted`), and facts of other patients the document never
mentions (`not_found`; an allergy claimed where the record says there are none is `contradicted`). A true fact
whose name, value or date cannot be found in its document's text is left out, and said so, so that the set
measures the checker and not the truth file's wording.

Each document is read once and checked once with all its claims. The report gives, per kind of claim and per
category of fact: how many true claims were labelled supported (with and without a marker), how many false claims
were not, how many claims expected `contradicted` were, and how often a false claim got exactly its label
(contradicted or not_found); then the failures and the time the checking took.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, computed_field

import documents
from documents.dates import find_dates
from bench import markdown

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SEED = "clinidoc-claims-1"

Label = Literal["supported", "contradicted", "not_found"]
LABELS: tuple[Label, ...] = ("supported", "contradicted", "not_found")


class Claim(BaseModel):
    document: str  # the file name, as the document is loaded
    text: str
    expected: Label
    kind: str  # "true", "true+marker", "false:number", "false:dose", "false:date", "false:negation", ...
    category: str  # medication, allergy, condition, lab, vital, procedure, patient, plan, event
    fact: str  # the truth fact it was written from; the phrasings of one fact share it
    subject: str  # what the claim is about: a drug ("Celebrex"), an allergen, a condition, a test ("hemoglobin")
    page: int | None = None  # the page of the document the fact is on, when it is there and that could be told
    marker: bool = False  # the text ends with a page marker citing `page`
    original: str | None = None  # for a changed value, dose or date: what the truth says ("200 mg", "12.1") ...
    changed: str | None = None  # ... and what the claim says instead ("400 mg", "18.2"); dates in ISO


class Dropped(BaseModel):
    document: str
    fact: str
    reason: str
    kept: bool = False  # the fact stayed, without the part that could not be found (a date, a reaction)


class ClaimSet(BaseModel):
    claims: list[Claim]
    dropped: list[Dropped]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of documents with a truth/ folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of markdown")
    parser.add_argument("--failures", type=int, default=20, help="how many wrongly labelled claims to show")
    args = parser.parse_args()

    try:
        from app.claims import check_claims  # imported here: building and scoring the set do not need the checker
    except ModuleNotFoundError as error:
        if error.name not in ("app.claims", "app"):
            raise
        raise SystemExit("the claim checker, app.claims, is not there to benchmark") from error

    names = [json.loads(path.read_text())["doc"] for path in _truth_files(args.corpus)]
    loaded = {name: documents.load(args.corpus / name) for name in names}
    built = build(args.corpus, loaded)
    by_document: dict[str, list[int]] = defaultdict(list)
    for index, claim in enumerate(built.claims):
        by_document[claim.document].append(index)

    checks: list[Any] = [None] * len(built.claims)
    started = time.perf_counter()
    for name, indices in by_document.items():
        results = check_claims([built.claims[i].text for i in indices], [loaded[name]])
        if len(results) != len(indices):
            raise SystemExit(f"{name}: check_claims gave {len(results)} results for {len(indices)} claims")
        for index, result in zip(indices, results):
            checks[index] = result
    seconds = time.perf_counter() - started

    report = score(built.claims, checks, failures=args.failures, seconds=seconds)
    if args.json:
        print(json.dumps({"report": report.model_dump(), "dropped": [d.model_dump() for d in built.dropped]}, indent=1))
    else:
        print(_markdown(built, report))


# --- Reading the truth ---------------------------------------------------------------------------------------


def build_claim_set(corpus: Path, *, quiet: bool = False) -> list[Claim]:
    """The claims written from `corpus/truth/*.json`; says on stderr what was left out and why."""
    built = build(corpus)
    if not quiet:
        print(_dropped_summary(built.dropped), file=sys.stderr)
    return built.claims


def build(corpus: Path, loaded: dict[str, Any] | None = None) -> ClaimSet:
    """The claim set and what was left out of it; `loaded` maps file names to documents already read."""
    truths = [_Truth.read(path) for path in _truth_files(corpus)]
    if not truths:
        raise ValueError(f"no truth files in {corpus / 'truth'}")
    dropped: list[Dropped] = []
    sheets: list[_Sheet] = []
    for truth in truths:
        document = (loaded or {}).get(truth.doc) or documents.load(corpus / truth.doc)
        pages = [(page.number, page.text) for page in document.pages]
        sheets.append(_Sheet(truth, document.name, pages, _checked_facts(truth, pages, document.name, dropped)))
    claims: list[Claim] = []
    for sheet in sheets:
        claims.extend(_claims_of(sheet, [other for other in sheets if other is not sheet]))
    return ClaimSet(claims=claims, dropped=dropped)


def _truth_files(corpus: Path) -> list[Path]:
    return sorted((corpus / "truth").glob("*.json"))


@dataclass
class _Truth:
    doc: str
    facts: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> _Truth:
        data = json.loads(path.read_text())
        return cls(data["doc"], data["facts"])

    @property
    def patient(self) -> dict[str, Any]:
        return self.facts.get("patient") or {}

    def allergy_scope(self) -> Literal["drug", "all"] | None:
        """What the record says there are no known allergies to, when it says so ("NKDA": drug)."""
        status = str(self.facts.get("allergy_status") or "").lower()
        if self.facts.get("allergies") or not re.search(r"\bno known\b|\bnkda\b|\bnka\b|\bnone\b", status):
            return None  # "not documented" says nothing either way
        return "drug" if re.search(r"drug|medicine|medication|nkda", status) else "all"


@dataclass
class _Fact:
    category: str
    name: str  # as claims write it: the truth's string with its annotations cleaned off
    value: str | None = None  # a lab or vital value as documents show it: "12.1", "127/72", "negative"
    unit: str | None = None
    date: str | None = None  # ISO, or YYYY / YYYY-MM where the truth is that coarse
    current: bool = False  # a medication taken now, an active condition: present-tense phrasings fit it
    reaction: str | None = None  # an allergy's reaction
    aspect: str = ""  # what a patient / allergy-status / event fact is about: "birth", "gender", "death", ...
    medication: _Medication | None = None
    page: int | None = None  # the page it was found on
    options: tuple[str, ...] = ()  # ways a raw float may be written, when the truth's value is one: 0.38 or 0.384
    aka: str = ""  # other names the truth gives in brackets: "Toprol" of "metoprolol succinate ... [Toprol]"

    @property
    def key(self) -> str:
        parts = [f"{self.category}: {self.aspect or self.name}"]
        if self.value is not None:
            parts.append(f"= {self.value}")
        if self.date:
            parts.append(f"@ {self.date}")
        return " ".join(parts)


@dataclass
class _Sheet:
    truth: _Truth
    name: str  # the loaded document's name, which markers cite
    pages: list[tuple[int, str]]
    facts: list[_Fact] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.pages)


# Annotations the truth adds that the record does not say: "(then 10 mg q.12h.)", "(no DVT)", "(finding)".
_ANNOTATION = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")
_MARKER = re.compile(r"\s*\[Document: [^\]]*\|\s*page \d+\]")
# Lists of medications the patient no longer takes: their members get no present-tense phrasings.
_PAST_LIST = re.compile(r"past|stopped|discontinued|previous|former|not_restarted|held")


def _clean(text: str) -> str:
    text = text.replace("\u200b", "")
    previous = None
    while previous != text:  # nested brackets go from the inside out
        previous, text = text, _ANNOTATION.sub("", text)
    return " ".join(text.split()).strip(" ,;:")


def _facts(truth: _Truth) -> list[_Fact]:
    """Every fact of the truth file that a sentence can state, once each."""
    facts = truth.facts
    found: list[_Fact] = []
    found += _medications(facts)
    scope = truth.allergy_scope()
    if scope is not None:
        status = str(facts["allergy_status"])
        found.append(_Fact("allergy", status, aspect=f"none:{scope}"))
    reactions = {_clean(k).lower(): str(v) for k, v in (facts.get("allergy_reactions") or {}).items()}
    for allergy in facts.get("allergies") or []:
        name = _allergen(allergy)
        reaction = reactions.get(_clean(allergy).lower()) or reactions.get(name.lower())
        found.append(_Fact("allergy", name, reaction=reaction))
    active = {_clean(c).lower() for c in facts.get("active_conditions") or []}
    for condition in facts.get("conditions") or []:
        # Without a list of active ones, a condition may be past or resolved: only neutral phrasings fit.
        found.append(_Fact("condition", _clean(condition), current=_clean(condition).lower() in active))
    for lab in facts.get("labs") or []:
        found.append(_measurement("lab", lab))
    for vital in facts.get("vitals") or []:
        found.append(_measurement("vital", vital))
    for procedure in facts.get("procedures") or []:
        found.append(_Fact("procedure", _clean(procedure["name"]), date=procedure.get("date")))
    for key, values in facts.items():
        if key.startswith("planned_") and isinstance(values, list):
            found += [_Fact("plan", _clean(v)) for v in values if isinstance(v, str)]
    for key, value in (facts.get("dates") or {}).items():
        if value:
            found.append(_Fact("event", key.replace("_", " "), date=str(value), aspect=key.replace("_", " ")))
    found += _patient_facts(truth)
    unique: dict[str, _Fact] = {}
    for fact in found:
        if fact.name and fact.key.lower() not in unique:
            unique[fact.key.lower()] = fact
    return list(unique.values())


def _medications(facts: dict[str, Any]) -> list[_Fact]:
    active = facts.get("active_medications")
    active_names = {_clean(m).lower() for m in active or []}
    past = {
        _drug_of(m).lower()
        for key, values in facts.items()
        if "medication" in key and _PAST_LIST.search(key) and isinstance(values, list)
        for m in values
        if isinstance(m, str)
    }
    lists = [("medications", facts.get("medications") or [])] + [
        (key, values)
        for key, values in facts.items()
        if key.startswith("medications_") and isinstance(values, list)
    ]
    found: dict[str, _Fact] = {}
    for key, values in lists:
        for source in values:
            if not isinstance(source, str):
                continue
            name = _clean(source)
            if not name:
                continue
            # A drug a list of past or stopped ones names too ("Celebrex (replaced by Voltaren)") is not taken now;
            # without a list of active ones, what the main list names is.
            stopped = _drug_of(name).lower() in past
            current = name.lower() in active_names if active is not None else key == "medications"
            aka = " ".join(re.findall(r"[(\[]([^()\[\]]*)[)\]]", source))
            fact = found.setdefault(name.lower(), _Fact("medication", name, medication=_Medication.parse(name)))
            fact.aka = " ".join(filter(None, (fact.aka, aka)))
            fact.current = (fact.current or current) and not stopped
    return list(found.values())


def _measurement(category: str, entry: dict[str, Any]) -> _Fact:
    name = str(entry["name"]).replace("\u200b", "")
    # LOINC names carry the property and the method ("Platelets [#/volume] in Blood by Automated count"); what a
    # clinician calls the test is what comes before them.
    short = _clean(name.split("[")[0]) if "[" in name else _clean(name)
    value = entry.get("value")
    options: tuple[str, ...] = ()
    if isinstance(value, float) and not value.is_integer():
        # FHIR keeps raw floats (134.6303398426167); a document rounds them, to two decimals or to three digits.
        written = [_shown(value) or "", f"{value:.3g}", _number_text(value, 1), _number_text(value, 3)]
        options = tuple(dict.fromkeys(written))
    unit, day = entry.get("unit"), entry.get("date")
    return _Fact(category, short, value=_shown(value), unit=unit, date=day, options=options)


def _shown(value: Any) -> str | None:
    """A value as documents print it: FHIR's raw floats rounded to two decimals, trailing zeros dropped."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return _number_text(float(value), 2)
    return str(value).strip()


def _number_text(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _allergen(allergy: str) -> str:
    """What the patient is allergic to: "Allergy to nut" -> "nut", "Dander (animal) allergy" -> "dander"."""
    name = _clean(allergy)
    name = re.sub(r"^(?:allergy|allergic reaction|intolerance) to\s+", "", name, flags=re.I)
    name = re.sub(r"\s+(?:allergy|intolerance)$", "", name, flags=re.I)
    return _lower_words(name)


def _patient_facts(truth: _Truth) -> list[_Fact]:
    patient = truth.patient
    found = []
    if patient.get("name"):
        found.append(_Fact("patient", str(patient["name"]), aspect="name"))
    if patient.get("birth_date"):
        born = str(patient["birth_date"])
        found.append(_Fact("patient", "date of birth", date=born, aspect="birth"))
    if patient.get("gender") in ("female", "male"):
        found.append(_Fact("patient", patient["gender"], aspect="gender"))
    death = patient.get("deceased") or truth.facts.get("death_date")
    if isinstance(death, str) and re.match(r"\d{4}", death):
        found.append(_Fact("patient", "date of death", date=death[:10], aspect="death"))
    return found


# --- Medications -----------------------------------------------------------------------------------------------

# How often a dose is taken: each group, the spellings that say the same.
_FREQUENCIES: list[tuple[str, ...]] = [
    ("b.i.d.", "twice daily", "twice a day", "BID"),
    ("t.i.d.", "three times daily", "three times a day", "TID"),
    ("q.i.d.", "four times daily", "four times a day", "QID"),
    ("p.r.n.", "as needed", "PRN"),
    ("at bedtime", "nightly", "q.h.s."),
    ("once daily", "daily", "once a day", "every day"),
]
_EVERY_HOURS = re.compile(r"\bq\.?\s?(\d+)\s?h(?:ours?|rs?)?\.?(?=\W|$)|\bevery (\d+) hours\b", re.I)
_DOSE = re.compile(
    r"(?<![\w.])(?P<amount>\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?)\s*(?P<unit>mg|mcg|µg|g|meq|units?|iu|%)"
    r"(?P<per>\s*/\s*(?:ml|actuat|l|hr|h|dose))?(?!\w)",
    re.I,
)
# Pack sizes RxNorm puts before the drug: "120 ACTUAT", "10 ML", "24 HR", "NDA020800 0.3 ML".
_PACK = re.compile(r"^(?:\S*\d\S*(?:\s+(?:ml|hr|actuat|l))?\s+)+", re.I)


def _spelling_pattern(spelling: str) -> str:
    # "b.i.d." also matches "bid" and "b.i.d"; spaces match any run of them.
    parts = [re.escape(ch) + "?" if ch == "." else (r"\s+" if ch == " " else re.escape(ch)) for ch in spelling]
    return r"(?<!\w)" + "".join(parts) + r"(?=\W|$)"


_FREQUENCY = re.compile(
    "|".join(
        f"(?P<f{group}>" + "|".join(_spelling_pattern(s) for s in sorted(spellings, key=len, reverse=True)) + ")"
        for group, spellings in enumerate(_FREQUENCIES)
    ),
    re.I,
)


@dataclass
class _Frequency:
    start: int
    end: int
    spellings: tuple[str, ...]


@dataclass
class _Medication:
    full: str  # the cleaned truth string
    drug: str  # "Celebrex", "Fluticasone propionate"
    dose: re.Match[str] | None
    frequencies: list[_Frequency]

    @classmethod
    def parse(cls, name: str) -> _Medication:
        frequencies = [
            _Frequency(m.start(), m.end(), _FREQUENCIES[int((m.lastgroup or "f0")[1:])])
            for m in _FREQUENCY.finditer(name)
        ]
        for m in _EVERY_HOURS.finditer(name):
            hours = m.group(1) or m.group(2)
            if not any(f.start < m.end() and m.start() < f.end for f in frequencies):
                frequencies.append(_Frequency(m.start(), m.end(), (m.group(), f"every {hours} hours", f"q{hours}h")))
        frequencies.sort(key=lambda f: f.start)
        dose = _DOSE.search(name)
        return cls(name, _drug_of(name), dose, frequencies)

    def without_frequencies(self) -> str:
        text = self.full
        for frequency in reversed(self.frequencies):
            text = text[: frequency.start] + " " + text[frequency.end :]
        return " ".join(text.split())

    def written(self, rng: random.Random, amount: str | None = None, short: bool = False) -> str:
        """The medication as a sentence names it: frequencies in any of their spellings, MG as mg or MG, the pack
        size left off or not; `amount` replaces the dose's amount (a changed dose)."""
        pieces: list[tuple[int, int, str]] = []
        for frequency in self.frequencies:
            pieces.append((frequency.start, frequency.end, rng.choice(frequency.spellings)))
        if self.dose is not None and amount is not None:
            pieces.append((self.dose.start("amount"), self.dose.end("amount"), amount))
        text = self.full
        for start, end, new in sorted(pieces, reverse=True):
            text = text[:start] + new + text[end:]
        if short and self.dose is not None:
            # The drug and its dose only ("Fluticasone propionate 0.044 mg/ACTUAT"), as a model often shortens them.
            dose = self.dose.group()
            if amount is not None:
                dose = dose.replace(self.dose.group("amount"), amount, 1)
            text = f"{self.drug} {dose}"
        elif _PACK.match(text) and rng.random() < 0.5:
            text = _PACK.sub("", text)
        if rng.random() < 0.5:
            text = re.sub(r"\bMG\b", "mg", text)
        return _untall(text)


def _drug_of(name: str) -> str:
    """The drug a medication string names, without pack size, dose, form details or frequency."""
    text = _PACK.sub("", _clean(name))
    dose = _DOSE.search(text)
    if dose is not None and dose.start() > 0:
        text = text[: dose.start()]
    text = _FREQUENCY.sub(" ", text)
    text = _EVERY_HOURS.sub(" ", text)
    return _untall(" ".join(text.split()).strip(" ,/")) or _untall(name)


def _untall(text: str) -> str:
    # Tall-man lettering ("diphenhydrAMINE", "cycloSPORINE") is how a label warns; a sentence writes the drug plainly.
    return re.sub(r"\b(?=\w*[a-z])(?=\w*[A-Z]{2})[A-Za-z]+\b", lambda m: m.group().lower(), text)


# --- Finding a fact in the text --------------------------------------------------------------------------------

_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?![\d,])|\d+(?:\.\d+)?|[^\W\d_]+")
_STOP = {"of", "the", "and", "in", "to", "with", "a", "an", "on", "for", "by", "or", "at", "is", "was", "as"}
# Names the same measurement or diagnosis goes by in notes; used both to find a fact and to be sure that another
# patient's fact is not in a document under another name.
_ALIASES: list[set[str]] = [
    {"blood pressure", "bp"},
    {"pulse", "heart rate", "hr"},
    {"respiratory rate", "rr", "respirations"},
    {"temperature", "temp", "t"},
    {"o2 saturation", "oxygen saturation", "spo2", "o2 sat", "sao2"},
    {"weight", "weighs", "weighed", "body weight", "wt"},
    {"height", "body height", "ht"},
    {"bmi", "body mass index"},
    {"wbc", "white count", "white blood cell", "white cell", "leukocytes"},
    {"hemoglobin", "hgb", "hb"},
    {"hematocrit", "hct"},
    {"platelets", "platelet count", "plt"},
    {"bun", "urea nitrogen"},
    {"sodium", "na"},
    {"potassium", "k"},
    {"creatinine", "cr"},
    {"glucose", "blood sugar"},
    {"urinalysis", "ua"},
    {"hypertension", "high blood pressure", "htn"},
    {"hyperlipidemia", "high cholesterol"},
    {"diabetes", "diabetic", "diabetes mellitus", "dm"},
    {"gastroesophageal reflux disease", "gerd"},
    {"no known drug allergies", "nkda", "no known medicine allergies", "no known medication allergies"},
    {"no known allergies", "nka"},
]
_ALIAS_PATTERNS = [
    (group, re.compile("|".join(rf"(?<!\w){re.escape(alias)}(?!\w)" for alias in sorted(group)))) for group in _ALIASES
]
_NAME_REACH = 4  # extra words a name's words may be spread over: "oxycodone SR 20 mg p.o. q.12h."
_VALUE_REACH = 25  # words between a name and its value: "anion gap was slightly decreased at 5"
_DETAIL_REACH = 30  # words between a medication and its frequency, an allergen and its reaction
_DATE_REACH = 300  # characters between a fact and its date: a table row, a sentence


def _stem(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and len(word) > 4 and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _key(token: str) -> str:
    if token[0].isdigit():
        number = token.replace(",", "")
        if "." in number:
            return number.rstrip("0").rstrip(".") or "0"
        return str(int(number))
    return _stem(token)


def _keys(text: str) -> list[str]:
    return [_key(t) for t in _TOKEN.findall(text.lower())]


@lru_cache(maxsize=None)
def _aliases(name: str) -> tuple[str, ...]:
    """The name and the names it goes by: those of every alias group one of whose names it contains as words
    ("Urea nitrogen, Serum" goes by "BUN")."""
    lowered = " ".join(name.lower().split())
    found = [lowered]
    for group, pattern in _ALIAS_PATTERNS:
        if pattern.search(lowered):
            found += sorted(group - set(found))
    return tuple(found)


class _Index:
    """A text's words (stemmed, numbers by value) and dates, with where they stand."""

    def __init__(self, text: str) -> None:
        self.text = text
        lowered = text.lower()
        matches = list(_TOKEN.finditer(lowered))
        self.keys = [_key(m.group()) for m in matches]
        self.starts = [m.start() for m in matches]
        self.at: dict[str, list[int]] = defaultdict(list)
        for position, key in enumerate(self.keys):
            self.at[key].append(position)
        kept = [(i, ch) for i, ch in enumerate(lowered) if ch.isalnum()]
        self.squashed = "".join(ch for _, ch in kept)
        self.squashed_at = [i for i, _ in kept]
        self.dates = [(found.date, found.start) for found in find_dates(text)]
        self.dates += [(m.group(), m.start()) for m in re.finditer(r"(?<!\d)(?:19|20)\d\d(?!\d)", text)]
        self.words = {key for key in self.keys if key.isalpha()}
        self.roots = {_root(word) for word in self.words if len(word) >= 5}
        self._has: dict[str, bool] = {}

    def anchors(self, phrase: str) -> list[int]:
        """Where all the words of `phrase` stand close together (positions of its rarest word)."""
        keys = list(dict.fromkeys(k for k in _keys(phrase) if k not in _STOP))
        found: set[int] = set()
        if keys and all(k in self.at for k in keys):
            reach = len(keys) + _NAME_REACH
            rare = min(keys, key=lambda k: len(self.at[k]))
            for position in self.at[rare]:
                if all(self._within(self.at[k], position, reach) for k in keys):
                    found.add(position)
        squashed = re.sub(r"[^0-9a-z]", "", phrase.lower())
        if len(squashed) >= 5:
            # "Moya Moya disease" for "Moyamoya disease", "Toprol XL" for "Toprol-XL".
            start = self.squashed.find(squashed)
            while start >= 0:
                found.add(max(0, bisect_right(self.starts, self.squashed_at[start]) - 1))
                start = self.squashed.find(squashed, start + 1)
        return sorted(found)

    def near(self, anchors: list[int], phrase: str, reach: int) -> list[int]:
        """The anchors that have the words of `phrase`, in a row, within `reach` words."""
        sequence = _keys(phrase)
        if not sequence:
            return anchors
        starts = [p for p in self.at.get(sequence[0], []) if self.keys[p : p + len(sequence)] == sequence]
        return [a for a in anchors if self._within(starts, a, reach)]

    def dated(self, anchors: list[int], iso: str) -> list[int]:
        """The anchors with a mention of the date `iso` (or, for a year or month, a date inside it) close by."""
        places = [at for mention, at in self.dates if mention == iso or (len(iso) < 10 and mention.startswith(iso))]
        return [a for a in anchors if any(abs(at - self.starts[a]) <= _DATE_REACH for at in places)]

    def mentions_date(self, iso: str) -> bool:
        return any(mention == iso for mention, _ in self.dates)

    def has_word(self, word: str) -> bool:
        """Whether the text has `word`, also misspelt by one letter ("Potasium", "Brian") or inside a longer one."""
        key = _key(word)
        if key not in self._has:
            self._has[key] = (
                key in self.words
                or (len(key) >= 5 and _root(key) in self.roots)  # "obesity" for "obese", "diabetes" for "diabetic"
                # Inside another word too: "fish" in "shellfish", "nut" ending "peanut"; too close to call either way.
                or (len(word) >= 4 and word in self.squashed)
                or (len(word) == 3 and any(w.startswith(word) or w.endswith(word) for w in self.words))
                or (len(key) >= 5 and any(_one_edit(key, w) for w in self.words if abs(len(w) - len(key)) <= 1))
            )
        return self._has[key]

    @staticmethod
    def _within(positions: list[int], center: int, reach: int) -> bool:
        i = bisect_left(positions, center - reach)
        return i < len(positions) and positions[i] <= center + reach


def _root(word: str) -> str:
    """A word without the endings that turn one form of it into another: "obes" of "obese" and "obesity"."""
    return re.sub(r"(?:ities|ity|ical|ics|ic|ous|ias|ia|al|ed|ing|es|e|s|y)$", "", word)


def _one_edit(a: str, b: str) -> bool:
    """Whether a and b differ by one letter added, dropped, changed, or two neighbours swapped."""
    if a == b or a[:1] != b[:1]:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i, j = diff[0], diff[-1]
        return len(diff) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _names(fact: _Fact) -> list[str]:
    """What to look for to find the fact: its name and the names it goes by."""
    if fact.category == "medication" and fact.medication is not None:
        return [fact.medication.without_frequencies()]
    if fact.category == "allergy" and fact.aspect.startswith("none"):
        return list(_aliases(fact.name))
    if fact.category == "patient":
        return {
            "birth": ["born", "birth", "dob"],
            "death": ["died", "deceased", "death", "expired"],
            "gender": ["female", "woman"] if fact.name == "female" else ["male", "man"],
        }.get(fact.aspect, [fact.name])
    name = re.sub(r"^(?:history of|status post|s/p)\s+", "", fact.name, flags=re.I)
    return list(_aliases(name))


def _locate(fact: _Fact, index: _Index) -> tuple[list[int], str | None]:
    """Where in the text the fact stands, or why it cannot be found; its date and reaction not counted."""
    anchors = sorted({a for name in _names(fact) for a in index.anchors(name)})
    if not anchors:
        return [], "name not found in the text"
    if fact.value is not None:
        anchors = index.near(anchors, fact.value, _VALUE_REACH)
        if not anchors:
            return [], "value not found near the name"
    if fact.medication is not None:
        for frequency in fact.medication.frequencies:
            anchors = sorted({a for s in frequency.spellings for a in index.near(anchors, s, _DETAIL_REACH)})
            if not anchors:
                return [], "frequency not found near the medication"
    if fact.aspect in ("birth", "death") and fact.date:
        anchors = index.dated(anchors, fact.date)  # the date is what such a fact says
        if not anchors:
            return [], "date not found near the name"
    return anchors, None


def _checked_facts(truth: _Truth, pages: list[tuple[int, str]], name: str, dropped: list[Dropped]) -> list[_Fact]:
    """The truth's facts that the document's text shows, each with the page it is on when that can be told."""
    whole = _Index("\n".join(text for _, text in pages))
    indexes = [(number, _Index(text)) for number, text in pages]
    kept: list[_Fact] = []
    for fact in _facts(truth):
        for option in fact.options:
            if _locate(replace(fact, value=option), whole)[1] is None:
                fact = replace(fact, value=option)
                break
        anchors, reason = _locate(fact, whole)
        if reason is not None:
            dropped.append(Dropped(document=name, fact=fact.key, reason=reason))
            continue
        if fact.reaction and not whole.near(anchors, fact.reaction, _DETAIL_REACH):
            reason = "reaction not found near the allergen"
            dropped.append(Dropped(document=name, fact=fact.key, reason=reason, kept=True))
            fact = replace(fact, reaction=None)
        if fact.date and fact.aspect not in ("birth", "death") and not whole.dated(anchors, fact.date):
            dropped.append(Dropped(document=name, fact=fact.key, reason="date not found near the name", kept=True))
            fact = replace(fact, date=None)
        for number, index in indexes:
            here, reason = _locate(fact, index)
            if reason is None and (not fact.date or index.dated(here, fact.date)):
                fact.page = number
                break
        kept.append(fact)
    return kept


# --- Writing claims ------------------------------------------------------------------------------------------


@dataclass
class _Voice:
    """How sentences refer to the patient: "she" / "her", or "the patient" when the record does not say."""

    subject: str | None  # "she", "he"
    possessive: str | None  # "her", "his"

    @classmethod
    def of(cls, truth: _Truth, text: str) -> _Voice:
        gender = truth.patient.get("gender")
        if gender not in ("female", "male"):
            she = len(re.findall(r"\b(?:she|her|hers|herself|woman|female)\b", text, re.I))
            he = len(re.findall(r"\b(?:he|his|him|himself|man|male|gentleman)\b", text, re.I))
            gender = "female" if she > 2 * he else "male" if he > 2 * she else None
        if gender == "female":
            return cls("she", "her")
        if gender == "male":
            return cls("he", "his")
        return cls(None, None)

    def fill(self, template: str, rng: random.Random, **words: str) -> str:
        plain = self.subject is None or rng.random() < 0.3
        s = "the patient" if plain else self.subject
        p = "the patient's" if plain else self.possessive
        o = "the patient" if plain else {"she": "her", "he": "him"}[self.subject or "she"]
        text = template.format(s=s, p=p, o=o, **words)
        text = re.sub(r"\.\.(?=\s|$)", ".", " ".join(text.split()))  # "b.i.d." ending a sentence
        return text[:1].upper() + text[1:]


# True phrasings, by category. {s}, {p} and {o} are the patient as subject, possessive and object.
_MEDICATION_NOW = [
    "{s} takes {med}.",
    "{s} is on {med}.",
    "{s} is currently taking {med}.",
    "Current medications include {med}.",
]
_MEDICATION_ANY = [
    "{med} is among {p} medications.",
    "Medications include {med}.",
    "{p} medication list includes {med}.",
    "{s} has been prescribed {med}.",
    "Medications: {med}",
    "{med} appears on {p} medication list.",
]
# A medication the patient may no longer take (stopped, tried before, given on transfer): what was, not what is,
# and not that it was prescribed ("she has tried Claritin" may have been over the counter).
_MEDICATION_EVER = [
    "{s} has taken {med}.",
    "{p} medication history includes {med}.",
    "{s} has used {med} before.",
    "{s} has been on {med}.",
]
_ALLERGY = [
    "{s} is allergic to {x}.",
    "{p} allergies include {x}.",
    "Allergies: {x}.",
    "{s} has a documented allergy to {x}.",
    "An allergy to {x} is recorded.",
    "{x} allergy is listed.",
]
_ALLERGY_REACTION = [
    "{s} is allergic to {x}, which causes {r}.",
    "Allergy to {x} with {r}.",
    "{x} causes {r} in {o}.",
    "{p} allergy to {x} gives {r}.",
]
_NO_DRUG_ALLERGY = [
    "{s} has no known drug allergies.",
    "NKDA.",
    "{s} is not allergic to any medications.",
    "No known drug allergies.",
    "{s} has no drug allergies on record.",
]
_NO_ALLERGY = ["{s} has no known allergies.", "NKA.", "No known allergies.", "{s} has no allergies on record."]
_CONDITION_NOW = [
    "{s} has {x}.",
    "{s} currently has {x}.",
    "Active problems include {x}.",
    "{p} active problem list includes {x}.",
]
_CONDITION_ANY = [
    "{s} has a history of {x}.",
    "{p} diagnoses include {x}.",
    "{x} is documented in {p} record.",
    "{s} has been diagnosed with {x}.",
    "Past medical history includes {x}.",
    "Problem list: {x}.",
]
_CONDITION_DONE = ["{s} is status post {x}.", "{s} has undergone {x}.", "{p} history includes {x}.", "{s} has had {x}."]
_RESULT = [
    "{p} {n} {be} {v}.",
    "{N}: {v}.",
    "{N} {v}.",
    "Labs showed {a} {n} of {v}.",
    "The {n} {be} {v}.",
]
_RESULT_DATED = [
    "{N}: {v} {on}.",
    "The {n} {on} {be} {v}.",
    "{p} {n} {be} {v} {on}.",
    "{a} {n} of {v} {be} recorded {on}.",
    "{on_cap}, {p} {n} {be} {v}.",
]
_RESULT_WORD = ["{p} {n} {be} {v}.", "{N}: {v}.", "The {n} result {be} {v}.", "{N} came back {v}."]
_RESULT_WORD_DATED = ["{N}: {v} {on}.", "The {n} {on} {be} {v}.", "{on_cap}, the {n} {be} {v}."]
_BP = [
    "BP {v}.",
    "{p} blood pressure was {v} mmHg.",
    "Blood pressure {v}.",
    "{p} BP measured {v} mmHg.",
    "Blood pressure was {v}.",
]
_BP_DATED = ["Blood pressure was {v} mmHg {on}.", "BP {v} {on}.", "{on_cap}, {p} blood pressure was {v}."]
_VITAL = ["{p} {n} was {v}.", "{N} {v}.", "{N}: {v}.", "{a} {n} of {v} was recorded.", "{p} {n} measured {v}."]
_VITAL_DATED = ["{p} {n} was {v} {on}.", "{N}: {v} {on}.", "{on_cap}, {p} {n} was {v}."]
_PROCEDURE = [
    "{s} has had {x}.",
    "{s} underwent {x}.",
    "{p} procedures include {x}.",
    "{x} is documented.",
    "{p} history includes {x}.",
]
_PROCEDURE_DATED = [
    "{s} underwent {x} {on}.",
    "{x} was performed {on}.",
    "{x} was done {on}.",
    "{p} {x} was {on}.",
    "{on_cap}, {s} had {x}.",
]
_PLAN = ["{x} is planned.", "The plan includes {x}.", "{s} will need {x}.", "{x} is part of the plan of care."]
_EVENT = ["The {x} was {on}.", "{X} date: {d}.", "The {x} date is {d}.", "{X}: {d}."]
_NAME = ["The patient's name is {x}.", "This record belongs to {x}.", "Patient: {x}.", "The patient is {x}."]
_BIRTH = ["{s} was born {on}.", "Date of birth: {d}.", "{p} date of birth is {d}.", "DOB {d}."]
_DEATH = [
    "{s} died {on}.",
    "Date of death: {d}.",
    "The patient is deceased; death occurred {on}.",
    "{s} passed away {on}.",
]
_GENDER = {
    "female": ["The patient is female.", "Sex: female.", "The patient is a woman.", "She is a female patient."],
    "male": ["The patient is male.", "Sex: male.", "The patient is a man.", "He is a male patient."],
}

# Denials of a fact, by category: the record says the opposite.
# Whether a drug is on "the list" (a note's list may leave out what the plan starts) or was prescribed (a
# multivitamin, a drug tried over the counter) is unclear; that it is not taken now, or never was, is plainly false.
_DENY_MEDICATION_NOW = ["{s} is not taking {x}.", "{s} is not on {x}."]
_DENY_MEDICATION = ["{s} has never taken {x}.", "There is no record of {x} among {p} medications."]
_DENY_ALLERGY = [
    "{p} {x} allergy is not documented.",
    "No allergy to {x} is recorded.",
    "The record lists no {x} allergy.",
    "{x} is not among {p} allergies.",
]
_DENY_CONDITION_NOW = ["{s} does not have {x}."]
_DENY_CONDITION = [
    "There is no history of {x}.",
    "{s} has never been diagnosed with {x}.",
    "{x} is not among {p} diagnoses.",
]
_DENY_PROCEDURE = ["{s} has never had {x}.", "There is no record of {x}.", "{x} has never been performed."]
_DENY_PLAN = ["No {x} is planned.", "{x} is not part of the plan."]
_DENY_DEATH = ["The patient is alive.", "{s} has not died.", "The patient is not deceased."]

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
# Qualitative results and their opposites.
_OPPOSITE = {"negative": "positive", "positive": "negative", "normal": "abnormal", "abnormal": "normal"}
# Allergens that are not drugs: a record's "no known drug allergies" says nothing about them.
_NOT_DRUGS = {
    "pollen", "dander", "mite", "dust", "mould", "mold", "nut", "peanut", "wheat", "shellfish", "fish", "egg",
    "dairy", "milk", "bee", "venom", "latex", "grass", "cat", "dog", "soy", "gluten", "food", "animal", "insect",
    "sting", "seafood", "tree", "ragweed", "pet",
}  # fmt: skip
# Words that say too little to tell one patient's fact from another's ("Allergy to nut": "nut" says it).
_GENERIC = _STOP | {
    "allergy", "allergic", "oral", "tablet", "capsule", "injection", "injectable", "solution", "disorder", "finding",
    "situation", "procedure", "chronic", "acute", "history", "blood", "count", "automated", "volume", "mass",
    "entitic", "serum", "plasma", "mg", "ml", "mcg", "actuat", "daily", "left", "right", "lower", "upper",
    "disease", "pain", "test", "tests", "testing", "study", "level", "total", "rate", "documentation", "current",
    "medication", "medications", "extended", "release", "hr", "hour", "hours", "topical", "cream", "dose",
    "metered", "inhaler", "severe", "mild", "moderate", "with", "without", "type", "body", "not", "status", "post",
    "by", "per", "from", "stage", "old",
}  # fmt: skip
_GENERIC_KEYS = {_key(w) for w in _GENERIC}


def _claims_of(sheet: _Sheet, others: list[_Sheet]) -> list[Claim]:
    rng = random.Random(f"{SEED}:{sheet.name}")
    voice = _Voice.of(sheet.truth, sheet.text)
    whole = _Index(sheet.text)
    writer = _Writer(sheet, voice, rng, whole)
    for fact in sheet.facts:
        writer.true_claims(fact)
    for fact in sheet.facts:
        writer.changed_claims(fact)
        writer.denials(fact)
    writer.other_patients(others)
    writer.lists()
    return writer.claims


class _Writer:
    def __init__(self, sheet: _Sheet, voice: _Voice, rng: random.Random, whole: _Index) -> None:
        self.sheet = sheet
        self.voice = voice
        self.rng = rng
        self.whole = whole
        self.claims: list[Claim] = []
        self.seen: set[str] = set()
        self.denied: set[str] = set()
        # "Chemistries were within normal limits", "other vital signs are all within normal limits": a lab or vital
        # the document does not name may still be covered; another patient's value there is not plainly not_found.
        self.summed_up = {
            category
            for category, words in (("lab", r"labs?|laboratory|chemistr\w*|blood work"), ("vital", r"vitals?"))
            if re.search(rf"\b(?:{words})\b[^.\n]{{0,60}}\b(?:normal|unremarkable|negative)\b", sheet.text, re.I)
        }

    # -- true claims --

    def true_claims(self, fact: _Fact, phrasings: int = 3) -> None:
        written = 0
        for template in self._templates(fact):
            text = self._write(template, fact)
            if not self._add(text, fact, "supported", "true"):
                continue
            if fact.page is not None:
                self._add(self._marked(text, fact.page), fact, "supported", "true+marker", marker=True)
            written += 1
            if written == phrasings:
                break

    def _templates(self, fact: _Fact) -> list[str]:
        """The fact's true phrasings in a random order; dated ones first when the fact has a date."""
        rng = self.rng
        plain, dated = self._pools(fact)
        rng.shuffle(plain)
        rng.shuffle(dated)
        if dated and plain:
            # At least one phrasing with the date and one without, the third either.
            rest = dated[1:] + plain[1:]
            rng.shuffle(rest)
            return [dated[0], plain[0], *rest]
        return dated or plain

    def _pools(self, fact: _Fact) -> tuple[list[str], list[str]]:
        c = fact.category
        if c == "medication":
            return (_MEDICATION_NOW + _MEDICATION_ANY if fact.current else list(_MEDICATION_EVER)), []
        if c == "allergy":
            if fact.aspect.startswith("none"):
                return list(_NO_DRUG_ALLERGY if fact.aspect == "none:drug" else _NO_ALLERGY), []
            return list(_ALLERGY + (_ALLERGY_REACTION if fact.reaction else [])), []
        if c == "condition":
            if re.match(r"(?:status post|s/p)\s", fact.name, re.I):
                return list(_CONDITION_DONE), []
            return (_CONDITION_NOW + _CONDITION_ANY if fact.current else list(_CONDITION_ANY)), []
        if c == "lab":
            numeric = fact.value is not None and _is_number(fact.value)
            plain = _RESULT if numeric else _RESULT_WORD
            dated = _RESULT_DATED if numeric else _RESULT_WORD_DATED
            return list(plain), (list(dated) if fact.date else [])
        if c == "vital":
            bp = _is_blood_pressure(fact)
            return list(_BP if bp else _VITAL), (list(_BP_DATED if bp else _VITAL_DATED) if fact.date else [])
        if c == "procedure":
            # A dated procedure is written with its date only: Synthea repeats the same procedure on many dates.
            return ([] if fact.date else list(_PROCEDURE)), (list(_PROCEDURE_DATED) if fact.date else [])
        if c == "plan":
            return list(_PLAN), []
        if c == "event":
            return [], list(_EVENT)
        if c == "patient":
            return {
                "name": (list(_NAME), []),
                "birth": ([], list(_BIRTH)),
                "death": ([], list(_DEATH)),
                "gender": (list(_GENDER.get(fact.name, [])), []),
            }.get(fact.aspect, ([], []))
        return [], []

    def _write(self, template: str, fact: _Fact, value: str | None = None, day: str | None = None,
               amount: str | None = None) -> str:  # fmt: skip
        """The template filled with the fact; `value`, `day` or `amount` replace its value, date or dose."""
        rng = self.rng
        iso = day or fact.date
        on, bare = _date_words(iso, rng) if iso else ("", "")
        name = fact.name
        words: dict[str, str] = {"on": on, "on_cap": on[:1].upper() + on[1:], "d": bare}
        if fact.category == "medication" and fact.medication is not None:
            words["med"] = fact.medication.written(rng, amount, short=rng.random() < 0.3)
            words["x"] = fact.medication.drug
        elif fact.category in ("lab", "vital"):
            shown = value or fact.value or ""
            words["n"] = _lower_words(name)
            words["N"] = name
            words["be"] = "were" if _plural(name) else "was"
            words["a"] = "" if _plural(name) else _article(name)
            words["v"] = self._value_words(fact, shown, template)
        elif fact.category == "condition":
            words["x"] = _lower_words(re.sub(r"^(?:status post|s/p)\s+", "", name, flags=re.I))
        elif fact.category == "event":
            words["x"] = name
            words["X"] = name[:1].upper() + name[1:]
        else:
            words["x"] = name if fact.category in ("patient", "allergy") else _lower_words(name)
            words["r"] = (fact.reaction or "").lower()
        return self.voice.fill(template, rng, **words)

    def _value_words(self, fact: _Fact, shown: str, template: str) -> str:
        rng = self.rng
        if not _is_number(shown) and not _is_blood_pressure(fact):
            return shown.lower() if shown.isalpha() else shown
        if re.fullmatch(r"\d{4,}", shown) and rng.random() < 0.5:
            shown = f"{int(shown):,}"  # 278,000 as notes write it, or 278000
        if "mmHg" in template:
            return shown
        unit = _unit_words(fact, rng)
        if not unit or rng.random() < 0.25:
            return shown
        return f"{shown}{unit}" if unit.startswith(("%", "°", "/")) else f"{shown} {unit}"

    def _marked(self, text: str, page: int) -> str:
        marker = f"[Document: {' '.join(self.sheet.name.split())} | page {page}]"
        # Before the final full stop or after it; after it when the stop is an abbreviation's ("p.r.n.").
        if text.endswith(".") and not re.search(r"(?:^|[\s.])\w\.$", text) and self.rng.random() < 0.5:
            return f"{text[:-1]} {marker}."
        return f"{text} {marker}"

    def _add(self, text: str, fact: _Fact, expected: Label, kind: str, *, marker: bool = False,
             original: str | None = None, changed: str | None = None) -> bool:  # fmt: skip
        # The same sentence twice, once with a marker and once without, is two claims; twice alike, one.
        folded = " ".join(_MARKER.sub("", text).lower().split()) + f"|{marker}"
        if folded in self.seen:
            return False
        self.seen.add(folded)
        self.claims.append(
            Claim(
                document=self.sheet.name,
                text=text,
                expected=expected,
                kind=kind,
                category=fact.category,
                fact=fact.key,
                subject=fact.medication.drug if fact.medication is not None else fact.name,
                page=fact.page,
                marker=marker,
                original=original,
                changed=changed,
            )
        )
        return True

    def _false(self, text: str, fact: _Fact, kind: str, expected: Label = "contradicted", **changes: str) -> None:
        # A third of the false claims carry the marker of the fact's page, as a model's wrong sentence would.
        if fact.page is not None and self.rng.random() < 1 / 3:
            self._add(self._marked(text, fact.page), fact, expected, kind, marker=True, **changes)
        else:
            self._add(text, fact, expected, kind, **changes)

    # -- changed values --

    def changed_claims(self, fact: _Fact, phrasings: int = 3) -> None:
        plain, dated = self._pools(fact)
        for _ in range(phrasings):
            if fact.category in ("lab", "vital") and fact.value is not None:
                new = self._changed_value(fact)
                if new is not None:
                    text = self._write(self.rng.choice(plain + dated), fact, value=new)
                    self._false(text, fact, "false:number", original=fact.value, changed=new)
            if fact.category == "medication" and fact.medication is not None and fact.medication.dose is not None:
                amount = self._changed_dose(fact)
                if amount is not None:
                    dose = fact.medication.dose
                    changed = dose.group().replace(dose.group("amount"), amount, 1)
                    text = self._write(self.rng.choice(plain), fact, amount=amount)
                    self._false(text, fact, "false:dose", original=dose.group(), changed=changed)
            if fact.date and dated and fact.aspect != "name":
                day = self._changed_date(fact)
                if day is not None:
                    text = self._write(self.rng.choice(dated), fact, day=day)
                    self._false(text, fact, "false:date", original=fact.date, changed=day)

    def _changed_value(self, fact: _Fact) -> str | None:
        value = fact.value or ""
        parts = value.split("/")
        if not all(_is_number(p) for p in parts) or len(parts) > 2:
            return None
        which = self.rng.randrange(len(parts))
        old = float(parts[which])
        decimals = len(parts[which].split(".")[1]) if "." in parts[which] else 0
        temperature = re.search(r"temp", fact.name, re.I) is not None
        factors = [1.5, 1.3, 1.25, 0.75, 0.7]
        self.rng.shuffle(factors)
        anchors = sorted({a for n in _names(fact) for a in self.whole.anchors(n)})
        for factor in factors:
            if temperature:
                step = 1.5 if (fact.unit or "").upper().startswith("C") or old < 50 else 3.0
                new = old + (step if factor > 1 else -step)
            else:
                new = old * factor
            if fact.unit == "%" and new > 100:
                continue
            text = f"{new:.{decimals}f}"  # as many decimals as the record gives: 0.8 -> 1.0, not 1
            if abs(float(text) - old) < 0.1 * max(abs(old), 1e-9) or float(text) <= 0:
                continue
            changed = "/".join(text if i == which else p for i, p in enumerate(parts))
            # Not a value the record gives this measurement elsewhere (another date, the other arm).
            if self.whole.near(anchors, text, _VALUE_REACH):
                continue
            return changed
        return None

    def _changed_dose(self, fact: _Fact) -> str | None:
        assert fact.medication is not None and fact.medication.dose is not None
        amount = fact.medication.dose.group("amount")
        head, slash, tail = amount.partition("/")
        old = float(head)
        decimals = len(head.split(".")[1]) if "." in head else 0
        factors = [2.0, 0.5, 1.5, 3.0]
        self.rng.shuffle(factors)
        anchors = self.whole.anchors(fact.medication.drug)
        for factor in factors:
            new = old * factor
            places = max(decimals, 1) + (1 if factor == 0.5 else 0)  # half of 0.25 is 0.125
            text = str(int(new)) if new == int(new) else _number_text(new, places)
            if float(text) == old or float(text) <= 0:
                continue
            # Not a dose the record also gives the drug ("then decrease to oxycodone SR 10 mg").
            if self.whole.near(anchors, text, _DETAIL_REACH):
                continue
            return text + slash + tail
        return None

    def _changed_date(self, fact: _Fact) -> str | None:
        assert fact.date is not None
        for _ in range(20):
            day = _shifted(fact.date, self.rng)
            if day is None or day == fact.date:
                continue
            if self.whole.mentions_date(day):
                continue  # the record has the date, perhaps for this very fact: "another date" must be another
            if len(day) < 10:
                anchors = sorted({a for n in _names(fact) for a in self.whole.anchors(n)})
                if self.whole.dated(anchors, day):
                    continue
            return day
        return None

    # -- denials --

    def denials(self, fact: _Fact, phrasings: int = 3) -> None:
        pool = self._denials(fact)
        if not pool:
            return
        # Once per denied thing: "Naproxen" for both naproxen medications, "Toprol XL" and "Toprol-XL" alike.
        key = f"{fact.category}:{re.sub(r'[^0-9a-z]', '', pool[1].lower())}"
        if key in self.denied:
            return
        self.denied.add(key)
        templates, x = pool
        self.rng.shuffle(templates)
        for template in templates[:phrasings]:
            if fact.category == "lab":  # a qualitative result turned round: "The urinalysis was positive."
                text = self._write(template, fact, value=_OPPOSITE[(fact.value or "").lower()])
            else:
                text = self.voice.fill(template, self.rng, x=x)
            self._false(text, fact, "false:negation")

    def _denials(self, fact: _Fact) -> tuple[list[str], str] | None:
        c = fact.category
        if c == "medication" and fact.medication is not None:
            return (_DENY_MEDICATION_NOW if fact.current else []) + _DENY_MEDICATION, fact.medication.drug
        if c == "allergy" and not fact.aspect:
            return list(_DENY_ALLERGY), fact.name
        if c == "condition":
            name = re.sub(r"^(?:history of|status post|s/p)\s+", "", fact.name, flags=re.I)
            return (_DENY_CONDITION_NOW if fact.current else []) + _DENY_CONDITION, _lower_words(name)
        if c == "procedure":
            return list(_DENY_PROCEDURE), _lower_words(fact.name)
        if c == "plan":
            return list(_DENY_PLAN), _lower_words(fact.name)
        if c == "lab" and fact.value and fact.value.lower() in _OPPOSITE:
            return list(_RESULT_WORD), fact.name
        if c == "patient" and fact.aspect == "gender":
            other = "male" if fact.name == "female" else "female"
            return [f"The patient is not {fact.name}.", f"The patient is {other}.", f"Sex: {other}."], fact.name
        if c == "patient" and fact.aspect == "death":
            return list(_DENY_DEATH), "death"
        return None

    # -- other patients' facts --

    def other_patients(self, others: list[_Sheet]) -> None:
        """Facts of other patients that this document never mentions, up to as many as keep the set balanced."""
        truth = self.sheet.truth
        true = sum(c.expected == "supported" for c in self.claims)
        false = len(self.claims) - true
        wanted = max(true - false, true // 6)
        scope = truth.allergy_scope()
        me = (truth.patient.get("name"), truth.patient.get("birth_date"))
        by_category: dict[str, list[tuple[_Fact, Label]]] = defaultdict(list)
        # What this record's truth lists, found in its text or not ("5'9\"" is a height without the word): another
        # patient's value for it would contradict this one's rather than be missing.
        own = {(f.category, alias) for f in _facts(truth) for alias in _aliases(f.name)}
        taken: set[str] = set()
        for other in others:
            if me[0] and (other.truth.patient.get("name"), other.truth.patient.get("birth_date")) == me:
                continue  # the same patient's other document: not another patient's fact
            for fact in other.facts:
                if any((fact.category, alias) in own for alias in _aliases(fact.name)):
                    continue
                expected = self._other_label(fact, truth, scope)
                if expected is not None and fact.key.lower() not in taken:  # penicillin once, not per record
                    taken.add(fact.key.lower())
                    by_category[fact.category].append((fact, expected))
        for candidates in by_category.values():
            self.rng.shuffle(candidates)
        chosen = 0
        categories = sorted(by_category)
        while chosen < wanted and any(by_category.values()):
            for category in categories:
                if chosen >= wanted or not by_category[category]:
                    continue
                fact, expected = by_category[category].pop()
                fact = replace(fact, page=None)
                templates = self._templates(fact)
                if not templates:
                    continue
                text = self._write(templates[0], fact)
                if self.rng.random() < 1 / 3:
                    text = self._marked(text, self.rng.choice(self.sheet.pages)[0])
                    added = self._add(text, fact, expected, "false:other-patient", marker=True)
                else:
                    added = self._add(text, fact, expected, "false:other-patient")
                chosen += added

    def lists(self) -> None:
        """Lists, as answers write them: a true list of a category's facts ("Her medications include A, B and C.",
        supported), and the same list with one item swapped for another patient's fact that this record never
        mentions (not_found: a list is supported only when every item is)."""
        foreign = {
            claim.subject: claim.category for claim in self.claims if claim.kind == "false:other-patient"
            and claim.expected == "not_found" and claim.category in _LIST_PHRASES
        }
        for category, (opening, closing) in _LIST_PHRASES.items():
            names = list(dict.fromkeys(
                fact.medication.drug if fact.medication is not None else fact.name
                for fact in self.sheet.facts
                if fact.category == category and not fact.aspect and fact.page is not None
            ))
            self.rng.shuffle(names)
            strangers = [subject for subject, of in foreign.items() if of == category]
            for start in range(0, len(names) - 1, 3):
                items = names[start : start + 3]
                if len(items) < 2:
                    break
                fact = next(f for f in self.sheet.facts if f.category == category)
                listed = _listed(items, self.rng)
                self._add(f"{opening} {listed}{closing}", replace(fact, name=listed), "supported", "true:list")
                if strangers:
                    swapped = items[:-1] + [strangers.pop()]
                    listed = _listed(swapped, self.rng)
                    self._add(f"{opening} {listed}{closing}", replace(fact, name=listed), "not_found", "false:list")

    def _other_label(self, fact: _Fact, truth: _Truth, scope: str | None) -> Label | None:
        """The label another patient's fact gets here, or None to leave it out."""
        if fact.category not in _CLAIMABLE or fact.aspect:
            return None  # a name, birth date or sex of another patient contradicts this one's: not the point here
        if fact.category in self.summed_up:
            return None
        none_taken = not truth.facts.get("medications") and truth.facts.get("medication_status")
        if fact.category == "medication" and none_taken:
            return None  # "discharged home on no medications": another drug claimed is not plainly not_found
        words = _distinctive(fact)
        if not words or any(self.whole.has_word(w) for w in words):
            return None
        if any(self.whole.anchors(alias) for alias in _aliases(fact.name)):
            return None
        related = [word for alias in _aliases(fact.name) for word in _RELATED.get(alias, ())]
        if any(self.whole.has_word(word) for word in related):
            return None
        if fact.category == "allergy" and scope is not None:
            drug = not any(k in (w, w + "s", w + "es") for k in _keys(fact.name) for w in _NOT_DRUGS)
            if scope == "all" or drug:
                return "contradicted"  # the record says the patient has no (drug) allergies
            return None  # a pollen allergy against "no known drug allergies": neither said nor denied; left out
        return "not_found"


# What another patient's fact can be claimed about.
_CLAIMABLE = ("medication", "allergy", "condition", "lab", "vital", "procedure", "plan")
# Words that speak of a measurement without giving it: another patient's pulse of 70 against "intermittent
# tachycardia" is not plainly missing.
_RELATED = {
    "pulse": ("tachycardia", "tachycardic", "bradycardia", "bradycardic"),
    "blood pressure": ("hypertension", "hypertensive", "hypotension", "hypotensive"),
    "temperature": ("fever", "febrile", "afebrile", "hypothermia"),
    "respiratory rate": ("tachypnea", "tachypneic", "bradypnea"),
    "o2 saturation": ("hypoxia", "hypoxic", "hypoxemia"),
}


# How a list of a category's facts opens and closes.
_LIST_PHRASES = {
    "medication": ("The medications listed include", "."),
    "condition": ("Her problem list includes", "."),
    "allergy": ("Documented allergies:", "."),
}


def _listed(items: list[str], rng: random.Random) -> str:
    """Items as a sentence lists them: "A, B and C", or with "as well as" or a serial comma now and then."""
    if len(items) == 2:
        return f"{items[0]} {rng.choice(['and', 'as well as'])} {items[1]}"
    return ", ".join(items[:-1]) + rng.choice([" and ", ", and "]) + items[-1]


def _distinctive(fact: _Fact) -> list[str]:
    # A drug under its other name ("Toprol XL" for metoprolol succinate) is the same drug.
    name = f"{fact.medication.drug} {fact.aka}" if fact.medication is not None else fact.name
    return [w for w in re.findall(r"[^\W\d_]+", name.lower()) if len(w) >= 3 and _key(w) not in _GENERIC_KEYS]


# --- Words ------------------------------------------------------------------------------------------------------


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\d+(?:\.\d+)?", text) is not None


def _is_blood_pressure(fact: _Fact) -> bool:
    if fact.category != "vital":
        return False
    return "blood pressure" in _aliases(fact.name) or re.fullmatch(r"\d+/\d+", fact.value or "") is not None


def _plural(name: str) -> bool:
    last = name.lower().split(",")[0].split()[-1] if name.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "us", "is"))


def _article(name: str) -> str:
    first = name.split()[0] if name.split() else "x"
    if first.isupper() and len(first) > 1:  # an abbreviation is read letter by letter: "an INR", "a WBC"
        return "an" if first[0] in "AEFHILMNORSX" else "a"
    if first.lower().startswith(("uni", "ure", "uro", "usu", "use", "eu", "one")):
        return "a"  # "a urea nitrogen", "a urinalysis": a vowel letter read as a consonant
    return "an" if first[0].lower() in "aeiou" else "a"


def _lower_words(text: str) -> str:
    """Lower case, but for abbreviations ("MCV", "INR", "type II", "H. pylori")."""
    def abbreviation(word: str) -> bool:
        return (len(word) >= 2 and word.isupper()) or any(ch.isupper() for ch in word[1:])

    return " ".join(w if abbreviation(w) else w.lower() for w in text.split())


# Units as notes write them, by the truth's unit.
_UNITS = {
    "mmhg": ["mmHg"],
    "mm[hg]": ["mmHg"],
    "/min": ["/min", "per minute"],
    "f": ["°F", "F", "degrees F"],
    "c": ["°C", "C", "degrees C"],
    "lb": ["lb", "pounds", "lbs"],
    "kg/m2": ["kg/m2"],
}


def _unit_words(fact: _Fact, rng: random.Random) -> str:
    unit = (fact.unit or "").strip()
    if not unit:
        return ""
    choices = list(_UNITS.get(unit.lower(), [unit]))
    if unit == "/min" and re.search(r"pulse|heart", fact.name, re.I):
        choices.append("bpm")
    if unit == "/min" and re.search(r"resp", fact.name, re.I):
        choices.append("breaths per minute")
    return rng.choice(choices)


def _date_words(iso: str, rng: random.Random) -> tuple[str, str]:
    """("on August 21, 2007", "August 21, 2007") in ISO, US or written form; "in 1998" for a year alone."""
    if re.fullmatch(r"\d{4}", iso):
        return f"in {iso}", iso
    if re.fullmatch(r"\d{4}-\d\d", iso):
        year, month = int(iso[:4]), int(iso[5:7])
        bare = rng.choice([f"{_MONTHS[month - 1]} {year}", f"{month:02d}/{year}"])
        return f"in {bare}", bare
    day = date.fromisoformat(iso[:10])
    us = f"{day.month:02d}/{day.day:02d}/{day.year}"
    bare = rng.choice([day.isoformat(), us, f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"])
    return f"on {bare}", bare


def _shifted(iso: str, rng: random.Random) -> str | None:
    """The date moved by days, months or years, at the same precision."""
    if re.fullmatch(r"\d{4}", iso):
        return str(int(iso) + rng.choice([-4, -3, -2, 2, 3, 5]))
    if re.fullmatch(r"\d{4}-\d\d", iso):
        months = int(iso[:4]) * 12 + int(iso[5:7]) - 1 + rng.choice([-7, -4, -2, 2, 3, 5, 12, -12])
        return f"{months // 12:04d}-{months % 12 + 1:02d}"
    try:
        day = date.fromisoformat(iso[:10])
    except ValueError:
        return None
    unit = rng.choice(["days", "months", "years"])
    if unit == "days":
        return (day + timedelta(days=rng.choice([-20, -9, -5, -3, 3, 4, 7, 11, 16]))).isoformat()
    step = rng.choice([-5, -3, -2, -1, 1, 2, 4]) if unit == "years" else rng.choice([-6, -4, -2, -1, 1, 2, 3, 5])
    months = day.year * 12 + day.month - 1 + (step * 12 if unit == "years" else step)
    return date(months // 12, months % 12 + 1, min(day.day, 28)).isoformat()


# --- Scoring ------------------------------------------------------------------------------------------------------


class Share(BaseModel):
    hits: int = 0
    of: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float | None:
        return self.hits / self.of if self.of else None

    def add(self, hit: bool) -> None:
        self.of += 1
        self.hits += hit

    def __str__(self) -> str:
        return f"{self.hits}/{self.of} ({self.rate:.1%})" if self.of else "-"


class Rates(BaseModel):
    group: str
    claims: int = 0
    supported_true: Share = Share()  # true claims without a marker labelled supported
    supported_true_marker: Share = Share()  # true claims with a marker labelled supported
    false_not_supported: Share = Share()  # false claims labelled contradicted or not_found
    contradicted_found: Share = Share()  # claims expected contradicted labelled contradicted
    false_label_right: Share = Share()  # false claims labelled exactly as expected: contradicted vs not_found
    rejected_label_right: Share = Share()  # of those labelled contradicted or not_found, the right one of the two
    cites_fact_page: Share = Share()  # true claims labelled supported, the fact's page known: a citation is on it


class Failure(BaseModel):
    document: str
    kind: str
    category: str
    text: str
    expected: Label
    given: str
    quote: str | None  # what the first citation quotes
    cited: str | None  # where it points: "NAME page N"


class Report(BaseModel):
    overall: Rates
    by_kind: list[Rates]
    by_category: list[Rates]
    by_marker: list[Rates]
    confusion: dict[str, dict[str, int]]  # expected label -> given label -> claims
    failures: list[Failure]
    seconds: float | None = None  # the time the checking took


def score(claims: Sequence[Claim], checks: Sequence[Any], failures: int = 20, seconds: float | None = None) -> Report:
    """How the checks (anything with `.label` and `.citations`) label the claims, by kind, category and marker."""
    if len(claims) != len(checks):
        raise ValueError(f"{len(claims)} claims but {len(checks)} checks")
    overall = Rates(group="all")
    groups: dict[str, dict[str, Rates]] = {"kind": {}, "category": {}, "marker": {}}
    confusion: dict[str, dict[str, int]] = {e: {g: 0 for g in LABELS} for e in LABELS}
    wrong: dict[str, list[Failure]] = defaultdict(list)
    for claim, check in zip(claims, checks):
        label = str(getattr(check, "label", None))
        citations = list(getattr(check, "citations", None) or [])
        marker = "with a marker" if claim.marker else "without a marker"
        rows = [
            overall,
            groups["kind"].setdefault(claim.kind, Rates(group=claim.kind)),
            groups["category"].setdefault(claim.category, Rates(group=claim.category)),
            groups["marker"].setdefault(marker, Rates(group=marker)),
        ]
        for row in rows:
            _count(row, claim, label, citations)
        confusion[claim.expected][label] = confusion[claim.expected].get(label, 0) + 1
        if label != claim.expected:
            first = citations[0] if citations else None
            wrong[claim.kind].append(
                Failure(
                    document=claim.document,
                    kind=claim.kind,
                    category=claim.category,
                    text=claim.text,
                    expected=claim.expected,
                    given=label,
                    quote=getattr(first, "quote", None),
                    cited=f"{getattr(first, 'document', '?')} page {getattr(first, 'page', '?')}" if first else None,
                )
            )
    return Report(
        overall=overall,
        by_kind=[groups["kind"][k] for k in sorted(groups["kind"], key=_kind_order)],
        by_category=[groups["category"][k] for k in sorted(groups["category"])],
        by_marker=[groups["marker"][k] for k in sorted(groups["marker"])],
        confusion=confusion,
        failures=_spread(wrong, failures),
        seconds=seconds,
    )


def _count(row: Rates, claim: Claim, label: str, citations: list[Any]) -> None:
    row.claims += 1
    if claim.expected == "supported":
        (row.supported_true_marker if claim.marker else row.supported_true).add(label == "supported")
        if label == "supported" and claim.page is not None:
            row.cites_fact_page.add(
                any(
                    getattr(c, "page", None) == claim.page and getattr(c, "document", claim.document) == claim.document
                    for c in citations
                )
            )
        return
    row.false_not_supported.add(label != "supported")
    row.false_label_right.add(label == claim.expected)
    if label in ("contradicted", "not_found"):
        row.rejected_label_right.add(label == claim.expected)
    if claim.expected == "contradicted":
        row.contradicted_found.add(label == "contradicted")


def _kind_order(kind: str) -> tuple[int, str]:
    return (0 if kind.startswith("true") else 1, kind)


def _spread(wrong: dict[str, list[Failure]], limit: int) -> list[Failure]:
    """Up to `limit` failures, taken in turn from each kind, so that one kind's many do not hide the rest; within a
    kind in a fixed shuffled order, so that they are not all from the first document."""
    queues = [list(wrong[k]) for k in sorted(wrong, key=_kind_order)]
    for queue in queues:
        random.Random(SEED).shuffle(queue)
    chosen: list[Failure] = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


# --- Markdown --------------------------------------------------------------------------------------------------


def _markdown(built: ClaimSet, report: Report) -> str:
    claims = built.claims
    documents = len({c.document for c in claims})
    lines = [f"## Claim checking: {len(claims):,} claims over {documents} documents\n"]
    if report.seconds is not None:
        rate = len(claims) / max(report.seconds, 1e-9)
        lines.append(f"Checking took {report.seconds:.2f} s ({rate:,.0f} claims/s).\n")
    headers = [
        "group",
        "claims",
        "true → supported",
        "true + marker → supported",
        "false → not supported",
        "contradicted → contradicted",
        "false → exact label",
        "false, not supported → right one of the two",
        "supported, cites the fact's page",
    ]
    for title, rows in (("All", [report.overall]), ("By kind", report.by_kind), ("By category", report.by_category),
                        ("By marker", report.by_marker)):  # fmt: skip
        lines += [f"### {title}\n", markdown.table(headers)]
        for row in rows:
            lines.append(markdown.row([row.group, f"{row.claims:,}", row.supported_true, row.supported_true_marker,
                               row.false_not_supported, row.contradicted_found, row.false_label_right,
                               row.rejected_label_right, row.cites_fact_page]))  # fmt: skip
        lines.append("")
    lines += ["### Labels (expected → given)\n", markdown.table(["expected", *LABELS])]
    for expected, given in report.confusion.items():
        extra = {k: v for k, v in given.items() if k not in LABELS}
        row = markdown.row([expected, *(given.get(label, 0) for label in LABELS)])
        lines.append(row + (f" other: {extra}" if extra else ""))
    lines.append(f"\n### Failures (up to {len(report.failures)})\n")
    for failure in report.failures:
        quote = f' — quote: "{" ".join(failure.quote.split())}" ({failure.cited})' if failure.quote else ""
        lines.append(f"- [{failure.kind}, {failure.category}] {failure.document}: \"{failure.text}\" — expected "
                     f"{failure.expected}, given {failure.given}{quote}")  # fmt: skip
    lines += ["", "### Left out of the set\n", _dropped_summary(built.dropped)]
    return "\n".join(lines)


def _dropped_summary(dropped: Sequence[Dropped]) -> str:
    if not dropped:
        return "No truth fact was left out."
    reasons = Counter((d.reason, d.kept) for d in dropped)
    lines = [f"{sum(not d.kept for d in dropped)} truth facts left out and {sum(d.kept for d in dropped)} written "
             "without a part, because the document's text does not show them:"]  # fmt: skip
    for (reason, kept), count in reasons.most_common():
        examples = [f"{d.document}: {d.fact}" for d in dropped if (d.reason, d.kept) == (reason, kept)][:3]
        action = "written without it" if kept else "left out"
        lines.append(f"- {reason} ({action}): {count}, e.g. " + "; ".join(examples))
    return "\n".join(lines)



if __name__ == "__main__":
    main()
