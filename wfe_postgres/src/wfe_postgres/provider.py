"""PostgreSQL persistence, lock and queue providers: the shared :mod:`wfe_sql` code on a
:class:`~wfe_postgres.driver.PostgresDriver`.

Each class takes a ``postgresql://`` URL or an existing driver; components built on one
driver share its pool and its notification listener
(:func:`wfe_postgres.provider_from_url` does that for you).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Unpack

from sqlalchemy import bindparam, func, select
from wfe_core.capabilities import Capability
from wfe_core.models import utcnow
from wfe_core.serialization import Serializer
from wfe_sql.driver import SqlDriver, Statement
from wfe_sql.locks import SqlLockProvider
from wfe_sql.provider import SqlPersistenceProvider
from wfe_sql.queues import SqlQueueProvider, local_signal

from wfe_postgres.driver import ConnectionOptions, PostgresDriver
from wfe_postgres.url import parse_postgres_url

if TYPE_CHECKING:
    from wfe_core.locks import DistributedLockProvider
    from wfe_core.persistence import PersistenceProvider
    from wfe_core.queues import QueueProvider

__all__ = ["PostgresLockProvider", "PostgresPersistenceProvider", "PostgresQueueProvider"]

UrlOrDriver = str | PostgresDriver
"""A ``postgresql://`` URL, or a driver to share with other components."""


def _url_option(source: UrlOrDriver, name: str, given: float | None, default: float) -> float:
    """``given``, else the URL's option ``name``, else ``default``."""
    if given is not None:
        return given
    if isinstance(source, str):
        found = parse_postgres_url(source).options.get(name)
        if found is not None:
            return float(found)
    return default


def _driver(source: UrlOrDriver, options: ConnectionOptions) -> PostgresDriver:
    if isinstance(source, PostgresDriver):
        if any(v is not None for v in options.values()):
            raise ValueError(
                "connection options go to the PostgresDriver; this component was given a "
                "driver, so set them there"
            )
        return source
    return PostgresDriver(source, **options)


