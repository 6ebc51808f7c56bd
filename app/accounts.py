"""Who is asking: accounts, passwords, sign-in with lockout, and directory (LDAP / Active Directory) sign-in.

Passwords are hashed with Argon2id (`argon2-cffi`, its RFC 9106 low-memory profile); a directory account has no
password here and signs in by binding to the directory with `ldap3`. Every attempt, and every change an
administrator makes, is written to the audit log.
"""

from __future__ import annotations

from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel

from app.settings import Settings
from storage import (
    Database,
    UserInfo,
    UserNotFound,
    UserRole,
    add_user,
    get_user,
    list_users,
    password_hash,
    record_event,
    update_user,
)
from storage.schema import utc_now

# The shortest password accepted: NIST SP 800-63B asks at least 8, a hospital's policy usually 12 or more.
MIN_PASSWORD = 12
_HASHER = PasswordHasher()
# Verified when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class User(BaseModel, frozen=True):
    """The signed-in user of one request: every assistant call takes one, and storage finds only their sessions."""

    name: str
    role: UserRole = "clinician"
    address: str | None = None  # where the request came from, for the audit log; None on the command line


class SignInRefused(Exception):
    """A sign-in that did not succeed, with the words to show on the sign-in page."""


class AccountError(ValueError):
    """An administrator's request that cannot be done (a short password, an unknown name), with why."""


class Accounts:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # --- Sign-in -----------------------------------------------------------------------------------------------

    def sign_in(self, name: str, password: str, address: str | None) -> User:
        """The user for a name and password, or SignInRefused. A name that fails `signin_attempts` times in a row
        is locked for `lockout_minutes`, whichever password comes next."""
        name = name.strip()
        account = get_user(self.db, name) if name else None
        refused = "The name or the password is not right."
        if account is not None and account.locked_until is not None and account.locked_until > utc_now():
            self._audit(name, "signin_failed", "account locked", address)
            until = account.locked_until.astimezone().strftime("%H:%M")
            raise SignInRefused(f"This account is locked after repeated failed sign-ins, until {until}. "
                                "An administrator can unlock it sooner.")
        if account is not None and account.disabled:
            _verify(_DUMMY_HASH, password)
            self._audit(name, "signin_failed", "account disabled", address)
            raise SignInRefused("This account is disabled. Ask an administrator.")
        if account is not None and account.source == "local" and account.has_password:
            ok = _verify(password_hash(self.db, name) or _DUMMY_HASH, password)
        elif self.settings.ldap_url and name and (account is None or account.source == "directory"):
            ok = self._directory_bind(name, password)
            if ok and account is None:
                account = add_user(self.db, name, "clinician", None, source="directory")
                self._audit(name, "account_add", "clinician, from the directory", address)
        else:
            _verify(_DUMMY_HASH, password)
            ok = False
        if account is None:
            self._audit(name or "(no name)", "signin_failed", "unknown name", address)
            raise SignInRefused(refused)
        if not ok:
            failures = account.failed_signins + 1
            locked = failures >= self.settings.signin_attempts
            update_user(self.db, name, failed_signins=0 if locked else failures,
                        locked_until=utc_now() + timedelta(minutes=self.settings.lockout_minutes) if locked else None)
            self._audit(name, "signin_failed", "wrong password" + (", account locked" if locked else ""), address)
            raise SignInRefused(refused)
        if account.failed_signins or account.locked_until:
            update_user(self.db, name, failed_signins=0, locked_until=None)
        self._audit(name, "signin", account.role, address)
        return User(name=name, role=account.role, address=address)

    def sign_out(self, user: User, why: str) -> None:
        self._audit(user.name, "signout", why, user.address)

    def _directory_bind(self, name: str, password: str) -> bool:
        """Whether the directory accepts the name and password: a simple bind as the user's DN, over StartTLS
        when the setting asks. An unreachable directory refuses, and says so in the audit log."""
        from ldap3 import Connection, Server
        from ldap3.core.exceptions import LDAPException
        from ldap3.utils.dn import escape_rdn

        if not password:
            return False  # an empty password would be an anonymous bind, which "succeeds"
        dn = self.settings.ldap_user_dn.format(name=escape_rdn(name))
        try:
            connection = Connection(Server(self.settings.ldap_url, connect_timeout=5), user=dn, password=password,
                                    receive_timeout=10)
            if self.settings.ldap_start_tls:
                connection.open()
                connection.start_tls()
            ok = connection.bind()
            connection.unbind()
            return bool(ok)
        except LDAPException as error:
            self._audit(name, "directory_error", type(error).__name__, None)
            return False

    # --- Administration ------------------------------------------------------------------------------------------

    def add(self, by: User, name: str, role: UserRole, password: str | None) -> UserInfo:
        """A new account. `password` None makes a directory account, which signs in through the directory."""
        _require_administrator(by)
        name = name.strip()
        if not name or any(c.isspace() or not c.isprintable() for c in name):
            raise AccountError("A user name is one word of printable characters.")
        if password is not None:
            _check_password(name, password)
        account = add_user(self.db, name, role, None if password is None else _HASHER.hash(password),
                           source="local" if password is not None else "directory")
        self._audit(by.name, "account_add", f"{name}: {role}", by.address)
        return account

    def reset_password(self, by: User, name: str, password: str) -> UserInfo:
        _require_administrator(by)
        account = self._account(name)
        if account.source != "local":
            raise AccountError(f"{name} signs in through the directory; its password is changed there.")
        _check_password(name, password)
        updated = update_user(self.db, name, password_hash=_HASHER.hash(password), failed_signins=0,
                              locked_until=None)
        self._audit(by.name, "account_password_reset", name, by.address)
        return updated

    def set_disabled(self, by: User, name: str, disabled: bool) -> UserInfo:
        _require_administrator(by)
        if disabled and name == by.name:
            raise AccountError("An administrator does not disable their own account; another administrator can.")
        self._account(name)
        updated = update_user(self.db, name, disabled=disabled)
        self._audit(by.name, "account_disable" if disabled else "account_enable", name, by.address)
        return updated

    def unlock(self, by: User, name: str) -> UserInfo:
        _require_administrator(by)
        self._account(name)
        updated = update_user(self.db, name, failed_signins=0, locked_until=None)
        self._audit(by.name, "account_unlock", name, by.address)
        return updated

    def accounts(self) -> list[UserInfo]:
        return list_users(self.db)

    def can_sign_in(self) -> bool:
        """Whether anyone can sign in through the browser: an enabled account with a password, or a directory."""
        return bool(self.settings.ldap_url) or any(
            account.has_password and not account.disabled for account in list_users(self.db))

    def has_administrator(self) -> bool:
        return any(account.role == "administrator" and not account.disabled for account in list_users(self.db))

    def _account(self, name: str) -> UserInfo:
        account = get_user(self.db, name)
        if account is None:
            raise AccountError(str(UserNotFound(name)))
        return account

    def _audit(self, user: str, action: str, detail: str | None, address: str | None) -> None:
        record_event(self.db, user, action, detail=detail, address=address)


def _require_administrator(user: User) -> None:
    if user.role != "administrator":
        raise PermissionError("Only an administrator manages accounts.")


def _check_password(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"A password has at least {MIN_PASSWORD} characters.")
    if name.casefold() in password.casefold():
        raise AccountError("A password does not contain the user's name.")


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
