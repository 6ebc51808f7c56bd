"""The web server: a sign-in page in front of three Gradio pages, one per role, and the routes that hand a file to
its owner only.

A FastAPI application rather than Gradio's own `auth`: Gradio's login keeps a sign-in for as long as its cookie
lives, with no idle limit, no lockout, no audit and no roles. Here the sign-in is this server's (app/ui/signins.py),
and each page is mounted with an `auth_dependency` that admits only its role, so every Gradio route (events, the
queue, uploads, `/gradio_api/file=`) is closed to anyone else. Gradio serves no file under the data directory at
all (`blocked_paths`): exports are made on request by `/export/<id>` for the session's owner, uploads are deleted
once read, and the audit log's CSV comes from `/audit.csv` for auditors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any

import gradio as gr
from fastapi import FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from app.accounts import Accounts, SignInRefused, User
from app.assistant import Assistant
from app.audit_log import AuditFilters, audit_csv, read_events
from app.export import ExportFormat
from app.settings import Settings
from app.ui.admin_page import AdminPage
from app.ui.audit_page import AuditPage
from app.ui.connection import CONNECTION_SCRIPT
from app.ui.page import Page
from app.ui.signins import COOKIE, SignIns
from app.ui.sources import SOURCES_SCRIPT
from app.ui.theme import CSS, THEME
from storage import SessionNotFound, UserRole

# Where each role lands after signing in; the clinicians' page is the root.
HOMES: dict[UserRole, str] = {"clinician": "/", "administrator": "/admin/", "auditor": "/audit/"}
# Requests a user makes by acting (an event, an upload, opening a page); the page's polling and streaming do not
# keep a sign-in alive.
_ACTIONS = ("/gradio_api/queue/join", "/gradio_api/upload", "/gradio_api/run/", "/gradio_api/call/")


class Web:
    def __init__(
        self, assistant: Assistant, accounts: Accounts, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.assistant = assistant
        self.accounts = accounts
        self.settings = settings
        self.signins = SignIns(settings.idle_logoff_minutes * 60, clock)
        self.secure_cookie = settings.tls_cert is not None or settings.behind_tls_proxy

    def user(self, request: Request | gr.Request, action: bool = False) -> User | None:
        """The signed-in user of a request, with the address it came from; None when nobody is signed in."""
        user = self.signins.user(request.cookies.get(COOKIE), action)
        if user is None:
            return None
        return user.model_copy(update={"address": _address(request)})

    def page_user(self, request: gr.Request) -> User:
        """The user of a Gradio event. The page's `auth_dependency` admitted the request, but a sign-in can end
        between that check and this one."""
        user = self.user(request)
        if user is None:
            raise gr.Error("Your sign-in has ended. Reload the page to sign in again.")
        return user

    def admits(self, role: UserRole) -> Callable[[Request], str | None]:
        def auth_dependency(request: Request) -> str | None:
            user = self.user(request, action=request.url.path.startswith(_ACTIONS))
            return user.name if user is not None and user.role == role else None

        return auth_dependency

    def end_idle(self) -> None:
        for user in self.signins.end_idle():
            self.accounts.sign_out(user, "idle")

    def app(self) -> FastAPI:
        # Gradio puts uploads in the folder this names when its pages and app are made: patient files belong
        # under the data dir (its sweep and ours delete them), never in the system's temp.
        os.environ["GRADIO_TEMP_DIR"] = str(self.settings.uploads_dir)
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        app.middleware("http")(self._guard)
        app.get("/login", response_class=HTMLResponse)(self._login_page)
        app.post("/login")(self._sign_in)
        app.get("/logout")(self._sign_out)
        app.get("/signin/state")(self._state)
        app.get("/export/{session_id}")(self._export)
        app.get("/audit.csv")(self._audit_csv)
        settings = self.settings
        common: dict[str, Any] = dict(
            blocked_paths=[str(settings.data_dir)], max_file_size=settings.max_upload_bytes, ssr_mode=False,
            enable_monitoring=False, show_error=True, theme=THEME, css=CSS, head=CONNECTION_SCRIPT + SOURCES_SCRIPT,
            footer_links=[],  # no links to an API page, to Gradio or to its settings
        )
        admin = AdminPage(self.accounts, self.page_user, self.signins)
        audit = AuditPage(self.assistant.db, self.page_user)
        page = Page(self.assistant, self.page_user, settings.max_upload_bytes, settings.max_record_tokens,
                    settings.max_batch, settings.concurrent_reads)
        # Only the page may call its events; no public API on patient data.
        page.blocks.queue(api_open=False, default_concurrency_limit=1)
        # The more specific paths first: the root page would take every path under it.
        for blocks, path, role in ((admin.blocks, "/admin", "administrator"), (audit.blocks, "/audit", "auditor"),
                                   (page.blocks, "/", "clinician")):
            gr.mount_gradio_app(app, blocks, path=path, auth_dependency=self.admits(role), **common)
        return app

    async def _guard(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Sends a browser that asks for a page without the right sign-in to where it belongs, and marks every
        response as not to be cached or framed."""
        path = request.url.path
        if request.method == "GET" and path.rstrip("/") in ("", "/admin", "/audit"):
            user = self.user(request, action=True)
            if user is None:
                # A sign-in cookie the server does not know any more: ended by a restart, or idle and swept.
                ended = "?ended=lapsed" if request.cookies.get(COOKIE) else ""
                return RedirectResponse(f"/login{ended}", status_code=303)
            home = HOMES[user.role]
            if path.rstrip("/") != home.rstrip("/"):
                return RedirectResponse(home, status_code=303)
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if self.secure_cookie:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    def _login_page(self, ended: str | None = None) -> HTMLResponse:
        message = {"idle": "You were signed out after a time without activity.",
                   "out": "You are signed out.",
                   "lapsed": "Your sign-in has ended: Clinidoc restarted, or the screen was idle. Sign in again "
                             "to go on with the session you had open."}.get(ended or "", "")
        return HTMLResponse(_login_html(message))

    def _sign_in(self, request: Request, name: str = Form(""), password: str = Form("")) -> Response:
        try:
            user = self.accounts.sign_in(name, password, _address(request))
        except SignInRefused as refused:
            return HTMLResponse(_login_html(str(refused), name=name, error=True), status_code=401)
        response = RedirectResponse(HOMES[user.role], status_code=303)
        response.set_cookie(COOKIE, self.signins.start(user), httponly=True, samesite="strict",
                            secure=self.secure_cookie, path="/")
        return response

    def _sign_out(self, request: Request) -> Response:
        user = self.signins.end(request.cookies.get(COOKIE))
        if user is not None:
            self.accounts.sign_out(user.model_copy(update={"address": _address(request)}), "by the user")
        response = RedirectResponse("/login?ended=out", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def _state(self, request: Request) -> JSONResponse:
        return JSONResponse({"signed_in": self.user(request) is not None})

    def _export(self, session_id: int, request: Request, form: ExportFormat = "markdown") -> Response:
        user = self.user(request, action=True)
        if user is None or user.role != "clinician":
            raise HTTPException(status_code=404)
        try:
            exported = self.assistant.export(user, session_id, form)
        except SessionNotFound:
            raise HTTPException(status_code=404) from None
        media, suffix = ("application/pdf", "pdf") if form == "pdf" else ("text/markdown; charset=utf-8", "md")
        return Response(exported, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="clinidoc-session-{session_id}.{suffix}"'})

    def _audit_csv(self, request: Request, user: str | None = None, session: int | None = None,
                   action: str | None = None, since: str | None = None, until: str | None = None) -> Response:
        auditor = self.user(request, action=True)
        if auditor is None or auditor.role != "auditor":
            raise HTTPException(status_code=404)
        filters = AuditFilters.parse(user=user, session=session, action=action, since=since, until=until)
        events = read_events(self.assistant.db, auditor, filters, export=True)
        return Response(audit_csv(events), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="clinidoc-audit.csv"'})


def _address(request: Request | gr.Request) -> str | None:
    """Where a request came from, for the audit log."""
    return request.client.host if request.client else None


def _login_html(message: str, name: str = "", error: bool = False) -> str:
    notice = f'<p class="{"error" if error else "notice"}" role="alert">{escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Clinidoc</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f6f8; color: #1b1f24; margin: 0; }}
main {{ max-width: 24rem; margin: 12vh auto; background: #fff; padding: 2rem; border-radius: 8px;
        box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
h1 {{ margin: 0 0 .25rem; font-size: 1.6rem; }}
p.lead {{ margin: 0 0 1.5rem; color: #3d4650; }}
label {{ display: block; font-weight: 600; margin: 1rem 0 .3rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .6rem; font-size: 1rem; border: 1px solid #59636e;
         border-radius: 4px; }}
input:focus, button:focus {{ outline: 3px solid #0b5cad; outline-offset: 2px; }}
button {{ margin-top: 1.5rem; width: 100%; padding: .7rem; font-size: 1rem; font-weight: 600; color: #fff;
          background: #0b5cad; border: 0; border-radius: 4px; cursor: pointer; }}
.error {{ color: #8a1116; background: #fdecec; padding: .6rem; border-radius: 4px; }}
.notice {{ color: #1b1f24; background: #e8f1fb; padding: .6rem; border-radius: 4px; }}
</style></head>
<body><main>
<h1>Clinidoc</h1>
<p class="lead">Sign in to work with patients' records on this machine.</p>
{notice}
<form method="post" action="/login">
<label for="name">User name</label>
<input id="name" name="name" autocomplete="username" required autofocus value="{escape(name)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main></body></html>"""
