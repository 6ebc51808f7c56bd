"""Reading order for two-column PDF pages.

pypdf's plain extraction follows the content stream, and a page drawn row by
row across two columns (left line, right line, left line...) comes out with
the columns interleaved, each sentence cut in half by the other column. Here
the page's text fragments, with their positions, are checked for a clear
vertical gutter; when there is one the left column is read top to bottom, then
the right. Any other page (one column, tables, anything unsure) keeps pypdf's
plain text unchanged, since its order is right there.
"""

from dataclasses import dataclass
from statistics import median

from pypdf import PageObject

# Text widths are estimated from the font size, not measured: an average glyph
# is about half an em in Helvetica or Times, and a little under is taken so
# that a line running up to the gutter is not mistaken for one crossing it.
EM_PER_CHAR = 0.4
MIN_LINES = 3  # lines each column needs before the page counts as two columns
# In a column of prose most lines run near the column's full width; table
# cells (a label and a value) are mostly short, and a table keeps row order.
MIN_FULLNESS = 0.4  # median line width, as a share of the distance between column starts


@dataclass(frozen=True)
class _Fragment:
    text: str
    x: float
    y: float
    size: float

    @property
    def end(self) -> float:
        return self.x + len(self.text) * self.size * EM_PER_CHAR


def extract_text(page: PageObject) -> str:
    """The page's text, column by column when it is laid out in two columns, else as pypdf's plain mode gives it."""
    fragments: list[_Fragment] = []
    upright = [True]

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if not text.strip():
            return
        # The text matrix composed with the current transformation matrix.
        a, b = tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3]
        c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        # A rotated or mirrored run, or one fragment holding several lines,
        # has no single position to order by: leave such a page alone.
        if b or c or a <= 0 or d <= 0 or "\n" in text.strip():
            upright[0] = False
        fragments.append(_Fragment(text.strip(), x, y, size * a))

    text = page.extract_text(visitor_text=visit)
    if not upright[0] or page.get("/Rotate", 0) % 360:
        return text
    columns = _two_columns(fragments, float(page.mediabox.left), float(page.mediabox.width))
    if columns is None:
        return text
    return "\n".join(_lines(column) for column in columns)


def _two_columns(
    fragments: list[_Fragment], left: float, width: float
) -> tuple[list[_Fragment], list[_Fragment]] | None:
    """The left and right columns, when a gutter splits every fragment into two full columns."""
    # The right column starts at one of the fragments' x in the page's middle half.
    starts = sorted({round(f.x, 1) for f in fragments if left + width / 4 <= f.x <= left + width * 3 / 4})
    for start in starts:
        left_column = [f for f in fragments if f.x < start - 1]
        right_column = [f for f in fragments if f.x >= start - 1]
        if not left_column or any(f.end > start for f in left_column):
            continue  # a fragment crosses the gap: no gutter here
        if min(_line_count(left_column), _line_count(right_column)) < MIN_LINES:
            return None
        pitch = start - min(f.x for f in left_column)
        if min(_fullness(left_column), _fullness(right_column)) < MIN_FULLNESS * pitch:
            return None
        return left_column, right_column
    return None


def _line_count(column: list[_Fragment]) -> int:
    return len(_group_lines(column))


def _fullness(column: list[_Fragment]) -> float:
    """The median width of the column's lines."""
    return median(max(f.end for f in line) - min(f.x for f in line) for line in _group_lines(column))


def _group_lines(column: list[_Fragment]) -> list[list[_Fragment]]:
    """The column's fragments as lines, top to bottom, each left to right."""
    lines: list[list[_Fragment]] = []
    for fragment in sorted(column, key=lambda f: (-f.y, f.x)):
        if lines and abs(lines[-1][0].y - fragment.y) <= fragment.size / 2:
            lines[-1].append(fragment)
        else:
            lines.append([fragment])
    return [sorted(line, key=lambda f: f.x) for line in lines]


def _lines(column: list[_Fragment]) -> str:
    out = []
    for line in _group_lines(column):
        text = line[0].text
        for before, fragment in zip(line, line[1:]):
            # A gap wider than a fifth of an em is a word space; less is a
            # font change inside a word.
            text += (" " if fragment.x - before.end > fragment.size / 5 else "") + fragment.text
        out.append(text)
    return "\n".join(out)
