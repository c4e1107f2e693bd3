"""Conformance suite for distributed lock providers.

``lock_provider`` and ``second_lock_provider`` are two owners on one backend (two hosts).
Pins down: try-lock that never blocks, non-reentrant, owner-checked release and renew,
lease expiry so a crashed holder's lock frees itself, exactly one winner among
concurrent acquirers, and ``stop`` giving up this owner's leases.
"""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
from wfe_core.locks import DistributedLockProvider
from wfe_core.models import new_id

from wfe_conformance.base import SuiteBase

__all__ = ["LockProviderTests"]

_LONG = 30.0  # a ttl no test outlives
_SHORT = 0.2  # a ttl a test waits out
_SLACK = 0.75  # how long after its ttl an expired lease may still look held
_WAIT = 5.0  # bound on calls that must return at once


def _resource() -> str:
    return f"wfe-conformance-lock-{new_id()}"


async def _acquire_after_expiry(
    lock: DistributedLockProvider, resource: str, expiring_ttl: float
) -> float:
    """Poll ``acquire_lock`` until the lease of ``expiring_ttl`` seconds has run out and
    ``lock`` gets the resource (at most ``_SLACK`` late); return the seconds it took."""
    start = time.monotonic()
    with anyio.fail_after(expiring_ttl + _SLACK):
        while True:
            if await lock.acquire_lock(resource, _LONG):
                break
            await anyio.sleep(0.01)
    return time.monotonic() - start


