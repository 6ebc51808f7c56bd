"""A session exported as Markdown carries every answer's sources, support labels and disclaimer."""

from __future__ import annotations

from pathlib import Path

from app.assistant import Assistant, read_upload
from app.export import session_markdown
from app.grounding import ground
from app.settings import Settings
from engine import LocalEngine
from prompts import disclaimer
from storage import add_message, list_events, open_database

RHINITIS = "mtsamples_allergic_rhinitis.txt"


def test_an_export_holds_the_documents_the_answers_with_their_sources_and_every_disclaimer(
    local_engine: LocalEngine, corpus: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    assistant = Assistant(local_engine, open_database(settings.db_path), settings)
    upload = read_upload([(corpus / RHINITIS, RHINITIS)], 1 << 26)
    view = assistant.start_session(upload)
    assert view is not None
    answer = "She currently takes Ortho Tri-Cyclen and Allegra. She takes warfarin 5 mg daily."
    grounding = ground(answer, upload.documents)
    add_message(assistant.db, view.session.id, "user", "What does she take?")
    add_message(
        assistant.db, view.session.id, "assistant", answer, disclaimer=disclaimer(), model="m", prompt_version="answer-v1",
        citations=[c.model_dump() for c in grounding.citations], grounding=grounding.model_dump(exclude={"citations"}),
    )

    markdown = session_markdown(assistant.view(view.session.id))

    assert markdown.startswith(f"# Clinidoc session: {RHINITIS}")
    assert f"> {disclaimer()}" in markdown  # once for the whole export
    assert f"*{disclaimer()}*" in markdown  # and under the answer
    assert f"- {RHINITIS} (txt, 1 page, " in markdown
    assert "## Question" in markdown and "What does she take?" in markdown
    assert "She currently takes Ortho Tri-Cyclen and Allegra. [1]" in markdown
    assert "She takes warfarin 5 mg daily. (not supported by the record)" in markdown
    assert f"Sources:\n[1] {RHINITIS}, page 1:" in markdown

    assistant.record_export(view.session.id)
    assert list_events(assistant.db)[-1].action == "export"
