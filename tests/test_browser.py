"""The real server in a real browser: upload, ask, watch the answer arrive, and nothing leaves 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterator, NamedTuple
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pypdf import PdfWriter

from bench.accessibility import serious_violations, tab_walk, text_contrast
from prompts import disclaimer
from storage import list_documents, list_messages, list_sessions, open_database
from conftest import CLINICIAN
from serving import CHROMIUM_ARGS, CLINIDOC, add_accounts, answered, free_port, sign_in, wait_until_serving

RHINITIS = "mtsamples_allergic_rhinitis.txt"
FHIR = "synthea_fhir_dennis_durgan.json"
TKA_PDF = "mtsamples_tka_discharge_summary.pdf"
CCDA = "ccda_ccd_eve_betterhalf.xml"
CCDA_ADAM = "ccda_progress_note_adam_everyman.xml"
QUESTION = "What medications is she taking?"


class Server(NamedTuple):
    url: str
    data_dir: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("clinidoc")
    log = data_dir / "serve.log"
    url = f"http://127.0.0.1:{free_port()}/"
    env = {
        **os.environ, "CLINIDOC_DATA_DIR": str(data_dir), "CLINIDOC_MAX_NEW_TOKENS": "48",
        "CLINIDOC_SUMMARY_TOKENS": "48",
    }
    add_accounts(env)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CLINIDOC), "serve", "--port", str(urlparse(url).port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_serving(url, process, log)
        yield Server(url, data_dir)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def leaves_the_machine(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme not in ("data", "blob") and parsed.hostname != "127.0.0.1"


def open_page(browser: Browser, server: Server, requests: list[str], user: str = CLINICIAN.name) -> Page:
    """A new browser (its own cookies) signed in as `user`."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.goto(server.url)
    sign_in(page, user)
    return page


def upload(page: Page, path: Path) -> None:
    """Upload one file and wait until the documents panel lists it."""
    page.locator("input[type=file]").set_input_files(path)
    expect(page.locator(".document-list")).to_contain_text(path.name, timeout=60_000)


def test_a_clinician_uploads_a_record_asks_and_reopens_the_session(
    browser: Browser, server: Server, corpus: Path
) -> None:
    requests: list[str] = []
    page = open_page(browser, server, requests)

    page.locator("input[type=file]").set_input_files(corpus / RHINITIS)
    expect(page.get_by_text(re.compile(r"Record: [\d,]+ tokens of [\d,]+ available"))).to_be_visible(timeout=60_000)
    expect(page.locator(".document-list")).to_contain_text(RHINITIS)

    question = page.get_by_placeholder("Ask a question about this record")
    question.fill(QUESTION)
    question.press("Enter")
    chat = page.locator("#chat")
    expect(chat.get_by_text(QUESTION)).to_be_visible()
    answered(chat.locator(".message").last)
    expect(chat.locator(".disclaimer")).to_have_text(disclaimer())
    expect(page.locator("#status-last-answer")).to_contain_text("tokens/s")

    # Reopened in a fresh tab, the session shows its conversation and takes the next question.
    page = open_page(browser, server, requests)
    page.locator(".session-list label", has_text=RHINITIS).click()
    chat = page.locator("#chat")
    expect(chat.get_by_text(QUESTION)).to_be_visible()
    expect(chat.locator(".disclaimer")).to_have_count(1)
    expect(page.get_by_placeholder("Ask a question about this record")).to_be_editable()

    assert requests and [url for url in requests if leaves_the_machine(url)] == []

    db = open_database(server.data_dir / "clinidoc.sqlite3")
    (session,) = list_sessions(db, CLINICIAN.name)
    assert [document.name for document in list_documents(db, CLINICIAN.name, session.id)] == [RHINITIS]
    user, assistant = list_messages(db, CLINICIAN.name, session.id)
    assert (user.role, user.text) == ("user", QUESTION)
    assert assistant.role == "assistant" and assistant.text and assistant.disclaimer == disclaimer()


