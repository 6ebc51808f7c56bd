"""The line at the top of every page: who is signed in, in which role, how the database is kept, and signing out."""

from html import escape

from app.accounts import User


def signed_in_html(user: User, encrypted: bool | None = None) -> str:
    storage = "" if encrypted is None else (
        " · records encrypted at rest" if encrypted else " · records not encrypted at rest")
    return (f'<p class="signed-in">Signed in as <b>{escape(user.name)}</b> ({user.role}){storage} · '
            '<a href="/logout">Sign out</a></p>')
