"""The assistant's results as short plain-text lines, worded the same in the browser and the terminal."""

from app.assistant import RecordStatus
from engine import EngineInfo, Stats


def record_line(status: RecordStatus) -> str:
    line = f"Record: {status.tokens:,} tokens of {status.budget:,} available"
    return line if status.fits else f"{line}, too long for the model to read at once"


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
