"""app.turns: a turn written to a real SQLite file comes back as it was, questions and answers in one transaction,
and the history the model reads holds only questions and the model's own words."""

from __future__ import annotations

from pathlib import Path

import pytest

import documents
from app import turns
from app.claims import check_text
from app.evidence import find_evidence
from app.turns import AnswerTurn
from engine import Stats
from prompts import disclaimer
from storage import NewDocument, add_message, create_session, interrupt_turns, list_messages, open_database
from conftest import CLINICIAN

NOTE = NewDocument(name="note.txt", sha256="0" * 64, kind="txt", page_texts=["A note."], tokens=3)

RHINITIS = "mtsamples_allergic_rhinitis.txt"


def test_an_answer_turn_is_stored_whole_and_rebuilt(corpus: Path, tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.sqlite3")
    session = create_session(db, CLINICIAN.name, "s", [NOTE])
    note = documents.load(corpus / RHINITIS)
    text = "She takes Ortho Tri-Cyclen and Allegra. She takes warfarin."
    turn = AnswerTurn(
        question="What does she take?", text=text, checked=check_text(text, [note]),
        evidence=find_evidence("What does she take?", [note]), evidence_citations=[1],
        notes=["The answer was stopped where it began repeating itself."], ending="loop", disclaimer=disclaimer(),
        model="m", prompt_version="answer-v2",
        stats=Stats(prompt_tokens=10, generated_tokens=5, ttft_s=0.1, decode_tok_s=3.0, finish_reason="stop"),
    )

    question_id = turns.begin(db, CLINICIAN.name, session.id, "What does she take?")
    saved = turns.save(db, CLINICIAN.name, session.id, question_id, turn)

    [rebuilt] = turns.load(db, CLINICIAN.name, session.id)
    assert rebuilt == saved and saved.created_at is not None
    question, answer = list_messages(db, CLINICIAN.name, session.id)
    assert (question.text, answer.text) == ("What does she take?", text)  # the model's words alone
    assert turns.history([rebuilt])[1].content == text


def test_answers_stored_before_the_three_labels_are_read_with_them(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.sqlite3")
    session = create_session(db, CLINICIAN.name, "s", [NOTE])
    older = {"sentences": [
        {"text": "She takes Allegra.", "start": 0, "end": 18, "label": "supported", "citations": [1]},
        {"text": "The record does not say.", "start": 19, "end": 43, "label": "no_claim", "citations": []},
        {"text": "She takes warfarin.", "start": 44, "end": 63, "label": "not_supported", "citations": []},
    ]}
    citation = {"number": 1, "document": "n.txt", "page": 1, "start": 0, "end": 7, "quote": "Allegra",
                "match": "fuzzy", "score": 80.0}
    add_message(db, CLINICIAN.name, session.id, "user", "What?")
    add_message(db, CLINICIAN.name, session.id, "assistant", "She takes Allegra. The record does not say. She takes warfarin.",
                disclaimer=disclaimer(), citations=[citation], grounding=older)
    add_message(db, CLINICIAN.name, session.id, "user", "A question whose answer was never stored")

    turn, unanswered = turns.load(db, CLINICIAN.name, session.id)
    assert unanswered.kind == "unanswered" and unanswered.question == "A question whose answer was never stored"
    assert turn.checked.labels() == ["supported", "not_found", "not_found"]
    assert turn.checked.citations[0].quote == "Allegra"


def test_a_question_is_stored_when_asked_and_its_turn_ends_once(tmp_path: Path) -> None:
    """A question is kept from the moment it is asked; a turn without an answer says how it ended and why, is never
    in what the model reads, and a turn cut off by a crash is found "answering" and marked interrupted."""
    db = open_database(tmp_path / "t.sqlite3")
    session = create_session(db, CLINICIAN.name, "s", [NOTE])
    failed = turns.begin(db, CLINICIAN.name, session.id, "What is her INR?")
    [turn] = turns.load(db, CLINICIAN.name, session.id)
    assert (turn.kind, turn.state) == ("unanswered", "answering")
    turns.end_unanswered(db, CLINICIAN.name, session.id, failed, "failed", reason="The model server did not answer.")
    with pytest.raises(ValueError, match="not being answered"):
        turns.end_unanswered(db, CLINICIAN.name, session.id, failed, "stopped")
    turns.begin(db, CLINICIAN.name, session.id, None)  # a summary, cut off by a crash

    assert interrupt_turns(db) == [(CLINICIAN.name, session.id, "summary")]
    first, second = turns.load(db, CLINICIAN.name, session.id)
    assert (first.state, first.reason, first.request) == ("failed", "The model server did not answer.", "answer")
    assert (second.state, second.request) == ("interrupted", "summary")
    assert turns.history([first, second]) == []
    assert interrupt_turns(db) == []
