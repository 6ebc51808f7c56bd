"""Offset maps: where each part of a cleaned text came from in the text a reader extracted."""

from bisect import bisect_right

from pydantic import BaseModel

# (start, end, original_start, original_end): cleaned text[start:end] stands for
# original text[original_start:original_end]. Pieces of equal length map
# character for character; a piece of another length replaced its original as a
# whole (a run of spaces by one, a line break and a blank run by "\n\n").
Piece = tuple[int, int, int, int]


class OffsetMap(BaseModel):
    """Pieces that tile the cleaned text in order; original text between pieces was removed."""

    pieces: list[Piece]

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind cleaned `text[start:end]`.

        It covers exactly the original text the span was made from: removed
        text at its edges is left out, removed text inside it is included.
        """
        length = self.pieces[-1][1] if self.pieces else 0
        if not 0 <= start <= end <= length:
            raise ValueError(f"span {start}:{end} is outside a cleaned text of {length} characters")
        if not self.pieces:
            return 0, 0
        if start == length:
            return (point := self.pieces[-1][3]), point
        first = self.pieces[bisect_right(self.pieces, start, key=lambda piece: piece[0]) - 1]
        original_start = _map(first, start, at_end=False)
        if start == end:
            return original_start, original_start
        last = self.pieces[bisect_right(self.pieces, end - 1, key=lambda piece: piece[0]) - 1]
        return original_start, _map(last, end, at_end=True)


def _map(piece: Piece, offset: int, at_end: bool) -> int:
    start, end, original_start, original_end = piece
    if end - start == original_end - original_start:
        return original_start + offset - start
    # Inside a replacement no character corresponds to another, so a span
    # that touches it takes in the whole of its original.
    return original_end if at_end else original_start


class Rewriter:
    """Builds a cleaned text from an original, left to right, recording the offset map as it goes."""

    def __init__(self, original: str) -> None:
        self._original = original
        self._parts: list[str] = []
        self._pieces: list[Piece] = []
        self._length = 0

    def copy(self, start: int, end: int) -> None:
        self._add(start, end, self._original[start:end])

    def replace(self, start: int, end: int, text: str) -> None:
        """Write `text` in place of original[start:end]; an empty `text` deletes it."""
        self._add(start, end, text)

    def result(self) -> tuple[str, OffsetMap]:
        return "".join(self._parts), OffsetMap(pieces=self._pieces)

    def _add(self, start: int, end: int, text: str) -> None:
        if not text:
            return
        piece = (self._length, self._length + len(text), start, end)
        last = self._pieces[-1] if self._pieces else None
        if (
            last is not None
            and last[3] == start
            and last[1] - last[0] == last[3] - last[2]
            and len(text) == end - start
        ):
            # Two character-for-character pieces that meet in both texts are one.
            self._pieces[-1] = (last[0], piece[1], last[2], end)
        else:
            self._pieces.append(piece)
        self._parts.append(text)
        self._length += len(text)
