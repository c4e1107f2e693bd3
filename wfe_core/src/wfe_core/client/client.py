"""The :class:`WorkflowClient`: everything a web handler or a script does with
workflows without running them -- start them (and get a typed handle), publish
events, suspend / resume / terminate, query, wait, work on activities.

A client is cheap: it opens the store (and its lock, queue and lifecycle services)
and nothing else; no consumer or poller runs in its process. Workers -- processes
with a started :class:`~wfe_core.host.WorkflowHost` on the same store -- run what it
starts. A :class:`~wfe_core.host.WorkflowHost` is a client that also runs work, so
all of this is available on a host too.

From synchronous code (a Django or Flask view), use :meth:`WorkflowClient.connect_sync`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

from wfe_core.client import user_tasks
from wfe_core.client.control import check_execution_timeout, set_execution_deadline
from wfe_core.client.handle import WorkflowHandle
from wfe_core.client.idempotency import set_idempotency_key, store_once
from wfe_core.client.reading import ReadingClient
from wfe_core.client.schedules import ScheduleClient
from wfe_core.crashpoints import crash_point
from wfe_core.models import (
    ExecutionError,
    LifecycleEventType,
    QueueType,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.options import MiddlewarePhase, PendingActivity
from wfe_core.persistence import check_idempotency_key
from wfe_core.schedules import Schedule
from wfe_core.steps import WorkflowDefinition
from wfe_core.user_tasks import OpenUserTask
from wfe_core.workflow import Workflow

__all__ = ["SyncWorkflowClient", "SyncWorkflowHandle", "WorkflowClient", "WorkflowHandle"]

T = TypeVar("T")
R = TypeVar("R")

_ENDED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)


class WorkflowClient(ScheduleClient, ReadingClient):
    """Starts workflows, publishes events, controls and reads instances; runs nothing.

    Open one on a URL (``async with WorkflowClient.from_url("postgresql://...") as
    client:``) or on provider objects (``WorkflowClient(persistence, ...)``, then
    :meth:`open`). To start a workflow the client needs its definition: pass the
    ``Workflow`` to :meth:`start_instance` (it is registered on first use) or call
    ``register_workflow`` first; everything else works on any store without the
    workflows' code (data of types it does not know reads as
    :class:`~wfe_core.serialization.Undecodable`).
    """

    @classmethod
    def connect_sync(cls, url: str = "sqlite:///wfe.db", **options: Any) -> SyncWorkflowClient:
        """An opened client for synchronous code on ``url`` (same keywords as
        :meth:`from_url`): its calls block the calling thread, and may come from any
        thread. Close it with ``close()`` (or use it in a ``with`` block)."""
        return SyncWorkflowClient.connect(url, client_type=cls, **options)

    # ------------------------------------------------------------------ starting
    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        execution_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start a new instance of a registered definition and return its id.

        A running host with a free workflow slot runs the new instance itself (no queue
        round trip); otherwise -- a client, a host that is not started, or whose slots
        are busy -- it is queued for any host. With ``execution_timeout`` (a positive
        timedelta) the instance is TERMINATED if it has not ended that long after its
        start (durable: any host terminates it when due). With ``idempotency_key``
        (unique per definition id until purged) a start whose key is taken starts
        nothing and returns the holder's id when it was started with the same version
        and data, else raises :class:`~wfe_core.errors.IdempotencyKeyConflict`."""
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise TypeError(f"version must be an int or None, not {version!r}")
        check_execution_timeout(execution_timeout)
        check_idempotency_key(idempotency_key)
        definition = self.registry.get(definition_id, version)
        instance = self._new_instance(definition, data, reference)
        set_execution_deadline(instance, execution_timeout)
        set_idempotency_key(instance, idempotency_key, self.serializer)
        await self._run_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, instance)
        return await store_once(self._store_new, self.persistence, instance, self.serializer)

    async def _store_new(self, instance: WorkflowInstance) -> None:
        """Store a new instance, announce it and queue it for a host."""
        await self.persistence.create_workflow(instance)
        crash_point("start.after_create")
        await self.publish_lifecycle(
            self.lifecycle_event(LifecycleEventType.WORKFLOW_STARTED, instance)
        )
        await self._hint(instance.id, QueueType.WORKFLOW)

    @overload
    async def start_instance(
        self,
        workflow: type[Workflow[T]] | Workflow[T],
        data: T | None = None,
        *,
        reference: str | None = None,
        execution_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowHandle[T]: ...

    @overload
    async def start_instance(
        self,
        workflow: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        execution_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowHandle[Any]: ...

    async def start_instance(
        self,
        workflow: type[Workflow[Any]] | Workflow[Any] | str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        execution_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowHandle[Any]:
        """Start an instance and return a handle on it, typed by the workflow's data.

        ``workflow`` is a ``Workflow`` subclass or instance (registered here on first
        use, its version is the one started) or a registered definition id (then
        ``version`` picks the version; the newest by default)."""
        if isinstance(workflow, str):
            wid = await self.start_workflow(
                workflow,
                data,
                version=version,
                reference=reference,
                execution_timeout=execution_timeout,
                idempotency_key=idempotency_key,
            )
            return WorkflowHandle(self, wid)
        if isinstance(workflow, type):
            if not issubclass(workflow, Workflow):
                raise TypeError(
                    f"start_instance takes a Workflow, not the class {workflow.__name__}"
                )
            workflow = workflow()
        if not isinstance(workflow, Workflow):
            raise TypeError(
                f"start_instance takes a Workflow or a definition id, not {type(workflow).__name__}"
            )
        if self.registry.find(workflow.id, workflow.version) is None:
            self.register_workflow(workflow)
        wid = await self.start_workflow(
            workflow.id,
            data,
            version=workflow.version,
            reference=reference,
            execution_timeout=execution_timeout,
            idempotency_key=idempotency_key,
        )
        return WorkflowHandle(self, wid)

    def get_handle(self, workflow_id: str, data_type: type[T] | None = None) -> WorkflowHandle[T]:
        """A handle on an existing instance (no store access); ``data_type`` only types
        ``handle.result()`` for the type checker."""
        return WorkflowHandle(self, workflow_id)

    async def run_workflow(
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        timeout: float = 60.0,
        execution_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowInstance:
        """Start an instance and wait until it completes or is terminated."""
        wid = await self.start_workflow(
            definition_id,
            data,
            version=version,
            reference=reference,
            execution_timeout=execution_timeout,
            idempotency_key=idempotency_key,
        )
        return await self.wait_for_workflow(wid, timeout)

    # ------------------------------------------------------------------ events
    async def publish_event(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """Store an event and deliver it to every waiting subscription; return its id.

        ``effective_date`` (aware) is the event's time: subscriptions made at or before
        it receive it; a future date holds the event back until then. ``event_id``
        (a non-empty string): publish at most once -- an event stored with this id
        already is neither stored nor delivered again and its id is returned (a
        retried webhook); one with another name or key raises
        :class:`~wfe_core.errors.EventIdConflict`."""
        return await self._publish(name, key, data, effective_date, event_id=event_id)

    # ------------------------------------------------------------------ user tasks
    async def get_open_user_tasks(
        self,
        *,
        user: str | None = None,
        group: str | Sequence[str] | None = None,
        workflow_id: str | None = None,
        definition_id: str | None = None,
    ) -> list[OpenUserTask]:
        """The open user tasks (all, or those ``user`` / a member of ``group`` may
        complete), oldest first; see :mod:`wfe_core.client.user_tasks` for the cost."""
        return await user_tasks.get_open_user_tasks(
            self, user=user, group=group, workflow_id=workflow_id, definition_id=definition_id
        )

    async def complete_user_task(
        self,
        task_id: str,
        option: str,
        *,
        user: str,
        groups: str | Iterable[str] = (),
        data: Any = None,
    ) -> None:
        """Complete an open user task as ``user`` (in ``groups``) with ``option`` and
        ``data``; raises ``UserTaskNotFound`` / ``UserTaskNotOpen`` (also for the loser
        of two concurrent completions) / ``UserTaskNotAssigned`` /
        ``UserTaskInvalidOption``."""
        await user_tasks.complete_user_task(
            self, task_id, option, user=user, groups=groups, data=data
        )


class _Loop:
    """An event loop running in a daemon thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="wfe-sync-client", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a SyncWorkflowClient cannot be called from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncWorkflowClient:
    """A :class:`~wfe_core.client.WorkflowClient` whose calls block (see the module).
    Every method has the meaning and arguments of the async client's method of the
    same name."""

    def __init__(self, client: WorkflowClient, loop: _Loop) -> None:
        self._client = client
        self._loop = loop
        self._closed = False

    @classmethod
    def connect(
        cls, url: str, *, client_type: type[WorkflowClient] | None = None, **options: Any
    ) -> SyncWorkflowClient:
        """Open a client on ``url`` (keywords as ``WorkflowClient.from_url``)."""
        kind = client_type or WorkflowClient
        loop = _Loop()

        async def opened() -> WorkflowClient:
            client = kind.from_url(url, **options)
            await client.open()
            return client

        try:
            client = loop.run(opened())
        except BaseException:
            loop.stop()
            raise
        return cls(client, loop)

    @property
    def client(self) -> WorkflowClient:
        """The async client underneath (use it only on this object's loop)."""
        return self._client

    def close(self) -> None:
        """Close the client and stop its thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._client.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, R]) -> R:
        if self._closed:
            coro.close()
            raise RuntimeError("this SyncWorkflowClient is closed")
        return self._loop.run(coro)

    # ------------------------------------------------------------------ setup
    def register_workflow(self, workflow: Workflow[Any]) -> WorkflowDefinition:
        """Register a workflow so that it can be started by id."""
        return self._client.register_workflow(workflow)

    def register_definition(
        self, text: str | bytes, format: str = "json", registry: Any = None
    ) -> WorkflowDefinition:
        """Check, store and register a JSON / YAML definition (see the async method)."""
        return self._run(self._client.register_definition(text, format, registry))

    def load_definition(
        self, text: str | bytes, format: str = "json", registry: Any = None
    ) -> WorkflowDefinition:
        """Check and register a JSON / YAML definition here only (see the async client)."""
        client = self._client

        async def load() -> WorkflowDefinition:
            return client.load_definition(text, format, registry)

        return self._run(load())

    def register_type(self, *types: type) -> None:
        """Allow these classes in stored data."""
        self._client.register_type(*types)

    # ------------------------------------------------------------------ calls
    def start_instance(
        self,
        workflow: type[Workflow[T]] | Workflow[T],
        data: T | None = None,
        *,
        reference: str | None = None,
        execution_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> SyncWorkflowHandle[T]:
        """Start an instance of ``workflow``; return a blocking handle on it."""
        handle: WorkflowHandle[T] = self._run(
            self._client.start_instance(
                workflow,
                data,
                reference=reference,
                execution_timeout=execution_timeout,
                idempotency_key=idempotency_key,
            )
        )
        return SyncWorkflowHandle(self, handle.id)

    def get_handle(
        self, workflow_id: str, data_type: type[T] | None = None
    ) -> SyncWorkflowHandle[T]:
        """A blocking handle on an existing instance."""
        return SyncWorkflowHandle(self, workflow_id)

    def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        execution_timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start an instance of a registered definition; return its id."""
        return self._run(
            self._client.start_workflow(
                definition_id,
                data,
                version=version,
                reference=reference,
                execution_timeout=execution_timeout,
                idempotency_key=idempotency_key,
            )
        )

    def publish_event(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """Store an event and deliver it to its subscribers; return its id."""
        return self._run(
            self._client.publish_event(name, key, data, effective_date, event_id=event_id)
        )

    def suspend_workflow(self, workflow_id: str) -> bool:
        """Suspend a RUNNABLE instance."""
        return self._run(self._client.suspend_workflow(workflow_id))

    def resume_workflow(self, workflow_id: str) -> bool:
        """Resume a SUSPENDED instance."""
        return self._run(self._client.resume_workflow(workflow_id))

    def terminate_workflow(self, workflow_id: str) -> bool:
        """Terminate an unfinished instance."""
        return self._run(self._client.terminate_workflow(workflow_id))

    def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Load an instance."""
        return self._run(self._client.get_workflow_instance(workflow_id))

    def get_errors(self, workflow_id: str) -> list[ExecutionError]:
        """The errors recorded for an instance, oldest first."""
        return self._run(self._client.get_errors(workflow_id))

    def wait_for_workflow(self, workflow_id: str, timeout: float = 60.0) -> WorkflowInstance:
        """Block until the instance ends (TimeoutError after ``timeout`` seconds)."""
        return self._run(self._client.wait_for_workflow(workflow_id, timeout))

    def query_workflows(self, **filters: Any) -> list[WorkflowInstance]:
        """Instances matching the filters of ``WorkflowClient.query_workflows``."""
        return self._run(self._client.query_workflows(**filters))

    def count_workflows(self, **filters: Any) -> int:
        """How many instances match the filters of ``WorkflowClient.count_workflows``."""
        return self._run(self._client.count_workflows(**filters))

    def get_pending_activity(
        self, activity_name: str, worker_id: str, timeout: float = 0.0
    ) -> PendingActivity | None:
        """Claim the oldest open activity ``activity_name``."""
        return self._run(self._client.get_pending_activity(activity_name, worker_id, timeout))

    def submit_activity_success(self, token: str, result: Any = None) -> None:
        """Complete a claimed activity."""
        self._run(self._client.submit_activity_success(token, result))

    def submit_activity_failure(self, token: str, error: Any = None) -> None:
        """Fail a claimed activity."""
        self._run(self._client.submit_activity_failure(token, error))

    def release_activity_token(self, token: str) -> None:
        """Give a claimed activity back."""
        self._run(self._client.release_activity_token(token))

    def create_schedule(
        self, schedule_id: str, workflow: Any, data: Any = None, **options: Any
    ) -> Schedule:
        """Store a schedule (the options of ``WorkflowClient.create_schedule``)."""
        return self._run(self._client.create_schedule(schedule_id, workflow, data, **options))

    def get_schedule(self, schedule_id: str) -> Schedule:
        """The stored schedule."""
        return self._run(self._client.get_schedule(schedule_id))

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        return self._run(self._client.list_schedules())

    def pause_schedule(self, schedule_id: str) -> bool:
        """Pause a schedule; True when it was running."""
        return self._run(self._client.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: str) -> bool:
        """Resume a schedule; True when it was paused."""
        return self._run(self._client.resume_schedule(schedule_id))

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule."""
        self._run(self._client.delete_schedule(schedule_id))

    def get_open_user_tasks(self, **filters: Any) -> list[OpenUserTask]:
        """The open user tasks (the filters of ``WorkflowClient.get_open_user_tasks``)."""
        return self._run(self._client.get_open_user_tasks(**filters))

    def complete_user_task(self, task_id: str, option: str, **options: Any) -> None:
        """Complete an open user task (as ``WorkflowClient.complete_user_task``)."""
        self._run(self._client.complete_user_task(task_id, option, **options))


class SyncWorkflowHandle(Generic[T]):
    """The blocking twin of :class:`~wfe_core.client.WorkflowHandle`."""

    __slots__ = ("_sync", "id")

    def __init__(self, sync: SyncWorkflowClient, workflow_id: str) -> None:
        self._sync = sync
        self.id = workflow_id
        """The instance's id."""

    def __repr__(self) -> str:
        return f"<SyncWorkflowHandle {self.id}>"

    def _handle(self) -> WorkflowHandle[T]:
        return self._sync.client.get_handle(self.id)

    def instance(self) -> WorkflowInstance:
        """The instance as stored now."""
        return self._sync._run(self._handle().instance())

    def status(self) -> WorkflowStatus:
        """The instance's status now."""
        return self._sync._run(self._handle().status())

    def result(self, timeout: float = 60.0) -> T:
        """Block until the end; the final data (WorkflowTerminated if terminated)."""
        return self._sync._run(self._handle().result(timeout))

    def wait(self, timeout: float = 60.0) -> WorkflowInstance:
        """Block until the instance ends; return it."""
        return self._sync._run(self._handle().wait(timeout))

    def errors(self) -> list[ExecutionError]:
        """The errors recorded for the instance."""
        return self._sync._run(self._handle().errors())

    def suspend(self) -> bool:
        """Suspend the instance."""
        return self._sync._run(self._handle().suspend())

    def resume(self) -> bool:
        """Resume the instance."""
        return self._sync._run(self._handle().resume())

    def terminate(self) -> bool:
        """Terminate the instance."""
        return self._sync._run(self._handle().terminate())
