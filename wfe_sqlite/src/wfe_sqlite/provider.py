"""SQLite persistence, lock and queue providers: the shared :mod:`wfe_sql` code on a
:class:`~wfe_sqlite.driver.SqliteDriver`.

Each class takes a path (``"wfe.db"``, ``"/var/lib/app/wfe.db"``, ``":memory:"``) or an
existing :class:`SqliteDriver`; components built on one driver share its connections
(:func:`wfe_sqlite.provider_from_url` does that for you).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from wfe_core.capabilities import Capability
from wfe_core.models import utcnow
from wfe_core.serialization import Serializer
from wfe_sql.locks import SqlLockProvider
from wfe_sql.provider import SqlPersistenceProvider
from wfe_sql.queues import SqlQueueProvider

from wfe_sqlite.driver import Checkpoint, SqliteDriver, Synchronous

if TYPE_CHECKING:
    from wfe_core.locks import DistributedLockProvider
    from wfe_core.persistence import PersistenceProvider
    from wfe_core.queues import QueueProvider

__all__ = ["SqliteLockProvider", "SqlitePersistenceProvider", "SqliteQueueProvider"]

PathOrDriver = str | os.PathLike[str] | SqliteDriver
"""A database path, or a driver to share with other components."""

_MEMORY_CAPABILITIES = frozenset({Capability.SCHEDULED_COMMANDS, Capability.PURGE})
"""What a provider on a ``:memory:`` database declares (everything but ``DURABLE``)."""


def _driver(
    source: PathOrDriver,
    synchronous: Synchronous | str,
    busy_timeout: float,
    readers: int,
    namespace: str | None,
    checkpoint: Checkpoint | str = "auto",
) -> SqliteDriver:
    if isinstance(source, SqliteDriver):
        if namespace is not None and namespace != source.namespace:
            raise ValueError(
                f"namespace={namespace!r} was given with a SqliteDriver in namespace "
                f"{source.namespace!r}: a driver serves one namespace, so give the "
                "namespace to the driver (or pass a path)"
            )
        return source
    return SqliteDriver(
        source,
        synchronous=synchronous,
        busy_timeout=busy_timeout,
        readers=readers,
        namespace=namespace,
        checkpoint=checkpoint,
    )


class SqlitePersistenceProvider(SqlPersistenceProvider):
    """The wfe persistence provider on a SQLite database file (or ``:memory:``).

    ``synchronous``: ``"FULL"`` (default) makes every committed step checkpoint survive a
    power loss; ``"NORMAL"`` is much faster and loses at most the last commits on a power
    loss or OS crash (never on a crash of the process). ``busy_timeout`` (seconds) is how
    long a write waits for another process's write to finish. ``readers`` is how many
    read connections run in parallel. ``namespace`` picks whose tables in the file
    (:mod:`wfe_core.namespaces`; default ``WFE_NAMESPACE``, else ``default``). The other
    options are :class:`~wfe_sql.SqlPersistenceProvider`'s. ``checkpoint="external"``
    leaves WAL checkpoints to an external replicator such as Litestream
    (:class:`~wfe_sqlite.driver.SqliteDriver`). The driver options are
    ignored when ``path`` is a driver (a different ``namespace`` is refused).

    Declares ``SCHEDULED_COMMANDS``, ``PURGE`` and, on a database file, ``DURABLE``;
    a ``:memory:`` database is private to its connection, so it is not durable (asking
    for ``DURABLE`` there raises ``ValueError``).
    """

    driver: SqliteDriver

    def __init__(
        self,
        path: PathOrDriver,
        *,
        synchronous: Synchronous | str = "FULL",
        busy_timeout: float = 5.0,
        readers: int = 2,
        serializer: Serializer | None = None,
        clock: Callable[[], datetime] = utcnow,
        capabilities: Iterable[Capability] | None = None,
        command_lease: float = 60.0,
        namespace: str | None = None,
        checkpoint: Checkpoint | str = "auto",
    ) -> None:
        driver = _driver(path, synchronous, busy_timeout, readers, namespace, checkpoint)
        if driver.memory:
            if capabilities is None:
                capabilities = _MEMORY_CAPABILITIES
            else:
                capabilities = list(capabilities)
                if Capability.DURABLE in capabilities:
                    raise ValueError("a SQLite :memory: database is not DURABLE")
        super().__init__(
            driver,
            serializer=serializer,
            clock=clock,
            capabilities=capabilities,
            command_lease=command_lease,
        )


class SqliteLockProvider(SqlLockProvider):
    """Lock leases in the database file, shared by every process using it.

    Lease writes skip the wait for the disk (a lease lost in a power failure only
    frees a lock early, after which its holder's renew fails).
    """

    driver: SqliteDriver

    def __init__(
        self,
        path: PathOrDriver,
        *,
        owner_id: str | None = None,
        busy_timeout: float = 5.0,
        namespace: str | None = None,
        checkpoint: Checkpoint | str = "auto",
    ) -> None:
        super().__init__(
            _driver(path, "NORMAL", busy_timeout, 1, namespace, checkpoint), owner_id=owner_id
        )


class SqliteQueueProvider(SqlQueueProvider):
    """Work queues in the database file, shared by every process using it.

    ``dequeue_work`` blocks: consumers in this process wake at once when an id is queued
    here; ids queued by other processes are noticed within ``poll_interval`` seconds
    (default 0.02). Queue writes skip the wait for the disk (queues carry hints; the
    host's poller finds lost work again).
    """

    driver: SqliteDriver

    def __init__(
        self,
        path: PathOrDriver,
        *,
        poll_interval: float = 0.02,
        busy_timeout: float = 5.0,
        namespace: str | None = None,
        checkpoint: Checkpoint | str = "auto",
    ) -> None:
        super().__init__(
            _driver(path, "NORMAL", busy_timeout, 1, namespace, checkpoint),
            poll_interval=poll_interval,
        )


if TYPE_CHECKING:

    def _conforms(
        p: SqlitePersistenceProvider, lock: SqliteLockProvider, queue: SqliteQueueProvider
    ) -> tuple[PersistenceProvider, DistributedLockProvider, QueueProvider]:
        return p, lock, queue
