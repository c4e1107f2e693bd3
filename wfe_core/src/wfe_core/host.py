"""The :class:`WorkflowHost`: runs workflows, delivers events, and keeps going across
crashes, restarts and many hosts on one store.

The store is the source of truth; queues only carry hints. Background work per host:

* a workflow consumer (at most ``max_concurrent_workflows`` passes at once),
* an event consumer that delivers published events to waiting pointers,
* a poller (one host at a time per store, elected through the lock provider) that
  re-finds due workflows, unprocessed events and due scheduled commands, so a lost
  queue entry delays work but never loses it.

A pass over an instance holds the instance's lock (a lease, renewed while the pass
runs), loads it, runs its runnable pointers with a revision-checked checkpoint after
every step, and releases the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from wfe_core.builder import WorkflowBuilder
from wfe_core.capabilities import Capability
from wfe_core.crashpoints import crash_point
from wfe_core.definition import StepContext, Workflow, WorkflowDefinition, WorkflowRegistry
from wfe_core.errors import (
    ConcurrencyError,
    ControlPending,
    DefinitionError,
    EventNotFound,
    LeaseLost,
    ProviderUnavailable,
    SubscriptionNotFound,
    TokenMismatch,
    WfeError,
    WorkflowNotFound,
)
from wfe_core.executor import PassControl, StepMiddleware, WorkflowExecutor
from wfe_core.lifecycle import InProcessLifecyclePublisher, LifecycleHandler, LifecyclePublisher
from wfe_core.locks import DistributedLockProvider, InProcessLockProvider, shared_lock_table
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    PointerStatus,
    QueueType,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
    utcnow,
)
from wfe_core.persistence import PersistenceProvider
from wfe_core.poison import set_aside_if_poison, suspend_if_undecodable
from wfe_core.primitives import (
    ACTIVITY_EVENT,
    PARENT_ATTRIBUTE,
    WORKFLOW_ENDED_EVENT,
    ActivityResult,
    SubWorkflow,
    WorkflowEnded,
)
from wfe_core.queues import InProcessQueueProvider, QueueProvider
from wfe_core.serialization import Serializer, default_serializer

__all__ = ["HostOptions", "MiddlewarePhase", "PendingActivity", "WorkflowHost"]

log = logging.getLogger("wfe.host")

WorkflowMiddleware = Callable[[WorkflowInstance], Awaitable[None] | None]


class MiddlewarePhase(StrEnum):
    """When a workflow middleware runs."""

    PRE_WORKFLOW = "pre_workflow"
    """Before a new instance is first stored (it may change the instance)."""
    POST_WORKFLOW = "post_workflow"
    """After an instance completed or was terminated."""
    EXECUTE_WORKFLOW = "execute_workflow"
    """After every pass over an instance."""


@dataclass(frozen=True)
class HostOptions:
    """Host settings; every duration is in seconds."""

    poll_interval: float = 2.0
    """How often the poller looks for due workflows, events and commands."""
    idle_time: float = 0.1
    """How long a consumer waits for work before looking again."""
    error_retry_interval: float = 60.0
    """Default pause before a failed step is retried."""
    max_concurrent_workflows: int = 32
    """Passes one host runs at once."""
    max_concurrent_events: int = 16
    """Event deliveries one host runs at once."""
    lock_ttl: float = 30.0
    """Lease of a workflow's lock; renewed every third of it while a pass runs."""
    activity_token_ttl: float = 300.0
    """How long an activity worker's claim lasts before another worker may take it."""
    stop_timeout: float = 30.0
    """How long stopping waits for running steps before cancelling them."""
    poll_batch: int = 1000
    """The most due workflows or events one poll queues."""
    control_interval: float = 0.5
    """How often a host looks in the store for suspend / resume / terminate requests
    recorded by other processes for the instances it is running."""

    def __post_init__(self) -> None:
        import dataclasses  # local imports: this method is their only user
        import math

        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(
                    f"HostOptions.{option.name} must be a finite number, not {value!r}"
                )
        for name in ("poll_interval", "idle_time", "lock_ttl", "activity_token_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HostOptions.{name} must be positive")
        if self.error_retry_interval < 0 or self.stop_timeout < 0:
            raise ValueError("HostOptions durations must not be negative")
        if self.max_concurrent_workflows < 1 or self.max_concurrent_events < 1:
            raise ValueError("HostOptions concurrency limits must be at least 1")


@dataclass(frozen=True)
class PendingActivity:
    """An activity claimed by a worker: do the work, then submit with ``token``."""

    token: str
    activity_name: str
    parameters: Any
    token_expiry: datetime


class _LeaseKeeper:
    """Keeps a pass's claim on its instance (in the store) and its workflow lock (the
    fast path) leased: renews both every ``lock_ttl / 3`` seconds until :meth:`stop`.
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
        "_control",
        "_deadline",
        "_expiry_timer",
        "_host",
        "_name",
        "_over",
        "_task",
        "_timer",
        "_workflow_id",
    )

    def __init__(
        self, host: WorkflowHost, workflow_id: str, control: PassControl, claimed_at: float
    ) -> None:
        self._host = host
        self._workflow_id = workflow_id
        self._name = _workflow_lock(workflow_id)
        self._control = control
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
        self._deadline = started + self._host.options.lock_ttl
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
            )
            self._control.lost()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._host.options.lock_ttl / 3, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._over:
            self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        host, name = self._host, self._name
        started = time.monotonic()
        ok: bool | None
        try:
            ok = await host._claim(self._workflow_id)
        except Exception as exc:
            log.warning("renewing the claim on workflow %s failed: %s", self._workflow_id, exc)
            ok = None
        if ok:
            with contextlib.suppress(Exception):  # the lock is only the fast path
                await host.lock_provider.renew_lock(name, host.options.lock_ttl)
        if self._over:
            return
        if ok is None and time.monotonic() < self._deadline:
            self._schedule()  # the store did not answer: try again while the claim lasts
            return
        if not ok:
            log.warning("lost the claim on workflow %s; stopping the pass", self._workflow_id)
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


def _workflow_lock(workflow_id: str) -> str:
    return f"wfe:workflow:{workflow_id}"


def _ended_event_id(workflow_id: str) -> str:
    """The fixed id of the event telling a parent that child ``workflow_id`` ended: one
    per child, so publishing it again after a crash stores nothing twice."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wfe:ended:{workflow_id}"))


def _parent_of(instance: WorkflowInstance) -> str | None:
    """The parent of a child workflow (``PARENT_ATTRIBUTE`` on its first pointer)."""
    first = instance.execution_pointers[0] if instance.execution_pointers else None
    parent = first.extension_attributes.get(PARENT_ATTRIBUTE) if first else None
    return str(parent) if parent else None


