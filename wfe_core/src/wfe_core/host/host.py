"""The :class:`WorkflowHost`: a :class:`~wfe_core.client.WorkflowClient` that also
runs workflows, delivers events, and keeps going across crashes, restarts and many
hosts on one store.

The store is the source of truth; queues only carry hints. Background work per host
(each part a module of this package):

* :mod:`~wfe_core.host.dispatch` -- a workflow consumer (at most
  ``max_concurrent_workflows`` passes at once) and an event consumer, the local
  hand-offs and wake-up timers;
* :mod:`~wfe_core.host.passes` -- passes over one instance under its lock and claim
  (kept by :mod:`~wfe_core.host.lease`), and the watcher of control requests;
* :mod:`~wfe_core.host.delivery` -- published events handed to waiting pointers;
* :mod:`~wfe_core.host.poller` -- one host at a time per store re-finds due work, so
  a lost queue entry delays work but never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from wfe_core.client.client import WorkflowClient
from wfe_core.client.core import workflow_lock
from wfe_core.crashpoints import crash_point
from wfe_core.executor import PassControl, WorkflowExecutor
from wfe_core.host.delivery import EventDelivery
from wfe_core.host.dispatch import WorkDispatcher
from wfe_core.host.passes import PassRunner
from wfe_core.host.poller import Poller
from wfe_core.host.schedules import ScheduleFirer
from wfe_core.lifecycle import LifecyclePublisher
from wfe_core.locks import DistributedLockProvider
from wfe_core.models import Event, LifecycleEventType, QueueType, WorkflowInstance
from wfe_core.options import HostOptions
from wfe_core.persistence import PersistenceProvider
from wfe_core.queues import QueueProvider
from wfe_core.serialization import Serializer

__all__ = ["WorkflowHost"]

log = logging.getLogger("wfe.host")


class WorkflowHost(WorkflowClient):
    """Runs registered workflows on a persistence provider (and is a client of it).

    ``lock_provider`` defaults to an in-process lock shared by every host on the same
    provider object; ``queue_provider`` to an in-process queue; ``lifecycle`` to an
    in-process publisher. Give every host its own lock and queue provider instances.
    """

    def __init__(
        self,
        persistence: PersistenceProvider,
        *,
        lock_provider: DistributedLockProvider | None = None,
        queue_provider: QueueProvider | None = None,
        lifecycle: LifecyclePublisher | None = None,
        options: HostOptions | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        super().__init__(
            persistence,
            lock_provider=lock_provider,
            queue_provider=queue_provider,
            lifecycle=lifecycle,
            options=options,
            serializer=serializer,
        )
        self.executor = WorkflowExecutor(self)
        self.executor.step_middleware = self._step_middleware  # one list: see the client
        self.dispatcher = WorkDispatcher(self.queue_provider, self.options, self._hint)
        """Consumers, slots, local hand-offs and timers."""
        self.passes = PassRunner(self, self.executor, self.dispatcher)
        """Passes over instances, and which ones run here."""
        self.delivery = EventDelivery(self, self.dispatcher, self.passes)
        """Event delivery."""
        self.poller = Poller(
            persistence, self.lock_provider, self.dispatcher, self.options, self._is_active
        )
        """The poller (one host per store at a time)."""
        self.schedules = ScheduleFirer(self)
        """Fires due schedules (see :mod:`wfe_core.host.schedules`)."""
        self.poller.schedules = self.schedules
        self._loops: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ start / stop
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    def stopped_tasks(self) -> list[str]:
        """The names of the host's background tasks (queue consumers, poller, control
        watcher, schedules) that have ended while it runs -- each should run until
        :meth:`stop`, so a name here means the host no longer does that part of its
        work (a readiness check reports it). Empty when the host is not running."""
        if not self._running:
            return []
        return [task.get_name() for task in self._loops if task.done()]

    async def start(self) -> None:
        """Prepare the store and start the background work."""
        if self._running:
            return
        await self.open()
        self.dispatcher.start()
        self._running = True
        dispatcher, passes = self.dispatcher, self.passes
        self._loops = [
            asyncio.create_task(
                dispatcher.consume(QueueType.WORKFLOW, passes.process_workflow),
                name="wfe-workflow-consumer",
            ),
            asyncio.create_task(
                dispatcher.consume(QueueType.EVENT, self.delivery.process_event),
                name="wfe-event-consumer",
            ),
            asyncio.create_task(self.poller.run(), name="wfe-poller"),
            asyncio.create_task(passes.watch_controls(), name="wfe-control-watcher"),
            asyncio.create_task(self.schedules.run(dispatcher), name="wfe-schedules"),
        ]

    async def stop(self) -> None:
        """Stop taking work, wait (bounded) for running steps, release everything
        (a host made by :meth:`from_url` also closes its store, started or not)."""
        if not self._running:
            await self.close()
            return
        self._running = False
        self.dispatcher.halt()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        items = self.dispatcher.items
        if items:
            _, pending = await asyncio.wait(set(items), timeout=self.options.stop_timeout)
            if pending:
                log.warning(
                    "stop: %d passes still running after %.1fs; cancelling them",
                    len(pending),
                    self.options.stop_timeout,
                )
                for control in self.passes.active.values():
                    control.cancelled.set()
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self.close()

    # ------------------------------------------------------------------ client hooks
    def _is_active(self, workflow_id: str) -> bool:
        return workflow_id in self.passes.active

    def _pass_here(self, workflow_id: str) -> PassControl | None:
        return self.passes.active.get(workflow_id)

    def _runs_here(self, workflow_id: str) -> bool:
        return self.passes.runs(workflow_id)

    def _wake_at(self, queue: QueueType, item: str, when: Any) -> None:
        self.dispatcher.wake_at(queue, item, when)

    async def _store_new(self, instance: WorkflowInstance) -> None:
        """A running host with a free slot runs the new instance itself: it takes the
        instance's lock *before* the instance exists (so no other host can run it in
        between), writes it, and hands instance and lock to a local pass -- no queue
        round trip, no reload. If this process dies first, the lock's lease runs out
        and the poller finds the stored instance, as after a crash mid-pass. The
        workflow consumer keeps one slot while it waits on the queue, so with
        ``max_concurrent_workflows=1`` new instances always go through the queue."""
        dispatcher = self.dispatcher
        lock_name = workflow_lock(instance.id)
        local = await dispatcher.local_slot()
        if local:
            try:
                local = await self.workflow_locks.acquire_lock(lock_name, self.options.lock_ttl)
            except Exception as exc:
                log.debug(
                    "start_workflow: no local run (%s); queueing it",
                    exc,
                    extra={"workflow_id": instance.id},
                )
                local = False
            if not local:
                dispatcher.release_slot()
        try:
            if local:  # stored already claimed by this host (see claim_workflow)
                await self.persistence.create_workflow(
                    instance, owner=self.owner_id, lease_until=self._lease_until()
                )
            else:
                await self.persistence.create_workflow(instance)
        except BaseException:
            if local:
                dispatcher.release_slot()
                with contextlib.suppress(Exception):
                    await self.workflow_locks.release_lock(lock_name)
            raise
        crash_point("start.after_create")
        try:
            await self.publish_lifecycle(
                self.lifecycle_event(LifecycleEventType.WORKFLOW_STARTED, instance)
            )
        finally:
            if local:
                self.passes.run_here(instance)
        if not local:
            await self._hint(instance.id, QueueType.WORKFLOW)

    async def _local_event_slot(self) -> bool:
        return await self.dispatcher.local_slot(QueueType.EVENT)

    def _release_event_slot(self) -> None:
        self.dispatcher.release_slot(QueueType.EVENT)

    def _deliver_here(self, event: Event) -> None:
        delivery = self.delivery

        async def handler(event_id: str) -> None:
            await delivery.process_event(event_id, event)

        self.dispatcher.spawn(QueueType.EVENT, event.id, handler)
