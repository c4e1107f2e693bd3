"""The distributed-lock contract and the in-process lock provider.

A lock is a lease: ``acquire_lock(resource, ttl)`` holds ``resource`` for ``ttl``
seconds unless renewed, so a crashed holder's lock frees itself. Locks are
non-reentrant and owned by the provider instance that took them: a second
``acquire_lock`` of a held resource returns False even from the same instance, and
``release_lock`` of a lock you do not hold is a no-op that never frees another
owner's lock.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["DistributedLockProvider"]


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
