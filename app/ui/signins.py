"""Signed-in browsers: a random token in an HttpOnly cookie stands for a user until they sign out or stay idle.

Kept in the server's memory, not in the cookie, so signing out (or a restart) ends a sign-in at once and nothing
about the user travels to the browser. Idle means no action of the user's (an event, an upload, a page load, an
export); the page's own background requests do not count, so a screen left open is signed out on time.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.accounts import User

COOKIE = "clinidoc_signin"


@dataclass
class _SignIn:
    user: User
    last_action: float  # the clock's time of the user's last action


class SignIns:
    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self._by_token: dict[str, _SignIn] = {}
        self._lock = threading.Lock()

    def start(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._by_token[token] = _SignIn(user, self.clock())
        return token

    def user(self, token: str | None, action: bool) -> User | None:
        """The user a token stands for, or None when it stands for none (any more). `action` marks this request
        as the user's own doing, which restarts the idle clock."""
        if not token:
            return None
        with self._lock:
            signin = self._by_token.get(token)
            if signin is None or self.clock() - signin.last_action > self.idle_s:
                return None
            if action:
                signin.last_action = self.clock()
            return signin.user

    def end(self, token: str | None) -> User | None:
        """Signs the token out; returns whose it was."""
        with self._lock:
            signin = self._by_token.pop(token or "", None)
        return None if signin is None else signin.user

    def end_idle(self) -> list[User]:
        """Signs out every sign-in idle past the limit; returns their users, for the audit log."""
        now = self.clock()
        with self._lock:
            idle = [token for token, signin in self._by_token.items() if now - signin.last_action > self.idle_s]
            return [self._by_token.pop(token).user for token in idle]

    def end_user(self, name: str) -> None:
        """Signs a user out everywhere: their account was disabled."""
        with self._lock:
            for token in [token for token, signin in self._by_token.items() if signin.user.name == name]:
                del self._by_token[token]
