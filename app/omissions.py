"""What a text leaves out of the record: the facts of clinical weight that no sentence of the text mentions.

A draft discharge summary can be true sentence by sentence and still dangerous for what it does not say. The facts
weighed here are those a clinician reads first, most weighty first: allergies, active medications, active
problems, abnormal recent results, pending follow-ups, then the other recent results, medications and problems.
Procedures, immunizations and encounters are history a text may leave out.

A sentence mentions a fact when it names it, whatever else it says of it (a wrong dose or a denial is the claim
check's business, not an omission):

- a medication: the sentence names each of its drugs, by any name the drug dictionary gives it ("Lasix" for
  furosemide), and when both give a dose, one of the sentence's doses is the fact's (so "Lasix 40 mg" does not
  mention the 10 mg/mL furosemide injection);
- an allergy, a problem, a follow-up: the sentence holds most of the fact's name by weight, its words read as the
  claim check reads them (abbreviations written out, stems, rare words weighing more) and a disease or drug name
  counting as any of the dictionary's names for it;
- a result: the same, or the sentence states its value (compared as numbers: "140.5" is 140.4608 rounded) next to
  any word of its name.

Sentences are compared item by item ("Allergies: nut, wheat and shellfish" names three things), and one item names
only the facts it matches best: "chronic sinusitis" names the record's chronic sinusitis, not its viral sinusitis
too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel

from app.citations import Citation, CitationNumbers
from app.claims import CheckedText, Record, check_text, same_number
from app.summary import by_concept, fact_text, is_abnormal, is_active, recent_results, span_located
from app.words import MINOR_WEIGHT, answer_sentences, read
from documents import Document, Fact
from documents.lexicons import Mention, diseases, drugs

# What an omitted fact is, most weighty first: the order in which omissions are listed.
OmissionCategory = Literal[
    "allergy", "active medication", "active problem", "abnormal result", "pending follow-up", "result",
    "medication", "problem",
]
WEIGHT_ORDER: tuple[OmissionCategory, ...] = OmissionCategory.__args__  # type: ignore[attr-defined]

# A sentence's item mentions a fact when it holds this share of the fact's name, by weight: "heart failure" names
# "chronic congestive heart failure", and a name's qualifier left out ("perennial") does not hide the fact.
MENTION_SHARE = 0.6
# A list's items, each compared alone and with its neighbours: a name may hold a comma ("Old lacunar infarct, right
# basal ganglia").
ITEMS_TOGETHER = 3

# Words that only say what kind of thing a name is: the record's own tags ("(disorder)", "[Mass/volume]") and, in an
# allergy, the word allergy itself, which every allergy shares.
_TAG = re.compile(r"\((?:disorder|finding|situation|procedure|morphologic abnormality|event)\)|\[[^\]]*\]", re.I)
_ALLERGY_WORDS = frozenset(word.key for word in read("allergy hypersensitivity intolerance"))
_ITEM_SEPARATOR = re.compile(r"[,;:]|\b(?:and|or|plus|with)\b|\s[-–—]\s")
_DOSE_UNIT = frozenset(word.key for word in read("mg mcg g ml units unit % meq mg/ml mg/dl iu"))


class Omission(BaseModel):
    """A fact of the record that a checked text does not mention, with the place that states it."""

    fact: str  # as the summary writes it
    category: OmissionCategory
    citation: Citation


@dataclass(frozen=True)
class _Part:
    """One thing a fact's name says: a word, or a drug's or disease's name, which any of its spellings says."""

    keys: tuple[frozenset[str], ...]  # any one of these sets of keys, all held, holds the part
    weight: float


@dataclass(frozen=True)
class _Weighed:
    fact: Fact
    document: Document
    category: OmissionCategory
    parts: tuple[_Part, ...]
    doses: frozenset[str]  # medications: the numbers of the doses the name gives


@dataclass(frozen=True)
class _Item:
    """A stretch of a checked sentence that may name a fact: its keys (words and dictionary codes) and numbers."""

    keys: frozenset[str]
    # Its keys but for the words of a drug's name, which name the drug: "naproxen sodium" says nothing of sodium.
    beside_drugs: frozenset[str]
    numbers: tuple[str, ...]
    doses: tuple[str, ...]


class ReviewedText(BaseModel):
    """A text checked against the record: each sentence labelled, and the weighty facts it leaves out, their
    citations numbered after the sentences' own."""

    checked: CheckedText
    omissions: list[Omission]


def review(text: str, record: Record) -> ReviewedText:
    """What the record says of each sentence of `text`, and what of the record `text` does not say."""
    numbers = CitationNumbers()
    checked = check_text(text, record, numbers)
    omitted = omissions(text, record.documents, numbers)
    return ReviewedText(checked=checked.model_copy(update={"citations": list(numbers.citations)}), omissions=omitted)


