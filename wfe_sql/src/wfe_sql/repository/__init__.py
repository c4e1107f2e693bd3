"""The parts :class:`~wfe_sql.SqlPersistenceProvider` is built from, one module per
repository of the persistence contract:

- :mod:`~wfe_sql.repository.codec` -- :class:`RowCodec`, stored forms of model objects
  and the objects rebuilt from rows;
- :mod:`~wfe_sql.repository.base` -- :class:`SqlRepositoryBase`, the driver, compiled
  statements, lifecycle and clock every part shares (on :class:`wfe_core.ProviderBase`);
- :mod:`~wfe_sql.repository.workflows` -- instances, ownership claims, control requests;
- :mod:`~wfe_sql.repository.subscriptions` -- subscriptions and their tokens;
- :mod:`~wfe_sql.repository.events` -- events;
- :mod:`~wfe_sql.repository.commands` -- scheduled commands;
- :mod:`~wfe_sql.repository.errors` -- the execution error log;
- :mod:`~wfe_sql.repository.definitions` -- definition documents (definitions as data).

Use :class:`~wfe_sql.SqlPersistenceProvider` (or a dialect's subclass of it); these
classes are its building blocks, not providers on their own.
"""

from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.repository.codec import RowCodec
from wfe_sql.repository.commands import SqlCommandRepository
from wfe_sql.repository.definitions import SqlDefinitionRepository
from wfe_sql.repository.errors import SqlErrorRepository
from wfe_sql.repository.events import SqlEventRepository
from wfe_sql.repository.subscriptions import SqlSubscriptionRepository
from wfe_sql.repository.workflows import SqlWorkflowRepository

__all__ = [
    "RowCodec",
    "SqlCommandRepository",
    "SqlDefinitionRepository",
    "SqlErrorRepository",
    "SqlEventRepository",
    "SqlRepositoryBase",
    "SqlSubscriptionRepository",
    "SqlWorkflowRepository",
]
