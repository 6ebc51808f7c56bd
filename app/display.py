"""The assistant's results as short plain-text lines, worded the same in the browser and the terminal."""

from app.assistant import RecordStatus
from documents import Coverage
from engine import EngineInfo, Stats


def record_line(status: RecordStatus) -> str:
    line = f"Record: {status.tokens:,} tokens of {status.budget:,} available"
    if status.fits:
        return line
    return f"{line}, too long to read at once: each answer uses the passages most relevant to its question"


def coverage_lines(coverage: Coverage) -> list[str]:
    """What of a file reached the text the model sees, and what did not and why: one fact a line."""
    lines = [
        f"{_count(coverage.pages, 'page')} read, {coverage.characters:,} characters"
        + ("" if coverage.tokens is None else f", {coverage.tokens:,} tokens")
    ]
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
