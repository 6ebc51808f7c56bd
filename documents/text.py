"""Plain-text files (.txt, .md), and telling text from binary data."""

import codecs
import re

from documents.errors import DocumentError

UNSUPPORTED = "not a supported document type (PDF, DOCX, TXT, MD, FHIR JSON, C-CDA XML)"

# Control characters that do not occur in text. Tab, line feed, vertical tab,
# form feed and carriage return do, so they are left out.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")

# Real notes carry the odd stray control character (a DOS end-of-file mark,
# say); binary files decoded as text are full of them.
_MAX_CONTROL_SHARE = 0.01


def read_text(text: str, name: str) -> list[str]:
    """The one page of a text file, as decoded; cleaning comes later, for every format alike."""
    if not text.strip():
        raise DocumentError(name, "the file contains no text")
    return [text]


def decode(data: bytes) -> str | None:
    """The text that `data` holds, or None when it is binary, not text."""
    if data.startswith(codecs.BOM_UTF8):
        text = data[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace")
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
    elif b"\x00" in data:
        # Without a byte-order mark, a zero byte means binary: UTF-8 and the
        # single-byte encodings never use it for text.
        return None
    else:
        text = _decode_without_bom(data)
    if len(_CONTROL.findall(text)) > len(text) * _MAX_CONTROL_SHARE:
        return None
    return text


def _decode_without_bom(data: bytes) -> str:
    # Windows-1252 is what Windows editors and older clinical systems write.
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    # Latin-1 gives every byte a character, so this never fails; binary files
    # are caught afterwards by their control characters.
    return data.decode("latin-1")
