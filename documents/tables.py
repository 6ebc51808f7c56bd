"""Tables in free text: rows whose cells a Word file joins with "|", or whose cells a PDF's text layer writes one
per line, read by their column headings.

A PDF table loses its grid: "Body mass index 30+ - obesity / (finding) / active / 1968-05-18" are four lines of one
row. The headings ("Condition / Status / Onset / Resolved") say what each cell must look like (a status word, a
date, a number, a unit), so lines are taken into a row while they fit its next column; a name that wraps over two
lines, and an empty cell ("Resolved" of a problem still active), are read as such. A free-text cell after the typed
ones (a medication's "Reason") belongs to the row when it starts in lower case or a bracket, or names a disease.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from documents import lexicons
from documents.sentences import trim

CellType = Literal["name", "date", "status", "value", "unit", "text"]

# Column headings by the kind of cell under them.
_COLUMNS: dict[str, CellType] = {
    **dict.fromkeys(("recorded", "onset", "resolved", "prescribed", "date", "started", "stopped", "abatement",
                     "administered", "performed", "effective", "issued", "collected"), "date"),
    "status": "status",
    **dict.fromkeys(("value", "result"), "value"),
    **dict.fromkeys(("unit", "units"), "unit"),
    **dict.fromkeys(("reason", "reaction", "severity", "note", "notes", "reference range", "flag"), "text"),
    **dict.fromkeys(("allergy", "condition", "problem", "medication", "test", "procedure", "vaccine", "immunization",
                     "substance", "name", "diagnosis", "observation", "vital sign"), "name"),
}
_STATUS = frozenset(
    "active inactive resolved stopped completed final entered-in-error on-hold cancelled remission relapse "
    "recurrence amended preliminary registered refuted confirmed unconfirmed".split()
)
_DATE = re.compile(r"\d{4}-\d{2}(?:-\d{2})?(?:T[\d:.+-]+Z?)?|\d{1,2}/\d{1,2}/\d{2,4}")
_NUMBER = re.compile(r"[<>]?\s?-?\d[\d,]*(?:\.\d+)?")
# A unit is short and not a word: "mg/dL", "10*3/uL", "%", "fL", "pg"; "Triglycerides" is a test's name.
_UNIT = re.compile(r"(?=\S*[^A-Za-z\s])\S{1,20}|[A-Za-z]{1,4}")


@dataclass
class Row:
    name: str
    start: int  # the row's first character and its last, in the page text
    end: int
    status: str | None = None
    date: str | None = None
    value: str | None = None
    unit: str | None = None
    text: list[str] = field(default_factory=list)


@dataclass
class Table:
    columns: list[CellType]
    rows: list[Row]


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    trimmed = (trim(text, start + m.start(), start + m.end()) for m in re.finditer(r"[^\n]+", text[start:end]))
    return [(s, e) for s, e in trimmed if e > s]


def _heading(cell: str) -> CellType | None:
    return _COLUMNS.get(" ".join(cell.casefold().split()))


def read_table(text: str, start: int, end: int) -> Table | None:
    """The table in text[start:end] (a section: its title line, then the table), or None when it holds none."""
    lines = _lines(text, start, end)
    for i, (s, e) in enumerate(lines[:3]):
        cells = [cell.strip() for cell in text[s:e].split("|")]
        if len(cells) >= 2 and all(_heading(cell) for cell in cells) and _heading(cells[0]) == "name":
            return Table([_heading(cell) for cell in cells], _pipe_rows(text, lines[i + 1 :], len(cells),
                                                                      [_heading(cell) for cell in cells]))
        columns = []
        j = i
        while j < len(lines) and _heading(text[lines[j][0] : lines[j][1]]) is not None:
            columns.append(_heading(text[lines[j][0] : lines[j][1]]))
            j += 1
        if len(columns) >= 2 and columns[0] == "name":
            return Table(columns, _line_rows(text, lines[j:], columns))  # type: ignore[arg-type]
    return None


def _pipe_rows(text: str, lines: list[tuple[int, int]], width: int, columns: list[CellType]) -> list[Row]:
    rows: list[Row] = []
    for s, e in lines:
        cells = [cell.strip() for cell in text[s:e].split("|")]
        if len(cells) < 2:
            if rows:  # a wrapped name's second line
                rows[-1].name += " " + text[s:e]
                rows[-1].end = e
            continue
        row = Row(name=cells[0], start=s, end=e)
        for column, cell in zip(columns[1:], cells[1:]):
            if cell:
                _fill(row, column, cell)
        if row.name:
            rows.append(row)
    return rows


def _fits(column: CellType, cell: str) -> bool:
    if column == "date":
        return bool(_DATE.fullmatch(cell))
    if column == "status":
        return cell.casefold() in _STATUS
    if column == "value":
        return bool(_NUMBER.fullmatch(cell)) or cell.casefold() in ("negative", "positive", "pending")
    if column == "unit":
        return bool(_UNIT.fullmatch(cell)) and not _DATE.fullmatch(cell) and cell.casefold() not in _STATUS
    return False


def _fill(row: Row, column: CellType, cell: str) -> None:
    if column == "date" and row.date is None:
        row.date = cell[:10]
    elif column == "status":
        row.status = cell
    elif column == "value":
        row.value = cell
    elif column == "unit":
        row.unit = cell
    elif column == "text":
        row.text.append(cell)


def _line_rows(text: str, lines: list[tuple[int, int]], columns: list[CellType]) -> list[Row]:
    """Rows of a table written one cell per line: name lines until a line fits a typed column, then the typed
    cells in column order (a date column may be empty), then any free-text cell that belongs to the row."""
    typed = columns[1:]
    rows: list[Row] = []
    i = 0
    while i < len(lines):
        name_start = i
        while i < len(lines) and not any(_fits(column, _cell(text, lines[i])) for column in typed if column != "text"):
            i += 1
            if i - name_start > 4:
                return rows  # no row has a name of five lines: the table has ended
        if i >= len(lines) or i == name_start:
            break
        row = Row(name=" ".join(_cell(text, line) for line in lines[name_start:i]), start=lines[name_start][0],
                  end=lines[i - 1][1])
        for column in typed:
            if i >= len(lines):
                break
            cell = _cell(text, lines[i])
            if column == "text":
                while i < len(lines) and _belongs(_cell(text, lines[i])) and not any(
                        _fits(c, _cell(text, lines[i])) for c in typed if c != "text"):
                    row.text.append(_cell(text, lines[i]))
                    row.end = lines[i][1]
                    i += 1
                continue
            if _fits(column, cell):
                _fill(row, column, cell)
                row.end = lines[i][1]
                i += 1
        rows.append(row)
    return rows


def _cell(text: str, line: tuple[int, int]) -> str:
    return text[line[0] : line[1]]


def _belongs(cell: str) -> bool:
    """Whether a free-text line after a row's typed cells is the row's (its reason, a wrapped word) rather than the
    next row's name."""
    return cell[:1] in "([" or cell[:1].islower() or (
        bool(lexicons.diseases().find(cell)) and not lexicons.drugs().find(cell) and not re.search(r"\d", cell)
    )