def _control_applies(status: WorkflowStatus, action: str) -> bool:
    """Whether ``action`` (suspend / resume / terminate) changes an instance in
    ``status``."""
    if action == "suspend":
        return status is WorkflowStatus.RUNNABLE
    if action == "resume":
        return status is WorkflowStatus.SUSPENDED
    if action == "terminate":
        return status not in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
    raise ValueError(f"unknown control action {action!r}")


def _log_outage(what: str, exc: Exception, failures: int, delay: float) -> None:
    """One line per failure while a service is down (a traceback only for surprises)."""
    if isinstance(exc, ProviderUnavailable):
        if failures == 1 or failures % 10 == 0:
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
    else:
        log.exception("%s failed; retrying in %.1fs", what, delay)


class WorkflowHost:
    """Runs registered workflows on a persistence provider.

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
        self.persistence = persistence
        self.options = options or HostOptions()
        self.lock_provider = lock_provider or InProcessLockProvider(shared_lock_table(persistence))
        self.queue_provider = queue_provider or InProcessQueueProvider()
        self.lifecycle = lifecycle or InProcessLifecyclePublisher()
        self.serializer = serializer or default_serializer
        self.serializer.register(ActivityResult, WorkflowEnded)
        self.registry = WorkflowRegistry()
        self.executor = WorkflowExecutor(self)
        self._workflow_middleware: dict[MiddlewarePhase, list[WorkflowMiddleware]] = {
            phase: [] for phase in MiddlewarePhase
        }
        self._running = False
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._items: set[asyncio.Task[None]] = set()
        self._active: dict[str, PassControl] = {}
        self._again: set[str] = set()
        self._held: set[str] = set()
        self._ended: dict[str, asyncio.Event] = {}
        self._timers: dict[tuple[QueueType, str], asyncio.TimerHandle] = {}
        self.owner_id = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        """This host's claim owner id in the store (host name, process id, a random part)."""
        self._wf_slots: asyncio.Semaphore | None = None
        self._evt_slots: asyncio.Semaphore | None = None
        self._owns_persistence = False

    @classmethod
    def from_url(
        cls,
        url: str = "sqlite:///wfe.db",
        *,
        lock_url: str | None = None,
        queue_url: str | None = None,
        lifecycle_url: str | None = None,
        options: HostOptions | None = None,
        **provider_options: Any,
    ) -> WorkflowHost:
        """Build a host on the store at ``url``, picked by URL scheme through the
        ``wfe.providers`` entry points, with that store's own lock and queue providers
        where it has them (so several processes on one store cooperate). ``lock_url``,
        ``queue_url`` and ``lifecycle_url`` take the lock, queue or lifecycle
        publisher from another service (e.g. ``redis://``). The host closes
        what it opened when it stops."""
        from wfe_core.registry import open_store

        store = open_store(url, **provider_options)
        if store.persistence is None:
            raise ValueError(
                f"{url.split(':', 1)[0]}:// provides no persistence; use it as lock_url or "
                "queue_url next to a store URL"
            )
        lock, queue, lifecycle = store.lock_provider, store.queue_provider, store.lifecycle
        roles = (("lock", lock_url), ("queue", queue_url), ("lifecycle", lifecycle_url))
        for role, other_url in roles:
            if other_url is None:
                continue
            other = open_store(other_url)
            provided = {
                "lock": other.lock_provider,
                "queue": other.queue_provider,
                "lifecycle": other.lifecycle,
            }[role]
            if provided is None:
                raise ValueError(f"{other_url.split(':', 1)[0]}:// provides no {role} provider")
            if role == "lock":
                lock = provided  # type: ignore[assignment]
            elif role == "queue":
                queue = provided  # type: ignore[assignment]
            else:
                lifecycle = provided  # type: ignore[assignment]
        host = cls(
            store.persistence,
            lock_provider=lock,
            queue_provider=queue,
            lifecycle=lifecycle,
            options=options,
        )
        host._owns_persistence = True
        return host

    # ------------------------------------------------------------------ setup
    def register_workflow(self, workflow: Workflow[Any]) -> WorkflowDefinition:
        """Build and register a workflow; invalid definitions raise DefinitionError."""
        if not isinstance(workflow, Workflow):
            raise DefinitionError(
                f"register_workflow takes a Workflow instance, not {type(workflow).__name__}"
            )
        wf_id = workflow.id
        if not isinstance(wf_id, str) or not wf_id:
            raise DefinitionError(f"{type(workflow).__name__}.id must be a non-empty string")
        if not isinstance(workflow.version, int) or workflow.version < 1:
            raise DefinitionError(f"{type(workflow).__name__}.version must be an int >= 1")
        builder: WorkflowBuilder[Any] = WorkflowBuilder()
        workflow.build(builder)
        definition = builder.build(
            wf_id, workflow.version, workflow.data_type, workflow.description
        )
        data_type = workflow.data_type
        if data_type is not None and data_type not in (dict, list, str, int, float):
            with contextlib.suppress(WfeError):
                self.serializer.register(data_type)
        self.registry.add(definition)
        return definition

    def register_type(self, *types: type) -> None:
        """Allow these classes (and the types their fields name) in stored data."""
        self.serializer.register(*types)

    def use_step_middleware(self, middleware: StepMiddleware) -> None:
        """Wrap every user step: ``async mw(context, next) -> ExecutionResult``; the first
        registered is the outermost."""
        self.executor.step_middleware.append(middleware)

    def use_workflow_middleware(
        self, phase: MiddlewarePhase, middleware: WorkflowMiddleware
    ) -> None:
        """Run ``middleware(instance)`` (sync or async) in ``phase``."""
        self._workflow_middleware[MiddlewarePhase(phase)].append(middleware)

    def on_lifecycle_event(self, handler: LifecycleHandler) -> Callable[[], None]:
        """Receive lifecycle events; returns a function that unsubscribes."""
        return self.lifecycle.subscribe(handler)

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

    async def start(self) -> None:
        """Prepare the store and start the background work."""
        if self._running:
            return
        await self.persistence.ensure_store_exists()
        await self.lock_provider.start()
        await self.queue_provider.start()
        await self.lifecycle.start()
        self._stopping = asyncio.Event()
        self._wf_slots = asyncio.Semaphore(self.options.max_concurrent_workflows)
        self._evt_slots = asyncio.Semaphore(self.options.max_concurrent_events)
        self._running = True
        self._loops = [
            asyncio.create_task(self._consume(QueueType.WORKFLOW), name="wfe-workflow-consumer"),
            asyncio.create_task(self._consume(QueueType.EVENT), name="wfe-event-consumer"),
            asyncio.create_task(self._poll_loop(), name="wfe-poller"),
            asyncio.create_task(self._watch_controls(), name="wfe-control-watcher"),
        ]

    async def stop(self) -> None:
        """Stop taking work, wait (bounded) for running steps, release everything
        (a host made by :meth:`from_url` also closes its store, started or not)."""
        if not self._running:
            if self._owns_persistence:
                await self.persistence.close()
            return
        self._running = False
        self._stopping.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._items:
            _, pending = await asyncio.wait(set(self._items), timeout=self.options.stop_timeout)
            if pending:
                log.warning(
                    "stop: %d passes still running after %.1fs; cancelling them",
                    len(pending),
                    self.options.stop_timeout,
                )
                for control in self._active.values():
                    control.cancelled.set()
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self.lifecycle.stop()
        await self.queue_provider.stop()
        await self.lock_provider.stop()
        if self._owns_persistence:
            await self.persistence.close()

    # ------------------------------------------------------------------ client API
    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
    ) -> str:
        """Start a new instance and return its id.

        A running host with a free workflow slot runs the new instance itself (no queue
        round trip); otherwise -- a host that is not started, or whose slots are busy --
        it is queued for any host. The workflow consumer keeps one slot while it waits
        on the queue, so with ``max_concurrent_workflows=1`` new instances always go
        through the queue."""
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise TypeError(f"version must be an int or None, not {version!r}")
        definition = self.registry.get(definition_id, version)
        instance = self._new_instance(definition, data, reference)
        await self._run_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, instance)
        # A running host with a free slot runs the new instance itself: it takes the
        # instance's lock *before* the instance exists (so no other host can run it in
        # between), writes it, and hands instance and lock to a local pass -- no queue
        # round trip, no reload. If this process dies first, the lock's lease runs out
        # and the poller finds the stored instance, as after a crash mid-pass.
        lock_name = _workflow_lock(instance.id)
        local = await self._local_slot()
        if local:
            try:
                local = await self.lock_provider.acquire_lock(lock_name, self.options.lock_ttl)
            except Exception as exc:
                log.debug("start_workflow: no local run (%s); queueing it", exc)
                local = False
            if not local:
                self._release_slot()
        try:
            if local:  # stored already claimed by this host (see claim_workflow)
                await self.persistence.create_workflow(
                    instance, owner=self.owner_id, lease_until=self._lease_until()
                )
            else:
                await self.persistence.create_workflow(instance)
        except BaseException:
            if local:
                self._release_slot()
                with contextlib.suppress(Exception):
                    await self.lock_provider.release_lock(lock_name)
            raise
        crash_point("start.after_create")
        try:
            await self._publish_lifecycle(
                self._lifecycle_event(LifecycleEventType.WORKFLOW_STARTED, instance)
            )
        finally:
            if local:
                self._spawn_local(instance)
        if not local:
            await self._hint(instance.id, QueueType.WORKFLOW)
        return instance.id

    def _new_instance(
        self,
        definition: WorkflowDefinition,
        data: Any,
        reference: str | None,
        *,
        instance_id: str | None = None,
    ) -> WorkflowInstance:
        data_type = definition.data_type
        if data is None and data_type is not None:
            try:
                data = data_type()
            except Exception as exc:
                raise TypeError(
                    f"workflow {definition.id!r} needs data: {data_type.__name__}() failed ({exc})"
                ) from exc
        elif data_type is not None and not isinstance(data, data_type):
            raise TypeError(
                f"workflow {definition.id!r} version {definition.version} takes data of type "
                f"{data_type.__name__}, not {type(data).__name__}"
            )
        self.serializer.to_primitive(data, "data")
        if reference is not None and not isinstance(reference, str):
            raise TypeError("reference must be a string")
        now = utcnow()
        instance = WorkflowInstance(
            workflow_definition_id=definition.id,
            version=definition.version,
            id=instance_id or new_id(),
            description=definition.description,
            reference=reference,
            status=WorkflowStatus.RUNNABLE,
            data=data,
            next_execution=now,
            create_time=now,
        )
        instance.execution_pointers.append(
            ExecutionPointer(step_id=0, step_name=definition.steps[0].label)
        )
        return instance

    async def run_workflow(
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        timeout: float = 60.0,
    ) -> WorkflowInstance:
        """Start an instance and wait until it completes or is terminated."""
        wid = await self.start_workflow(definition_id, data, version=version, reference=reference)
        return await self.wait_for_workflow(wid, timeout)

    async def wait_for_workflow(self, workflow_id: str, timeout: float = 60.0) -> WorkflowInstance:
        """Wait until the instance is COMPLETE or TERMINATED and return it; raise
        TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        ended = self._ended.setdefault(workflow_id, asyncio.Event())
        woke = True
        status = "unknown"
        try:
            while True:
                # while this host runs the workflow its end is signalled here, so the
                # store is read again only when signalled or when nobody here runs it
                # (a big instance is not reloaded over and over under a running loop)
                if woke or workflow_id not in self._active:
                    ended.clear()
                    instance = await self.persistence.get_workflow_instance(workflow_id)
                    if instance.status in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED):
                        return instance
                    status = instance.status.value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"workflow {workflow_id} did not finish within {timeout}s (status {status})"
                    )
                woke = False
                try:
                    await asyncio.wait_for(ended.wait(), min(delay, left))
                    woke = True
                except TimeoutError:
                    pass
                delay = min(delay * 2, 0.25)
        finally:
            if self._ended.get(workflow_id) is ended:
                self._ended.pop(workflow_id, None)

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Load an instance (WorkflowNotFound when unknown)."""
        return await self.persistence.get_workflow_instance(workflow_id)

    async def get_errors(self, workflow_id: str) -> list[ExecutionError]:
        """The errors recorded for an instance, oldest first."""
        return await self.persistence.get_errors(workflow_id)

    async def publish_event(
        self, name: str, key: str, data: Any = None, effective_date: datetime | None = None
    ) -> str:
        """Store an event and deliver it to every waiting subscription; return its id.

        ``effective_date`` (aware) is the event's time: subscriptions made at or before
        it receive it; a future date holds the event back until then."""
        return await self._publish(name, key, data, effective_date)

    async def _publish(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """The body of :meth:`publish_event`. ``event_id`` (internal for now): store the
        event under this fixed id, at most once -- when an event with that id exists
        already, nothing is stored or delivered and its id is returned (a re-publish
        after a crash, see :meth:`_republish_ended`)."""
        if event_id is not None:
            with contextlib.suppress(EventNotFound):
                return (await self.persistence.get_event(event_id)).id
        if not isinstance(name, str) or not name:
            raise ValueError("event name must be a non-empty string")
        if not isinstance(key, str):
            raise TypeError(f"event key must be a string, not {type(key).__name__}")
        from wfe_core.persistence import check_key  # every store's limits, before storing

        check_key(name, "event name")
        check_key(key, "event key")
        if effective_date is not None and effective_date.tzinfo is None:
            raise ValueError("effective_date must be timezone-aware (use datetime.now(UTC))")
        self.serializer.to_primitive(data, "event_data")
        now = utcnow()
        event = Event(
            event_name=name,
            event_key=key,
            event_data=data,
            event_time=effective_date or now,
            id=event_id or new_id(),
        )
        local = event.event_time <= now and await self._local_slot(QueueType.EVENT)
        try:
            await self.persistence.create_event(event)
        except BaseException as exc:
            if local:
                self._release_slot(QueueType.EVENT)
            if event_id is not None and isinstance(exc, ValueError):
                with contextlib.suppress(EventNotFound):  # stored meanwhile by another host
                    return (await self.persistence.get_event(event_id)).id
            raise
        if local:  # deliver it here: no queue round trip, no reload of the event
            self._spawn_event(event)
        elif event.event_time > now:
            if Capability.SCHEDULED_COMMANDS in self.persistence.capabilities:
                await self.persistence.schedule_command(
                    ScheduledCommand(ScheduledCommand.PROCESS_EVENT, event.id, event.event_time)
                )
            self._wake_at(QueueType.EVENT, event.id, event.event_time)
        else:
            await self._hint(event.id, QueueType.EVENT)
        return event.id

    async def suspend_workflow(self, workflow_id: str) -> bool:
        """Suspend a RUNNABLE instance; True when it was suspended, False when
        its status does not allow it; WorkflowNotFound for an unknown id."""
        return await self._control(workflow_id, "suspend")

    async def resume_workflow(self, workflow_id: str) -> bool:
        """Resume a SUSPENDED instance; True when it was resumed, False when
        its status does not allow it; WorkflowNotFound for an unknown id."""
        return await self._control(workflow_id, "resume")

    async def terminate_workflow(self, workflow_id: str) -> bool:
        """Terminate an unfinished instance (a running step sees ``context.cancelled``);
        True when it was terminated, False when it had already ended; WorkflowNotFound
        for an unknown id."""
        return await self._control(workflow_id, "terminate")

    # ------------------------------------------------------------------ activities
    async def get_pending_activity(
        self, activity_name: str, worker_id: str, timeout: float = 0.0
    ) -> PendingActivity | None:
        """Claim the oldest open activity ``activity_name`` for ``worker_id``, waiting up
        to ``timeout`` seconds for one; None if none came."""
        deadline = time.monotonic() + timeout
        while True:
            now = utcnow()
            sub = await self.persistence.get_first_open_subscription(
                ACTIVITY_EVENT, activity_name, now
            )
            if sub is not None:
                token = f"{sub.id}~{secrets.token_hex(16)}"
                expiry = now + timedelta(seconds=self.options.activity_token_ttl)
                if await self.persistence.set_subscription_token(sub.id, token, worker_id, expiry):
                    return PendingActivity(token, activity_name, sub.subscription_data, expiry)
                continue
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))

    async def _claimed(self, token: str) -> EventSubscription:
        if not isinstance(token, str) or "~" not in token:
            raise TokenMismatch(str(token))
        sub_id = token.split("~", 1)[0]
        try:
            sub = await self.persistence.get_subscription(sub_id)
        except SubscriptionNotFound:
            raise TokenMismatch(sub_id) from None
        if sub.external_token != token:
            raise TokenMismatch(sub_id)
        return sub

    async def submit_activity_success(self, token: str, result: Any = None) -> None:
        """Complete a claimed activity with ``result``; TokenMismatch when the claim is
        no longer held with this token."""
        await self._submit(token, True, result)

    async def submit_activity_failure(self, token: str, error: Any = None) -> None:
        """Fail a claimed activity: the activity step raises ActivityFailed(error)."""
        await self._submit(token, False, error)

    async def _submit(self, token: str, success: bool, data: Any) -> None:
        self.serializer.to_primitive(data, "activity_result")
        sub = await self._claimed(token)
        await self.publish_event(
            ACTIVITY_EVENT, sub.event_key, ActivityResult(sub.id, success, data)
        )
        crash_point("activity.after_submit")

    async def release_activity_token(self, token: str) -> None:
        """Give a claimed activity back so another worker can take it."""
        sub = await self._claimed(token)
        await self.persistence.clear_subscription_token(sub.id, token)

    # ------------------------------------------------------------------ background
    async def _consume(self, queue: QueueType) -> None:
        slots = self._wf_slots if queue is QueueType.WORKFLOW else self._evt_slots
        assert slots is not None
        handler = self._process_workflow if queue is QueueType.WORKFLOW else self._process_event
        blocking = self.queue_provider.is_dequeue_blocking
        failures = 0
        while self._running:
            await slots.acquire()
            try:
                item = await self.queue_provider.dequeue_work(
                    queue, max(self.options.idle_time, 0.5) if blocking else 0
                )
            except asyncio.CancelledError:
                slots.release()
                raise
            except Exception as exc:
                slots.release()
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                _log_outage(f"taking work from the {queue.value} queue", exc, failures, delay)
                await self._sleep(delay)
                continue
            if failures:
                log.info("the %s queue answers again", queue.value)
                failures = 0
            if item is None:
                slots.release()
                if not blocking:
                    await self._sleep(self.options.idle_time)
                continue
            task = asyncio.create_task(self._guarded(handler, item, queue, slots))
            self._items.add(task)
            task.add_done_callback(self._items.discard)

    async def _hint(self, item: str, queue: QueueType) -> None:
        """Queue a hint; a failure is logged, not raised: the store already holds the
        work and the poller finds it (raising here would make callers retry a write
        that succeeded)."""
        try:
            await self.queue_provider.queue_work(item, queue)
        except Exception as exc:
            log.warning(
                "could not queue %s %s (%s); the poller will pick it up", queue.value, item, exc
            )

    async def _guarded(
        self,
        handler: Callable[[str], Awaitable[None]],
        item: str,
        queue: QueueType,
        slots: asyncio.Semaphore,
        *,
        queued: bool = True,
    ) -> None:
        """Run ``handler(item)`` holding one of ``slots``; errors are logged (the work
        stays in the store and is retried). ``queued``: the item came from the queue
        (acknowledged afterwards), not from a local hand-off."""
        try:
            await handler(item)
        except asyncio.CancelledError:
            slots.release()
            raise
        except ProviderUnavailable as exc:
            log.warning("processing %s %s stopped: %s (it will be retried)", queue.value, item, exc)
        except Exception:
            log.exception("processing %s %s failed; it will be retried", queue.value, item)
        slots.release()
        ack = getattr(self.queue_provider, "ack", None) if queued else None
        if ack is not None:  # queues that redeliver unacknowledged items
            try:
                await ack(item, queue)
            except Exception as exc:
                log.warning("could not acknowledge %s %s: %s", queue.value, item, exc)

    async def _local_slot(self, queue: QueueType = QueueType.WORKFLOW) -> bool:
        """Take a free slot of ``queue`` for work this host hands to itself; False (and
        nothing taken) when the host is not running or every slot is busy."""
        slots = self._wf_slots if queue is QueueType.WORKFLOW else self._evt_slots
        if not self._running or slots is None or slots.locked():
            return False
        await slots.acquire()  # free: returns at once
        return True

    def _release_slot(self, queue: QueueType = QueueType.WORKFLOW) -> None:
        slots = self._wf_slots if queue is QueueType.WORKFLOW else self._evt_slots
        if slots is not None:
            slots.release()

    def _spawn_local(self, instance: WorkflowInstance) -> None:
        """Run passes of ``instance`` here, in a task holding a slot taken by
        :meth:`_local_slot`; its workflow lock is held already and the task takes it
        over (the first pass uses ``instance`` as it is: this host just wrote it)."""
        slots = self._wf_slots
        assert slots is not None

        async def handler(workflow_id: str) -> None:
            await self._process_workflow(workflow_id, instance)

        task = asyncio.create_task(
            self._guarded(handler, instance.id, QueueType.WORKFLOW, slots, queued=False)
        )
        self._items.add(task)
        task.add_done_callback(self._items.discard)

    def _spawn_event(self, event: Event) -> None:
        """Deliver ``event`` (just stored by this host) here, in a task holding an event
        slot taken by :meth:`_local_slot`."""
        slots = self._evt_slots
        assert slots is not None

        async def handler(event_id: str) -> None:
            await self._process_event(event_id, event)

        task = asyncio.create_task(
            self._guarded(handler, event.id, QueueType.EVENT, slots, queued=False)
        )
        self._items.add(task)
        task.add_done_callback(self._items.discard)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _poll_loop(self) -> None:
        failures = 0
        while self._running:
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(self.options.poll_interval * 2**failures, 30.0)
                _log_outage("polling for due work", exc, failures, delay)
                await self._sleep(delay)
                continue
            if failures:
                log.info("polling works again")
                failures = 0
            await self._sleep(self.options.poll_interval)

    async def _poll_once(self) -> None:
        ttl = max(self.options.poll_interval * 5, 5.0)
        lock = self.lock_provider
        now = utcnow()
        if await lock.acquire_lock("wfe:poll:workflows", ttl):
            try:
                for wid in await self.persistence.get_runnable_instances(
                    now, self.options.poll_batch
                ):
                    if wid not in self._active:
                        await self.queue_provider.queue_work(wid, QueueType.WORKFLOW)
                # control requests whose holder stopped before applying them
                for wid in await self.persistence.get_pending_controls(as_at=now):
                    if wid not in self._active:
                        await self.queue_provider.queue_work(wid, QueueType.WORKFLOW)
            finally:
                await lock.release_lock("wfe:poll:workflows")
        if await lock.acquire_lock("wfe:poll:events", ttl):
            try:
                for eid in await self.persistence.get_runnable_events(now, self.options.poll_batch):
                    await self.queue_provider.queue_work(eid, QueueType.EVENT)
            finally:
                await lock.release_lock("wfe:poll:events")
        if (
            Capability.SCHEDULED_COMMANDS in self.persistence.capabilities
            and await lock.acquire_lock("wfe:poll:commands", ttl)
        ):
            try:
                await self.persistence.process_commands(now, self._run_command)
            finally:
                await lock.release_lock("wfe:poll:commands")

    async def _run_command(self, command: ScheduledCommand) -> None:
        queue = (
            QueueType.EVENT
            if command.command_name == ScheduledCommand.PROCESS_EVENT
            else QueueType.WORKFLOW
        )
        await self.queue_provider.queue_work(command.data, queue)

    def _wake_at(self, queue: QueueType, item: str, when: datetime) -> None:
        """Queue ``item`` at ``when`` from this process (the poller is the fallback)."""
        if not self._running:
            return
        delay = (when - utcnow()).total_seconds()
        if delay > self.options.poll_interval * 2:
            return
        key = (queue, item)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            if self._running:
                task = loop.create_task(self._hint(item, queue))
                self._items.add(task)
                task.add_done_callback(self._items.discard)

        self._timers[key] = loop.call_later(max(delay, 0.0), fire)

    # ------------------------------------------------------------------ passes
    async def _process_workflow(
        self, workflow_id: str, held: WorkflowInstance | None = None
    ) -> None:
        """Run passes of one workflow until it needs none now. ``held``: the instance as
        this host just wrote it, its workflow lock held by this host and handed over
        (the first pass neither takes the lock nor loads the instance)."""
        if held is None and workflow_id in self._held:
            return  # suspend/resume/terminate in progress; it queues the id again
        if workflow_id in self._active:
            self._again.add(workflow_id)
            if held is not None:  # callers check first; never strand the handed lock
                await self.lock_provider.release_lock(_workflow_lock(workflow_id))
            return
        control = PassControl()
        self._active[workflow_id] = control
        try:
            while True:
                self._again.discard(workflow_id)
                await self._run_pass(workflow_id, control, held)
                held = None
                if workflow_id not in self._again or not self._running or control.stop_requested:
                    break
        finally:
            self._active.pop(workflow_id, None)
            self._again.discard(workflow_id)
            control.finished.set()

    def _lease_until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.options.lock_ttl)

    async def _claim(self, workflow_id: str) -> bool:
        """Take or renew this host's claim on an instance in the store."""
        return await self.persistence.claim_workflow(
            workflow_id, self.owner_id, self._lease_until()
        )

    async def _release_claim(self, workflow_id: str) -> None:
        try:
            await self.persistence.release_workflow(workflow_id, self.owner_id)
        except Exception as exc:  # the lease runs out by itself
            log.warning("releasing the claim on workflow %s failed: %s", workflow_id, exc)

    async def _run_pass(
        self, workflow_id: str, control: PassControl, held: WorkflowInstance | None = None
    ) -> None:
        lock_name = _workflow_lock(workflow_id)
        claimed_at = time.monotonic()
        if held is None:
            if not await self.lock_provider.acquire_lock(lock_name, self.options.lock_ttl):
                return
            try:
                claimed = await self._claim(workflow_id)
            except BaseException:
                await self.lock_provider.release_lock(lock_name)
                raise
            if not claimed:  # another host runs it (its lock was lost, its claim was not)
                await self.lock_provider.release_lock(lock_name)
                log.debug("workflow %s is claimed by another host", workflow_id)
                return
        control.owner = self.owner_id
        control.lease_lost = False
        lease = _LeaseKeeper(self, workflow_id, control, claimed_at)
        instance: WorkflowInstance | None = held
        released = False  # the pass's last write ended the instance and dropped the claim
        try:
            try:
                if instance is None:
                    instance = await self.persistence.get_workflow_instance(workflow_id)
            except WorkflowNotFound:
                return
            if instance.control_request is not None:
                await self._apply_control(instance, instance.control_request)
                instance = None
                return
            if instance.status in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED):
                await self._publish_ended(instance, instance.status)  # lost in a crash?
                return
            if instance.status is not WorkflowStatus.RUNNABLE:
                return
            definition = self.registry.find(instance.workflow_definition_id, instance.version)
            if definition is None:
                log.debug(
                    "workflow %s: %s v%s is not registered on this host",
                    workflow_id,
                    instance.workflow_definition_id,
                    instance.version,
                )
                instance = None
                return
            if await suspend_if_undecodable(self, instance):  # poison data: set aside
                return
            try:
                await self.executor.run_pass(instance, definition, control)
            except ControlPending as pending:
                # A suspend / resume / terminate request from elsewhere: apply it to the
                # instance as this pass left it (its last step's result included).
                await self._apply_control(instance, pending.action or "")
                instance = None
                return
            except LeaseLost:
                log.warning(
                    "workflow %s: this host's claim was lost during a pass; it stops here "
                    "and writes nothing more",
                    workflow_id,
                )
                instance = None
                return
            except ConcurrencyError:
                log.info("workflow %s was changed elsewhere during a pass; reloading", workflow_id)
                instance = None
                self._again.add(workflow_id)
                return
            if control.stop_requested and not control.lease_lost:
                # stopped for a control request: apply it now rather than at the next poll
                requests = await self.persistence.get_pending_controls([workflow_id])
                if workflow_id in requests:
                    await self._apply_control(instance, requests[workflow_id])
            released = instance.status in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
            await self._run_workflow_middleware(MiddlewarePhase.EXECUTE_WORKFLOW, instance)
        finally:
            await lease.stop()
            if not released:
                await self._release_claim(workflow_id)  # owner-checked: never frees another's
            await self.lock_provider.release_lock(lock_name)
        if (
            instance is not None
            and instance.status is WorkflowStatus.RUNNABLE
            and instance.next_execution is not None
        ):
            if instance.next_execution <= utcnow():
                if workflow_id in self._held:
                    pass  # the control call decides what happens next
                elif control.stop_requested or not self._running:
                    await self._hint(workflow_id, QueueType.WORKFLOW)
                else:
                    self._again.add(workflow_id)
            else:
                self._wake_at(QueueType.WORKFLOW, workflow_id, instance.next_execution)

    async def _acquire(self, name: str, attempts: int = 40) -> bool:
        delay = 0.005
        for _ in range(attempts):
            if await self.lock_provider.acquire_lock(name, self.options.lock_ttl):
                return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        return False

    # ------------------------------------------------------------------ events
    async def _process_event(self, event_id: str, known: Event | None = None) -> None:
        """Deliver one event under its lock. ``known``: the event as this host just
        stored it (not read again; delivery re-checks every pointer under its
        workflow's lock, so a copy that is stale by now delivers nothing twice)."""
        lock_name = f"wfe:event:{event_id}"
        if not await self.lock_provider.acquire_lock(lock_name, self.options.lock_ttl):
            # someone else is delivering it; look again soon in case they finished
            # just before a new subscription asked for it again
            log.debug("event %s is locked elsewhere; looking again soon", event_id)
            self._wake_at(QueueType.EVENT, event_id, utcnow() + timedelta(milliseconds=50))
            return
        complete = True
        try:
            try:
                event = known or await self.persistence.get_event(event_id)
            except EventNotFound:
                return
            if event.is_processed:
                return
            if event.event_time > utcnow():
                self._wake_at(QueueType.EVENT, event_id, event.event_time)
                return
            if await set_aside_if_poison(self, event):  # undecodable data: never delivered
                return
            complete = await self._deliver_event(event)
        finally:
            await self.lock_provider.release_lock(lock_name)
        if not complete:
            self._wake_at(QueueType.EVENT, event_id, utcnow() + timedelta(milliseconds=50))

    async def _targets(self, event: Event) -> list[EventSubscription]:
        if event.event_name == ACTIVITY_EVENT and isinstance(event.event_data, ActivityResult):
            try:
                return [await self.persistence.get_subscription(event.event_data.subscription_id)]
            except SubscriptionNotFound:
                return []
        return await self.persistence.get_subscriptions(
            event.event_name, event.event_key, event.event_time
        )

    async def _deliver_event(self, event: Event) -> bool:
        """Deliver to every eligible subscription; True when the event is done.

        The event is marked processed *before* a last look for subscriptions saved
        meanwhile: a subscription saved after that look runs its own catch-up, which
        marks the event unprocessed again after this mark, so no subscriber is missed.
        """
        attempted: set[str] = set()
        while True:
            fresh = [s for s in await self._targets(event) if s.id not in attempted]
            for sub in fresh:
                attempted.add(sub.id)
                if not await self._deliver(event, sub):
                    return False
            await self.persistence.mark_event_processed(event.id)
            if event.event_name == ACTIVITY_EVENT:
                return True
            if not [s for s in await self._targets(event) if s.id not in attempted]:
                return True
            await self.persistence.mark_event_unprocessed(event.id)

    async def _deliver(self, event: Event, sub: EventSubscription) -> bool:
        """Hand ``event`` to ``sub``'s pointer; False when it must be tried again later."""
        if event.event_name != ACTIVITY_EVENT:
            for other_id in await self.persistence.get_events(
                sub.event_name, sub.event_key, sub.subscribe_as_of
            ):
                if other_id == event.id:
                    break
                with contextlib.suppress(EventNotFound):
                    other = await self.persistence.get_event(other_id)
                    if await set_aside_if_poison(self, other):
                        continue  # a set-aside (poison) event blocks nothing
                    if other.event_time <= utcnow():
                        # The subscription is owed the oldest event at or after its
                        # as-of time. An older one may still read "processed" (handled
                        # before this subscription existed) when the subscription's
                        # catch-up has not reopened it yet: reopen it here.
                        log.debug("event %s waits for the older event %s", event.id, other_id)
                        if other.is_processed:
                            await self.persistence.mark_event_unprocessed(other_id)
                        await self._hint(other_id, QueueType.EVENT)
                        return False
        wid = sub.workflow_id
        lock_name = _workflow_lock(wid)
        if not await self._acquire(lock_name):
            log.debug("event %s: workflow %s stays locked; trying again later", event.id, wid)
            return False
        try:
            claimed = await self._claim(wid)
        except WorkflowNotFound:
            claimed = True  # gone: nothing to deliver to; the subscription is dropped below
        except BaseException:
            await self.lock_provider.release_lock(lock_name)
            raise
        if not claimed:
            await self.lock_provider.release_lock(lock_name)
            log.debug(
                "event %s: workflow %s is claimed elsewhere; trying again later", event.id, wid
            )
            return False
        handed = False  # the claim, the lock and the saved instance went to a local pass
        resume: WorkflowInstance | None = None  # to hand over (a local slot is taken)
        try:
            try:
                instance = await self.persistence.get_workflow_instance(wid)
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
                    p.active = True
                    p.sleep_until = None
                    instance.next_execution = utcnow()
                    try:
                        await self.persistence.persist_workflow(instance, owner=self.owner_id)
                        crash_point("delivery.after_persist")
                    except ControlPending as pending:
                        # delivered, and the pending request applied, in one write
                        await self._apply_control(instance, pending.action or "")
                    if (
                        instance.status is WorkflowStatus.RUNNABLE
                        and wid not in self._active
                        and wid not in self._held
                        and await self._local_slot()
                    ):
                        # Resume it here, once the subscription is gone: the pass
                        # takes over the claim, the lock and the instance just saved
                        # (no release, queue hop, re-lock, reload).
                        resume = instance
            with contextlib.suppress(SubscriptionNotFound):
                await self.persistence.terminate_subscription(sub.id)
            crash_point("delivery.after_subscription")
            if resume is not None:
                self._spawn_local(resume)
                handed = True
        finally:
            if resume is not None and not handed:
                self._release_slot()
            if not handed:
                await self._release_claim(wid)
                await self.lock_provider.release_lock(lock_name)
        if not handed:
            await self._hint(wid, QueueType.WORKFLOW)
        return True

    async def _catch_up(self, sub: EventSubscription) -> None:
        """Queue events stored before ``sub`` that it is entitled to."""
        for event_id in await self.persistence.get_events(
            sub.event_name, sub.event_key, sub.subscribe_as_of
        ):
            with contextlib.suppress(EventNotFound):
                await self.persistence.mark_event_unprocessed(event_id)
                await self._hint(event_id, QueueType.EVENT)

    # ------------------------------------------------------------------ control
    async def _control(self, workflow_id: str, action: str) -> bool:
        """Suspend / resume / terminate from any process.

        Applied here and now when nobody holds the instance (this host claims it, applies
        the change and releases it). When a pass holds it -- on this host or any other,
        in any process -- the request is recorded in the store (durable) and True is
        returned at once: the holder sees it within ``HostOptions.control_interval``
        (a running step's ``context.cancelled`` fires on terminate), its next checkpoint
        is refused until it applies the request, and a request left when the holder
        stopped is applied by the next host that polls. False when the status does
        not allow the action (terminating an ended workflow, resuming one that is not
        suspended); WorkflowNotFound for an unknown id."""
        current = await self.persistence.get_workflow_instance(workflow_id)
        if not _control_applies(current.status, action):
            return False
        requested = False  # a request of ours is recorded in the store
        running = self._active.get(workflow_id)
        if running is not None:
            # This host runs it: its pass applies the request. Wait (bounded) for that
            # pass to end, so the change has taken effect when the call returns.
            await self.persistence.request_control(workflow_id, action)
            requested = True
            self._signal_control(running, action)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.finished.wait(), self.options.lock_ttl)
            if workflow_id in self._active:
                return True  # still stepping: the request stays recorded for its pass
            if (await self.persistence.get_workflow_instance(workflow_id)).control_request is None:
                return True  # applied by the pass
        self._held.add(workflow_id)
        try:
            lock_name = _workflow_lock(workflow_id)
            delay = 0.005
            deadline = time.monotonic() + 0.5
            while True:
                if await self.lock_provider.acquire_lock(lock_name, self.options.lock_ttl):
                    try:
                        if await self._claim(workflow_id):
                            try:
                                instance = await self.persistence.get_workflow_instance(workflow_id)
                                pending = instance.control_request
                                if requested and pending is None:
                                    return True  # the holder applied our request
                                if pending is not None and pending != action:
                                    # an earlier request (a terminate) goes first
                                    await self._apply_control(instance, pending)
                                    return action == "terminate"
                                return await self._apply_control(instance, action)
                            finally:
                                await self._release_claim(workflow_id)
                    finally:
                        await self.lock_provider.release_lock(lock_name)
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
            # Another host (or process) holds it: record the request for the holder.
            await self.persistence.request_control(workflow_id, action)
            log.info(
                "workflow %s is held elsewhere; the %s request is recorded for its holder",
                workflow_id,
                action,
            )
            return True
        finally:
            self._held.discard(workflow_id)
            if self._running and action != "resume":
                with contextlib.suppress(Exception):
                    instance = await self.persistence.get_workflow_instance(workflow_id)
                    if instance.status is WorkflowStatus.RUNNABLE:
                        await self._hint(workflow_id, QueueType.WORKFLOW)

    @staticmethod
    def _signal_control(control: PassControl, action: str) -> None:
        """Tell a running pass about a control request: it stops after the running
        steps; on terminate the running steps see ``context.cancelled`` too."""
        if action in ("terminate", "suspend"):
            control.stop_requested = True
            if action == "terminate":
                control.cancelled.set()

    async def _watch_controls(self) -> None:
        """Every ``control_interval`` seconds, look in the store for control requests
        recorded (by any process) for the instances this host is running."""
        failures = 0
        while self._running:
            await self._sleep(self.options.control_interval)
            active = list(self._active)
            if not active:
                continue
            try:
                pending = await self.persistence.get_pending_controls(active)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                _log_outage("looking for control requests", exc, failures, 1.0)
                continue
            failures = 0
            for workflow_id, action in pending.items():
                control = self._active.get(workflow_id)
                if control is not None:
                    self._signal_control(control, action)

    async def _apply_control(self, instance: WorkflowInstance, action: str) -> bool:
        """Apply ``action`` to an instance this host has claimed, clearing any pending
        request in the same write; True when the status allowed it."""
        workflow_id = instance.id
        now = utcnow()
        applies = _control_applies(instance.status, action)
        kind: LifecycleEventType | None = None
        if not applies:
            pass  # only the pending request is cleared
        elif action == "suspend":
            instance.status = WorkflowStatus.SUSPENDED
            kind = LifecycleEventType.WORKFLOW_SUSPENDED
        elif action == "resume":
            instance.status = WorkflowStatus.RUNNABLE
            instance.next_execution = now
            kind = LifecycleEventType.WORKFLOW_RESUMED
        else:
            instance.status = WorkflowStatus.TERMINATED
            instance.complete_time = now
            instance.next_execution = None
            for p in instance.execution_pointers:
                if p.end_time is None:
                    p.active = False
                    p.status = PointerStatus.CANCELLED
                    p.end_time = now
                    p.sleep_until = None
            kind = LifecycleEventType.WORKFLOW_TERMINATED
            await self._guard_child_end(instance)
        await self.persistence.persist_workflow(instance, owner=self.owner_id, apply_control=True)
        crash_point("control.after_persist")
        instance.control_request = None
        if kind is None:
            return False
        log.info("workflow %s: %s applied", workflow_id, action)
        await self._publish_lifecycle(self._lifecycle_event(kind, instance))
        if action == "terminate":
            await self.persistence.terminate_subscriptions(workflow_id)
            crash_point("control.after_subscriptions")
            await self._workflow_ended(instance, WorkflowStatus.TERMINATED)
        elif action == "resume":
            await self._hint(workflow_id, QueueType.WORKFLOW)
        return True

    # ------------------------------------------------------------------ executor hooks
    def _lifecycle_event(
        self, kind: LifecycleEventType, instance: WorkflowInstance
    ) -> LifecycleEvent:
        return LifecycleEvent(
            type=kind,
            workflow_id=instance.id,
            workflow_definition_id=instance.workflow_definition_id,
            version=instance.version,
            reference=instance.reference,
        )

    async def _publish_lifecycle(self, event: LifecycleEvent) -> None:
        try:
            await self.lifecycle.publish(event)
        except Exception:
            log.exception("publishing lifecycle event %s failed", event.type.value)

    async def _run_workflow_middleware(
        self, phase: MiddlewarePhase, instance: WorkflowInstance
    ) -> None:
        for mw in self._workflow_middleware[phase]:
            try:
                result = mw(instance)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                if phase is MiddlewarePhase.PRE_WORKFLOW:
                    raise
                log.exception("%s middleware failed for workflow %s", phase.value, instance.id)

    async def _workflow_ended(self, instance: WorkflowInstance, status: WorkflowStatus) -> None:
        await self._run_workflow_middleware(MiddlewarePhase.POST_WORKFLOW, instance)
        waiter = self._ended.get(instance.id)
        if waiter is not None:
            waiter.set()
        if _parent_of(instance) is not None:
            crash_point("ended.before_parent_event")
            await self._publish_ended(instance, status)

    # A child's end reaches its parent as an event (WORKFLOW_ENDED_EVENT, key: the
    # child's id) published *after* the write that ended the child: two writes, no
    # transaction across them. So that a crash between them loses nothing, the event
    # has a fixed id (``_ended_event_id``: published at most once, however often it is
    # published), and before that write a ``process_workflow`` command is scheduled
    # for the child (``_guard_child_end``) -- due only after the ending host's lease
    # would have run out. Its pass finds the child ended and publishes the event
    # unless it exists (``_publish_ended`` from ``_run_pass``); in the usual case it
    # exists and the pass does nothing. A store without SCHEDULED_COMMANDS has no such
    # guard: there the event is lost if the process dies in between.
    async def _guard_child_end(self, instance: WorkflowInstance) -> None:
        """Called just before the write that ends ``instance`` (its final checkpoint,
        or a terminate): when it is a child, make sure a pass looks at it again later."""
        if (
            _parent_of(instance) is None
            or Capability.SCHEDULED_COMMANDS not in self.persistence.capabilities
        ):
            return
        due = utcnow() + timedelta(seconds=self.options.lock_ttl + self.options.poll_interval)
        await self.persistence.schedule_command(
            ScheduledCommand(ScheduledCommand.PROCESS_WORKFLOW, instance.id, due)
        )

    async def _publish_ended(self, instance: WorkflowInstance, status: WorkflowStatus) -> None:
        """Tell the parent of ended child ``instance`` (if any) that it ended, at most
        once (the event's fixed id): a no-op when the event was published already."""
        if _parent_of(instance) is None:
            return
        await self._publish(
            WORKFLOW_ENDED_EVENT,
            instance.id,
            WorkflowEnded(instance.id, status.value, instance.data),
            event_id=_ended_event_id(instance.id),
        )

    async def _start_child(self, body: SubWorkflow, context: StepContext[Any]) -> str:
        pointer = context.pointer
        child_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"wfe:child:{pointer.id}:{pointer.retry_count}")
        )
        definition = self.registry.get(body.definition_id, body.version)
        child = self._new_instance(definition, body.child_data, None, instance_id=child_id)
        child.execution_pointers[0].extension_attributes[PARENT_ATTRIBUTE] = context.workflow.id
        await self._run_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, child)
        try:
            await self.persistence.create_workflow(child)
        except ConcurrencyError:
            # Started before a crash (this step's checkpoint was lost): keep the child
            # that exists, and wait for its end as of when it was created -- it may have
            # ended (and published its ended event) before this step ran again.
            with contextlib.suppress(WorkflowNotFound):
                existing = await self.persistence.get_workflow_instance(child_id)
                if pointer.start_time is None or existing.create_time < pointer.start_time:
                    pointer.start_time = existing.create_time
            return child_id
        crash_point("child.after_create")
        await self._publish_lifecycle(
            self._lifecycle_event(LifecycleEventType.WORKFLOW_STARTED, child)
        )
        await self._hint(child_id, QueueType.WORKFLOW)
        return child_id
