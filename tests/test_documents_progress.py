"""documents: reading reports every page as it goes, and stops within a page when cancelled."""

import pickle
import threading
from pathlib import Path

import pytest
from test_documents_bad_input import numbered_pages

from documents import Cancelled, DocumentError, load

PAGES = 40


@pytest.fixture
def forty_pages(tmp_path: Path) -> Path:
    path = tmp_path / "chart.pdf"
    path.write_bytes(numbered_pages(PAGES))
    return path


def test_progress_is_reported_after_every_page(forty_pages: Path) -> None:
    calls: list[tuple[int, int]] = []
    document = load(forty_pages, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(number, PAGES) for number in range(1, PAGES + 1)]
    assert len(document.pages) == PAGES


@pytest.mark.parametrize("file_name", ["synthea_summary_dusty_stracke.docx", "mtsamples_moyamoya.txt"])
def test_one_page_formats_report_their_one_page(corpus: Path, file_name: str) -> None:
    calls: list[tuple[int, int]] = []
    load(corpus / file_name, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_cancel_stops_reading_within_one_page(forty_pages: Path) -> None:
    cancel = threading.Event()
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if done == 3:
            cancel.set()  # as a Stop button pressed while page 3 was read

    with pytest.raises(Cancelled) as caught:
        load(forty_pages, progress=progress, cancel=cancel)
    assert calls == [1, 2, 3]
    assert isinstance(caught.value, DocumentError)
    assert str(caught.value) == "chart.pdf: reading was cancelled"


def test_cancel_can_be_any_callable(forty_pages: Path) -> None:
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 5

    with pytest.raises(Cancelled):
        load(forty_pages, cancel=cancelled)
    assert len(asked) == 6


def test_cancel_from_another_thread(forty_pages: Path) -> None:
    cancel = threading.Event()
    first_page = threading.Event()
    outcome: list[BaseException | int] = []

    def read() -> None:
        try:
            outcome.append(len(load(forty_pages, progress=lambda done, total: first_page.set(), cancel=cancel).pages))
        except Cancelled as err:
            outcome.append(err)

    reader = threading.Thread(target=read)
    reader.start()
    assert first_page.wait(timeout=30)
    cancel.set()
    reader.join(timeout=30)
    # Either the reader saw the cancel, or it had already read all 40 pages.
    assert len(outcome) == 1 and (isinstance(outcome[0], Cancelled) or outcome[0] == PAGES)


def test_cancelled_before_reading_reads_nothing(corpus: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    calls: list[tuple[int, int]] = []
    with pytest.raises(Cancelled):
        load(corpus / "mtsamples_moyamoya.txt", progress=lambda *call: calls.append(call), cancel=cancel)
    assert calls == []


def test_cancelled_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(Cancelled("chart.pdf")))
    assert isinstance(error, Cancelled)
    assert str(error) == "chart.pdf: reading was cancelled"
