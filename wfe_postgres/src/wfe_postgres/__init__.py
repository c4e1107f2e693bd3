"""PostgreSQL providers for wfe: persistence, lock and queue in one database schema.

Any number of worker processes on one database cooperate with no other service::

    from wfe_core import WorkflowHost

    host = WorkflowHost.from_url("postgresql://app@db.example.com/app?schema=wfe")

or build the pieces yourself::

    from wfe_postgres import PostgresPersistenceProvider

    async with PostgresPersistenceProvider("postgresql://app@db/app") as store:
        ...
"""

from wfe_postgres.components import provider_from_url
from wfe_postgres.driver import DEFAULTS, ConnectionOptions, Listener, PostgresDriver
from wfe_postgres.provider import (
    PostgresLockProvider,
    PostgresPersistenceProvider,
    PostgresQueueProvider,
)
from wfe_postgres.url import PostgresUrl, parse_postgres_url

__all__ = [
    "DEFAULTS",
    "ConnectionOptions",
    "Listener",
    "PostgresDriver",
    "PostgresLockProvider",
    "PostgresPersistenceProvider",
    "PostgresQueueProvider",
    "PostgresUrl",
    "parse_postgres_url",
    "provider_from_url",
]
