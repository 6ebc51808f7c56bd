"""Constrained decoding: with a JSON schema the answer always parses and follows the schema."""

from __future__ import annotations

import json
import threading
from typing import Annotated

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from engine import ChatMessage, EngineError, GenerationParams, TextDelta


# Bounded lengths bound the whole answer, so that a small model repeating itself still closes the JSON in time.
class Medication(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=30)
    dose: str = Field(max_length=20)


class MedicationList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    medications: list[Medication] = Field(max_length=3)
    allergies: list[Annotated[str, Field(max_length=30)]] = Field(max_length=3)


SCHEMA = MedicationList.model_json_schema()
NOTES = [
    "Medications: lisinopril 10 mg daily, metformin 500 mg twice daily. Allergies: penicillin (rash).",
    "The patient takes atorvastatin 20 mg at night and aspirin 81 mg. No known drug allergies.",
    "Home meds: levothyroxine 50 mcg every morning. Allergic to sulfa drugs and latex.",
]


def _messages(note: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"Extract the medications and allergies as JSON.\n\n{note}")]


def _answer(engine, note: str, **params) -> str:
    events = engine.generate(_messages(note), GenerationParams(max_new_tokens=400, json_schema=SCHEMA, **params))
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("note", NOTES)
def test_the_answer_parses_and_follows_the_schema(local_engine, note):
    parsed = MedicationList.model_validate_json(_answer(local_engine, note))
    assert isinstance(parsed.medications, list)


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_sampled_answers_follow_the_schema_too(local_engine):
    for seed in range(2):
        MedicationList.model_validate_json(_answer(local_engine, NOTES[0], temperature=0.7, seed=seed))


def test_drafting_leaves_a_constrained_answer_unchanged(local_engine):
    for note in NOTES[:2]:
        assert _answer(local_engine, note) == _answer(local_engine, note, draft_tokens=0)


def test_constrained_and_free_requests_share_a_batch(local_engine):
    results: dict[str, str] = {}

    def free() -> None:
        params = GenerationParams(max_new_tokens=40, ignore_eos=True, draft_tokens=0)
        events = local_engine.generate([ChatMessage(role="user", content="Describe a stethoscope.")], params)
        results["free"] = "".join(e.text for e in events if isinstance(e, TextDelta))

    thread = threading.Thread(target=free)
    thread.start()
    results["json"] = _answer(local_engine, NOTES[1], draft_tokens=0)
    thread.join(timeout=300)
    MedicationList.model_validate_json(results["json"])
    assert results["json"] == _answer(local_engine, NOTES[1], draft_tokens=0)
    assert results["free"]


def test_masks_for_a_draft_follow_the_grammar_token_by_token(local_engine):
    tokens = local_engine.tokenizer.encode('{"medications":[{"name":"aspirin","dose":"81 mg"}],"allergies":[]}')
    constraint = local_engine.grammar.constraint(SCHEMA)
    draft = constraint.valid_prefix(tokens[:6])
    assert draft == tokens[:6]
    logits = torch.zeros(len(draft) + 1, local_engine.config.vocab_size)
    rows = constraint.masked(logits, draft)
    step_by_step = local_engine.grammar.constraint(SCHEMA)
    for i, row in enumerate(rows):
        assert torch.equal(row, step_by_step.masked(logits[:1])[0])
        if i < len(draft):
            assert row[draft[i]] == 0  # the draft's own token is allowed where it stands
            step_by_step.consume(draft[i])
    assert constraint.valid_prefix([*tokens[:2], tokens[0]]) == tokens[:2]  # a second "{" there is refused


def test_an_unusable_schema_is_refused_with_a_reason(local_engine):
    with pytest.raises(EngineError, match="schema"):
        list(local_engine.generate(_messages(NOTES[0]), GenerationParams(json_schema={"type": "no-such-type"})))


def test_the_schema_survives_json(local_engine):
    params = GenerationParams(json_schema=SCHEMA)
    assert GenerationParams.model_validate_json(params.model_dump_json()).json_schema == json.loads(json.dumps(SCHEMA))
