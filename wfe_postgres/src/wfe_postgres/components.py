"""The ``wfe.providers`` entry point for ``postgresql://`` URLs."""

from __future__ import annotations

from typing import Any

from wfe_core.registry import StoreComponents

from wfe_postgres.driver import DEFAULTS, PostgresDriver
from wfe_postgres.provider import (
    PostgresLockProvider,
    PostgresPersistenceProvider,
    PostgresQueueProvider,
)
from wfe_postgres.url import parse_postgres_url

__all__ = ["provider_from_url"]

_DRIVER_OPTIONS = frozenset(DEFAULTS) | {"server_settings", "namespace"}
_QUEUE_OPTIONS = frozenset({"poll_interval"})


def provider_from_url(url: str, **options: Any) -> StoreComponents:
    """The store at a ``postgresql://`` (``postgres://``, ``postgresql+asyncpg://``) URL:
    persistence, lock and queue providers sharing one connection pool and one
    notification listener, so any number of worker processes on the database cooperate
    with nothing else running.

    ``options`` (keyword arguments win over the URL's query string): the connection
    options of :class:`~wfe_postgres.PostgresDriver` (``schema``, ``namespace``, ``min_size``,
    ``max_size``, ``connect_timeout``, ``command_timeout``, ``acquire_timeout``,
    ``max_inactive_lifetime``, ``statement_cache_size``, ``listen_keepalive``,
    ``hint_pool_size``, ``write_groups``,
    ``server_settings``), the queue's ``poll_interval``, and the persistence provider's
    ``serializer``, ``clock``, ``capabilities`` and ``command_lease``. Nothing connects
    until the first call.
    """
    parsed = parse_postgres_url(url)
    merged = {**parsed.options, **options}
    driver_options = {k: merged.pop(k) for k in list(merged) if k in _DRIVER_OPTIONS}
    queue_options = {k: merged.pop(k) for k in list(merged) if k in _QUEUE_OPTIONS}
    driver = PostgresDriver(parsed.dsn, **driver_options)
    return StoreComponents(
        persistence=PostgresPersistenceProvider(driver, **merged),
        lock_provider=PostgresLockProvider(driver),
        queue_provider=PostgresQueueProvider(driver, **queue_options),
    )
