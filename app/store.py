"""Opening the configured database: its file, its encryption key and the key that seals its audit log."""

from app.settings import Settings
from storage import Database, open_database


def open_store(settings: Settings) -> Database:
    """Raises SettingsError or DatabaseLocked with what to do when a key is missing, wrong or not private."""
    return open_database(settings.db_path, key=settings.database_key(), audit_key=settings.audit_key())
