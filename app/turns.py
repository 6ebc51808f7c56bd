"""A session's conversation as typed turns: the only code that writes turns to storage and rebuilds them.

A turn is a question and what answered it: an answer (the model's own words, each sentence checked against the
record, the evidence found before the model wrote, the app's notes on what the model did not read or where it
stopped) or a structured summary; or nothing, when the turn was stopped, failed or was interrupted. Storage keeps
the question when it is asked (`begin`, state "answering"), and the answer in the same transaction that ends the
turn (`save`; `end_unanswered` for a turn without one). The answer row's JSON holds the checks, the evidence and
the notes apart from the model's words, so the history given to the model holds only questions and the model's
own text, and never a turn that was not answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from app.citations import Citation
from app.claims import CheckedSentence, CheckedText
from app.evidence import EvidenceSearch
from app.summary import ChartSummary, PatientSummary, SummaryItem, SummarySection
from engine import Stats
from prompts import PromptMessage
from storage import Database, MessageInfo, NewMessage, TurnState, add_message, end_turn, list_messages

# What the stored conversation shows for the request of a summary.
SUMMARY_REQUEST = "Summarise this record."

# How an answer ended: the model finished; or it was stopped for repeating itself, or at its token limit, or by the
# clinician. A stopped answer is kept with a note saying so.
Ending = Literal["finished", "loop", "limit", "stopped"]


class AnswerTurn(BaseModel):
    kind: Literal["answer"] = "answer"
    question: str
    text: str  # the model's words alone
    checked: CheckedText  # its sentences labelled, with their citations (the evidence's first)
    evidence: EvidenceSearch | None  # the lines found for the question before the model wrote
    evidence_citations: list[int] = []  # the citation number of each evidence line, in order
    notes: list[str] = []  # the app's own notes: what the model did not read, why the answer stopped
    ending: Ending = "finished"
    disclaimer: str
    model: str
    prompt_version: str
    stats: Stats | None
    created_at: datetime | None = None


class SummaryTurn(BaseModel):
    kind: Literal["summary"] = "summary"
    summary: ChartSummary
    disclaimer: str
    model: str
    prompt_version: str
    stats: Stats | None
    created_at: datetime | None = None


class UnansweredTurn(BaseModel):
    """A question that has no answer: being answered now, stopped, failed (with the reason said to the clinician),
    or interrupted when Clinidoc stopped while the model was writing."""

    kind: Literal["unanswered"] = "unanswered"
    question: str
    request: Literal["answer", "summary"]
    state: TurnState
    reason: str | None = None
    created_at: datetime | None = None


Turn = AnswerTurn | SummaryTurn | UnansweredTurn


def begin(db: Database, user: str, session_id: int, question: str | None) -> int:
    """Stores a question as it is asked (None: the request of a summary), its turn "answering"; returns its id."""
    kind = "chat" if question is not None else "summary"
    stored = add_message(db, user, session_id, "user", question or SUMMARY_REQUEST, kind=kind, state="answering")
    return stored.id


def end_unanswered(
    db: Database, user: str, session_id: int, question_id: int, state: TurnState, reason: str | None = None
) -> None:
    """Ends the question's turn without an answer: "stopped" by the clinician, or "failed" for `reason`."""
    end_turn(db, user, session_id, question_id, state, reason=reason)


def save(db: Database, user: str, session_id: int, question_id: int, turn: AnswerTurn | SummaryTurn) -> Turn:
    """Stores the answer and ends its question's turn, in one transaction; returns the turn with its time."""
    common = {
        "disclaimer": turn.disclaimer, "model": turn.model, "prompt_version": turn.prompt_version,
        "stats": None if turn.stats is None else turn.stats.model_dump(exclude={"kind"}),
    }
    if isinstance(turn, AnswerTurn):
        details = turn.model_dump(include={"checked", "evidence", "evidence_citations", "notes", "ending"})
        details["checked"].pop("citations")
        answer = NewMessage(
            role="assistant", text=turn.text, citations=[c.model_dump() for c in turn.checked.citations],
            grounding=details, **common,
        )
    else:
        answer = NewMessage(
            role="assistant", text="", kind="summary", citations=[c.model_dump() for c in turn.summary.citations],
            grounding=turn.summary.model_dump(exclude={"citations"}), **common,
        )
    state = "stopped" if isinstance(turn, AnswerTurn) and turn.ending == "stopped" else "answered"
    stored = end_turn(db, user, session_id, question_id, state, answer)
    return turn.model_copy(update={"created_at": stored.created_at})


