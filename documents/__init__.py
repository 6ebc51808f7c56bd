"""Clinical documents: reading PDF, Word and text files, and assembling them into one record.

This package stands alone: it imports nothing from engine, storage, prompts or app.
"""

from documents.document import Document, Page
from documents.errors import DocumentError
from documents.load import load
from documents.record import AssembledRecord, RecordSpan, assemble

__all__ = ["AssembledRecord", "Document", "DocumentError", "Page", "RecordSpan", "assemble", "load"]
