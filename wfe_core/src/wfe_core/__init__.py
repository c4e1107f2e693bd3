"""wfe: a durable, event-driven workflow engine for Python (asyncio)."""

from __future__ import annotations

from wfe_core.builder import StepBuilder, WorkflowBuilder
from wfe_core.capabilities import Capability
from wfe_core.definition import (
    ErrorBehavior,
    ExecutionResult,
    StepBody,
    StepContext,
    Workflow,
    WorkflowDefinition,
)
from wfe_core.errors import (
    CapabilityNotSupported,
    ConcurrencyError,
    DefinitionError,
    EventNotFound,
    ProviderNotFound,
    ProviderUnavailable,
    SerializationError,
    SubscriptionNotFound,
    TokenMismatch,
    WfeError,
    WorkflowNotFound,
    WorkflowNotRegistered,
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
from wfe_core.serialization import register_type

__all__ = [
    "ActivityFailed",
    "ErrorBehavior",
    "ExecutionResult",
    "HostOptions",
    "MiddlewarePhase",
    "PendingActivity",
    "StepBody",
    "StepBuilder",
    "StepContext",
    "SubWorkflowFailed",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowDefinition",
    "WorkflowHost",
    "register_type",
    "Capability",
    "CapabilityNotSupported",
    "ConcurrencyError",
    "DefinitionError",
    "Event",
    "EventNotFound",
    "EventSubscription",
    "ExecutionError",
    "ExecutionPointer",
    "LifecycleEvent",
    "LifecycleEventType",
    "PointerStatus",
    "ProviderNotFound",
    "ProviderUnavailable",
    "QueueType",
    "ScheduledCommand",
    "SerializationError",
    "SubscriptionNotFound",
    "TokenMismatch",
    "WfeError",
    "WorkflowInstance",
    "WorkflowNotFound",
    "WorkflowNotRegistered",
    "WorkflowStatus",
]