def omissions(text: str, documents: Sequence[Document], numbers: CitationNumbers | None = None) -> list[Omission]:
    """The weighty facts of `documents` that no sentence of `text` mentions, most weighty first, each cited with a
    number after those `numbers` already holds."""
    numbers = numbers or CitationNumbers()
    facts = weighed_facts(documents)
    mentioned = _mentioned(facts, list(_items(text)))
    omitted = [fact for index, fact in enumerate(facts) if index not in mentioned]
    omitted.sort(key=lambda weighed: WEIGHT_ORDER.index(weighed.category))
    return [
        Omission(
            fact=fact_text(weighed.fact), category=weighed.category,
            citation=numbers.citations[numbers.add(span_located(weighed.document, weighed.fact.span)) - 1],
        )
        for weighed in omitted
    ]


def weighed_facts(documents: Sequence[Document]) -> list[_Weighed]:
    """The record's facts that a text about the patient should not leave out unsaid, one per thing (the latest
    entry of each medication, problem or test), with what a sentence must say to mention each."""
    read_facts = [(document, fact) for document in documents for fact in document.facts if fact.listable]

    def of(*categories: str) -> list[tuple[Document, Fact]]:
        return [(document, fact) for document, fact in read_facts if fact.category in categories]

    weighed: list[_Weighed] = []
    for group in by_concept(of("allergy")):
        weighed.append(_weigh(*group[-1], "allergy"))
    for group in by_concept(of("medication")):
        weighed.append(_weigh(*group[-1], "active medication" if is_active(group[-1][1]) else "medication"))
    for group in by_concept(of("condition")):
        weighed.append(_weigh(*group[-1], "active problem" if is_active(group[-1][1]) else "problem"))
    for group in recent_results(of("lab", "vital"))[0]:
        document, latest = group[-1]
        weighed.append(_weigh(document, latest, "abnormal result" if is_abnormal(latest) else "result"))
    for document, fact in of("follow_up"):
        weighed.append(_weigh(document, fact, "pending follow-up"))
    return [fact for fact in weighed if fact.parts]


# --- What a fact's name says ------------------------------------------------------------------------------------


def _weigh(document: Document, fact: Fact, category: OmissionCategory) -> _Weighed:
    if fact.category == "medication":
        # A medication's brackets give its brand ("[Toprol]"), which names the same drug.
        parts = _drug_parts(fact.name)
        doses = frozenset(_doses(fact.name))
    else:
        ignored = _ALLERGY_WORDS if fact.category == "allergy" else frozenset()
        parts = _name_parts(_TAG.sub(" ", fact.name), ignored)
        doses = frozenset()
    return _Weighed(fact, document, category, parts, doses)


def _drug_parts(name: str) -> tuple[_Part, ...]:
    """Each drug a medication's name gives, once however many of its names it gives ("metoprolol … [Toprol]"),
    said by any of its names or by the words the medication's name gives it (a sentence's "amoxicillin and
    clavulanic acid" is one name in the dictionary, the record's "Amoxicillin 250 MG / Clavulanate 125 MG" two); a
    name the dictionary does not know is known by its rarest words."""
    spellings: dict[str, set[frozenset[str]]] = {}
    for mention in drugs().find(name):
        words = frozenset(word.key for word in read(name[mention.start : mention.end]) if word.kind == "word")
        spellings.setdefault(mention.term.code, {frozenset({mention.term.code})}).add(words)
    if spellings:
        return tuple(_Part(tuple(keys for keys in alternatives if keys), 1.0) for alternatives in spellings.values())
    words = [word for word in read(name) if word.kind == "word" and word.weight > 0]
    rarest = max((word.weight for word in words), default=0.0)
    return tuple(_Part((frozenset({word.key}),), word.weight) for word in words if word.weight == rarest)


def _name_parts(name: str, ignored: frozenset[str]) -> tuple[_Part, ...]:
    """Each word of a name, or each drug or disease name in it, which any of the dictionary's names for it says."""
    mentions = _dictionary_names(name)
    parts = []
    covered: dict[int, list[str]] = {index: [] for index in range(len(mentions))}
    weights: dict[int, float] = {index: 0.0 for index in range(len(mentions))}
    for word in read(name):
        if word.kind != "word" or word.key in ignored:
            continue
        # A framing word ("history of") weighs nothing in a claim, but tells "History of cardiac arrest" from
        # "Cardiac arrest" when both are on the record.
        word = replace(word, weight=max(word.weight, MINOR_WEIGHT))
        inside = next((i for i, mention in enumerate(mentions) if mention.start <= word.start < mention.end), None)
        if inside is None:
            parts.append(_Part((frozenset({word.key}),), word.weight))
        else:
            covered[inside].append(word.key)
            weights[inside] += word.weight
    for index, mention in enumerate(mentions):
        if covered[index]:
            parts.append(_Part((frozenset({mention.term.code}), frozenset(covered[index])), weights[index]))
    return tuple(parts)


