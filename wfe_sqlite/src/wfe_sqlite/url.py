"""``sqlite://`` store URLs and the ``wfe.providers`` entry point.

URL forms (as SQLAlchemy spells them):

- ``sqlite:///wfe.db`` -- a path relative to the current directory;
- ``sqlite:////var/lib/app/wfe.db`` -- an absolute path (four slashes);
- ``sqlite:///:memory:`` or ``sqlite://`` -- an in-memory database;
- ``sqlite+aiosqlite:///...`` -- the same;
- options in the query string: ``?synchronous=NORMAL&busy_timeout=30`` (keyword
  arguments given to :func:`provider_from_url` win);
- ``?namespace=staging`` (or ``namespace=`` / ``WFE_NAMESPACE``) picks the namespace
  (:mod:`wfe_core.namespaces`): its tables, ``wfe_staging__*``, live in the same file;
- ``?mode=ro`` opens the file read-only (``read_only=True`` as a keyword argument):
  nothing is created, migrated or written, and reads work while another process holds
  the write lock; ``mode=rwc`` (read, write, create) is the default;
- ``?checkpoint=external`` leaves WAL checkpoints to an external replicator such as
  Litestream (every connection sets ``wal_autocheckpoint=0``); ``auto`` is the default.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from wfe_core.registry import StoreComponents

from wfe_sqlite.driver import MEMORY, SqliteDriver
from wfe_sqlite.provider import (
    SqliteLockProvider,
    SqlitePersistenceProvider,
    SqliteQueueProvider,
)

__all__ = ["parse_sqlite_url", "provider_from_url"]

_DRIVER_OPTIONS = {
    "synchronous": str,
    "busy_timeout": float,
    "readers": int,
    "namespace": str,
    "checkpoint": str,
}
_MODES = {"ro": True, "rwc": False}
_PROVIDER_OPTIONS = {"command_lease": float}
_QUEUE_OPTIONS = {"poll_interval": float}
_FORMS = "use 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db' or 'sqlite:///:memory:'"


def parse_sqlite_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a ``sqlite://`` URL into the database path and its query options (converted
    to their types; ``mode=ro`` becomes ``read_only=True``). Raises ``ValueError`` naming
    the problem."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("sqlite", "sqlite+aiosqlite"):
        raise ValueError(f"not a SQLite URL: {url!r}; {_FORMS}")
    if parts.netloc:
        raise ValueError(
            f"{url!r} names a host ({parts.netloc!r}); SQLite URLs have none: {_FORMS}"
        )
    raw = unquote(parts.path)
    # sqlite:///a.db -> "a.db", sqlite:////abs.db -> "/abs.db"
    path = MEMORY if raw in ("", "/", f"/{MEMORY}") else raw[1:]
    options: dict[str, Any] = {}
    known = {**_DRIVER_OPTIONS, **_PROVIDER_OPTIONS, **_QUEUE_OPTIONS}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "mode":
            if value not in _MODES:
                raise ValueError(
                    f"option mode={value!r} in {url!r} is not one of ro (read-only) or rwc "
                    "(read, write and create: the default)"
                )
            options["read_only"] = _MODES[value]
            continue
        kind = known.get(key)
        if kind is None:
            raise ValueError(
                f"unknown option {key!r} in {url!r}; known: {', '.join(sorted([*known, 'mode']))}"
            )
        try:
            options[key] = kind(value)
        except ValueError:
            raise ValueError(
                f"option {key}={value!r} in {url!r} is not a valid {kind.__name__}"
            ) from None
    return path, options


def provider_from_url(
    url: str, *, read_only: bool | None = None, **options: Any
) -> StoreComponents:
    """The store at a ``sqlite://`` URL: persistence, lock and queue providers sharing
    one connection set to one database file, so several worker processes on the file
    cooperate with nothing else running.

    ``read_only`` (default: ``mode`` in the URL, else False) opens the file read-only:
    see :class:`~wfe_sqlite.driver.SqliteDriver`; the registry passes it for
    ``open_store(url, read_only=True)``. ``options``: ``synchronous``,
    ``busy_timeout``, ``readers``, ``checkpoint`` (the database), ``poll_interval`` (the queue), and
    the persistence provider's keyword arguments (``serializer``, ``clock``,
    ``capabilities``, ``command_lease``).
    """
    path, found = parse_sqlite_url(url)
    merged = {**found, **options}
    if read_only is not None:
        merged["read_only"] = read_only
    driver_options = {
        k: merged.pop(k) for k in list(merged) if k in _DRIVER_OPTIONS or k == "read_only"
    }
    queue_options = {k: merged.pop(k) for k in list(merged) if k in _QUEUE_OPTIONS}
    driver = SqliteDriver(path, **driver_options)
    return StoreComponents(
        persistence=SqlitePersistenceProvider(driver, **merged),
        lock_provider=SqliteLockProvider(driver),
        queue_provider=SqliteQueueProvider(driver, **queue_options),
    )
