"""wfe: a durable, event-driven workflow engine for Python (asyncio)."""

from __future__ import annotations

from wfe_core.builder import StepBuilder, WorkflowBuilder
from wfe_core.capabilities import Capability
from wfe_core.client import (
    SyncWorkflowClient,
    SyncWorkflowHandle,
    WorkflowClient,
    WorkflowHandle,
)
from wfe_core.definition import (
    ErrorBehavior,
    ExecutionResult,
    StepBody,
    StepContext,
    WorkflowDefinition,
)
from wfe_core.errors import (
    CapabilityNotSupported,
    ConcurrencyError,
    ControlPending,
    DefinitionError,
    DuplicateEventId,
    DuplicateIdempotencyKey,
    EventIdConflict,
    EventNotFound,
    IdempotencyKeyConflict,
    LeaseLost,
    ProviderNotFound,
    ProviderUnavailable,
    SerializationError,
    StepTimeout,
    SubscriptionNotFound,
    TokenMismatch,
    WfeError,
    WorkflowNotFound,
    WorkflowNotRegistered,
    WorkflowTerminated,
)
from wfe_core.host import HostOptions, MiddlewarePhase, PendingActivity, WorkflowHost
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
)
from wfe_core.primitives import ActivityFailed, SubWorkflowFailed
from wfe_core.provider_base import ProviderBase
from wfe_core.retry import RetryPolicy
from wfe_core.serialization import register_type
from wfe_core.workflow import Workflow

__all__ = [
    "ActivityFailed",
    "Capability",
    "CapabilityNotSupported",
    "ConcurrencyError",
    "ControlPending",
    "DefinitionError",
    "DuplicateEventId",
    "DuplicateIdempotencyKey",
    "ErrorBehavior",
    "Event",
    "EventIdConflict",
    "EventNotFound",
    "EventSubscription",
    "ExecutionError",
    "ExecutionPointer",
    "ExecutionResult",
    "HostOptions",
    "IdempotencyKeyConflict",
    "LeaseLost",
    "LifecycleEvent",
    "LifecycleEventType",
    "MiddlewarePhase",
    "PendingActivity",
    "PointerStatus",
    "ProviderBase",
    "ProviderNotFound",
    "ProviderUnavailable",
    "QueueType",
    "RetryPolicy",
    "ScheduledCommand",
    "SerializationError",
    "StepBody",
    "StepBuilder",
    "StepContext",
    "StepTimeout",
    "SubWorkflowFailed",
    "SubscriptionNotFound",
    "SyncWorkflowClient",
    "SyncWorkflowHandle",
    "TokenMismatch",
    "WfeError",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowClient",
    "WorkflowDefinition",
    "WorkflowHandle",
    "WorkflowHost",
    "WorkflowInstance",
    "WorkflowNotFound",
    "WorkflowNotRegistered",
    "WorkflowStatus",
    "WorkflowTerminated",
    "register_type",
]
