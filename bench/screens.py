"""The screenshot set of docs/screens/ and its accessibility table, from the real server in Chromium.

    python -m bench.screens [--out docs/screens] [--document synthea_fhir_dennis_durgan.json]

Starts `clinidoc serve` on a fresh data directory with one clinician account, then, at 1280×800 and at 800 px
wide: the first screen, the record uploaded, the summary, the results over time and the timeline, an answer with
its evidence and a source opened, and the first page of the PDF export. Writes `accessibility.md` beside
them: the contrast of each text style, what Tab reaches and whether it shows its focus, and axe-core's findings.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from bench import markdown
from bench.accessibility import Focused, TextContrast, serious_violations, tab_walk, text_contrast

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CLINIDOC = Path(sys.executable).with_name("clinidoc")
USER, PASSWORD = "dr.screens", "screenshots passphrase"
QUESTION = "What medications is he taking?"
SIZES = {"wide": {"width": 1280, "height": 800}, "narrow": {"width": 800, "height": 1000}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screens"))
    parser.add_argument("--document", default="synthea_fhir_dennis_durgan.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir, _serving(Path(data_dir)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport=SIZES["wide"])
        measured = _walk_through(page, url, CORPUS / args.document, args.out)
        browser.close()
    (args.out / "accessibility.md").write_text(_report(*measured))
    print(f"wrote {len(list(args.out.glob('*.png')))} screenshots and accessibility.md to {args.out}")


def _walk_through(page: Page, url: str, document: Path, out: Path) -> tuple[list[TextContrast], list[Focused], list]:
    page.goto(url)
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".signed-in")).to_be_visible(timeout=60_000)
    _shoot(page, out, "1-first-screen")

    page.locator("input[type=file]").set_input_files(document)
    expect(page.locator(".document-list")).to_contain_text(document.name, timeout=120_000)
    _shoot(page, out, "2-uploaded")
    # The controls in the order Tab reaches them, before the chat fills with citation links.
    reached = tab_walk(page, 30)

    before = page.locator("#chat .message").count()
    page.get_by_role("button", name="Summarise the record").click()
    _finished(page, before)
    _shoot(page, out, "3-summary", scroll="#chat .summary")
    page.get_by_text("Results over time and timeline").click()
    expect(page.locator("#trends figure").first).to_be_visible(timeout=120_000)
    _shoot(page, out, "4-results-over-time-and-timeline", scroll="#trends-panel")

    question = page.get_by_placeholder("Ask a question about this record")
    before = page.locator("#chat .message").count()
    question.fill(QUESTION)
    question.press("Enter")
    _finished(page, before)
    answer = page.locator("#chat .message").last
    evidence = answer.locator(".evidence details").first
    if evidence.count():
        evidence.locator("summary").click()
    _shoot(page, out, "5-answer-evidence-sources", scroll="#chat .message >> nth=-1")

    contrast = text_contrast(page)
    violations = serious_violations(page)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export this session (PDF)").click()
    _pdf_page(Path(download.value.path()), out / "6-export-pdf.png")
    return contrast, reached, violations


def _finished(page: Page, before: int) -> None:
    """Waits until the model has finished writing the message after the `before` there were: its streamed words
    replaced by the checked text."""
    expect(page.locator("#chat .message")).not_to_have_count(before, timeout=60_000)
    last = page.locator("#chat .message").last
    expect(last.locator(".disclaimer")).to_be_visible(timeout=600_000)
    expect(page.locator("#chat .streaming")).to_have_count(0, timeout=600_000)
    expect(last.locator(".disclaimer")).to_be_visible()


def _shoot(page: Page, out: Path, name: str, scroll: str | None = None) -> None:
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        if scroll:
            page.locator(scroll).first.evaluate("element => element.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=out / f"{name}-{size}.png")
    page.set_viewport_size(SIZES["wide"])


def _pdf_page(pdf: Path, png: Path) -> None:
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    document[0].render(scale=1.5).to_pil().save(png)


def _report(contrast: list[TextContrast], reached: list[Focused], violations: list) -> str:
    styles: dict[str, list[TextContrast]] = defaultdict(list)
    for text in contrast:
        styles[text.style].append(text)
    rows = []
    for style, texts in sorted(styles.items(), key=lambda item: min(t.ratio or 0 for t in item[1])):
        lowest = min(texts, key=lambda text: text.ratio or 0)
        ratio = "over an image" if lowest.ratio is None else f"{lowest.ratio:.2f}"
        rows.append([f"`{style}`", str(len(texts)), f"{lowest.size:g} px", ratio, f"{lowest.required:g}",
                     "yes" if all(text.passes for text in texts) else "**no**"])
    order = [[str(i + 1), f.name, f.tag, "yes" if f.visible else "**no**"] for i, f in enumerate(reached)]
    found = [[v["rule"], v["impact"], f'{v["nodes"]}: `{v["first"]}`', v["why"][:120]] for v in violations]
    found = found or [["none", "", "", ""]]
    return "\n\n".join([
        "# Accessibility of the clinician's page, measured\n\nWritten by `python -m bench.screens` after the "
        "screenshots beside it, at 1280×800: contrast and axe-core on the page with a record, its summary, the "
        "results over time, the timeline and an answer open; the Tab order once the record is read.",
        f"## Contrast of each text style (WCAG 2.1 AA)\n\n{len(contrast)} texts; the lowest ratio of each style.\n\n"
        + _table(["style", "texts", "size", "lowest ratio", "required", "passes"], rows),
        "## Tab order and visible focus\n\n"
        + _table(["#", "reached", "element", "focus visible"], order),
        "## axe-core, serious and critical\n\n" + _table(["rule", "impact", "elements", "why"], found),
    ]) + "\n"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join([markdown.table(headers)] + [markdown.row(cell.replace("|", "\\|") for cell in row) for row in rows])


class _serving:
    """`clinidoc serve` on a free port of 127.0.0.1 with one clinician account, until the block ends."""

    def __init__(self, data_dir: Path) -> None:
        self.env = {**os.environ, "CLINIDOC_DATA_DIR": str(data_dir)}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def __enter__(self) -> str:
        subprocess.run([str(CLINIDOC), "users", "add", USER, "--password-stdin"], input=f"{PASSWORD}\n",
                       env=self.env, check=True, capture_output=True, text=True)
        self.process = subprocess.Popen([str(CLINIDOC), "serve", "--port", str(self.port)], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return url
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        self.__exit__()
        raise SystemExit("clinidoc serve did not start")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    main()
