"""The administrators' page: the accounts, and adding, disabling, unlocking and resetting them. Administrators
manage accounts, not patients: nothing of a record is on this page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.accounts import AccountError, Accounts, User
from app.ui.signed_in import signed_in_html
from app.ui.signins import SignIns
from storage import UserExists, UserInfo
from storage.schema import utc_now

COLUMNS = ["name", "role", "sign-in", "state"]


class AdminPage:
    def __init__(self, accounts: Accounts, user_of: Callable[[gr.Request], User], signins: SignIns) -> None:
        self.accounts = accounts
        self.user_of = user_of
        self.signins = signins
        with gr.Blocks(title="Clinidoc · accounts", analytics_enabled=False) as self.blocks:
            self.signed_in = gr.HTML()
            gr.Markdown("## Accounts\nClinicians see only their own sessions; auditors read the audit log; "
                        "administrators manage accounts here or with `clinidoc users`.")
            self.table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Accounts")
            with gr.Row():
                self.name = gr.Textbox(label="User name")
                self.role = gr.Dropdown(["clinician", "auditor", "administrator"], value="clinician", label="Role")
                self.password = gr.Textbox(label="Password (at least 12 characters)", type="password")
            with gr.Row():
                add = gr.Button("Add account", variant="primary")
                reset = gr.Button("Set this password")
                unlock = gr.Button("Unlock")
                enable = gr.Button("Enable")
                disable = gr.Button("Disable", variant="stop")
            self.result = gr.Markdown()
            outputs = [self.table, self.result, self.password]
            self.blocks.load(self._show, outputs=[self.signed_in, self.table])
            add.click(self._add, inputs=[self.name, self.role, self.password], outputs=outputs)
            reset.click(self._reset, inputs=[self.name, self.password], outputs=outputs)
            unlock.click(self._unlock, inputs=self.name, outputs=outputs)
            enable.click(self._enable, inputs=self.name, outputs=outputs)
            disable.click(self._disable, inputs=self.name, outputs=outputs)

    def _show(self, request: gr.Request) -> list[Any]:
        return [signed_in_html(self.user_of(request)), _rows(self.accounts.accounts())]

    def _add(self, name: str, role: str, password: str, request: gr.Request) -> list[Any]:
        return self._do(lambda by: self.accounts.add(by, name, role, password), f"Added {name.strip()} ({role}).",
                        request)

    def _reset(self, name: str, password: str, request: gr.Request) -> list[Any]:
        return self._do(lambda by: self.accounts.reset_password(by, name, password), f"New password set for {name}.",
                        request)

    def _unlock(self, name: str, request: gr.Request) -> list[Any]:
        return self._do(lambda by: self.accounts.unlock(by, name), f"{name}: unlocked.", request)

    def _enable(self, name: str, request: gr.Request) -> list[Any]:
        return self._do(lambda by: self.accounts.set_disabled(by, name, disabled=False), f"{name}: enabled.", request)

    def _disable(self, name: str, request: gr.Request) -> list[Any]:
        def disable(by: User) -> None:
            self.accounts.set_disabled(by, name, disabled=True)
            self.signins.end_user(name)  # a disabled account's open browsers are signed out at once

        return self._do(disable, f"{name}: disabled.", request)

    def _do(self, act: Callable[[User], Any], done: str, request: gr.Request) -> list[Any]:
        try:
            act(self.user_of(request))
            message = done
        except (AccountError, UserExists, PermissionError) as error:
            message = f"**Not done.** {error}"
        return [_rows(self.accounts.accounts()), message, ""]


def _rows(accounts: list[UserInfo]) -> list[list[str]]:
    now = utc_now()
    return [
        [account.name, account.role, "directory" if account.source == "directory" else "password",
         "disabled" if account.disabled else
         f"locked until {account.locked_until.astimezone():%H:%M}" if account.locked_until and account.locked_until > now
         else "active"]
        for account in accounts
    ]
