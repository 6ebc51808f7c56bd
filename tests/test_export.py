"""A session exported as Markdown carries every answer's evidence, sources, support labels and disclaimer."""

from __future__ import annotations

from pathlib import Path

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
    turns.save(assistant.db, CLINICIAN.name, view.session.id, turn)

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
