"""app.render: answers as the chat shows them; their sources open on their page, with the cited words highlighted
where they stand."""

import html
import re
from pathlib import Path

import pytest

import documents
from app.citations import Citation
from app.claims import check_text
from app.render import PAGE_CONTEXT, PAGE_CONTEXT_BEFORE, layout, sources_html
from app.render import html as render_html
from app.turns import AnswerTurn
from prompts import disclaimer

NOTE = "mtsamples_allergic_rhinitis.txt"
FHIR = "synthea_fhir_dennis_durgan.json"


def _pages(document: documents.Document) -> dict[tuple[str, int], str]:
    return {(document.name, page.number): page.text for page in document.pages}


def answer_html(text: str, record: list[documents.Document], pages: dict[tuple[str, int], str]) -> str:
    turn = AnswerTurn(
        question="?", text=text, checked=check_text(text, record), evidence=None, disclaimer=disclaimer(), model="m",
        prompt_version="v", stats=None,
    )
    return render_html(layout(turn), pages)


def _opened_pages(rendered: str) -> list[str]:
    """The text of each source's page view, with its highlighted words between « and »."""
    views = re.findall(r'<div class="page"[^>]*>(.*?)</div>', rendered, flags=re.DOTALL)
    return [html.unescape(view.replace("<mark>", "«").replace("</mark>", "»")) for view in views]


def test_a_short_page_opens_whole_with_the_cited_words_highlighted(corpus: Path) -> None:
    note = documents.load(corpus / NOTE)
    answer = "She has used Allegra also."
    citation = check_text(answer, [note]).citations[0]
    [view] = _opened_pages(answer_html(answer, [note], _pages(note)))
    text = note.pages[0].text
    assert len(text) < 2 * PAGE_CONTEXT
    assert view == f"{text[: citation.start]}«{text[citation.start : citation.end]}»{text[citation.end :]}"
    assert "Allegra" in text[citation.start : citation.end]


def test_a_long_page_opens_on_whole_lines_around_the_cited_words(corpus: Path) -> None:
    record = documents.load(corpus / FHIR)
    text = record.pages[0].text
    middle = range(3 * PAGE_CONTEXT, len(text) - 3 * PAGE_CONTEXT)
    fact = next(fact for fact in record.facts if fact.span.start in middle and fact.span.end in middle)
    line = text[fact.span.start : fact.span.end]
    citation = check_text(line, [record]).citations[0]
    [view] = _opened_pages(answer_html(line, [record], _pages(record)))
    assert view.startswith("…\n") and view.endswith("\n…")
    inner = view.removeprefix("…\n").removesuffix("\n…")
    before, marked, after = re.fullmatch(r"(.*)«(.*)»(.*)", inner, flags=re.DOTALL).groups()
    assert marked == text[citation.start : citation.end]
    # Whole lines of the page: a few before the words, so they stand near the top of the view, more after them.
    assert text[: citation.start].endswith(before) and text[citation.end :].startswith(after)
    assert PAGE_CONTEXT_BEFORE <= len(before) < PAGE_CONTEXT and len(after) >= PAGE_CONTEXT
    assert text[citation.start - len(before) - 1] == "\n" and text[citation.end + len(after)] == "\n"


def test_every_sentence_shows_its_label_and_the_app_notes_are_marked_as_the_apps(corpus: Path) -> None:
    note = documents.load(corpus / NOTE)
    rendered = answer_html(
        "She has used Allegra also. She takes four sprays of Nasonex. She takes warfarin.", [note], _pages(note)
    )
    sentences = re.findall(r'<span class="sentence (\w+)">', rendered)
    assert sentences == ["supported", "contradicted", "not_found"]
    assert "contradicted by the record" in rendered and "not found in the record" in rendered
    assert '<span class="app-name">Clinidoc:</span> Each sentence checked against the record' in rendered
    assert rendered.endswith(f'<p class="disclaimer">{html.escape(disclaimer())}</p>')


@pytest.mark.parametrize("file_name", [
    "mtsamples_tka_discharge_summary.pdf", "mtsamples_gastric_bypass_consult.docx", NOTE, FHIR,
    "ccda_ccd_eve_betterhalf.xml",
])
def test_a_source_opens_at_its_words_in_every_format(corpus: Path, file_name: str) -> None:
    document = documents.load(corpus / file_name)
    pages = _pages(document)
    for fact in document.facts[:: max(1, len(document.facts) // 5)]:
        page = next(page for page in document.pages if page.number == fact.span.page)
        citation = Citation(
            number=7, document=document.name, page=page.number, start=fact.span.start, end=fact.span.end,
            quote=page.text[fact.span.start : fact.span.end], match="record", score=100,
        )
        rendered = sources_html([citation], pages)
        assert '<li value="7">' in rendered
        [view] = _opened_pages(rendered)
        assert re.search(r"«(.*)»", view, flags=re.DOTALL)[1] == citation.quote
