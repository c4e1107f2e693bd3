"""Firing due schedules (see :mod:`wfe_core.schedules` for the guarantees).

Every started host looks for due schedules on each poll (:class:`ScheduleFirer`, called
by the :class:`~wfe_core.host.poller.Poller`). The poller's lock only keeps hosts from
doing the same look at once; correctness does not depend on it: per due time, the
instance is started with the idempotency key :func:`~wfe_core.schedules.fire_key`
(two starts with one key start one instance) and the fire is then claimed with the
store's compare-and-set on ``next_fire_time``, so however many hosts fire -- with or
without the lock, before or after a crash -- one instance starts per due time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from wfe_core.errors import IdempotencyKeyConflict, WorkflowNotFound, WorkflowNotRegistered
from wfe_core.host.dispatch import WorkDispatcher, log_outage
from wfe_core.models import WorkflowStatus, utcnow
from wfe_core.retry import backoff_delay
from wfe_core.schedules import (
    SKIP_GRACE,
    CatchupPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleRepository,
    fire_key,
)

if TYPE_CHECKING:
    from wfe_core.client.client import WorkflowClient

__all__ = ["ScheduleFirer"]

log = logging.getLogger("wfe.host")

_ENDED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
_FAR = datetime(9999, 1, 1, tzinfo=UTC)


class ScheduleFirer:
    """Fires the due schedules of ``client``'s store through ``client.start_workflow``."""

    def __init__(self, client: WorkflowClient, batch: int = 100) -> None:
        self.client = client
        self.batch = batch
        self._warned: set[tuple[str, str]] = set()

    @property
    def store(self) -> ScheduleRepository | None:
        """The schedule store, or None when the provider has none."""
        p = self.client.persistence
        return p if isinstance(p, ScheduleRepository) else None

    async def fire_due(self, now: datetime) -> int:
        """Fire every schedule due at ``now``; return how many instances this call
        started (or found started by the same fire)."""
        store = self.store
        if store is None:
            return 0
        started = 0
        failed: Exception | None = None
        for schedule in await store.get_due_schedules(now, self.batch):
            try:  # one schedule that cannot fire (bad data, ...) never stops the others
                if await self.fire(store, schedule, now):
                    started += 1
            except Exception as exc:
                log.warning(
                    "schedule %r could not fire: %s",
                    schedule.id,
                    exc,
                    extra={"schedule_id": schedule.id, "definition": schedule.definition_id},
                )
                failed = exc
        if failed is not None and not started:
            raise failed  # nothing fired: maybe the store is down (the caller backs off)
        return started

    async def fire(self, store: ScheduleRepository, schedule: Schedule, now: datetime) -> bool:
        """Fire one due schedule: start (idempotently), then claim. True when this call
        claimed a fire that started an instance."""
        due = schedule.next_fire_time
        if due is None or schedule.paused:
            return False
        following = schedule.fire_time_after(max(now, due))
        run = True
        if schedule.catchup is CatchupPolicy.SKIP:
            later = schedule.fire_time_after(due)
            run = now - due <= SKIP_GRACE and (later is None or later > now)
        if run and schedule.overlap is OverlapPolicy.SKIP:
            run = not await self._previous_running(schedule)
        instance_id: str | None = None
        if run:
            try:
                instance_id = await self.client.start_workflow(
                    schedule.definition_id,
                    schedule.data,
                    version=schedule.version,
                    idempotency_key=fire_key(schedule.id, due),
                )
            except WorkflowNotRegistered as exc:
                self._warn_once(schedule, str(exc))
                return False  # another host may know the definition: leave it due
            except IdempotencyKeyConflict as exc:
                log.warning(
                    "schedule %r: %s; the fire of %s is skipped",
                    schedule.id,
                    exc,
                    due,
                    extra={"schedule_id": schedule.id, "definition": schedule.definition_id},
                )
        claimed = await store.claim_schedule_fire(schedule.id, due, following, instance_id)
        if claimed:
            log.debug(
                "schedule %r fired for %s (instance %s)",
                schedule.id,
                due,
                instance_id,
                extra={
                    "schedule_id": schedule.id,
                    "workflow_id": instance_id,
                    "definition": schedule.definition_id,
                },
            )
        return claimed and instance_id is not None

    async def _previous_running(self, schedule: Schedule) -> bool:
        if schedule.last_instance_id is None:
            return False
        try:
            instance = await self.client.persistence.get_workflow_instance(
                schedule.last_instance_id
            )
        except WorkflowNotFound:
            return False
        return instance.status not in _ENDED

    def _warn_once(self, schedule: Schedule, message: str) -> None:
        key = (schedule.id, schedule.definition_id)
        if key not in self._warned:
            self._warned.add(key)
            log.warning(
                "schedule %r cannot fire here: %s (left due for a host that has it)",
                schedule.id,
                message,
                extra={"schedule_id": schedule.id, "definition": schedule.definition_id},
            )

    async def next_time(self) -> datetime | None:
        """The earliest ``next_fire_time`` of an unpaused schedule (None: none)."""
        store = self.store
        if store is None:
            return None
        first = await store.get_due_schedules(_FAR, 1)
        return first[0].next_fire_time if first else None

    async def run(self, dispatcher: WorkDispatcher) -> None:
        """Fire due schedules until the host stops, waking at the next fire time (at
        most ``poll_interval`` apart, so schedules created elsewhere are seen)."""
        if self.store is None:
            return
        interval = self.client.options.poll_interval
        failures = 0
        while dispatcher.running:
            try:
                await self.fire_due(utcnow())
                nxt = await self.next_time()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff_delay(failures + 1, interval, 2.0, 30.0, jitter=0.2)
                log_outage("firing schedules", exc, failures, delay)
                await dispatcher.sleep(delay)
                continue
            failures = 0
            wait = interval
            if nxt is not None:
                wait = min(interval, max((nxt - utcnow()).total_seconds(), 0.005))
            await dispatcher.sleep(wait)
