"""SQLite providers for wfe: persistence, lock and queue on one database file.

Several worker processes on one machine can share the file with no other service::

    from wfe_core import WorkflowHost

    host = WorkflowHost.from_url("sqlite:///wfe.db")

or build the pieces yourself::

    from wfe_sqlite import SqlitePersistenceProvider

    async with SqlitePersistenceProvider("wfe.db") as store:
        ...
"""

from wfe_sqlite.backup import BackupError, BackupResult, backup
from wfe_sqlite.driver import MEMORY, Checkpoint, SqliteDriver, Synchronous
from wfe_sqlite.provider import (
    SqliteLockProvider,
    SqlitePersistenceProvider,
    SqliteQueueProvider,
)
from wfe_sqlite.url import parse_sqlite_url, provider_from_url

__all__ = [
    "MEMORY",
    "BackupError",
    "BackupResult",
    "Checkpoint",
    "SqliteDriver",
    "SqliteLockProvider",
    "SqlitePersistenceProvider",
    "SqliteQueueProvider",
    "Synchronous",
    "backup",
    "parse_sqlite_url",
    "provider_from_url",
]
