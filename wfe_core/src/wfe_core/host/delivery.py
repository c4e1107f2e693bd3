"""Event delivery: hands a published event to every pointer waiting for it, each under
its workflow's lock and claim, in event order, and resumes the workflow here when a
slot is free."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from wfe_core.client.client import WorkflowClient
from wfe_core.client.core import workflow_lock
from wfe_core.crashpoints import crash_point
from wfe_core.errors import ControlPending, EventNotFound, SubscriptionNotFound, WorkflowNotFound
from wfe_core.host.dispatch import WorkDispatcher
from wfe_core.host.passes import PassRunner
from wfe_core.models import (
    Event,
    EventSubscription,
    QueueType,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.poison import set_aside_if_poison
from wfe_core.primitives import ACTIVITY_EVENT, ActivityResult
from wfe_core.retry import Backoff
from wfe_core.telemetry import note_delivered_event

__all__ = ["EventDelivery"]

log = logging.getLogger("wfe.host")


class EventDelivery:
    """Delivers events for a host."""

    def __init__(
        self, client: WorkflowClient, dispatcher: WorkDispatcher, passes: PassRunner
    ) -> None:
        self.client = client
        self.dispatcher = dispatcher
        self.passes = passes

    async def process_event(self, event_id: str, known: Event | None = None) -> None:
        """Deliver one event under its lock. ``known``: the event as this host just
        stored it (not read again; delivery re-checks every pointer under its
        workflow's lock, so a copy that is stale by now delivers nothing twice)."""
        client = self.client
        lock_name = f"wfe:event:{event_id}"
        if not await client.lock_provider.acquire_lock(lock_name, client.options.lock_ttl):
            # someone else is delivering it; look again soon in case they finished
            # just before a new subscription asked for it again
            log.debug(
                "event %s is locked elsewhere; looking again soon",
                event_id,
                extra={"event_id": event_id},
            )
            self.dispatcher.wake_at(
                QueueType.EVENT, event_id, utcnow() + timedelta(milliseconds=50)
            )
            return
        complete = True
        try:
            try:
                event = known or await client.persistence.get_event(event_id)
            except EventNotFound:
                return
            if event.is_processed:
                return
            if event.event_time > utcnow():
                self.dispatcher.wake_at(QueueType.EVENT, event_id, event.event_time)
                return
            if await set_aside_if_poison(client, event):  # undecodable data: never delivered
                return
            complete = await self.deliver_event(event)
        finally:
            await client.lock_provider.release_lock(lock_name)
        if not complete:
            self.dispatcher.wake_at(
                QueueType.EVENT, event_id, utcnow() + timedelta(milliseconds=50)
            )

    async def _targets(self, event: Event) -> list[EventSubscription]:
        persistence = self.client.persistence
        if event.event_name == ACTIVITY_EVENT and isinstance(event.event_data, ActivityResult):
            try:
                return [await persistence.get_subscription(event.event_data.subscription_id)]
            except SubscriptionNotFound:
                return []
        return await persistence.get_subscriptions(
            event.event_name, event.event_key, event.event_time
        )

    async def deliver_event(self, event: Event) -> bool:
        """Deliver to every eligible subscription; True when the event is done.

        The event is marked processed *before* a last look for subscriptions saved
        meanwhile: a subscription saved after that look runs its own catch-up, which
        marks the event unprocessed again after this mark, so no subscriber is missed.
        """
        persistence = self.client.persistence
        attempted: set[str] = set()
        while True:
            fresh = [s for s in await self._targets(event) if s.id not in attempted]
            for sub in fresh:
                attempted.add(sub.id)
                if not await self.deliver(event, sub):
                    return False
            await persistence.mark_event_processed(event.id)
            if event.event_name == ACTIVITY_EVENT:
                return True
            if not [s for s in await self._targets(event) if s.id not in attempted]:
                return True
            await persistence.mark_event_unprocessed(event.id)

    async def _claim(self, workflow_id: str, *, retry: bool, attempts: int = 40) -> bool:
        """Claim the workflow for the delivery. ``retry``: the workflow lock taken is
        this process's own (the claim is the guard between processes), so a pass
        running on another host shows as a refused claim: try again a while, as
        :meth:`_acquire` does for the lock."""
        client = self.client
        if not retry:
            return await client._claim(workflow_id)
        wait = Backoff(0.005, maximum=0.1, jitter=0.2)
        for _ in range(attempts - 1):
            if await client._claim(workflow_id):
                return True
            await asyncio.sleep(next(wait))
        return await client._claim(workflow_id)

    async def _acquire(self, name: str, attempts: int = 40) -> bool:
        lock_provider, ttl = self.client.workflow_locks, self.client.options.lock_ttl
        wait = Backoff(0.005, maximum=0.1, jitter=0.2)
        for _ in range(attempts):
            if await lock_provider.acquire_lock(name, ttl):
                return True
            await asyncio.sleep(next(wait))
        return False

    async def deliver(self, event: Event, sub: EventSubscription) -> bool:
        """Hand ``event`` to ``sub``'s pointer; False when it must be tried again later."""
        client = self.client
        persistence = client.persistence
        if event.event_name != ACTIVITY_EVENT:
            for other_id in await persistence.get_events(
                sub.event_name, sub.event_key, sub.subscribe_as_of
            ):
                if other_id == event.id:
                    break
                with contextlib.suppress(EventNotFound):
                    other = await persistence.get_event(other_id)
                    if await set_aside_if_poison(client, other):
                        continue  # a set-aside (poison) event blocks nothing
                    if other.event_time <= utcnow():
                        # The subscription is owed the oldest event at or after its
                        # as-of time. An older one may still read "processed" (handled
                        # before this subscription existed) when the subscription's
                        # catch-up has not reopened it yet: reopen it here.
                        log.debug(
                            "event %s waits for the older event %s",
                            event.id,
                            other_id,
                            extra={"event_id": event.id, "workflow_id": sub.workflow_id},
                        )
                        if other.is_processed:
                            await persistence.mark_event_unprocessed(other_id)
                        await client._hint(other_id, QueueType.EVENT)
                        return False
        wid = sub.workflow_id
        lock_name = workflow_lock(wid)
        locks = client.workflow_locks
        if not await self._acquire(lock_name):
            log.debug(
                "event %s: workflow %s stays locked; trying again later",
                event.id,
                wid,
                extra={"event_id": event.id, "workflow_id": wid},
            )
            return False
        try:
            claimed = await self._claim(wid, retry=locks is not client.lock_provider)
        except WorkflowNotFound:
            claimed = True  # gone: nothing to deliver to; the subscription is dropped below
        except BaseException:
            await locks.release_lock(lock_name)
            raise
        if not claimed:
            await locks.release_lock(lock_name)
            log.debug(
                "event %s: workflow %s is claimed elsewhere; trying again later",
                event.id,
                wid,
                extra={"event_id": event.id, "workflow_id": wid},
            )
            return False
        handed = False  # the claim, the lock and the saved instance went to a local pass
        resume: WorkflowInstance | None = None  # to hand over (a local slot is taken)
        try:
            try:
                instance: WorkflowInstance | None = await persistence.get_workflow_instance(wid)
            except WorkflowNotFound:
                instance = None
            if instance is not None:
                p = instance.pointer(sub.execution_pointer_id)
                if (
                    p is not None
                    and p.end_time is None
                    and not p.event_published
                    and instance.status in (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED)
                ):
                    p.event_data = event.event_data
                    p.event_published = True
                    note_delivered_event(p, event)  # its headers (trace context), if any
                    p.active = True
                    p.sleep_until = None
                    instance.next_execution = utcnow()
                    try:
                        await persistence.persist_workflow(instance, owner=client.owner_id)
                        crash_point("delivery.after_persist")
                    except ControlPending as pending:
                        # delivered, and the pending request applied, in one write
                        await client._apply_control(instance, pending.action or "")
                    log.debug(
                        "event %s (%r) delivered to workflow %s",
                        event.id,
                        event.event_name,
                        wid,
                        extra={
                            "event_id": event.id,
                            "workflow_id": wid,
                            "definition": instance.workflow_definition_id,
                            "step": p.step_name,
                            "pointer_id": p.id,
                        },
                    )
                    if (
                        instance.status is WorkflowStatus.RUNNABLE
                        and wid not in self.passes.active
                        and wid not in client._held
                        and await self.dispatcher.local_slot()
                    ):
                        # Resume it here, once the subscription is gone: the pass
                        # takes over the claim, the lock and the instance just saved
                        # (no release, queue hop, re-lock, reload).
                        resume = instance
            with contextlib.suppress(SubscriptionNotFound):
                await persistence.terminate_subscription(sub.id)
            crash_point("delivery.after_subscription")
            if resume is not None:
                self.passes.run_here(resume)
                handed = True
        finally:
            if resume is not None and not handed:
                self.dispatcher.release_slot()
            if not handed:
                await client._release_claim(wid)
                await locks.release_lock(lock_name)
        if not handed:
            await client._hint(wid, QueueType.WORKFLOW)
        return True
