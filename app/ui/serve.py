"""Serving the pages: on this machine only by default, beyond it only over TLS; with the daily and half-minute
chores of a server that holds patients' records (retention, idle sign-outs)."""

from __future__ import annotations

import ipaddress
import shutil
import threading
import time

import uvicorn

from app.accounts import Accounts
from app.assistant import Assistant
from app.settings import Settings, SettingsError
from app.ui.web import Web
from storage import list_events, record_event

# How often idle sign-ins are ended, and how often retention runs after the start.
IDLE_SWEEP_S = 30
RETENTION_S = 24 * 3600


def serve(assistant: Assistant, accounts: Accounts, settings: Settings) -> None:
    """Serve until interrupted. Blocks the calling thread."""
    tls = check_transport(settings)
    record_settings(assistant, settings)
    recover(assistant, settings)
    web = Web(assistant, accounts, settings)
    app = web.app()
    _every(IDLE_SWEEP_S, web.end_idle, "idle sign-outs")
    if settings.retention_days is not None:
        assistant.apply_retention(settings.retention_days)
        _every(RETENTION_S, lambda: assistant.apply_retention(settings.retention_days), "retention")
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="warning",
        ssl_certfile=str(settings.tls_cert) if tls else None, ssl_keyfile=str(settings.tls_key) if tls else None,
        # Behind a TLS proxy the client's address is the proxy's forwarded one; otherwise no header is believed.
        proxy_headers=settings.behind_tls_proxy, forwarded_allow_ips="*" if settings.behind_tls_proxy else None,
        # Open pages hold streams that never end by themselves: a stop should not wait on them.
        timeout_graceful_shutdown=5,
    )


def recover(assistant: Assistant, settings: Settings) -> None:
    """What a crash may have left: turns still being answered are marked interrupted, and the files of uploads that
    were being read are deleted (patient files, kept nowhere but under the data dir)."""
    assistant.recover_interrupted()
    if settings.uploads_dir.exists():
        shutil.rmtree(settings.uploads_dir)


def check_transport(settings: Settings) -> bool:
    """Whether the server itself speaks TLS. Refuses, with what to set, to serve beyond this machine in the clear."""
    if settings.tls_cert is not None or settings.tls_key is not None:
        if settings.tls_cert is None or settings.tls_key is None:
            raise SettingsError("TLS needs both CLINIDOC_TLS_CERT (the certificate) and CLINIDOC_TLS_KEY (its key).")
        return True
    if not _loopback(settings.host) and not settings.behind_tls_proxy:
        raise SettingsError(
            f"Serving on {settings.host} reaches beyond this machine, and patients' records must not travel in the "
            "clear: set CLINIDOC_TLS_CERT and CLINIDOC_TLS_KEY, or CLINIDOC_BEHIND_TLS_PROXY=true when a TLS "
            "proxy in front of Clinidoc is the only way in."
        )
    return False


def record_settings(assistant: Assistant, settings: Settings) -> None:
    """Audits the security settings the server starts with, when they differ from the last start's."""
    described = "; ".join([
        f"database {'encrypted' if assistant.db.encrypted else 'not encrypted'}",
        f"host {settings.host}",
        f"TLS {'here' if settings.tls_cert else 'at a proxy' if settings.behind_tls_proxy else 'none'}",
        f"idle sign-out {settings.idle_logoff_minutes:g} min",
        f"lockout after {settings.signin_attempts} failures for {settings.lockout_minutes:g} min",
        f"directory {settings.ldap_url or 'none'}",
        f"retention {f'{settings.retention_days} days' if settings.retention_days else 'none'}",
    ])
    earlier = list_events(assistant.db, action="settings")
    if not earlier or earlier[-1].detail != described:
        record_event(assistant.db, "clinidoc", "settings", detail=described)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _every(seconds: float, chore, name: str) -> None:
    def run() -> None:
        while True:
            time.sleep(seconds)
            chore()

    threading.Thread(target=run, name=name, daemon=True).start()
