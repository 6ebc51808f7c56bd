"""Clinical documents: reading PDF, Word, text, FHIR and C-CDA files, and assembling them into one record.

Every document comes with its provenance: where each line of a structured
file came from, how cleaned text maps back to what was extracted, its sections
and dates, and a coverage report of what was read and what was not (scanned
pages OCR'd, or not and why). The clinical facts of a structured file
(medications, allergies, conditions, results, ...) are read from its entries,
each pointing to the line it was written into; those of free text are read
without a model, by dictionary and rule (text_facts), each pointing to its
words and saying whether the text denies it, supposes it or says it of
someone else. Reading reports its progress
page by page and can be cancelled. A record longer than the model's budget is
cut to the passages most relevant to the question, and says which pages it
left out.

This package stands alone: it imports nothing from engine, storage, prompts or app.
"""

from documents.coverage import with_tokens
from documents.document import (
    CcdaSource,
    Coverage,
    DateMention,
    Document,
    Fact,
    FactCategory,
    FhirSource,
    Page,
    Section,
    Skipped,
    SourceSpan,
    Span,
)
from documents.errors import Cancelled, DocumentError, PasswordRequired
from documents.load import load
from documents.offsets import OffsetMap
from documents.patient import PatientIdentity, identify
from documents.record import AssembledRecord, PageRef, RecordSpan, Retrieval, assemble

__all__ = [
    "AssembledRecord",
    "Cancelled",
    "CcdaSource",
    "Coverage",
    "DateMention",
    "Document",
    "DocumentError",
    "Fact",
    "FactCategory",
    "FhirSource",
    "OffsetMap",
    "Page",
    "PageRef",
    "PasswordRequired",
    "PatientIdentity",
    "RecordSpan",
    "Retrieval",
    "Section",
    "Skipped",
    "SourceSpan",
    "Span",
    "assemble",
    "identify",
    "load",
    "with_tokens",
]