def _dictionary_names(text: str) -> list[Mention]:
    """The disease and drug names of a text ("carbon dioxide" is a drug as well as a test), disease names first where
    they overlap."""
    names = diseases().find(text)
    names += [drug for drug in drugs().find(text) if not any(
        name.start < drug.end and drug.start < name.end for name in names
    )]
    return names


def _doses(text: str) -> list[str]:
    """The numbers of the doses a text states: each number followed by a unit of dose ("40 mg", "10 MG/ML")."""
    words = read(text)
    return [
        word.value for word, after in zip(words, words[1:]) if word.kind == "number" and after.key in _DOSE_UNIT
    ]


# --- What a text mentions ---------------------------------------------------------------------------------------


def _items(text: str) -> Iterable[_Item]:
    """Each item of each sentence of `text`, alone and with up to ITEMS_TOGETHER - 1 items after it."""
    for start, end in answer_sentences(text):
        sentence = text[start:end]
        cuts = [0] + [match.end() for match in _ITEM_SEPARATOR.finditer(sentence)] + [len(sentence)]
        pieces = [sentence[a:b] for a, b in zip(cuts, cuts[1:]) if sentence[a:b].strip()]
        for first in range(len(pieces)):
            for last in range(first + 1, min(first + ITEMS_TOGETHER, len(pieces)) + 1):
                yield _item("".join(pieces[first:last]))


def _item(text: str) -> _Item:
    words = read(text)
    drug_names = drugs().find(text)
    codes = {mention.term.code for mention in drug_names + diseases().find(text)}
    in_drug_name = {
        word.key for word in words if any(name.start <= word.start < name.end for name in drug_names)
    }
    keys = frozenset(word.key for word in words if word.kind == "word")
    return _Item(
        keys=keys | codes,
        beside_drugs=(keys - in_drug_name) | codes,
        numbers=tuple(word.value for word in words if word.kind == "number"),
        doses=tuple(_doses(text)),
    )


def _mentioned(facts: Sequence[_Weighed], items: Sequence[_Item]) -> set[int]:
    """The indices of the facts some item mentions. An item names every medication whose drugs and dose it gives
    (two prescriptions of one drug are both named by the drug's name); of each other kind of fact, only those it
    matches best: the value it states, then the most of their name held, then the fewest words of its own left
    over."""
    mentioned: set[int] = set()
    for item in items:
        best: dict[str, tuple[tuple[bool, float, float], list[int]]] = {}
        for index, fact in enumerate(facts):
            score = _match(fact, item)
            if score is None:
                continue
            kind = fact.fact.category
            if kind == "medication":
                mentioned.add(index)
                continue
            if kind not in best or score > best[kind][0]:
                best[kind] = (score, [index])
            elif score == best[kind][0]:
                best[kind][1].append(index)
        for _, indices in best.values():
            mentioned.update(indices)
    return mentioned


def _match(fact: _Weighed, item: _Item) -> tuple[bool, float, float] | None:
    """How well an item names a fact, (whether it states the fact's value, share of its name held, share of the
    item's words that are the fact's); None when it does not name it."""
    said = item.keys if fact.fact.category == "medication" else item.beside_drugs
    held = [part for part in fact.parts if any(keys <= said for keys in part.keys)]
    total = sum(part.weight for part in fact.parts)
    share = sum(part.weight for part in held) / total
    stated = False
    if fact.fact.category == "medication":
        names = len(held) == len(fact.parts)
        if fact.doses and item.doses and not any(same_number(dose, mine) for dose in fact.doses for mine in item.doses):
            names = False
    elif fact.fact.category in ("lab", "vital"):
        value = fact.fact.value
        stated = value is not None and bool(held) and any(_same_value(number, value) for number in item.numbers)
        names = share >= MENTION_SHARE or stated
    else:
        names = share >= MENTION_SHARE
    if not names:
        return None
    fact_keys = {key for part in fact.parts for keys in part.keys for key in keys}
    return stated, share, len(fact_keys & said) / len(said)


def _same_value(claimed: str, stated: str) -> bool:
    try:
        return same_number(claimed, stated)
    except ValueError:  # a value that is no number ("Pending", "positive")
        return False
