"""The structured summary: facts read from FHIR and C-CDA entries, drafted items checked against the record, and the
whole pipeline with the real model, its grammar and a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CCDA_FILES, FHIR_FILES, RecordingEngine

from app.assistant import Assistant, Summary, SummaryProgress, read_upload
from app.citations import verify
from app.evaluation import compare_facts
from app.render import Items, layout, markdown
from app.settings import Settings
from app.summary import ChartSummary, SummaryDraft, SummarySection, build_summary, draft_schema, parse_draft
from app.turns import SummaryTurn
from app.waiting import Waiting
from documents import load
from engine import LocalEngine
from prompts import disclaimer
from storage import list_messages, open_database
from conftest import CLINICIAN

RHINITIS = "mtsamples_allergic_rhinitis.txt"
STRUCTURED = FHIR_FILES + CCDA_FILES


def truth(corpus: Path, name: str) -> dict:
    return json.loads((corpus / "truth" / f"{Path(name).stem}.json").read_text())


def sections(summary: ChartSummary, patient: int = 0) -> dict[str, SummarySection]:
    return {section.key: section for section in summary.patients[patient].sections}


def summary_markdown(summary: ChartSummary) -> str:
    turn = SummaryTurn(summary=summary, disclaimer=disclaimer(), model="test", prompt_version="test", stats=None)
    return markdown(layout(turn))


# Truth facts that neither a coded entry of their C-CDA document nor the reading of its free-text sections gives:
# "Hypertension", which the entries code as "Hypertensive disorder, systemic arterial" and the narrative names
# only as a medication's indication. Only the model's draft can list it.
NARRATIVE_ONLY = {
    "ccda_ccd_eve_betterhalf.xml": {"conditions": 1},
    "ccda_progress_note_adam_everyman.xml": {"conditions": 1},
    "ccda_referral_note_eve_betterhalf.xml": {"conditions": 1},
}


@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_records_give_every_coded_truth_fact_read_from_their_entries(corpus: Path, name: str) -> None:
    document = load(corpus / name)
    # No model at all: the lists of a structured record are read, not written.
    summary = build_summary([document], SummaryDraft())

    counts = compare_facts(summary, truth(corpus, name)["facts"])
    missed = {category: c.truth - c.found for category, c in counts.items() if c.found != c.truth}
    assert missed == NARRATIVE_ONLY.get(name, {})
    # Read from the entries, or from the free-text sections (a C-CDA's Assessment) without a model.
    assert {item.origin for _, item in summary.shown_as_fact()} <= {"record", "text"}
    assert summary.citations and all(verify(citation, [document]) for citation in summary.citations)
    assert all(citation.match == "record" for citation in summary.citations)


def test_a_long_list_shows_its_latest_entries_and_says_how_many_more(corpus: Path) -> None:
    document = load(corpus / "synthea_fhir_dennis_durgan.json")
    labs = sections(build_summary([document], SummaryDraft()))["labs"]
    assert len(labs.items) >= 12 and labs.more == len(labs.hidden) > 0
    # The limit never splits a draw: the tests of the last date shown are all there.
    shown = {item.text.split(":")[0] for item in labs.items}
    last_date = min(item.text.split("; ")[1] for item in labs.items)
    labs_that_day = {fact.name for fact in document.facts if fact.category == "lab" and fact.date == last_date}
    assert labs_that_day <= shown
    # The latest value of each test comes with the values before it and the direction it moved.
    assert any("before:" in item.text and any(arrow in item.text for arrow in "↑↓→") for item in labs.items)
    encounters = sections(build_summary([document], SummaryDraft()))["encounters"]
    assert encounters.more == len(encounters.hidden) > 0
    # Behind "show all", in the Markdown and the HTML alike.
    shown = markdown([Items("Encounters", encounters.items, encounters.hidden, encounters.more)])
    assert f"Show all {len(encounters.items) + encounters.more}" in shown
    assert all(item.text in shown for item in encounters.hidden)
    dates = [item.text.split("; ")[-2] for item in encounters.items]
    assert dates == sorted(dates)


def test_drafted_items_are_cited_only_when_their_quote_is_in_the_record_and_names_them(corpus: Path) -> None:
    document = load(corpus / RHINITIS)
    text = document.pages[0].text
    line = "She has used Allegra also."
    assert line in text
    draft = SummaryDraft.model_validate(
        {
            "medications": [
                # A true quote, copied with the spacing and case a small model gets wrong.
                {"name": "Allegra", "dose": None, "route": None, "frequency": None, "status": None,
                 "quote": "  " + line.upper() + " "},
                {"name": "Warfarin", "dose": "5 mg", "route": None, "frequency": "daily", "status": "active",
                 "quote": "warfarin 5 mg daily"},
                # A real quote about something else does not support the item.
                {"name": "Lisinopril", "dose": None, "route": None, "frequency": None, "status": None,
                 "quote": line},
            ],
            "narrative": "She has allergic rhinitis. She was admitted for a myocardial infarction.",
        }
    )

    summary = build_summary([document], draft)

    # Only the item the record bears out is listed; the other two are counted, not shown as items. The extractor
    # already read Allegra from the text, so the draft adds its citation to that item, not a second item.
    items = sections(summary)["medications"].items
    [allegra] = [item for item in items if "Allegra" in item.text]
    assert allegra.origin == "text" and len(allegra.citations) == 2
    assert not [item for item in items if item.origin == "model"]
    cited = summary.citations[allegra.citations[-1] - 1]
    assert "Allegra" in cited.quote and verify(cited, [document])
    warfarin, lisinopril = summary.unverified
    assert (warfarin.unsupported, lisinopril.unsupported) == ("quote not found", "quote does not name it")
    first, second = summary.narrative
    assert (first.label, second.label) == ("supported", "not_found")
    assert first.citations and all(number <= len(summary.citations) for number in first.citations)

    text = summary_markdown(summary)
    assert "Warfarin" not in text and "Lisinopril" not in text
    assert "2 items the model suggested could not be verified in the record and are not listed." in text
    assert "⟨not found in the record⟩" in text
    assert f"” — page 1 [{allegra.citations[0]}]" in text


def test_a_drafted_item_that_a_structured_entry_lists_is_not_shown_twice(corpus: Path) -> None:
    fhir = load(corpus / "synthea_fhir_dennis_durgan.json")
    note = load(corpus / RHINITIS)
    line = next(line for line in fhir.pages[0].text.splitlines() if "Hypertension" in line)
    draft = SummaryDraft.model_validate({"problems": [{"name": "Hypertension", "status": None, "quote": line}]})

    summary = build_summary([fhir, note], draft)

    # The note's patient is another person (a 23-year-old woman; Dennis Durgan is a man): a part of their own.
    assert [patient.label for patient in summary.patients] == ["Dennis Durgan", "Unnamed 23-year-old female patient"]
    [hypertension] = [item for item in sections(summary)["problems"].items if "Hypertension" in item.text]
    # Listed once, from the entry, with the draft's quote of the same line as a citation of it.
    assert hypertension.origin == "record"


def test_documents_about_different_patients_are_flagged_in_the_summary(corpus: Path) -> None:
    eve = load(corpus / "ccda_ccd_eve_betterhalf.xml")
    adam = load(corpus / "ccda_progress_note_adam_everyman.xml")

    summary = build_summary([eve, adam], SummaryDraft())

    [warning] = summary.warnings
    assert "Eve" in warning and "Adam" in warning
    assert summary_markdown(summary).startswith("**Warning:**")
    # Each patient has a part of their own, and no list holds the other's entries.
    eve_part, adam_part = summary.patients
    assert (eve_part.label, eve_part.documents) == ("Eve Betterhalf", [eve.name])
    assert (adam_part.label, adam_part.documents) == ("Adam Frankie Everyman", [adam.name])
    for part, other in ((eve_part, adam), (adam_part, eve)):
        numbers = [number for section in part.sections for item in section.items for number in item.citations]
        assert all(summary.citations[number - 1].document != other.name for number in numbers)


def test_no_trend_combines_two_patients_values(corpus: Path) -> None:
    dennis = load(corpus / "synthea_fhir_dennis_durgan.json")
    asa = load(corpus / "synthea_fhir_asa_hermiston.json")
    summary = build_summary([dennis, asa], SummaryDraft())
    assert len(summary.patients) == 2
    for part in summary.patients:
        for section in part.sections:
            for item in section.items:
                assert {summary.citations[number - 1].document for number in item.citations} <= set(part.documents)


def test_a_patient_who_died_is_said_to_have_died_and_has_no_active_medication(corpus: Path) -> None:
    dennis = load(corpus / "synthea_fhir_dennis_durgan.json")
    summary = build_summary([dennis], SummaryDraft())
    [part] = summary.patients
    assert part.died == "2008-11-12"
    assert "Died: 2008-11-12" in part.identity[0].text
    medications = sections(summary)["medications"].items
    assert medications and not any(item.text.endswith("; active") for item in medications)
    assert any(item.text.endswith("; last recorded active") for item in medications)


def test_an_item_read_from_several_entries_is_listed_once_with_all_their_citations(corpus: Path) -> None:
    stevie = load(corpus / "synthea_fhir_dennis_durgan.json")
    summary = build_summary([stevie], SummaryDraft())
    names = [item.text.split(";")[0] for section in summary.patients[0].sections for item in section.items
             if section.key in ("problems", "medications", "allergies")]
    assert len(names) == len(set(names))
    assert any(len(item.citations) > 1 for item in sections(summary)["problems"].items)


def test_the_model_writes_only_the_narrative_and_follow_ups_of_a_fhir_record(corpus: Path) -> None:
    fhir = load(corpus / "synthea_fhir_dennis_durgan.json")
    ccda = load(corpus / "ccda_progress_note_adam_everyman.xml")
    note = load(corpus / RHINITIS)

    assert set(draft_schema([fhir])["properties"]) == {"follow_ups", "narrative"}
    # C-CDA free-text sections and notes hold what no entry codes.
    assert set(draft_schema([ccda])["properties"]) == set(SummaryDraft.model_fields)
    assert set(draft_schema([fhir, note])["properties"]) == set(SummaryDraft.model_fields)


def test_a_draft_cut_short_keeps_every_item_it_finished() -> None:
    cut = '{"problems": [{"name": "Asthma", "status": "active", "quote": "asthma"}, {"name": "Hyperten'

    draft = parse_draft(cut)

    assert draft is not None and [problem.name for problem in draft.problems] == ["Asthma"]
    assert parse_draft("") == SummaryDraft()
    # Unreadable: nested past the parser's limit, or not an object.
    assert parse_draft('{"narrative": ' + "[" * 300) is None
    assert parse_draft("[1, 2]") is None


@pytest.fixture
def assistant(local_engine: LocalEngine, tmp_path: Path) -> Assistant:
    settings = Settings(data_dir=tmp_path, summary_tokens=160)
    return Assistant(local_engine, open_database(settings.db_path), settings)


def test_a_summary_is_drafted_under_the_grammar_checked_and_stored(assistant: Assistant, corpus: Path) -> None:
    upload = read_upload([(corpus / RHINITIS, RHINITIS)], 1 << 26)
    view = assistant.start_session(CLINICIAN, upload)
    assert view is not None

    events = list(assistant.summarize(CLINICIAN, view.session.id))

    *progress, summary = [event for event in events if not isinstance(event, Waiting)]
    assert progress and all(isinstance(event, SummaryProgress) for event in progress)
    assert isinstance(summary, Summary)
    turn = summary.turn
    assert turn.prompt_version == "summary-v1" and turn.disclaimer == disclaimer()
    # Whatever the small model drafted, nothing is shown as a fact without a span of the record behind it.
    for _, item in turn.summary.shown_as_fact():
        assert all(verify(turn.summary.citations[number - 1], upload.documents) for number in item.citations)
    request, stored = list_messages(assistant.db, CLINICIAN.name, view.session.id)
    assert (request.kind, stored.kind) == ("summary", "summary")
    assert stored.citations == [c.model_dump() for c in turn.summary.citations]
    assert stored.prompt_version == "summary-v1" and stored.disclaimer == disclaimer()
    # Rebuilt from storage as it was given.
    assert assistant.view(CLINICIAN, view.session.id).turns[-1].summary == turn.summary


def test_a_structured_summary_of_a_record_too_long_for_the_model_says_the_draft_read_part(
    local_engine: LocalEngine, corpus: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, summary_tokens=48)
    engine = RecordingEngine(local_engine, context_window=4096)
    assistant = Assistant(engine, open_database(settings.db_path), settings)
    name = "synthea_fhir_dennis_durgan.json"
    view = assistant.start_session(CLINICIAN, read_upload([(corpus / name, name)], 1 << 26))
    assert view is not None and not view.record.fits

    *_, summary = assistant.summarize(CLINICIAN, view.session.id)

    assert isinstance(summary, Summary), summary
    assert any(note.startswith("The model drafted from part of the record") for note in summary.turn.summary.notes)
    counts = compare_facts(summary.turn.summary, truth(corpus, name)["facts"])
    assert all(c.found == c.truth for c in counts.values())


def test_a_free_text_summary_lists_facts_read_from_its_text_and_says_so(corpus: Path) -> None:
    # No model at all: the TKA discharge note's lists come from its words, each item cited and marked as read.
    document = load(corpus / "mtsamples_tka_discharge_summary.pdf")
    summary = build_summary([document], SummaryDraft())
    medications = sections(summary)["medications"].items
    coumadin = next(item for item in medications if item.text.startswith("Coumadin"))
    assert coumadin.origin == "text" and "7 mg" in coumadin.text
    assert all(verify(summary.citations[n - 1], [document]) for n in coumadin.citations)
    allergies = [item.text for item in sections(summary)["allergies"].items]
    assert allergies == ["No known drug allergies; none known"]
    written = summary_markdown(summary)
    assert f"{coumadin.text} _(read from text)_ [{coumadin.citations[0]}]" in written