class PostgresPersistenceProvider(SqlPersistenceProvider):
    """The wfe persistence provider on a PostgreSQL database, in one schema.

    ``url`` is a ``postgresql://`` URL (or a :class:`PostgresDriver` to share). The
    connection options -- ``schema`` (default ``wfe``), ``namespace`` (default
    ``WFE_NAMESPACE``, else ``default``: :mod:`wfe_core.namespaces`), ``min_size``, ``max_size``,
    ``connect_timeout``, ``command_timeout``, ``acquire_timeout``,
    ``max_inactive_lifetime``, ``statement_cache_size``, ``listen_keepalive``,
    ``hint_pool_size``, ``write_groups``,
    ``server_settings`` -- are :class:`PostgresDriver`'s; the others are
    :class:`~wfe_sql.SqlPersistenceProvider`'s (``command_lease`` may also come from
    the URL).
    """

    driver: PostgresDriver

    def __init__(
        self,
        url: UrlOrDriver,
        *,
        serializer: Serializer | None = None,
        clock: Callable[[], datetime] = utcnow,
        capabilities: Iterable[Capability] | None = None,
        command_lease: float | None = None,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        super().__init__(
            _driver(url, connection),
            serializer=serializer,
            clock=clock,
            capabilities=capabilities,
            command_lease=_url_option(url, "command_lease", command_lease, 60.0),
        )


class PostgresLockProvider(SqlLockProvider):
    """Lock leases in the store's ``wfe_locks`` table, shared by every process on the
    database and schema. Each instance is one owner (``owner_id``, a UUID unless given).
    Takes the connection options of :class:`PostgresDriver` when given a URL."""

    driver: PostgresDriver

    def __init__(
        self,
        url: UrlOrDriver,
        *,
        owner_id: str | None = None,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        super().__init__(_driver(url, connection), owner_id=owner_id)


def _notifying_enqueue(driver: SqlDriver) -> Statement:
    """Queue an id unless it is waiting, and -- only when it was added -- notify the
    store's channel with the queue's name, in one statement (one round trip)::

        WITH added AS (INSERT INTO wfe_queue ... ON CONFLICT DO NOTHING RETURNING seq)
        SELECT pg_notify($channel, $queue) FROM added
    """
    q = driver.tables.queue_items
    added = (
        driver.insert(q)
        .values(queue=bindparam("p_queue"), item=bindparam("p_item"))
        .on_conflict_do_nothing(index_elements=[q.c.queue, q.c.item])
        .returning(q.c.seq)
        .cte("added")
    )
    notify = func.pg_notify(bindparam("p_channel"), bindparam("p_queue"))
    return driver.compile(select(notify).select_from(added))


class PostgresQueueProvider(SqlQueueProvider):
    """Work queues in the store's ``wfe_queue`` table, woken by ``LISTEN/NOTIFY``.

    ``queue_work`` inserts the id and notifies the store's channel in one statement;
    taking an id is ``DELETE ... WHERE seq = (SELECT ... FOR UPDATE SKIP LOCKED)
    RETURNING item``, so concurrent consumers never wait for each other and each id goes
    to one of them. A blocked ``dequeue_work`` waits for a notification (received by
    the driver's listener connection) up to its timeout, so work queued by any process
    wakes it within milliseconds. While notifications flow it also looks at the table
    every ``poll_interval`` seconds (default 1.0), a safety net; while the listener is
    reconnecting it polls every 1 to 50 ms instead. Takes the connection options of
    :class:`PostgresDriver` when given a URL.
    """

    driver: PostgresDriver

    fallback_poll_interval = 0.05
    """The longest pause between two looks at the table while the listener is down."""

    def __init__(
        self,
        url: UrlOrDriver,
        *,
        poll_interval: float | None = None,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        super().__init__(
            _driver(url, connection),
            poll_interval=_url_option(url, "poll_interval", poll_interval, 1.0),
        )
        self._notify_enqueue: Statement = self.driver.cached(
            "wfe_postgres.enqueue", _notifying_enqueue
        )

    async def enqueue(self, name: str, id: str) -> bool:
        """Queue ``id`` and, only when it was added, notify the store's channel with the
        queue's name: one statement, one round trip."""
        stmt = self._notify_enqueue
        args = stmt.args({"p_queue": name, "p_item": id, "p_channel": self.driver.channel})
        return bool(await self.driver.execute_returning(stmt.sql, args, durable=False))

    async def has_work(self, name: str) -> bool:
        """Always True: taking from an empty queue is as cheap as looking (a DELETE
        that matches no row writes nothing), so skip the look: one round trip instead of
        two."""
        return True

    def poll_bounds(self) -> tuple[float, float]:
        """``poll_interval`` while the listener is up (a safety net); 1 ms up to
        :attr:`fallback_poll_interval` while it reconnects."""
        if self.driver.listener.listening:
            return self.poll_interval, self.poll_interval
        fallback = min(self.fallback_poll_interval, self.poll_interval)
        return min(0.001, fallback), fallback

    async def wait_for_work(self, name: str, timeout: float, seen: int | None = None) -> None:
        """Make sure the listener runs, then wait for the queue's in-process signal (which
        the listener pokes on every notification)."""
        await self.driver.listener.ensure()
        await local_signal(self.driver.name, name).wait(timeout, seen)

    async def start(self) -> None:
        """Open the store (creating the schema if needed), start listening for
        notifications and allow waiting; idempotent."""
        await super().start()
        await self.driver.listener.ensure()


if TYPE_CHECKING:

    def _conforms(
        p: PostgresPersistenceProvider, lock: PostgresLockProvider, queue: PostgresQueueProvider
    ) -> tuple[PersistenceProvider, DistributedLockProvider, QueueProvider]:
        return p, lock, queue
