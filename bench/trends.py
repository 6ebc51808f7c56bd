"""What opening "Results over time and timeline" costs: for each corpus document, the series and events read from
its facts and the time to read and draw them (matplotlib SVG), as the panel does.

    python -m bench.trends
"""

from __future__ import annotations

import time
from pathlib import Path

from app.trends import trends
from app.ui.trends_panel import trends_html
from bench import markdown
from documents import load

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def main() -> None:
    print(markdown.table(["file", "tests plotted", "points", "timeline events", "cited lines", "HTML (kB)", "seconds"]))
    trends_html(trends([load(CORPUS / "synthea_fhir_asa_hermiston.json")]), {})  # matplotlib imported once
    for path in sorted(CORPUS.glob("*.*")):
        if path.suffix == ".md":
            continue
        document = load(path)
        pages = {(document.name, page.number): page.text for page in document.pages}
        start = time.perf_counter()
        found = trends([document])
        html = trends_html(found, pages)
        seconds = time.perf_counter() - start
        points = sum(len(series.points) for series in found.series)
        print(markdown.row([path.name, len(found.series), points, len(found.events), len(found.citations),
                            f"{len(html) / 1000:.0f}", f"{seconds:.2f}"]))


if __name__ == "__main__":
    main()
