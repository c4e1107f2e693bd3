"""The persistence provider shared by every SQL dialect.

:class:`SqlPersistenceProvider` implements the whole
:class:`~wfe_core.persistence.PersistenceProvider` contract on a :class:`SqlDriver`. A
dialect package subclasses it only to build its driver (see :mod:`wfe_sql.driver`). Its
code lives in :mod:`wfe_sql.repository`, one module per repository of the contract.

Hot path: every statement is compiled once per dialect (:mod:`wfe_sql.statements`), and
rows are converted by hand (:mod:`wfe_sql.repository.codec`), so at run time SQLAlchemy
does no work at all. A step checkpoint (``persist_workflow``) is one write transaction:
one ``UPDATE`` of the header guarded by the revision, one batched upsert of only the
changed pointers, and one batched insert of the new subscriptions when there are any.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_sql.repository import (
    SqlCommandRepository,
    SqlErrorRepository,
    SqlEventRepository,
    SqlSubscriptionRepository,
    SqlWorkflowRepository,
)
from wfe_sql.repository.definitions import SqlDefinitionRepository
from wfe_sql.repository.schedules import SqlScheduleRepository

if TYPE_CHECKING:
    from wfe_core.persistence import PersistenceProvider

__all__ = ["SqlPersistenceProvider"]


class SqlPersistenceProvider(
    SqlWorkflowRepository,
    SqlSubscriptionRepository,
    SqlEventRepository,
    SqlCommandRepository,
    SqlErrorRepository,
    SqlScheduleRepository,
    SqlDefinitionRepository,
):
    """A :class:`~wfe_core.persistence.PersistenceProvider` on a :class:`SqlDriver`.

    ``SqlPersistenceProvider(driver, *, serializer=None, clock=utcnow,
    capabilities=None, command_lease=60.0)``.

    Declares ``SCHEDULED_COMMANDS``, ``PURGE`` and ``DURABLE`` (pass ``capabilities``, a
    subset, to declare fewer: a dialect whose database can be private to the process,
    like SQLite's ``:memory:``, leaves ``DURABLE`` out). ``serializer`` writes and reads
    user values (default: the process-wide one); ``clock`` returns "now" (an aware
    datetime) for token expiry and command leases; ``command_lease`` is how many seconds
    a claimed scheduled command stays reserved for the processor that claimed it (a
    crashed processor's commands become due again after it).

    The schema is created or migrated on first use (``ensure_store_exists`` or any
    call). After :meth:`close` every call raises
    :class:`~wfe_core.errors.ProviderUnavailable`. Usable as ``async with``; it is a
    :class:`wfe_core.ProviderBase`.
    """


if TYPE_CHECKING:

    def _conforms(p: SqlPersistenceProvider) -> PersistenceProvider:
        return p  # mypy checks that the class implements the whole protocol
