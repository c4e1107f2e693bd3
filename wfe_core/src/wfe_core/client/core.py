"""What every client and host holds: the store and its services, the registry of
definitions, and the engine services of :class:`~wfe_core.engine.WorkflowEngine`
(lifecycle events, hints, claims, sub-workflows) that a client needs as soon as it
applies a terminate itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

from wfe_core.builder import WorkflowBuilder
from wfe_core.capabilities import Capability
from wfe_core.client.children import (
    child_id,
    ended_event_id,
    ended_payload,
    guard_child_end,
    parent_of,
)
from wfe_core.client.definitions import ClientDefinitions
from wfe_core.client.idempotency import check_event_id, same_event
from wfe_core.client.middleware import run_middleware, takes_next, wrap_pass
from wfe_core.crashpoints import crash_point
from wfe_core.errors import (
    ConcurrencyError,
    DefinitionError,
    EventNotFound,
    WfeError,
    WorkflowNotFound,
)
from wfe_core.executor import StepMiddleware
from wfe_core.lifecycle import InProcessLifecyclePublisher, LifecycleHandler, LifecyclePublisher
from wfe_core.locks import (
    DistributedLockProvider,
    InProcessLockProvider,
    LockTable,
    shared_lock_table,
    takes_workflow_locks,
)
from wfe_core.logs import queued_ids
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    QueueType,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
    utcnow,
)
from wfe_core.namespaces import DEFAULT_NAMESPACE
from wfe_core.options import HostOptions, MiddlewarePhase, WorkflowMiddleware
from wfe_core.persistence import Claim, PersistenceProvider, check_key
from wfe_core.primitives import (
    PARENT_ATTRIBUTE,
    WORKFLOW_ENDED_EVENT,
    ActivityResult,
    WorkflowEnded,
)
from wfe_core.queues import InProcessQueueProvider, QueueProvider
from wfe_core.serialization import Serializer, default_serializer
from wfe_core.steps import WorkflowDefinition, WorkflowRegistry
from wfe_core.telemetry import Instrumentation, event_headers, took_over
from wfe_core.workflow import Workflow

if TYPE_CHECKING:
    from wfe_core.registry import StoreComponents

__all__ = ["ENDS_KEPT", "ENDS_KEPT_SECONDS", "ClientCore", "workflow_lock"]

ENDS_KEPT = 256
"""At most this many instances that just ended in this process are kept for
``wait_for_workflow`` (see ``ClientCore._signal_ended``)."""
ENDS_KEPT_SECONDS = 2.0
"""...and each for at most this long (a later waiter reads the store)."""

log = logging.getLogger("wfe.host")


def workflow_lock(workflow_id: str) -> str:
    """The lock name guarding passes over ``workflow_id`` (the fast path of the claim)."""
    return f"wfe:workflow:{workflow_id}"


class ClientCore(ClientDefinitions):
    """The store, its lock / queue / lifecycle services and the registry; the base of
    :class:`~wfe_core.client.WorkflowClient` and :class:`~wfe_core.host.WorkflowHost`.

    ``lock_provider`` defaults to an in-process lock shared by every client and host on
    the same provider object; ``queue_provider`` to an in-process queue; ``lifecycle``
    to an in-process publisher."""

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
        self.workflow_locks: DistributedLockProvider = (
            self.lock_provider
            if takes_workflow_locks(self.lock_provider)
            else InProcessLockProvider(LockTable())
        )
        """The locks taken around passes over a workflow: the lock provider's, or this
        process's own when the provider's would add nothing to the store's claim (see
        :func:`~wfe_core.locks.takes_workflow_locks`)."""
        self.queue_provider = queue_provider or InProcessQueueProvider()
        self.lifecycle = lifecycle or InProcessLifecyclePublisher()
        self.serializer = serializer or default_serializer
        self.serializer.register(ActivityResult, WorkflowEnded)
        self.instrumentation: Instrumentation | None = None
        """Hooks around passes and steps (:mod:`wfe_core.telemetry`; e.g. ``wfe_otel``),
        or None: off, costing nothing. Set it before the host starts."""
        self.registry = WorkflowRegistry()
        # (middleware, whether it wraps: takes (instance, next)) per phase, in order
        self._workflow_middleware: dict[MiddlewarePhase, list[tuple[WorkflowMiddleware, bool]]] = {
            phase: [] for phase in MiddlewarePhase
        }
        self._step_middleware: list[StepMiddleware] = []
        self._running = False
        self._held: set[str] = set()  # ids a control call of this process is applying
        self._ended: dict[str, asyncio.Event] = {}  # waiters of wait_for_workflow
        # instances that ended in this process a moment ago (id -> (monotonic time,
        # the instance as its last write stored it)): wait_for_workflow takes the end
        # from here instead of reading the store (see _signal_ended)
        self._ends_here: OrderedDict[str, tuple[float, WorkflowInstance]] = OrderedDict()
        self.owner_id = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        """This process's claim owner id in the store (host name, process id, a random part)."""
        self._owns_persistence = False
        self._open_parts: list[Any] = []

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
    ) -> Self:
        """Build one on the store at ``url``, picked by URL scheme through the
        ``wfe.providers`` entry points, with that store's own lock and queue providers
        where it has them (so several processes on one store cooperate). ``lock_url``,
        ``queue_url`` and ``lifecycle_url`` take the lock, queue or lifecycle
        publisher from another service (e.g. ``redis://``), opened in the store's
        namespace (:mod:`wfe_core.namespaces`: ``namespace=`` here, else the URL's
        ``?namespace=``, else ``WFE_NAMESPACE``) so that hosts of different namespaces
        sharing one Redis never take each other's work; another URL naming a different
        namespace is refused. It closes what it opened when it is closed (a host: when
        it stops)."""
        from wfe_core.registry import open_store

        store = open_store(url, **provider_options)
        if store.persistence is None:
            raise ValueError(
                f"{url.split(':', 1)[0]}:// provides no persistence; use it as lock_url or "
                "queue_url next to a store URL"
            )
        parts: dict[str, Any] = {
            "lock": store.lock_provider,
            "queue": store.queue_provider,
            "lifecycle": store.lifecycle,
        }
        for role, other_url in (
            ("lock", lock_url),
            ("queue", queue_url),
            ("lifecycle", lifecycle_url),
        ):
            if other_url is None:
                continue
            other = open_store(other_url, namespace=_service_namespace(store, role, other_url))
            provided = {
                "lock": other.lock_provider,
                "queue": other.queue_provider,
                "lifecycle": other.lifecycle,
            }[role]
            if provided is None:
                raise ValueError(f"{other_url.split(':', 1)[0]}:// provides no {role} provider")
            parts[role] = provided
        made = cls(
            store.persistence,
            lock_provider=parts["lock"],
            queue_provider=parts["queue"],
            lifecycle=parts["lifecycle"],
            options=options,
        )
        made._owns_persistence = True
        return made

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
            wf_id,
            workflow.version,
            workflow.data_type,
            workflow.description,
            retry_policy=workflow.retry_policy,
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

    def use_workflow_middleware(
        self, phase: MiddlewarePhase, middleware: WorkflowMiddleware
    ) -> None:
        """Run ``middleware(instance)`` (sync or async) in ``phase``: PRE_WORKFLOW where
        an instance is started (a client too), the others where it runs (a host). A
        middleware taking two parameters, ``async mw(instance, next)``, wraps the rest:
        in EXECUTE_WORKFLOW ``await next()`` runs the pass (so it can time or set up
        around each pass; the first registered is the outermost, and the pass runs once
        whatever a middleware does); elsewhere ``next()`` runs the phase's later
        middleware. See :data:`~wfe_core.options.WorkflowMiddleware`."""
        if not callable(middleware):
            raise TypeError(
                f"a workflow middleware must be callable, not {type(middleware).__name__}"
            )
        wraps = takes_next(middleware)
        self._workflow_middleware[MiddlewarePhase(phase)].append((middleware, wraps))

    def use_step_middleware(self, middleware: StepMiddleware) -> None:
        """Wrap every user step: ``async mw(context, next) -> ExecutionResult``; the first
        registered is the outermost. Steps run on hosts only: on a client that never
        runs work this only records it (so one ``register(host)`` serves both)."""
        self._step_middleware.append(middleware)

    def on_lifecycle_event(self, handler: LifecycleHandler) -> Callable[[], None]:
        """Receive lifecycle events; returns a function that unsubscribes."""
        return self.lifecycle.subscribe(handler)

    # ------------------------------------------------------------------ open / close
    async def open(self) -> None:
        """Make the store ready and start the lock, queue and lifecycle services (no
        consumer or poller: nothing runs workflows in a client); idempotent."""
        if self._open_parts:
            return
        try:
            await self.persistence.ensure_store_exists()
            await self.load_stored_definitions()  # definitions as data: every version stored
            for part in (self.lock_provider, self.queue_provider, self.lifecycle):
                await part.start()
                self._open_parts.append(part)
        except BaseException:
            parts, self._open_parts = self._open_parts, []
            for part in reversed(parts):
                with contextlib.suppress(Exception):
                    await part.stop()
            raise

    async def close(self) -> None:
        """Stop what :meth:`open` started and close the store if this object opened it
        (:meth:`from_url`); idempotent."""
        parts, self._open_parts = self._open_parts, []
        for part in reversed(parts):
            with contextlib.suppress(Exception):
                await part.stop()
        if self._owns_persistence:
            await self.persistence.close()

    async def __aenter__(self) -> Self:
        try:
            await self.open()
        except BaseException:
            await self.close()  # the store too, when this object opened it
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ engine services
    def lifecycle_event(
        self, kind: LifecycleEventType, instance: WorkflowInstance
    ) -> LifecycleEvent:
        """A lifecycle event of ``kind`` about ``instance``."""
        return LifecycleEvent(
            type=kind,
            workflow_id=instance.id,
            workflow_definition_id=instance.workflow_definition_id,
            version=instance.version,
            reference=instance.reference,
        )

    async def publish_lifecycle(self, event: LifecycleEvent) -> None:
        """Publish a lifecycle event; a failure is logged, never raised."""
        try:
            await self.lifecycle.publish(event)
        except Exception:
            log.exception(
                "publishing lifecycle event %s failed",
                event.type.value,
                extra={"workflow_id": event.workflow_id or None},
            )

    async def _run_workflow_middleware(
        self, phase: MiddlewarePhase, instance: WorkflowInstance
    ) -> None:
        """The phase's middleware in order (EXECUTE_WORKFLOW: the plain ones, after the
        pass). A failure stops PRE_WORKFLOW (nothing is started) and is logged in the
        other phases, where the rest still run."""
        await run_middleware(self._workflow_middleware[phase], phase, instance)

    async def _wrap_pass(
        self, instance: WorkflowInstance, run_pass: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``run_pass`` inside the wrapping EXECUTE_WORKFLOW middleware (see
        :func:`wfe_core.client.middleware.wrap_pass`)."""
        chain = self._workflow_middleware[MiddlewarePhase.EXECUTE_WORKFLOW]
        await wrap_pass(chain, instance, run_pass)

    async def workflow_ended(self, instance: WorkflowInstance, status: WorkflowStatus) -> None:
        """After the write that ended ``instance``: post-workflow middleware, waiters
        in this process, and (for a child) the parent's ended event."""
        await self._run_workflow_middleware(MiddlewarePhase.POST_WORKFLOW, instance)
        self._signal_ended(instance.id, instance)
        if parent_of(instance) is not None:
            crash_point("ended.before_parent_event")
            await self.publish_ended(instance, status)

    def _signal_ended(self, workflow_id: str, instance: WorkflowInstance | None = None) -> None:
        """Wake this process's ``wait_for_workflow`` calls on ``workflow_id``.

        ``instance``: the ended instance exactly as its last write stored it (the pass's
        own object, written and never changed again); it is kept for a moment
        (:data:`ENDS_KEPT_SECONDS`, at most :data:`ENDS_KEPT` of them) so that a waiter
        in this process -- woken now, or calling just after the end -- gets it without
        reading the store."""
        if instance is not None:
            ends = self._ends_here
            now = time.monotonic()
            ends[workflow_id] = (now, instance)
            ends.move_to_end(workflow_id)
            while ends and (
                len(ends) > ENDS_KEPT or next(iter(ends.values()))[0] < now - ENDS_KEPT_SECONDS
            ):
                ends.popitem(last=False)
        waiter = self._ended.get(workflow_id)
        if waiter is not None:
            waiter.set()

    def _ended_here(self, workflow_id: str) -> WorkflowInstance | None:
        """``workflow_id`` as it ended in this process a moment ago, or None. The first
        caller takes the object itself (the pass that wrote it is done with it): no
        copy; a later one finds nothing and reads the store."""
        kept = self._ends_here.pop(workflow_id, None)
        if kept is None or kept[0] < time.monotonic() - ENDS_KEPT_SECONDS:
            return None
        return kept[1]

    async def guard_child_end(self, instance: WorkflowInstance) -> None:
        """Just before the write that ends ``instance``: when it is a child, schedule a
        later look at it, so its parent hears of the end even after a crash."""
        await guard_child_end(self.persistence, self.options, instance)

    async def publish_ended(self, instance: WorkflowInstance, status: WorkflowStatus) -> None:
        """Tell the parent of ended child ``instance`` (if any) that it ended, at most
        once (the event's fixed id): a no-op when the event was published already."""
        if parent_of(instance) is None:
            return
        await self._publish(
            WORKFLOW_ENDED_EVENT,
            instance.id,
            ended_payload(instance, status),
            event_id=ended_event_id(instance.id),
        )

    async def start_child(
        self,
        parent: WorkflowInstance,
        pointer: ExecutionPointer,
        definition_id: str,
        version: int | None,
        data: Any,
    ) -> str:
        """Start the child of ``pointer`` (one id per attempt: a step run again after a
        crash finds the child it started before); return the child's id."""
        cid = child_id(pointer.id, pointer.retry_count)
        definition = self.registry.get(definition_id, version)
        child = self._new_instance(definition, data, None, instance_id=cid)
        child.execution_pointers[0].extension_attributes[PARENT_ATTRIBUTE] = parent.id
        await self._run_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, child)
        try:
            await self.persistence.create_workflow(child)
        except ConcurrencyError:
            # Started before a crash (this step's checkpoint was lost): keep the child
            # that exists, and wait for its end as of when it was created -- it may
            # have ended (and published its ended event) before this step ran again.
            with contextlib.suppress(WorkflowNotFound):
                existing = await self.persistence.get_workflow_instance(cid)
                if pointer.start_time is None or existing.create_time < pointer.start_time:
                    pointer.start_time = existing.create_time
            return cid
        crash_point("child.after_create")
        await self.publish_lifecycle(
            self.lifecycle_event(LifecycleEventType.WORKFLOW_STARTED, child)
        )
        await self._hint(cid, QueueType.WORKFLOW)
        return cid

    async def catch_up(self, subscription: EventSubscription) -> None:
        """Queue events stored before ``subscription`` that it is entitled to."""
        for event_id in await self.persistence.get_events(
            subscription.event_name, subscription.event_key, subscription.subscribe_as_of
        ):
            with contextlib.suppress(EventNotFound):
                await self.persistence.mark_event_unprocessed(event_id)
                await self._hint(event_id, QueueType.EVENT)

    # ------------------------------------------------------------------ hints and claims
    async def _hint(self, item: str, queue: QueueType) -> None:
        """Queue a hint; a failure is logged, not raised: the store already holds the
        work and the poller finds it (raising here would make callers retry a write
        that succeeded)."""
        try:
            await self.queue_provider.queue_work(item, queue)
        except Exception as exc:
            log.warning(
                "could not queue %s %s (%s); the poller will pick it up",
                queue.value,
                item,
                exc,
                extra=queued_ids(queue, item),
            )

    def _wake_at(self, queue: QueueType, item: str, when: datetime) -> None:
        """Queue ``item`` at ``when`` from this process; a client has no timers (the
        store's scheduled commands and the hosts' pollers find it)."""

    def _lease_until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.options.lock_ttl)

    async def _claim(self, workflow_id: str) -> bool:
        """Take or renew this process's claim on an instance in the store; a takeover
        of another holder's expired claim is logged and told to the instrumentation."""
        got = await self.persistence.claim_workflow(workflow_id, self.owner_id, self._lease_until())
        if got is Claim.TAKEN_OVER:
            log.warning(
                "took over workflow %s: its previous holder's claim had expired (that "
                "process stopped renewing its lease mid-run)",
                workflow_id,
                extra={"workflow_id": workflow_id},
            )
            took_over(self.instrumentation, workflow_id)
        return bool(got)

    async def _release_claim(self, workflow_id: str) -> None:
        try:
            await self.persistence.release_workflow(workflow_id, self.owner_id)
        except Exception as exc:  # the lease runs out by itself
            log.warning(
                "releasing the claim on workflow %s failed: %s",
                workflow_id,
                exc,
                extra={"workflow_id": workflow_id},
            )

    # ------------------------------------------------------------------ new instances, events
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

    async def _publish(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """The body of ``publish_event``. ``event_id``: store the event under this fixed
        id, at most once -- when an event with that id exists already, nothing is
        stored or delivered and its id is returned (a re-publish after a crash or a
        retried webhook); when that event has another name or key,
        :class:`~wfe_core.errors.EventIdConflict` is raised."""
        check_event_id(event_id)
        if not isinstance(name, str) or not name:
            raise ValueError("event name must be a non-empty string")
        if not isinstance(key, str):
            raise TypeError(f"event key must be a string, not {type(key).__name__}")
        check_key(name, "event name")  # every store's limits, before storing
        check_key(key, "event key")
        if event_id is not None:
            with contextlib.suppress(EventNotFound):
                return same_event(await self.persistence.get_event(event_id), name, key)
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
        if self.instrumentation is not None:  # e.g. the publisher's trace context
            event.headers = event_headers(self.instrumentation, name, key)
        local = event.event_time <= now and await self._local_event_slot()
        try:
            await self.persistence.create_event(event)
        except BaseException as exc:
            if local:
                self._release_event_slot()
            if event_id is not None and isinstance(exc, ValueError):  # DuplicateEventId
                with contextlib.suppress(EventNotFound):  # stored meanwhile by another host
                    return same_event(await self.persistence.get_event(event_id), name, key)
            raise
        if local:  # deliver it here: no queue round trip, no reload of the event
            self._deliver_here(event)
        elif event.event_time > now:
            if Capability.SCHEDULED_COMMANDS in self.persistence.capabilities:
                await self.persistence.schedule_command(
                    ScheduledCommand(ScheduledCommand.PROCESS_EVENT, event.id, event.event_time)
                )
            self._wake_at(QueueType.EVENT, event.id, event.event_time)
        else:
            await self._hint(event.id, QueueType.EVENT)
        return event.id

    async def _local_event_slot(self) -> bool:
        """Whether this process delivers an event it just stored itself (a running host
        with a free event slot, taken by this call); a client never does."""
        return False

    def _release_event_slot(self) -> None:
        """Give back the slot :meth:`_local_event_slot` took."""

    def _deliver_here(self, event: Event) -> None:
        """Deliver ``event`` in this process (only called after a local slot was taken)."""
        raise NotImplementedError  # pragma: no cover - a client takes no slot


def _service_namespace(store: StoreComponents, role: str, url: str) -> str:
    """The namespace to open the ``role`` service at ``url`` in: the store's; a
    ``?namespace=`` in ``url`` naming another one is a ``ValueError``."""
    namespace: str = getattr(store.persistence, "namespace", DEFAULT_NAMESPACE)
    named = parse_qs(urlsplit(url).query).get("namespace")
    if named and named[-1] != namespace:
        raise ValueError(
            f"the {role} service URL names namespace {named[-1]!r} but the store is in "
            f"namespace {namespace!r}: a host's services must share its namespace, so "
            "drop ?namespace= from that URL (it follows the store's)"
        )
    return namespace
