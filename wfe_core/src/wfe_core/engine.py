"""The engine protocol: what the executor, the built-in steps and poison handling use
of the host running them.

:class:`~wfe_core.host.WorkflowHost` (and :class:`~wfe_core.client.WorkflowClient`,
which applies suspend / resume / terminate itself) implement it; the executor and the
primitives depend on this protocol only, never on the host's class, so the engine's
modules form no import circle: ``models`` / ``persistence`` at the bottom, then
``definition``, ``builder``, ``primitives``, ``executor``, then ``client`` and
``host`` at the top.

A step sees the object as ``context.host``: besides the hooks below it can start
workflows, publish events and read instances there.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from wfe_core.lifecycle import LifecyclePublisher
from wfe_core.models import (
    EventSubscription,
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.options import HostOptions
from wfe_core.persistence import PersistenceProvider
from wfe_core.serialization import Serializer

if TYPE_CHECKING:
    from wfe_core.telemetry import Instrumentation

__all__ = ["WorkflowEngine"]


@runtime_checkable
class WorkflowEngine(Protocol):
    """The services a running pass and its steps use (``context.host``)."""

    persistence: PersistenceProvider
    """The store the instance lives in."""
    options: HostOptions
    """The host's settings (retry interval, lease length ...)."""
    serializer: Serializer
    """Encodes user data; knows the registered types."""
    lifecycle: LifecyclePublisher
    """Where lifecycle events go."""
    owner_id: str
    """This process's claim owner id in the store."""
    instrumentation: Instrumentation | None
    """Hooks around passes and steps (:mod:`wfe_core.telemetry`), or None (off)."""

    # ------------------------------------------------------------------ for steps
    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
    ) -> str:
        """Start a new instance of a registered definition; return its id."""
        ...

    async def publish_event(
        self, name: str, key: str, data: Any = None, effective_date: datetime | None = None
    ) -> str:
        """Store an event and deliver it to its subscribers; return its id."""
        ...

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Load an instance (WorkflowNotFound when unknown)."""
        ...

    # ------------------------------------------------------------------ for the engine
    def lifecycle_event(
        self, kind: LifecycleEventType, instance: WorkflowInstance
    ) -> LifecycleEvent:
        """A lifecycle event of ``kind`` about ``instance``."""
        ...

    async def publish_lifecycle(self, event: LifecycleEvent) -> None:
        """Publish a lifecycle event (a failure is logged, never raised)."""
        ...

    async def catch_up(self, subscription: EventSubscription) -> None:
        """Deliver events stored before ``subscription`` that it is owed."""
        ...

    async def guard_child_end(self, instance: WorkflowInstance) -> None:
        """Called just before the write that ends ``instance``: when it is a child,
        make sure its parent hears of the end even if this process dies next."""
        ...

    async def workflow_ended(self, instance: WorkflowInstance, status: WorkflowStatus) -> None:
        """Called after the write that ended ``instance``: post-workflow middleware,
        waiters, and the parent's ended event."""
        ...

    async def start_child(
        self,
        parent: WorkflowInstance,
        pointer: ExecutionPointer,
        definition_id: str,
        version: int | None,
        data: Any,
    ) -> str:
        """Start (at most once per attempt of ``pointer``) a child workflow of
        ``parent``; return the child's id."""
        ...
