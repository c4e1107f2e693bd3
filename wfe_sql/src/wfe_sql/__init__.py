"""The shared SQL layer of wfe: one schema (SQLAlchemy Core), its migrations and the
repository code every SQL dialect uses.

A dialect package (``wfe_sqlite``, ``wfe_postgres``, yours) implements a
:class:`SqlDriver` -- its async driver plus its specifics -- and gets the persistence,
lock and queue providers from here:

- :class:`SqlPersistenceProvider` -- the whole persistence contract;
- :class:`SqlLockProvider` -- leases in the ``wfe_locks`` table;
- :class:`SqlQueueProvider` -- FIFO queues in the ``wfe_queue`` table.

See this package's README for how a new dialect plugs in.
"""

from wfe_sql.driver import (
    IntegrityViolation,
    Row,
    SqlDriver,
    SqlSession,
    Statement,
    compile_statement,
)
from wfe_sql.locks import SqlLockProvider
from wfe_sql.migrations import MIGRATIONS, Migration, SchemaVersionError, migrate
from wfe_sql.provider import SqlPersistenceProvider
from wfe_sql.queues import SqlQueueProvider
from wfe_sql.schema import SCHEMA_VERSION, metadata

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "IntegrityViolation",
    "Migration",
    "Row",
    "SchemaVersionError",
    "SqlDriver",
    "SqlLockProvider",
    "SqlPersistenceProvider",
    "SqlQueueProvider",
    "SqlSession",
    "Statement",
    "compile_statement",
    "metadata",
    "migrate",
]