class LockProviderTests(SuiteBase):
    """``DistributedLockProvider`` semantics across two owners."""

    async def test_free_lock_can_be_acquired(self, lock_provider: DistributedLockProvider) -> None:
        """acquire_lock of a free resource returns True."""
        assert await lock_provider.acquire_lock(_resource(), _LONG) is True

    async def test_lock_is_not_reentrant(self, lock_provider: DistributedLockProvider) -> None:
        """A second acquire of a held resource by the same owner returns False."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        assert await lock_provider.acquire_lock(r, _LONG) is False

    async def test_other_owner_cannot_acquire_held_lock(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """While one owner holds a lock another owner's acquire returns False."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        assert await second_lock_provider.acquire_lock(r, _LONG) is False
        assert await lock_provider.acquire_lock(r, _LONG) is False

    async def test_acquire_does_not_block(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """acquire_lock of a held lock returns False at once instead of waiting."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        start = time.monotonic()
        with anyio.fail_after(_WAIT):
            assert await second_lock_provider.acquire_lock(r, _LONG) is False
        assert time.monotonic() - start < 2.0

    async def test_release_then_reacquire(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """After release the same owner, or another, can acquire the lock again."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        await lock_provider.release_lock(r)
        assert await lock_provider.acquire_lock(r, _LONG)
        await lock_provider.release_lock(r)
        assert await second_lock_provider.acquire_lock(r, _LONG)
        assert await lock_provider.acquire_lock(r, _LONG) is False

    async def test_acquire_release_cycles(self, lock_provider: DistributedLockProvider) -> None:
        """Five acquire/release cycles all succeed, and the lock is held after the last
        acquire."""
        r = _resource()
        for _ in range(5):
            assert await lock_provider.acquire_lock(r, _LONG)
            await lock_provider.release_lock(r)
        assert await lock_provider.acquire_lock(r, _LONG)
        assert await lock_provider.acquire_lock(r, _LONG) is False

    async def test_release_of_unheld_lock_is_a_noop(
        self, lock_provider: DistributedLockProvider
    ) -> None:
        """Releasing a lock nobody holds (or released twice) does not raise."""
        r = _resource()
        await lock_provider.release_lock(r)
        assert await lock_provider.acquire_lock(r, _LONG)
        await lock_provider.release_lock(r)
        await lock_provider.release_lock(r)
        assert await lock_provider.acquire_lock(r, _LONG)

    async def test_release_by_other_owner_keeps_the_lock(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """release_lock by an owner that does not hold the lock leaves the holder's lock."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        await second_lock_provider.release_lock(r)
        assert await second_lock_provider.acquire_lock(r, _LONG) is False
        assert await lock_provider.renew_lock(r, _LONG) is True

    async def test_lock_expires_after_its_ttl(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """A lease not renewed frees itself after ttl; another owner can then take it."""
        r = _resource()
        start = time.monotonic()
        assert await lock_provider.acquire_lock(r, _SHORT)
        assert await second_lock_provider.acquire_lock(r, _LONG) is False
        await _acquire_after_expiry(second_lock_provider, r, _SHORT)
        assert time.monotonic() - start >= _SHORT - 0.05
        assert await lock_provider.acquire_lock(r, _LONG) is False

    async def test_own_expired_lock_can_be_acquired_again(
        self, lock_provider: DistributedLockProvider
    ) -> None:
        """An owner whose lease expired can acquire the resource again."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, 0.05)
        await _acquire_after_expiry(lock_provider, r, 0.05)
        assert await lock_provider.acquire_lock(r, _LONG) is False

    async def test_renew_extends_the_lease(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """A lease renewed before it expires keeps others out past the original ttl."""
        r = _resource()
        start = time.monotonic()
        assert await lock_provider.acquire_lock(r, 0.3)
        await anyio.sleep(0.1)
        assert await lock_provider.renew_lock(r, 3.0) is True
        await anyio.sleep(max(0.0, 0.45 - (time.monotonic() - start)))  # past the first ttl
        assert await second_lock_provider.acquire_lock(r, _LONG) is False
        assert await lock_provider.renew_lock(r, _LONG) is True

    async def test_renew_by_other_owner_returns_false(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """renew_lock by an owner that does not hold the lock returns False and takes
        nothing."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        assert await second_lock_provider.renew_lock(r, _LONG) is False
        assert await second_lock_provider.acquire_lock(r, _LONG) is False
        assert await lock_provider.renew_lock(r, _LONG) is True

    async def test_renew_of_unheld_lock_returns_false(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """renew_lock of a lock nobody holds returns False and does not take it."""
        r = _resource()
        assert await lock_provider.renew_lock(r, _LONG) is False
        assert await second_lock_provider.acquire_lock(r, _LONG) is True

    async def test_renew_after_release_returns_false(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """renew_lock after releasing returns False and leaves the lock free."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        await lock_provider.release_lock(r)
        assert await lock_provider.renew_lock(r, _LONG) is False
        assert await second_lock_provider.acquire_lock(r, _LONG) is True

    async def test_renew_after_takeover_returns_false(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """Once another owner took an expired lock, the old holder's renew returns False
        and the new holder keeps it."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, 0.05)
        await _acquire_after_expiry(second_lock_provider, r, 0.05)
        assert await lock_provider.renew_lock(r, _LONG) is False
        assert await lock_provider.acquire_lock(r, _LONG) is False
        assert await second_lock_provider.renew_lock(r, _LONG) is True

    async def test_release_after_takeover_keeps_new_holder(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """The old holder releasing after its lease expired and was taken over does not
        free the new holder's lock."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, 0.05)
        await _acquire_after_expiry(second_lock_provider, r, 0.05)
        await lock_provider.release_lock(r)
        assert await lock_provider.acquire_lock(r, _LONG) is False
        assert await second_lock_provider.renew_lock(r, _LONG) is True

    async def test_different_resources_are_independent(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """Locks on different resources are held and released independently."""
        a, b, c = _resource(), _resource(), _resource()
        assert await lock_provider.acquire_lock(a, _LONG)
        assert await lock_provider.acquire_lock(b, _LONG)
        assert await second_lock_provider.acquire_lock(c, _LONG)
        await lock_provider.release_lock(a)
        assert await second_lock_provider.acquire_lock(a, _LONG)
        assert await second_lock_provider.acquire_lock(b, _LONG) is False
        assert await lock_provider.acquire_lock(c, _LONG) is False

    async def test_concurrent_acquirers_have_one_winner(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """20 concurrent acquires of one free resource across two owners: exactly one
        returns True."""
        r = _resource()
        owners = [lock_provider, second_lock_provider]
        results: list[bool] = []

        async def attempt(n: int) -> None:
            await anyio.lowlevel.checkpoint()
            results.append(await owners[n % 2].acquire_lock(r, _LONG))

        with anyio.fail_after(_WAIT):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(attempt, n)
        assert len(results) == 20
        assert results.count(True) == 1

    async def test_concurrent_acquirers_of_an_expired_lock_have_one_winner(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """20 concurrent acquires of an expired lock across two owners: exactly one wins."""
        r = _resource()
        assert await lock_provider.acquire_lock(r, 0.05)
        await anyio.sleep(0.15)  # let the lease run out
        owners = [lock_provider, second_lock_provider]
        results: list[bool] = []

        async def attempt(n: int) -> None:
            results.append(await owners[n % 2].acquire_lock(r, _LONG))

        with anyio.fail_after(_WAIT):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(attempt, n)
        assert results.count(True) == 1

    async def test_lock_start_and_stop_are_idempotent(
        self, lock_provider: DistributedLockProvider
    ) -> None:
        """start twice and stop twice succeed; the provider works between them."""
        await lock_provider.start()
        await lock_provider.start()
        r = _resource()
        assert await lock_provider.acquire_lock(r, _LONG)
        await lock_provider.stop()
        await lock_provider.stop()

    async def test_stop_releases_this_owners_locks(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """After stop, the locks this owner held can be taken by another owner at once."""
        a, b = _resource(), _resource()
        assert await lock_provider.acquire_lock(a, _LONG)
        assert await lock_provider.acquire_lock(b, _LONG)
        await lock_provider.stop()
        assert await second_lock_provider.acquire_lock(a, _LONG)
        assert await second_lock_provider.acquire_lock(b, _LONG)

    async def test_stop_keeps_other_owners_locks(
        self,
        lock_provider: DistributedLockProvider,
        second_lock_provider: DistributedLockProvider,
    ) -> None:
        """stop gives up only this owner's leases, never another owner's."""
        r = _resource()
        assert await second_lock_provider.acquire_lock(r, _LONG)
        await lock_provider.stop()
        assert await second_lock_provider.acquire_lock(r, _LONG) is False
        assert await second_lock_provider.renew_lock(r, _LONG) is True
