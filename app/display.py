"""The assistant's results as short plain-text lines, worded the same in the browser, the terminal and exports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.claims import ClaimCheck
from app.omissions import Omission
from documents import Coverage
from engine import EngineInfo, Stats
from engine.memory import GIB, MemoryPlan

if TYPE_CHECKING:  # the assistant's exports use these lines, so it imports this module
    from app.assistant import RecordStatus


def record_line(status: RecordStatus) -> str:
    line = f"Record: {status.tokens:,} tokens of {status.budget:,} available"
    if status.fits:
        return line
    return f"{line}, too long to read at once: each answer uses the passages most relevant to its question"


def coverage_lines(coverage: Coverage) -> list[str]:
    """What of a file reached the text the model sees, and what did not and why: one fact a line."""
    lines = [] if coverage.format_note is None else [coverage.format_note.capitalize()]
    lines.append(
        f"{_count(coverage.pages, 'page')} read, {coverage.characters:,} characters"
        + ("" if coverage.tokens is None else f", {coverage.tokens:,} tokens")
    )
    if coverage.empty_pages:
        lines.append(f"{_count(len(coverage.empty_pages), 'page')} without text: {_pages(coverage.empty_pages)}")
    if coverage.ocr_pages:
        lines.append(f"{_count(len(coverage.ocr_pages), 'scanned page')} read by OCR: {_pages(coverage.ocr_pages)}")
    if coverage.repeated_lines_removed:
        lines.append(
            f"{_count(coverage.repeated_lines_removed, 'repeated header or footer line')} removed (kept once)"
        )
    for skipped in coverage.skipped:
        times = f" ×{skipped.count:,}" if skipped.count > 1 and not skipped.pages else ""
        lines.append(f"Not read: {skipped.what}{times}: {skipped.reason}")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def _pages(numbers: list[int]) -> str:
    # A long list of page numbers would swamp the panel; the first ones say enough.
    shown = ", ".join(str(n) for n in numbers[:10])
    return f"pages {shown}" + (f" and {len(numbers) - 10:,} more" if len(numbers) > 10 else "")


def model_line(info: EngineInfo) -> str:
    return (
        f"{info.model_name} · {info.architecture} · {info.precision} · {info.device} · "
        f"context {info.context_window:,} tokens"
    )


def memory_line(plan: MemoryPlan, prefix_cache_bytes: int) -> str:
    """What the operator needs to size a machine: the model's memory as planned before it was loaded."""
    return (
        f"Memory: weights {plan.weight_bytes / GIB:.2f} GiB · keys and values {plan.kv_bytes_per_token / 1024:,.0f} "
        f"KiB a token ({plan.kv_bytes_per_token * plan.context / GIB:.2f} GiB for {plan.context:,} tokens) · prefix "
        f"cache {prefix_cache_bytes / GIB:.2f} GiB · {plan.available_bytes / GIB:.1f} GiB free"
    )


def stats_line(stats: Stats) -> str:
    line = (
        f"{stats.decode_tok_s:.1f} tokens/s · first token after {stats.ttft_s:.2f} s · "
        f"{stats.generated_tokens:,} tokens generated from a {stats.prompt_tokens:,}-token prompt"
    )
    if stats.cached_tokens:
        line += f" ({stats.cached_tokens:,} read from cache)"
    if stats.drafted:
        line += f" · {stats.accepted:,} of {stats.drafted:,} drafted tokens accepted"
    return line


def check_lines(checks: list[ClaimCheck]) -> list[str]:
    """The labels of `clinidoc check`, a statement a block: its label and the record's words behind it."""
    lines = []
    for check in checks:
        lines.append(f"{check.label.replace('_', ' ').upper()}: {check.text}")
        for citation in check.citations:
            quote = " ".join(citation.quote.split())
            says = "the record says" if check.label == "supported" else "the record says instead"
            lines.append(f"    {says} ({citation.document}, page {citation.page}): \"{quote}\"")
        if check.note:
            lines.append(f"    {check.note}")
    labels = [check.label for check in checks]
    counts = {label: labels.count(label) for label in ("supported", "contradicted", "not_found")}
    lines.append(
        f"{len(checks):,} statements: {counts['supported']:,} supported, {counts['contradicted']:,} contradicted, "
        f"{counts['not_found']:,} not found in the record."
    )
    return lines


def omission_lines(omissions: list[Omission]) -> list[str]:
    """What `clinidoc check`'s text leaves out of the record, most weighty first, each with the words that say it."""
    if not omissions:
        return ["The text leaves out no allergy, medication, problem, recent result or follow-up of the record."]
    lines = [f"{len(omissions):,} facts of the record the text does not mention, most weighty first:"]
    for omission in omissions:
        where = f"{omission.citation.document}, page {omission.citation.page}"
        lines.append(f"OMITTED ({omission.category}): {omission.fact}")
        lines.append(f"    the record says ({where}): \"{' '.join(omission.citation.quote.split())}\"")
    return lines


def report_lines(report: dict[str, Any]) -> list[str]:
    """The evaluation report of `clinidoc eval` as tables for a terminal."""
    lines = [
        f"Model: {report['model']}",
        f"Citation validity: {_percent(report['citation_validity'])} of {report['citations']:,} citations shown",
        f"Answer accuracy: {_percent(report['qa_accuracy'])} of {report['qa_total']:,} questions",
        "",
        f"{'facts':<14}{'recall':>8}{'precision':>11}   " + "".join(f"{fmt:>14}" for fmt in report["by_format"]),
    ]
    for category, recall in report["fact_recall"].items():
        per_format = "".join(
            f"{_percent(rates['fact_recall'].get(category)):>14}" for rates in report["by_format"].values()
        )
        lines.append(
            f"{category:<14}{_percent(recall):>8}{_percent(report['fact_precision'][category]):>11}   {per_format}"
        )
    lines += ["", "(per format: recall)", "", f"{'document':<46}{'format':>7}{'QA':>8}{'summary s':>11}{'answer s':>10}"]
    for row in report["documents"]:
        lines.append(
            f"{row['document']:<46}{row['format']:>7}{row['qa_correct']:>4}/{row['qa_total']:<3}"
            f"{row['summary_s']:>11.1f}{row['answer_s']:>10.1f}"
        )
        lines += [f"    {problem}" for problem in row["problems"]]
    return lines


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"
