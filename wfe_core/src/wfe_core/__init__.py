"""wfe: a durable, event-driven workflow engine for Python (asyncio)."""

from __future__ import annotations

from wfe_core.capabilities import Capability
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

__all__ = [
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
