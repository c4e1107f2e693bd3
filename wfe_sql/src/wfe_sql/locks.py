"""A :class:`~wfe_core.locks.DistributedLockProvider` on the store's ``wfe_locks`` table.

A lease is a row ``(resource, owner, expires_at)``. Acquiring is one atomic conditional
upsert: insert the row, or take it over only when the current lease has expired. Renew
and release are conditional on the owner, so nobody can extend or free another owner's
lease. Expiry uses the wall clock (microseconds since the epoch), which every process on
the store shares; keep the hosts' clocks in sync (NTP) and the TTLs well above any drift.

Lease writes are not durable (``durable=False``): a lease lost in a power failure only
frees a lock early, and its holder's next renew then fails.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from wfe_core.errors import WfeError

from wfe_sql.driver import DriverComponent, SqlDriver
from wfe_sql.statements import LockStatements

if TYPE_CHECKING:
    from wfe_core.locks import DistributedLockProvider

__all__ = ["SqlLockProvider"]

_log = logging.getLogger("wfe.sql")


def _ttl_micros(ttl: float) -> int:
    if not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"ttl must be a positive, finite number of seconds, not {ttl!r}")
    return max(1, int(ttl * 1_000_000))


def _now_micros() -> int:
    return time.time_ns() // 1000


class SqlLockProvider(DriverComponent[LockStatements]):
    """Leases in the ``wfe_locks`` table, shared by every process on the store.

    Each provider instance is one owner (``owner_id``, a UUID unless given). Locks are
    non-reentrant: a second ``acquire_lock`` of a resource it holds returns False.
    Between :meth:`start` and :meth:`stop` the provider keeps the store open; calls
    outside that open it for their own duration. :meth:`stop` releases every lease this
    owner still holds.

    Hosts take no lock of this table around a pass over a workflow (``workflow_locks``
    is False, see :func:`wfe_core.locks.takes_workflow_locks`): the store's claim on the
    instance, a write to the same database, already keeps two hosts apart, and a lock
    row would add two writes per pass.
    """

    workflow_locks = False
    """Hosts rely on the store's claim for workflows (see the class)."""

    def __init__(self, driver: SqlDriver, *, owner_id: str | None = None) -> None:
        self.owner_id: str = owner_id or str(uuid.uuid4())
        super().__init__(driver, driver.cached("wfe_sql.locks", LockStatements))
        self._acquired = False  # whether stop() may have leases to release

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.driver.name} owner={self.owner_id}>"

    async def acquire_lock(self, resource: str, ttl: float) -> bool:
        """Take the lease on ``resource`` for ``ttl`` seconds if it is free or expired."""
        span = _ttl_micros(ttl)
        async with self._use() as s:
            self._acquired = True
            now = _now_micros()
            args = s.acquire.args(
                {
                    "p_resource": resource,
                    "p_owner": self.owner_id,
                    "p_expires_at": now + span,
                    "p_now": now,
                }
            )
            return await self.driver.execute(s.acquire.sql, args, durable=False) == 1

    async def renew_lock(self, resource: str, ttl: float) -> bool:
        """Extend this owner's lease on ``resource``; False if it no longer holds it."""
        span = _ttl_micros(ttl)
        async with self._use() as s:
            args = s.renew.args(
                {
                    "p_resource": resource,
                    "p_owner": self.owner_id,
                    "p_expires_at": _now_micros() + span,
                }
            )
            return await self.driver.execute(s.renew.sql, args, durable=False) == 1

    async def release_lock(self, resource: str) -> None:
        """Give up this owner's lease on ``resource``; a no-op if it does not hold it."""
        async with self._use() as s:
            args = s.release.args({"p_resource": resource, "p_owner": self.owner_id})
            await self.driver.execute(s.release.sql, args, durable=False)

    async def start(self) -> None:
        """Open the store (creating the schema if needed) and keep it open until
        :meth:`stop`; idempotent."""
        await self._open()

    async def stop(self) -> None:
        """Release every lease this owner holds and let go of the connections; idempotent."""
        if self._acquired:
            try:
                async with self._use() as s:
                    args = s.release_all.args({"p_owner": self.owner_id})
                    await self.driver.execute(s.release_all.sql, args, durable=False)
                self._acquired = False
            except WfeError:
                _log.warning(
                    "could not release the leases of %s; they expire by themselves",
                    self.owner_id,
                    exc_info=True,
                )
        await self._close()


if TYPE_CHECKING:

    def _conforms(p: SqlLockProvider) -> DistributedLockProvider:
        return p