def load(db: Database, user: str, session_id: int) -> list[Turn]:
    """The session's turns in conversation order."""
    turns: list[Turn] = []
    question: MessageInfo | None = None
    for message in list_messages(db, user, session_id):
        if message.role == "user":
            if question is not None:
                turns.append(_unanswered(question))
            question = message
        elif question is not None:
            turns.append(_rebuilt(question, message))
            question = None
    if question is not None:
        turns.append(_unanswered(question))
    return turns


def _unanswered(question: MessageInfo) -> UnansweredTurn:
    return UnansweredTurn(
        question=question.text, request="summary" if question.kind == "summary" else "answer", state=question.state,
        reason=(question.grounding or {}).get("reason"), created_at=question.created_at,
    )


def history(turns: list[Turn]) -> list[PromptMessage]:
    """What the model reads of the conversation: each question and the model's own answer to it. A summary
    restates the record the prompt already holds, and the app's notes, labels and evidence are not the model's."""
    messages = []
    for turn in turns:
        if isinstance(turn, AnswerTurn) and turn.text:
            messages += [
                PromptMessage(role="user", content=turn.question), PromptMessage(role="assistant", content=turn.text)
            ]
    return messages


def _rebuilt(question: MessageInfo, answer: MessageInfo) -> Turn:
    common: dict[str, Any] = {
        "disclaimer": answer.disclaimer or "", "model": answer.model or "",
        "prompt_version": answer.prompt_version or "",
        "stats": None if answer.stats is None else Stats.model_validate(answer.stats), "created_at": answer.created_at,
    }
    citations = [Citation.model_validate(citation) for citation in answer.citations]
    details = answer.grounding or {}
    if answer.kind == "summary":
        if "patients" in details:
            return SummaryTurn(summary=ChartSummary.model_validate({**details, "citations": citations}), **common)
        return SummaryTurn(summary=_older_summary(details, citations), **common)
    if "checked" in details:
        checked = CheckedText.model_validate({**details["checked"], "citations": citations})
        return AnswerTurn(
            question=question.text, text=answer.text, checked=checked, evidence=details.get("evidence"),
            evidence_citations=details.get("evidence_citations", []), notes=details.get("notes", []),
            ending=details.get("ending", "finished"), **common,
        )
    checked = _older_checks(details, citations)
    return AnswerTurn(question=question.text, text=answer.text, checked=checked, evidence=None, **common)


# Answers stored before the three labels said "not_supported" for a sentence the record did not support and
# "no_claim" for one that claimed nothing; both are now "not found".
_OLDER_LABELS = {"supported": "supported", "not_supported": "not_found", "no_claim": "not_found"}


def _older_checks(details: dict[str, Any], citations: list[Citation]) -> CheckedText:
    sentences = [
        CheckedSentence(
            text=sentence["text"], start=sentence["start"], end=sentence["end"],
            label=_OLDER_LABELS.get(sentence["label"], "not_found"), citations=sentence.get("citations", []),
        )
        for sentence in details.get("sentences", [])
    ]
    return CheckedText(sentences=sentences, citations=citations)


def _older_summary(details: dict[str, Any], citations: list[Citation]) -> ChartSummary:
    """A summary stored before summaries had a part per patient: its lists as one part, its items' single
    citations as lists, its narrative's labels as now."""

    def item(values: dict[str, Any]) -> SummaryItem:
        citation = values.get("citation")
        return SummaryItem(
            text=values["text"], origin=values.get("origin", "record"),
            citations=[] if citation is None else [citation],
            quote=values.get("quote"), unsupported=values.get("unsupported"),
        )

    sections = [
        SummarySection(
            key=section["key"], title=section["title"], more=section.get("more", 0),
            items=[item(values) for values in section["items"] if values.get("citation") is not None],
        )
        for section in details.get("sections", [])
    ]
    unverified = [
        item(values) for section in details.get("sections", []) for values in section["items"]
        if values.get("citation") is None
    ]
    patient = PatientSummary(
        label="Patient", documents=[], identity=[item(values) for values in details.get("patient", [])],
        sections=sections,
    )
    narrative = _older_checks({"sentences": details.get("narrative", [])}, citations).sentences
    return ChartSummary(
        patients=[patient], narrative=narrative, citations=citations, warnings=details.get("warnings", []),
        unverified=unverified, notes=details.get("notes", []),
    )
