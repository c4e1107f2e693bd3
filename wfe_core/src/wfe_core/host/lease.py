"""Lease keeping: a pass's claim on its instance renewed while the pass runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from wfe_core.executor import PassControl
from wfe_core.retry import backoff_delay

__all__ = ["LeaseKeeper"]

log = logging.getLogger("wfe.host")


class LeaseKeeper:
    """Keeps a pass's claim on its instance (in the store) and its workflow lock (the
    fast path) leased: renews both every ``ttl / 3`` seconds until :meth:`stop`.
    A timer, not a task, until a renewal is due (most passes end long before one is).

    The pass is stopped (``stop_requested``, ``context.cancelled``) when a renewal
    finds the claim lost, and also when no renewal has succeeded for a whole lease by
    this process's own clock, measured from the start of the last successful renewal
    call (so no later than the store's expiry: a starved or partitioned host gives up by
    the time another host may take the instance over); from then on it writes nothing
    and the store refuses its checkpoints. A renewal delayed by less than the lease
    keeps the claim.
    """

    __slots__ = (
        "_claim",
        "_control",
        "_deadline",
        "_expiry_timer",
        "_over",
        "_renew_lock",
        "_task",
        "_timer",
        "_ttl",
        "_workflow_id",
    )

    def __init__(
        self,
        workflow_id: str,
        control: PassControl,
        claimed_at: float,
        *,
        ttl: float,
        claim: Callable[[str], Awaitable[bool]],
        renew_lock: Callable[[], Awaitable[object]],
    ) -> None:
        self._workflow_id = workflow_id
        self._control = control
        self._ttl = ttl
        self._claim = claim
        self._renew_lock = renew_lock
        self._over = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._valid_from(claimed_at)
        self._schedule()

    def _valid_from(self, started: float) -> None:
        """The claim taken or renewed by a call that began at ``started`` (monotonic)."""
        loop = asyncio.get_running_loop()
        self._deadline = started + self._ttl
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_timer = loop.call_at(
            loop.time() + max(self._deadline - time.monotonic(), 0.0), self._expired
        )

    def _expired(self) -> None:
        self._expiry_timer = None
        if not self._over and time.monotonic() >= self._deadline:
            log.warning(
                "workflow %s: the claim was not renewed in time; stopping its pass",
                self._workflow_id,
                extra={"workflow_id": self._workflow_id},
            )
            self._control.lost()

    def _schedule(self, delay: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._ttl / 3 if delay is None else delay, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._over:
            self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        started = time.monotonic()
        ok: bool | None
        try:
            ok = await self._claim(self._workflow_id)
        except Exception as exc:
            log.warning(
                "renewing the claim on workflow %s failed: %s",
                self._workflow_id,
                exc,
                extra={"workflow_id": self._workflow_id},
            )
            ok = None
        if ok:
            with contextlib.suppress(Exception):  # the lock is only the fast path
                await self._renew_lock()
        if self._over:
            return
        if ok is None and time.monotonic() < self._deadline:
            # the store did not answer: try again (jittered) while the claim lasts
            self._schedule(backoff_delay(1, self._ttl / 3, jitter=0.2))
            return
        if not ok:
            log.warning(
                "lost the claim on workflow %s; stopping the pass",
                self._workflow_id,
                extra={"workflow_id": self._workflow_id},
            )
            self._control.lost()
            return
        self._valid_from(started)
        self._schedule()

    async def stop(self) -> None:
        """No more renewals; wait for one in flight (the flag ends it even if a driver
        swallows its cancellation, as asyncio.wait_for can on Python 3.11: a renewer that
        lived on would hold the lock for ever)."""
        self._over = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
