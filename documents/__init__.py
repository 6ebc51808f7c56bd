"""Clinical documents: reading PDF, Word, text, FHIR and C-CDA files, and assembling them into one record.

Every document comes with its provenance: where each line of a structured
file came from, how cleaned text maps back to what was extracted, its sections
and dates, and a coverage report of what was read and what was not.

This package stands alone: it imports nothing from engine, storage, prompts or app.
"""

from documents.coverage import with_tokens
from documents.document import (
    CcdaSource,
    Coverage,
    DateMention,
    Document,
    FhirSource,
    Page,
    Section,
    Skipped,
    SourceSpan,
    Span,
)
from documents.errors import DocumentError
from documents.load import load
from documents.offsets import OffsetMap
from documents.record import AssembledRecord, RecordSpan, assemble

__all__ = [
    "AssembledRecord",
    "CcdaSource",
    "Coverage",
    "DateMention",
    "Document",
    "DocumentError",
    "FhirSource",
    "OffsetMap",
    "Page",
    "RecordSpan",
    "Section",
    "Skipped",
    "SourceSpan",
    "Span",
    "assemble",
    "load",
    "with_tokens",
]
