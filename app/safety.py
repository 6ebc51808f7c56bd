"""Warnings a clinician needs before relying on an answer.

Two kinds: the uploaded documents may be about different patients, so an answer could mix two
people's records; and a question asks for something Clinidoc does not do, which is anything
beyond reporting what this patient's record says.
"""

import re
import unicodedata
from collections.abc import Callable, Sequence

from documents import PatientIdentity

# --- Documents about different patients ---------------------------------------------------

_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof"})
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "md", "phd"})


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]+", text)


def _name_key(name: str) -> tuple[str, str]:
    """First and last name, lower case, without accents, titles, suffixes or middle names."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    plain = plain.lower().replace("'", "").replace("’", "")  # O'Brien is OBrien, not O Brien
    # "Betterhalf, Eve M." is Eve M. Betterhalf; the comma in "John Smith, Jr." is not that comma.
    parts = [part for part in plain.split(",") if not set(_words(part)) <= _SUFFIXES]
    if len(parts) > 1:
        plain = " ".join(parts[1:] + parts[:1])
    words = [word for word in _words(plain) if word not in _TITLES | _SUFFIXES]
    return (words[0], words[-1]) if words else ("", "")


def _mrn_key(mrn: str) -> str:
    # The same number is written "12-345" in one system and "12345" in another.
    return re.sub(r"[\s-]", "", mrn).lower()


def _same_age(first: str, second: str) -> bool:
    # Ages a year apart may be one patient's in notes written a year apart; further apart, two patients' (the
    # documents of one upload are rarely years apart).
    return abs(int(first) - int(second)) <= 1


# Each field compared: how the warning names it, its value in an identity, and when two values are the same.
_COMPARED: list[tuple[str, Callable[[PatientIdentity], str | None], Callable[[str, str], bool]]] = [
    ("name", lambda identity: identity.name, lambda one, other: _name_key(one) == _name_key(other)),
    ("date of birth", lambda identity: identity.birth_date, str.__eq__),
    ("medical record number", lambda identity: identity.mrn, lambda one, other: _mrn_key(one) == _mrn_key(other)),
    ("sex", lambda identity: identity.sex, str.__eq__),
    ("age", lambda identity: None if identity.age is None else str(identity.age), _same_age),
]


def patient_mismatch(identities: Sequence[tuple[str, PatientIdentity]]) -> str | None:
    """A warning when the documents, given as (name, identity), disagree about who the patient is; else None.

    Each field is compared only among the documents that give it, so a document that
    does not say who it is about neither agrees nor disagrees.
    """
    disagreements = []
    for label, value_of, same in _COMPARED:
        # Documents grouped by value; each group shows the value as its first document writes it.
        groups: list[tuple[str, list[str]]] = []
        for document, identity in identities:
            if (value := value_of(identity)) is None:
                continue
            group = next((group for group in groups if same(group[0], value)), None)
            if group is None:
                groups.append((value, [document]))
            else:
                group[1].append(document)
        if len(groups) > 1:
            first, *others = [f"'{value}' in {_joined(documents)}" for value, documents in groups]
            disagreements.append(f"{label} {first} but {_joined(others)}")
    if not disagreements:
        return None
    return (
        f"These documents may be about different patients: {'; '.join(disagreements)}. "
        "Check before relying on any answer."
    )


def patient_groups(identities: Sequence[tuple[str, PatientIdentity]]) -> list[list[str]]:
    """The documents, by name, grouped by patient: each joins the first group none of whose documents disagrees
    with it on any field both give, so documents that do not say who they are about join the first patient."""
    groups: list[list[tuple[str, PatientIdentity]]] = []
    for document, identity in identities:
        group = next((group for group in groups if not any(_disagree(identity, other) for _, other in group)), None)
        if group is None:
            groups.append([(document, identity)])
        else:
            group.append((document, identity))
    return [[document for document, _ in group] for group in groups]


def _disagree(first: PatientIdentity, second: PatientIdentity) -> bool:
    for _, value_of, same in _COMPARED:
        one, other = value_of(first), value_of(second)
        if one is not None and other is not None and not same(one, other):
            return True
    return False


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# --- Questions outside what Clinidoc does ---------------------------------------------------

DECISION_BOUNDARY = (
    "Clinidoc reports what this patient's record says; it does not make treatment decisions, "
    "which are yours as the clinician. You can ask what the record says, for example what was "
    "prescribed or what the plan is."
)
OFF_TOPIC_BOUNDARY = (
    "Clinidoc answers only questions about this patient's uploaded record, such as their "
    "medications, allergies, results or plan."
)

# What a clinician does to a treatment; "should I <verb>" with one of these asks for a decision.
_TREATMENT_VERBS = (
    r"(?:prescribe|give|start|stop|increase|decrease|reduce|raise|lower|switch|change|add|continue|discontinue"
    r"|hold|restart|resume|titrate|taper|administer|order|admit|discharge|refer|operate|treat|manage|do|use)"
)
_DONE_TO_PATIENT = (
    r"(?:prescribed|given|started|stopped|switched|changed|continued|discontinued|put|taken|kept|admitted"
    r"|discharged|referred|treated|operated)"
)

# Requests for a clinical decision or advice about what to do. A question about what the
# record says about a decision ("What did the doctor recommend?", "Was warfarin stopped?",
# "When should he follow up?") is in scope and must match none of these.
_DECISION_REQUESTS = [
    # "Should I prescribe amoxicillin?", "Can we safely stop the warfarin?", "What do you think I should do?"
    re.compile(
        rf"\b(?:(?:should|shall|can|could|may|must)\s+(?:i|we)|(?:i|we)\s+should)\s+(?:\w+\s+)?{_TREATMENT_VERBS}\b"
    ),
    # "Should she be started on a statin?": the decision, asked about the patient.
    re.compile(
        rf"^\W*should\s+(?:he|she|they|the\s+patient|(?:this|my)\s+patient)\s+(?:be\s+{_DONE_TO_PATIENT}"
        rf"|{_TREATMENT_VERBS})\b"
    ),
    # "What dose of metoprolol should I give?", "What dosage should she get?"
    re.compile(r"\bwhat\s+(?:dose|dosage|strength)\b[^?]*\bshould\b"),
    # "What would you recommend?", "Do you suggest surgery?", "your advice"
    re.compile(r"\b(?:would|do|can|could)\s+you\s+(?:recommend|suggest|advise)\b"),
    re.compile(r"\byour\s+(?:recommendation|advice|opinion|suggestion)s?\b"),
    # "What treatment is best?", "What's the best antibiotic for this?"
    re.compile(
        r"\b(?:treatment|therapy|medication|medicine|drug|antibiotic|option)s?\s+(?:is|are|would\s+be)\s+best\b"
    ),
    re.compile(r"\bbest\s+(?:treatment|therapy|medication|medicine|drug|antibiotic|option|dose|course)\b"),
    # "Is it safe to give her ibuprofen?", "Is it OK to discharge him?"
    re.compile(r"\bis\s+it\s+(?:safe|ok|okay|appropriate|reasonable|advisable)\s+to\b"),
]

# Requests unrelated to this patient's record.
_OFF_TOPIC_REQUESTS = [
    # Writing something other than an answer: "Write a poem", "draft an email to the family".
    re.compile(
        r"\b(?:write|compose|draft|generate|create|make\s+up)\s+(?:me\s+)?(?:\w+\s+){0,2}"
        r"(?:poem|haiku|limerick|song|story|stories|joke|essay|e-?mail|tweet)s?\b"
    ),
    re.compile(r"\btell\s+me\s+(?:a\s+|another\s+|some\s+)?jokes?\b"),
    # Programming. "Write the ICD code" is about the record: only a code, script or
    # program on its own, or a programming language, counts.
    re.compile(
        r"\b(?:write|generate|create|fix|debug)\s+(?:me\s+)?(?:a\s+|an\s+|some\s+|this\s+)?"
        r"(?:code|script|program|function|query)\b"
    ),
    re.compile(r"\b(?:python|javascript|typescript|sql|html|regex)\b"),
    # The weather and the news; "worse in cold weather" is about the patient and not matched.
    re.compile(r"\b(?:what(?:'s|\s+is)\s+the\s+weather|weather\s+(?:today|tomorrow|like|forecast)|forecast)\b"),
    re.compile(r"\b(?:latest|today'?s|current|world)\s+news\b|\bin\s+the\s+news\b|\bheadlines\b|\bstock\s+market\b"),
    # Chit-chat, when it is the whole question: "Hello!", "How are you?", "Who are you?"
    re.compile(
        r"^\W*(?:hi|hello|hey|good\s+(?:morning|afternoon|evening)|thanks|thank\s+you|how\s+are\s+you"
        r"|who\s+are\s+you|what(?:'s|\s+is)\s+your\s+name|are\s+you\s+(?:a\s+)?(?:human|real|robot|bot|ai)"
        r"|tell\s+me\s+about\s+yourself|what\s+can\s+you\s+do)\W*$"
    ),
    # Other patients: a session holds one patient's record.
    re.compile(r"\b(?:other|another|different)\s+patients?\b"),
]


def scope_boundary(question: str) -> str | None:
    """What Clinidoc tells a clinician whose question it should not answer; None for a question about the record."""
    # The patterns are written in lower case, with a plain apostrophe.
    text = question.lower().replace("’", "'")
    if any(pattern.search(text) for pattern in _DECISION_REQUESTS):
        return DECISION_BOUNDARY
    if any(pattern.search(text) for pattern in _OFF_TOPIC_REQUESTS):
        return OFF_TOPIC_BOUNDARY
    return None
