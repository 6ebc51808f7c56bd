"""Markdown tables, as the benchmarks print their figures for docs/benchmarks.md."""

from collections.abc import Iterable


def table(headers: list[str]) -> str:
    """A table's header and its rule; rows follow, written by `row`."""
    return row(headers) + "\n" + row(["---"] * len(headers))


def row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"
