"""What a note says of a thing it mentions: present, negated, historical, hypothetical, of the family or of someone
else. This is ConText (Harkema et al., 2009), NegEx's successor, over one sentence.

The negation triggers are negspacy's clinical NegEx term set. negspacy's own component works on spaCy entities
with a pipeline; here the mentions come from dictionaries with character offsets, so the triggers are applied to
the sentence's words directly. The other ConText categories (history, hypothesis, experiencer) have no term set
in a maintained PyPI package that installs beside negspacy (medspaCy pins an older spaCy and NumPy), so their
triggers, the short lists below, are written here from the ConText paper's categories.

A trigger covers the words after it (or, for one that follows, before it) up to `REACH` words, a terminating word
("but", "except", "which") or the sentence's end. A section decides before any trigger: a mention under Family
History is the family's.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal

from negspacy.termsets import termset

from documents.lexicons import words

Context = Literal["negated", "historical", "hypothetical", "family", "other"]

# How many words a trigger reaches: "She denies liver disease, kidney disease, cirrhosis, hepatitis, diabetes
# mellitus, thyroid disease, bleeding disorders, prior DVT, HIV and gout."
REACH = 20

_HISTORICAL = [
    "history of", "h/o", "hx of", "previous", "previously", "prior", "past", "distant history", "remote history",
    "in the past", "formerly", "used to", "had been", "status post", "s/p",
]
_HISTORICAL_AFTER = ["years ago", "in the past", "as a child", "previously", "resolved"]
_HYPOTHETICAL = [
    "if", "should", "in case", "in the event", "return for", "rule out", "r/o", "to rule out", "risk of",
    "at risk for", "concern for", "possible", "possibly", "probable", "suspicious of", "suspicious for", "consider",
    "could try", "may try", "evaluate for", "screen for", "screening for", "will obtain", "will check",
    "will need", "need", "needs", "wants", "planned", "plan", "pending", "as needed if", "such as", "potential",
    "risks", "complications", "option", "interested in", "candidate for", "considering", "would benefit",
]
_FAMILY = [
    "family history", "mother", "father", "sister", "brother", "sibling", "siblings", "aunt", "uncle", "grandmother",
    "grandfather", "cousin", "maternal", "paternal", "mother's", "father's", "parents", "son", "daughter",
]
_OTHER = ["boyfriend", "girlfriend", "friend", "wife", "husband", "partner", "roommate", "coworker", "spouse"]

_Terms = dict[str, list[tuple[str, ...]]]


def _index(phrases: list[str]) -> _Terms:
    """Trigger phrases by their first word, longest first: "no evidence of" is one trigger, not "no" alone."""
    by_first: _Terms = {}
    for phrase in sorted({tuple(word for word, _, _ in words(p)) for p in phrases}, key=len, reverse=True):
        if phrase:
            by_first.setdefault(phrase[0], []).append(phrase)
    return by_first


@cache
def _triggers() -> dict[str, _Terms]:
    negex = termset("en_clinical").get_patterns()
    return {
        "pseudo": _index(negex["pseudo_negations"]),
        "negated": _index(negex["preceding_negations"]),
        "negated_after": _index(negex["following_negations"]),
        "termination": _index(negex["termination"] + ["which", "who", "that", "because", "since", "due"]),
        "historical": _index(_HISTORICAL),
        "historical_after": _index(_HISTORICAL_AFTER),
        "hypothetical": _index(_HYPOTHETICAL),
        "family": _index(_FAMILY),
        "other": _index(_OTHER),
    }


def _at(spelled: list[str], i: int, terms: _Terms) -> int:
    for phrase in terms.get(spelled[i], ()):
        if tuple(spelled[i : i + len(phrase)]) == phrase:
            return len(phrase)
    return 0


# Between two words, a sentence's end stops every trigger's reach.
_SENTENCE_END = re.compile(r"[.;!?]\s|\n\s*\n")

# Triggers that stand before what they cover, and those that stand after it ("... ruled out", "... years ago").
_BEFORE: tuple[Context, ...] = ("negated", "historical", "hypothetical", "family", "other")
_AFTER: tuple[Context, ...] = ("negated", "historical")
# Whose a mention is reaches over a relative clause ("her mother, who has diabetes"); what is said of it does not.
_EXPERIENCERS = frozenset({"family", "other"})

# When two triggers cover a mention, the one that keeps it off the patient's list wins.
_PRECEDENCE: tuple[Context, ...] = ("negated", "family", "other", "hypothetical", "historical")


def context(sentence: str, start: int, end: int) -> Context | None:
    """The context of the mention `sentence[start:end]`: None when the sentence says it of the patient, now."""
    found = words(sentence)
    spelled = [word for word, _, _ in found]
    inside = [i for i, (_, s, e) in enumerate(found) if s >= start and e <= end]
    if not inside:
        return None
    first, last = inside[0], inside[-1]
    triggers = _triggers()
    hits: set[Context] = set()
    i = 0
    while i < len(spelled):
        # A pseudo-trigger ("no increase", "not only") is passed over whole; any other word is looked at once.
        step = 1
        if i not in inside:
            if length := _at(spelled, i, triggers["pseudo"]):
                step = length
            else:
                for kind in _BEFORE:
                    length = _at(spelled, i, triggers[kind])
                    if length and i + length - 1 < first and _reaches(
                            sentence, found, spelled, i + length, first, kind not in _EXPERIENCERS):
                        hits.add(kind)
                for kind in _AFTER:
                    if _at(spelled, i, triggers[f"{kind}_after"]) and i > last and _reaches(
                            sentence, found, spelled, last + 1, i, True):
                        hits.add(kind)
        i += step
    return next((kind for kind in _PRECEDENCE if kind in hits), None)


def _reaches(
    sentence: str, found: list[tuple[str, int, int]], spelled: list[str], start: int, stop: int, terminates: bool
) -> bool:
    """Whether a trigger ending before word `start` covers word `stop`: near enough, with no sentence's end and,
    when `terminates`, no terminating word between."""
    if stop - start >= REACH:
        return False
    termination = _triggers()["termination"]
    for j in range(start, stop):
        if terminates and _at(spelled, j, termination):
            return False
    gap = sentence[found[start - 1][2] if start else 0 : found[stop][1]]
    return not _SENTENCE_END.search(gap + " ")
