"""The auditors' page: the audit log, filtered, and its CSV. Nothing of a record is on it: events name sessions by
number and documents by their hash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import gradio as gr

from app.accounts import User
from app.audit_log import COLUMNS, AuditFilters, audit_rows, read_events
from app.ui.signed_in import signed_in_html
from storage import Database, verify_events


class AuditPage:
    def __init__(self, db: Database, user_of: Callable[[gr.Request], User]) -> None:
        self.db = db
        self.user_of = user_of
        with gr.Blocks(title="Clinidoc · audit log", analytics_enabled=False) as self.blocks:
            self.signed_in = gr.HTML()
            gr.Markdown("## Audit log\nEvery sign-in, upload, summary, question, answer, export, deletion and "
                        "account change, oldest first. Days are UTC.")
            self.integrity = gr.Markdown()
            with gr.Row():
                self.user = gr.Textbox(label="User")
                self.action = gr.Textbox(label="Action", placeholder="signin, upload, question, export…")
                self.session = gr.Textbox(label="Session")
                self.since = gr.Textbox(label="Since (YYYY-MM-DD)")
                self.until = gr.Textbox(label="Until (YYYY-MM-DD)")
            show = gr.Button("Show", variant="primary")
            self.download = gr.HTML()
            self.table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Events", wrap=True,
                                      column_widths=["6%", "15%", "11%", "13%", "8%", "11%", "36%"])
            filters = [self.user, self.action, self.session, self.since, self.until]
            outputs = [self.signed_in, self.integrity, self.table, self.download]
            self.blocks.load(self._show, inputs=filters, outputs=outputs)
            show.click(self._show, inputs=filters, outputs=outputs)

    def _show(self, user: str, action: str, session: str, since: str, until: str, request: gr.Request) -> list[Any]:
        auditor = self.user_of(request)
        try:
            filters = AuditFilters.parse(user=user, session=session, action=action, since=since, until=until)
        except ValueError as error:
            return [signed_in_html(auditor), f"**Not shown.** {error}", gr.skip(), gr.skip()]
        events = read_events(self.db, auditor, filters)
        check = verify_events(self.db)
        integrity = (f"The log is whole: {check.rows:,} events, none changed or removed." if check.ok
                     else f"**The log was tampered with:** {check.problem}.")
        query = urlencode({key: value for key, value in
                           dict(user=user, action=action, session=session, since=since, until=until).items() if value})
        link = f'<a class="export-link" href="/audit.csv?{query}" download>Download these events as CSV</a>'
        return [signed_in_html(auditor), integrity, audit_rows(events), link]
