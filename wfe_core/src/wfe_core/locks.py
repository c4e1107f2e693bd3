"""The distributed-lock contract and the in-process lock provider.

A lock is a lease: ``acquire_lock(resource, ttl)`` holds ``resource`` for ``ttl``
seconds unless renewed, so a crashed holder's lock frees itself. Locks are
non-reentrant and owned by the provider instance that took them: a second
``acquire_lock`` of a held resource returns False even from the same instance, and
``release_lock`` of a lock you do not hold is a no-op that never frees another
owner's lock.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "DistributedLockProvider",
    "InProcessLockProvider",
    "LockTable",
    "shared_lock_table",
    "takes_workflow_locks",
]


@runtime_checkable
class DistributedLockProvider(Protocol):
    """Leases on named resources, shared by every host on one store."""

    async def acquire_lock(self, resource: str, ttl: float) -> bool:
        """Take the lease on ``resource`` for ``ttl`` seconds if nobody holds it (or the
        holder's lease expired); return whether this provider now holds it. Never
        blocks waiting for the lock."""
        ...

    async def renew_lock(self, resource: str, ttl: float) -> bool:
        """Extend a lease this provider holds to ``ttl`` seconds from now; return False
        (and take nothing) when it is not held by this provider any more."""
        ...

    async def release_lock(self, resource: str) -> None:
        """Give up a lease this provider holds; a no-op otherwise."""
        ...

    async def start(self) -> None:
        """Prepare for use; idempotent."""
        ...

    async def stop(self) -> None:
        """Release resources (and every lease still held); idempotent."""
        ...


def takes_workflow_locks(provider: DistributedLockProvider) -> bool:
    """Whether hosts take ``provider``'s lock around every pass over a workflow.

    A lock provider may say no with a ``workflow_locks = False`` attribute: the store's
    claim on the instance (an atomic compare-and-set every pass makes anyway, see
    ``PersistenceProvider.claim_workflow``) keeps two hosts from running one workflow,
    and the lock is only a fast path in front of it. wfe_sql's lock table says no: its
    lock is a write to the same database as the claim, so it would add two writes per
    pass and keep nothing apart that the claim does not. Such a client keeps its
    workflow locks in process instead (an :class:`InProcessLockProvider` of its own), so
    a delivery and a pass of this process still take turns without a store write; locks
    on other resources (events, polls, schedules) are taken as usual."""
    return bool(getattr(provider, "workflow_locks", True))


# --------------------------------------------------------------------------------------
# In-process implementation
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Lease:
    owner: str
    expires: float


class LockTable:
    """A process-local table of leases, shared by several :class:`InProcessLockProvider`.

    Every operation is a plain (non-async) check-and-set, so it is atomic with respect
    to asyncio tasks and, through an internal :class:`threading.Lock`, to threads too.
    ``clock`` returns seconds on a monotonic scale (default :func:`time.monotonic`).

    An expired lease stays in the table until another owner takes the resource or its
    owner releases it; until then its owner may still renew it (nobody else held it in
    between, so mutual exclusion was never broken).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._mutex = threading.Lock()

    def try_acquire(self, resource: str, owner: str, ttl: float) -> bool:
        """Give ``owner`` the lease on ``resource`` for ``ttl`` seconds unless another
        live lease (including ``owner``'s own: non-reentrant) exists."""
        _check_ttl(ttl)
        with self._mutex:
            now = self._clock()
            lease = self._leases.get(resource)
            if lease is not None and lease.expires > now:
                return False
            self._leases[resource] = _Lease(owner, now + ttl)
            return True

    def renew(self, resource: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s lease on ``resource`` to ``ttl`` seconds from now; False
        when ``owner`` does not hold it (never held, released, or taken over)."""
        _check_ttl(ttl)
        with self._mutex:
            lease = self._leases.get(resource)
            if lease is None or lease.owner != owner:
                return False
            lease.expires = self._clock() + ttl
            return True

    def release(self, resource: str, owner: str) -> bool:
        """Drop ``owner``'s lease on ``resource``; return False (changing nothing) when
        ``owner`` does not hold it."""
        with self._mutex:
            lease = self._leases.get(resource)
            if lease is None or lease.owner != owner:
                return False
            del self._leases[resource]
            return True

    def release_all(self, owner: str) -> int:
        """Drop every lease ``owner`` holds; return how many."""
        with self._mutex:
            mine = [r for r, lease in self._leases.items() if lease.owner == owner]
            for resource in mine:
                del self._leases[resource]
            return len(mine)

    def holder(self, resource: str) -> str | None:
        """The owner of the live lease on ``resource``, or None (free or expired)."""
        with self._mutex:
            lease = self._leases.get(resource)
            if lease is None or lease.expires <= self._clock():
                return None
            return lease.owner

    def __len__(self) -> int:
        """The number of leases in the table (expired ones not yet taken included)."""
        return len(self._leases)


def _check_ttl(ttl: float) -> None:
    if not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"ttl must be a positive, finite number of seconds, not {ttl!r}")


class InProcessLockProvider:
    """The in-process :class:`DistributedLockProvider`: leases in a :class:`LockTable`.

    Each provider instance is one owner (``owner_id``, a UUID). Providers given the same
    table exclude each other, as hosts on one store would; without a table the provider
    gets a private one. :meth:`stop` releases every lease this provider still holds.
    """

    def __init__(self, table: LockTable | None = None) -> None:
        self.table: LockTable = table if table is not None else LockTable()
        self.owner_id: str = str(uuid.uuid4())

    async def acquire_lock(self, resource: str, ttl: float) -> bool:
        """Take the lease on ``resource`` for ``ttl`` seconds if it is free or expired."""
        return self.table.try_acquire(resource, self.owner_id, ttl)

    async def renew_lock(self, resource: str, ttl: float) -> bool:
        """Extend this provider's lease on ``resource``; False if it no longer holds it."""
        return self.table.renew(resource, self.owner_id, ttl)

    async def release_lock(self, resource: str) -> None:
        """Give up this provider's lease on ``resource``; a no-op if it does not hold it."""
        self.table.release(resource, self.owner_id)

    async def start(self) -> None:
        """Nothing to prepare; idempotent."""

    async def stop(self) -> None:
        """Release every lease this provider holds; idempotent."""
        self.table.release_all(self.owner_id)


_tables_lock = threading.RLock()  # re-entrant: a finalizer may run during a lookup
_tables: dict[int, tuple[Callable[[], object | None], LockTable]] = {}


def shared_lock_table(key: object) -> LockTable:
    """Return the :class:`LockTable` belonging to ``key`` (one per key *object*).

    Tables are keyed by identity, not equality: two equal but distinct store objects get
    two tables. The host calls this with its persistence provider so that several hosts
    on one store object in one process share their locks. A table lives as long as its
    key (keys that cannot be weakly referenced are kept alive by the registry).
    """
    key_id = id(key)
    with _tables_lock:
        entry = _tables.get(key_id)
        if entry is not None and entry[0]() is key:
            return entry[1]
        table = LockTable()
        try:
            ref: Callable[[], object | None] = weakref.ref(key)
        except TypeError:
            ref = _strong_ref(key)
        else:
            weakref.finalize(key, _forget_table, key_id, ref)
        _tables[key_id] = (ref, table)
        return table


def _strong_ref(key: object) -> Callable[[], object | None]:
    return lambda: key


def _forget_table(key_id: int, ref: Callable[[], object | None]) -> None:
    with _tables_lock:
        entry = _tables.get(key_id)
        if entry is not None and entry[0] is ref:
            del _tables[key_id]
