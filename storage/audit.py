"""The audit log as an append-only chain: each row is sealed with an HMAC of its own fields and of the seal before it.

An edited row no longer matches its seal; a deleted row breaks the next row's link; removing the newest rows leaves
the head (the count of rows and the last seal, kept in `audit_head`) pointing past the end. The key that seals lives
outside the database (the app keeps it in a file only the service user reads), so someone who can write the
database but not read the key cannot reseal what they changed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from storage.models import AuditCheck
from storage.schema import AuditEventRow, AuditHeadRow, UTCDateTime

# The seal before the first row.
GENESIS = "0" * 64


def append(
    s: Session, key: bytes, user: str, action: str, session_id: int | None, detail: str | None, address: str | None,
    created_at: datetime,
) -> None:
    """Adds one sealed row; `s` holds the write lock, so no other row can be sealed against the same head."""
    head = s.get(AuditHeadRow, 1) or AuditHeadRow(id=1, rows=0, seal=GENESIS)
    row = AuditEventRow(user=user, action=action, session_id=session_id, detail=detail, address=address,
                        created_at=created_at, previous_seal=head.seal)
    s.add(row)
    s.flush()  # gives the row its id, which the seal covers
    row.seal = _seal(key, row)
    head.rows += 1
    head.seal = row.seal
    s.merge(head)


def verify(s: Session, key: bytes) -> AuditCheck:
    """Walks the chain from the first row: the first row that is not as it was sealed, or a head that does not
    match the last row, is reported."""
    previous, rows = GENESIS, 0
    for row in s.scalars(select(AuditEventRow).order_by(AuditEventRow.id)):
        rows += 1
        if row.previous_seal != previous:
            return AuditCheck(ok=False, rows=rows, problem=f"the row before event {row.id} was deleted or changed")
        if row.seal is None or not hmac.compare_digest(row.seal, _seal(key, row)):
            return AuditCheck(ok=False, rows=rows, problem=f"event {row.id} was changed after it was written")
        previous = row.seal
    head = s.get(AuditHeadRow, 1)
    expected = (head.rows, head.seal) if head else (0, GENESIS)
    if expected != (rows, previous):
        return AuditCheck(ok=False, rows=rows, problem="the newest events were deleted")
    return AuditCheck(ok=True, rows=rows, problem=None)


def seal_existing(conn: Connection, key: bytes) -> None:
    """Migration: seals the rows written before the log was a chain, in the order they were written."""
    with Session(bind=conn) as s:
        previous, rows = GENESIS, 0
        for row in s.scalars(select(AuditEventRow).order_by(AuditEventRow.id)):
            row.previous_seal = previous
            row.seal = previous = _seal(key, row)
            rows += 1
        s.add(AuditHeadRow(id=1, rows=rows, seal=previous))
        s.flush()


def _seal(key: bytes, row: AuditEventRow) -> str:
    # The time as stored (naive UTC), so a row read back seals to the same bytes it was sealed with.
    stored_time = UTCDateTime().process_bind_param(row.created_at, None)
    fields = [row.id, row.user, row.action, row.session_id, row.detail, row.address,
              stored_time.isoformat() if stored_time else None, row.previous_seal]
    return hmac.new(key, json.dumps(fields, ensure_ascii=False).encode(), hashlib.sha256).hexdigest()
