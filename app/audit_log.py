"""The audit log as an auditor reads it: filtered, as a table and as a CSV file. Only an auditor reads it, and each
reading is itself audited."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from app.accounts import User
from storage import AuditEvent, Database, list_events, record_event

COLUMNS = ["id", "time (UTC)", "user", "action", "session", "address", "detail"]


class AuditFilters(BaseModel):
    user: str | None = None
    session: int | None = None
    action: str | None = None
    since: datetime | None = None  # from this moment on
    until: datetime | None = None  # before this moment

    @classmethod
    def parse(cls, user: str | None = None, session: int | str | None = None, action: str | None = None,
              since: str | None = None, until: str | None = None) -> AuditFilters:
        """Filters as a form gives them: empty fields are no filter, days are YYYY-MM-DD (UTC) and `until`
        takes in its whole day. Raises ValueError with what is wrong."""
        def day(text: str | None, name: str) -> datetime | None:
            if not text or not text.strip():
                return None
            try:
                return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                raise ValueError(f"{name} is a day written YYYY-MM-DD.") from None

        last_day = day(until, "Until")
        return cls(
            user=(user or "").strip() or None,
            session=int(session) if str(session or "").strip() else None,
            action=(action or "").strip() or None,
            since=day(since, "Since"),
            until=last_day + timedelta(days=1) if last_day else None,
        )


def read_events(db: Database, by: User, filters: AuditFilters, export: bool = False) -> list[AuditEvent]:
    """The events matching `filters`, for an auditor only; the reading is recorded in the log it reads."""
    if by.role != "auditor":
        raise PermissionError("Only an auditor reads the audit log.")
    events = list_events(db, session_id=filters.session, user=filters.user, action=filters.action,
                         since=filters.since, until=filters.until)
    described = ", ".join(f"{key}={value}" for key, value in filters.model_dump(exclude_none=True).items())
    record_event(db, by.name, "audit_export" if export else "audit_view",
                 detail=f"{len(events)} events" + (f"; {described}" if described else ""), address=by.address)
    return events


def audit_rows(events: list[AuditEvent]) -> list[list[str]]:
    return [
        [str(event.id), event.created_at.strftime("%Y-%m-%d %H:%M:%S"), event.user, event.action,
         "" if event.session_id is None else str(event.session_id), event.address or "", event.detail or ""]
        for event in events
    ]


def audit_csv(events: list[AuditEvent]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    # A cell that starts like a formula is prefixed, so a spreadsheet shows it and does not run it.
    writer.writerows([[f"'{cell}" if cell[:1] in ("=", "+", "-", "@") else cell for cell in row]
                      for row in audit_rows(events)])
    return buffer.getvalue()
