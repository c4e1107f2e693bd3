"""Redis lock, queue and lifecycle publisher for wfe.

Redis brings coordination, not persistence: use it next to a store, e.g.
``WorkflowHost.from_url("postgresql://...", lock_url="redis://host:6379/0",
queue_url="redis://host:6379/0")``, or build the providers yourself::

    host = WorkflowHost(
        store,
        lock_provider=RedisLockProvider("redis://host:6379/0"),
        queue_provider=RedisQueueProvider("redis://host:6379/0"),
        lifecycle=RedisLifecyclePublisher("redis://host:6379/0"),
    )

Every component takes a ``namespace`` (keyword, ``?namespace=`` in the URL or the
``WFE_NAMESPACE`` environment variable; see :mod:`wfe_core.namespaces`): components in
different namespaces share no key and no channel, and the default namespace keeps the
keys of a wfe without namespaces.
"""

from __future__ import annotations

from typing import Any

from wfe_core.registry import StoreComponents

from wfe_redis._connection import DEFAULT_PREFIX, RedisSettings
from wfe_redis.lifecycle import RedisLifecyclePublisher
from wfe_redis.locks import RedisLockProvider
from wfe_redis.queues import RedisQueueProvider

__all__ = [
    "DEFAULT_PREFIX",
    "RedisLifecyclePublisher",
    "RedisLockProvider",
    "RedisQueueProvider",
    "RedisSettings",
    "components_from_url",
]


def components_from_url(url: str, **options: Any) -> StoreComponents:
    """The ``wfe.providers`` entry point for ``redis://`` URLs: a lock provider, a
    queue provider and a lifecycle publisher on the Redis at ``url`` (no persistence).

    ``options`` (or the URL query) may set ``prefix``, ``namespace``,
    ``connect_timeout`` and ``socket_timeout`` for all three, and
    ``visibility_timeout`` for the queue; a wrong option or namespace raises
    ValueError / TypeError at once. The namespace (keyword, ``?namespace=``, else
    ``WFE_NAMESPACE``) is resolved once, so the three always share it. Nothing connects
    until the providers start, and ``start`` raises ProviderUnavailable (naming the URL
    and what to fix) when Redis cannot be used.
    """
    # refuse bad URLs and options before building; resolve the namespace once
    settings = RedisSettings.parse(url, **options)
    queue_options = {**options, "namespace": settings.namespace}
    shared = {k: v for k, v in queue_options.items() if k != "visibility_timeout"}
    return StoreComponents(
        persistence=None,
        lock_provider=RedisLockProvider(url, **shared),
        queue_provider=RedisQueueProvider(url, **queue_options),
        lifecycle=RedisLifecyclePublisher(url, **shared),
    )