def test_an_encrypted_pdf_is_opened_with_its_password_beside_a_fhir_file_and_both_show_their_coverage(
    browser: Browser, server: Server, corpus: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked.pdf"
    writer = PdfWriter(clone_from=corpus / TKA_PDF)
    writer.encrypt(user_password="secret", algorithm="AES-256")
    writer.write(locked)
    page = open_page(browser, server, [])

    page.locator("input[type=file]").set_input_files([locked, corpus / FHIR])
    expect(page.locator(".upload-failed")).to_contain_text("locked.pdf: the PDF is password-protected", timeout=60_000)
    expect(page.locator(".document-list")).to_contain_text(FHIR)
    password = page.get_by_label("Password for locked.pdf")
    password.fill("secret")
    password.press("Enter")

    documents = page.locator(".document-list")
    expect(documents).to_contain_text("locked.pdf", timeout=60_000)
    expect(documents).to_contain_text(FHIR)  # the file read first is still in the session
    expect(page.get_by_label("Password for locked.pdf")).to_be_hidden()
    documents.get_by_text("What was read").first.click()
    expect(documents).to_contain_text("Not read: Claim ×31: billing record, not clinical")


def test_a_summary_lists_facts_read_from_the_record_each_with_its_source_and_the_disclaimer(
    browser: Browser, server: Server, corpus: Path
) -> None:
    page = open_page(browser, server, [])
    upload(page, corpus / CCDA)

    page.get_by_role("button", name="Summarise the record").click()

    summary = page.locator("#chat .summary")
    expect(summary).to_contain_text("Medications", timeout=180_000)
    # Atenolol is read from its C-CDA entry: a numbered reference to the span, listed under Sources with the page.
    atenolol = summary.locator("li", has_text="Atenolol 25 MG Oral Tablet").first
    expect(atenolol.locator(".cite")).to_have_text(re.compile(r"\[\d+\]"))
    number = atenolol.locator(".cite").inner_text().strip("[]")
    source = page.locator(f"#chat .sources li[value='{number}']")
    expect(source).to_contain_text(f"{CCDA}, page 1")
    expect(source.locator("summary mark")).to_contain_text("Atenolol")
    # Opened, the source shows its page around the entry, the entry's words highlighted where they stand.
    source.locator("summary").click()
    expect(source.locator(".page")).to_be_visible()
    expect(source.locator(".page mark")).to_contain_text("Atenolol")
    expect(page.locator("#chat .disclaimer").last).to_have_text(disclaimer())

    # The export carries the summary with its sources and the disclaimer.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export this session (Markdown)").click()
    exported = Path(download.value.path()).read_text()
    assert "## Summary" in exported and "Atenolol 25 MG Oral Tablet" in exported
    assert f"” — page 1 [{number}]" in exported
    assert exported.count(disclaimer()) == 2


def test_two_clinicians_in_two_browsers_see_only_their_own_sessions(
    browser: Browser, server: Server, corpus: Path
) -> None:
    mine = open_page(browser, server, [])
    upload(mine, corpus / CCDA)
    db = open_database(server.data_dir / "clinidoc.sqlite3")
    session_id = max(session.id for session in list_sessions(db, CLINICIAN.name))

    theirs = open_page(browser, server, [], user="dr.other")
    expect(theirs.locator(".session-list")).not_to_contain_text(CCDA)
    assert theirs.locator(".session-list label").count() == 0
    # What the page does not offer cannot be fetched either: the export, the database file, a traversal to it.
    for path in (f"export/{session_id}", f"gradio_api/file={server.data_dir}/clinidoc.sqlite3",
                 f"gradio_api/file={server.data_dir}/uploads/../clinidoc.sqlite3"):
        response = theirs.request.get(server.url + path)
        assert response.status in (403, 404), path
        assert CCDA.encode() not in response.body()
    # The owner gets the export, made when asked.
    export = mine.request.get(server.url + f"export/{session_id}")
    assert export.status == 200 and CCDA in export.text()

    # Signing out ends the sign-in: the page sends the browser back to sign in.
    theirs.get_by_role("link", name="Sign out").click()
    expect(theirs.get_by_role("button", name="Sign in")).to_be_visible()
    theirs.goto(server.url)
    expect(theirs.get_by_role("button", name="Sign in")).to_be_visible()


def test_documents_join_and_leave_an_open_record(browser: Browser, server: Server, corpus: Path) -> None:
    page = open_page(browser, server, [])
    upload(page, corpus / RHINITIS)
    # The next step is said where the answers will be.
    expect(page.locator("#chat")).to_contain_text("The record is read")
    expect(page.get_by_text("Add documents to this patient's record")).to_be_visible()

    page.locator("input[type=file]").set_input_files(corpus / TKA_PDF)
    expect(page.locator(".document-list li", has_text=TKA_PDF)).to_be_visible(timeout=60_000)
    expect(page.locator(".document-list")).to_contain_text(RHINITIS)
    assert page.locator(".session-list label").count() == len(list_sessions(
        open_database(server.data_dir / "clinidoc.sqlite3"), CLINICIAN.name))  # no new session for the addition

    page.get_by_label("Take a document out of this record").click()
    page.get_by_role("option", name=RHINITIS).click()
    page.locator(".remove-document").get_by_role("button", name="Remove").click()
    expect(page.locator(".document-list")).not_to_contain_text(RHINITIS)
    expect(page.locator(".document-list")).to_contain_text(TKA_PDF)


def test_a_renamed_file_is_read_by_its_content_and_a_long_name_stays_in_its_box(
    browser: Browser, server: Server, corpus: Path, tmp_path: Path
) -> None:
    long_name = "discharge_summary_" + "very_long_name_without_any_spaces_" * 4 + "renamed.pdf"
    renamed = tmp_path / long_name
    renamed.write_bytes((corpus / RHINITIS).read_bytes())
    page = open_page(browser, server, [])
    page.locator("input[type=file]").set_input_files(renamed)
    note = page.locator(".format-note")
    expect(note).to_contain_text("named .pdf, but it is plain text", timeout=60_000)
    for box in (note, page.locator(".document-list li").first):
        assert box.evaluate("element => element.scrollWidth <= element.clientWidth")


def in_view_of_its_page(page: Page, mark: object) -> None:
    """The highlighted words lie inside the visible part of their scrolled page text."""
    page.wait_for_function(
        """mark => { const shown = mark.closest(".page").getBoundingClientRect(),
                       words = mark.getBoundingClientRect();
                       return words.top >= shown.top - 1 && words.bottom <= shown.bottom + 1; }""",
        arg=mark.element_handle(), timeout=5_000,
    )


def test_a_citation_marker_and_an_evidence_line_open_their_source_at_the_highlighted_words(
    browser: Browser, server: Server, corpus: Path
) -> None:
    page = open_page(browser, server, [])
    upload(page, corpus / TKA_PDF)
    # A summary's items are read from the record, each with its [n]: markers to follow whatever the model writes.
    page.get_by_role("button", name="Summarise the record").click()
    summary = page.locator("#chat .message", has=page.locator(".summary")).last
    expect(summary.locator("details.sources")).to_be_visible(timeout=180_000)

    links = summary.locator(".summary a.cite-link")
    for index, by_keyboard in ((0, False), (1, True)):
        link = links.nth(index)
        number = link.get_attribute("href").removeprefix("#source-")
        if by_keyboard:
            link.focus()  # a link: Tab reaches it, Enter follows it
            page.keyboard.press("Enter")
        else:
            link.click()
        source = summary.locator(f'details.sources li[value="{number}"]')
        expect(source.locator("details")).to_have_attribute("open", "")
        mark = source.locator(".page mark")
        expect(mark).to_be_in_viewport()
        in_view_of_its_page(page, mark)

    # An answer's evidence line opens its own page the same way.
    question = page.get_by_placeholder("Ask a question about this record")
    question.fill("What was the hemoglobin?")
    question.press("Enter")
    answer = page.locator("#chat .message").last
    answered(answer)
    line = answer.locator(".evidence details").first
    line.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(line).to_have_attribute("open", "")
    expect(line.locator(".page mark")).to_be_in_viewport()
    in_view_of_its_page(page, line.locator(".page mark"))


def test_results_over_time_and_the_timeline_open_their_sources(browser: Browser, server: Server, corpus: Path) -> None:
    page = open_page(browser, server, [])
    upload(page, corpus / FHIR)

    page.get_by_text("Results over time and timeline").click()
    trends = page.locator("#trends")
    expect(trends.locator("figure").first).to_be_visible(timeout=60_000)
    expect(trends.locator(".timeline svg")).to_be_visible()
    expect(trends.locator(".timeline details summary")).to_contain_text("The timeline as a list")
    # A point is a link a keyboard reaches: followed, its source opens at the value's line, in view.
    point = trends.locator("figure svg a.cite-link").first
    label = point.get_attribute("aria-label")
    number = point.get_attribute("href").removeprefix("#source-")
    point.focus()
    page.keyboard.press("Enter")
    source = trends.locator(f'details.sources li[value="{number}"]')
    expect(source.locator("details")).to_have_attribute("open", "")
    mark = source.locator(".page mark")
    expect(mark).to_be_in_viewport()
    value = re.search(r": (\S+) .* on (\d{4}-\d\d-\d\d)", label)
    expect(mark).to_contain_text(value[1])
    expect(mark).to_contain_text(value[2])


def overlaps(first: dict | None, second: dict | None) -> bool:
    if first is None or second is None:
        return False
    return not (first["x"] + first["width"] <= second["x"] or second["x"] + second["width"] <= first["x"]
                or first["y"] + first["height"] <= second["y"] or second["y"] + second["height"] <= first["y"])


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_reading_progress_has_a_place_of_its_own_and_a_wrong_type_is_said_once_until_the_next_upload(
    browser: Browser, server: Server, corpus: Path, tmp_path: Path
) -> None:
    long_pdf, program = tmp_path / "long.pdf", tmp_path / "tool.exe"
    writer = PdfWriter()
    for _ in range(100):
        writer.append(corpus / TKA_PDF)
    writer.write(long_pdf)
    program.write_bytes(b"MZ\x90\x00 not a document")
    page = open_page(browser, server, [])
    page.locator("input[type=file]").set_input_files([long_pdf, program])

    progress = page.locator("#reading-progress .progress-text")
    expect(progress).to_be_visible(timeout=30_000)
    box = progress.bounding_box()
    for other in (page.locator(".documents-summary .hint"), page.locator("input[type=file]").locator("..")):
        assert not overlaps(box, other.bounding_box())
    failed = page.locator(".upload-failed")
    expect(failed).to_contain_text("tool.exe: not a supported document type", timeout=120_000)
    expect(page.locator(".document-list")).to_contain_text("long.pdf")
    # Said once, in the panel, and no toast that would outlive it.
    assert failed.count() == 1 and page.locator(".toast-body").count() == 0
    upload(page, corpus / RHINITIS)
    expect(failed).to_have_count(0)


def test_the_page_meets_wcag_aa_and_axe_finds_nothing_serious_wide_and_narrow(
    browser: Browser, server: Server, corpus: Path
) -> None:
    page = open_page(browser, server, [])
    # Two patients' documents, so the mix-up warning is on the screen too.
    page.locator("input[type=file]").set_input_files([corpus / CCDA, corpus / CCDA_ADAM])
    expect(page.locator(".patient-warning")).to_be_visible(timeout=60_000)
    question = page.get_by_placeholder("Ask a question about this record")
    question.fill(QUESTION)
    question.press("Enter")
    answered(page.locator("#chat .message").last)
    expect(page.locator("#chat .disclaimer")).to_have_text(disclaimer())

    # Everything the keyboard reaches shows its focus; the upload and the question come before the sessions.
    reached = tab_walk(page, 60)
    assert [focused for focused in reached if not focused.visible] == []
    names = [focused.name for focused in reached]
    upload = names.index("Click to upload or drop files")
    asked = next(i for i, focused in enumerate(reached) if focused.tag == "textarea")
    assert upload < asked < names.index("New session")

    page.get_by_text("Results over time and timeline").click()
    expect(page.locator("#trends .timeline")).to_have_count(2, timeout=60_000)  # a timeline for each patient
    page.get_by_text("Check a text against the record").click()

    for width in (1280, 800):
        page.set_viewport_size({"width": width, "height": 800})
        texts = text_contrast(page)
        assert len(texts) > 50
        assert [text for text in texts if not text.passes] == []
        violations = serious_violations(page)
        assert violations == [], "; ".join(f"{v['rule']} {v['first']}: {v['why']}" for v in violations)
    # At 800 px the columns stack: the upload and the warnings come before the chat.
    chat_top = page.locator("#chat").bounding_box()["y"]
    for before in (page.locator("input[type=file]").locator(".."), page.locator(".patient-warning")):
        assert before.bounding_box()["y"] < chat_top

