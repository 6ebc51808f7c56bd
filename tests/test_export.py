"""A session exported as Markdown or PDF carries every answer's evidence, sources, support labels and disclaimer."""

from __future__ import annotations

import io
from pathlib import Path

from pypdf import PdfReader

from app import turns
from app.assistant import Assistant, read_upload
from app.claims import check_text
from app.export import session_markdown
from app.settings import Settings
from app.turns import AnswerTurn
from engine import LocalEngine
from prompts import disclaimer
from storage import list_events, open_database
from conftest import CLINICIAN

RHINITIS = "mtsamples_allergic_rhinitis.txt"


def test_an_export_holds_the_documents_the_answers_with_their_sources_and_every_disclaimer(
    local_engine: LocalEngine, corpus: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    assistant = Assistant(local_engine, open_database(settings.db_path), settings)
    upload = read_upload([(corpus / RHINITIS, RHINITIS)], 1 << 26)
    view = assistant.start_session(CLINICIAN, upload)
    assert view is not None
    answer = "She currently takes Ortho Tri-Cyclen and Allegra. She takes warfarin 5 mg daily."
    turn = AnswerTurn(
        question="What does she take?", text=answer, checked=check_text(answer, upload.documents), evidence=None,
        notes=["The answer reached its limit of 128 tokens and may be incomplete."], disclaimer=disclaimer(),
        model="m", prompt_version="answer-v2", stats=None,
    )
    question_id = turns.begin(assistant.db, CLINICIAN.name, view.session.id, turn.question)
    turns.save(assistant.db, CLINICIAN.name, view.session.id, question_id, turn)

    markdown = session_markdown(assistant.view(CLINICIAN, view.session.id))

    assert markdown.startswith(f"# Clinidoc session: {RHINITIS}")
    assert f"> {disclaimer()}" in markdown  # once for the whole export
    assert f"*{disclaimer()}*" in markdown  # and under the answer
    assert f"- {RHINITIS} (txt, 1 page, " in markdown
    assert "## Question" in markdown and "What does she take?" in markdown
    assert "She currently takes Ortho Tri-Cyclen and Allegra. ⟨supported: [1]⟩" in markdown
    assert "She takes warfarin 5 mg daily. ⟨not found in the record⟩" in markdown
    assert "Clinidoc: The answer reached its limit of 128 tokens and may be incomplete." in markdown
    assert "**Sources**\n> “" in markdown and "” — page 1 [1]" in markdown

    assistant.export(CLINICIAN, view.session.id)
    assert list_events(assistant.db)[-1].action == "export"


def test_the_pdf_export_carries_the_disclaimer_the_warning_the_coverage_and_the_citations(
    local_engine: LocalEngine, tmp_path: Path, corpus: Path
) -> None:
    settings = Settings(data_dir=tmp_path, max_new_tokens=32)
    assistant = Assistant(local_engine, open_database(settings.db_path), settings)
    # Two patients' records: the export carries the mix-up warning.
    files = [(corpus / name, name) for name in ("ccda_ccd_eve_betterhalf.xml", "ccda_progress_note_adam_everyman.xml")]
    view = assistant.start_session(CLINICIAN, read_upload(files, 1 << 26))
    *_, answer = assistant.ask(CLINICIAN, view.session.id, "What medications is she taking?")
    view = assistant.view(CLINICIAN, view.session.id)
    assert view.warnings

    text = " ".join(" ".join(page.extract_text().split())
                    for page in PdfReader(io.BytesIO(assistant.export(CLINICIAN, view.session.id, "pdf"))).pages)
    assert " ".join(disclaimer().split()) in text
    assert " ".join(view.warnings[0].split())[:60] in text
    assert "1 page read" in text  # the coverage of each document
    cited = {citation.number: citation for citation in answer.turn.checked.citations}
    for number in answer.turn.evidence_citations[:2]:
        assert f"— {cited[number].document}, page {cited[number].page} [{number}]" in text
    assert list_events(assistant.db)[-1].detail == "pdf"
