"""The data model: workflow instances and their execution pointers, events,
subscriptions, scheduled commands, execution errors and lifecycle events.

All times are timezone-aware UTC :class:`datetime.datetime` values; ids are strings
(UUID4 unless the caller gives one).

Change tracking
---------------
A :class:`WorkflowInstance` remembers which of its execution pointers were added or
changed since it was loaded or last persisted, so a provider's ``persist_workflow``
writes only those (a loop of 10,000 iterations does not rewrite 10,000 pointers per
step). Assigning any attribute of a pointer marks it changed. Mutating one of its
containers in place (``pointer.children.append(...)``, ``pointer.scope``,
``pointer.extension_attributes``, or an object inside ``persistence_data``) is not
seen: call :meth:`ExecutionPointer.mark_changed` afterwards, or assign a new value.
Pointers are append-only: removing one from ``execution_pointers`` does not delete
it from the store.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, SupportsIndex, overload

from wfe_core import clock as _clock
from wfe_core.event_names import EXECUTION_DEADLINE_ATTRIBUTE

__all__ = [
    "Event",
    "EventSubscription",
    "ExecutionError",
    "ExecutionPointer",
    "LifecycleEvent",
    "LifecycleEventType",
    "PointerList",
    "PointerStatus",
    "QueueType",
    "ScheduledCommand",
    "WorkflowInstance",
    "WorkflowStatus",
    "new_id",
    "utcnow",
]


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime: the engine's clock
    (:mod:`wfe_core.clock`; the system clock unless a test kit swapped it)."""
    return _clock.now()


def new_id() -> str:
    """Return a new random id (a UUID4 string)."""
    return str(uuid.uuid4())


class WorkflowStatus(StrEnum):
    """The status of a workflow instance."""

    RUNNABLE = "runnable"
    """Running, sleeping or waiting: the host works on it when it is due."""
    SUSPENDED = "suspended"
    """Paused by a user or an error policy; nothing runs until it is resumed."""
    COMPLETE = "complete"
    """Finished normally."""
    TERMINATED = "terminated"
    """Stopped for good by a user, an error policy or a failed step."""


class PointerStatus(StrEnum):
    """The status of one execution pointer (one token sitting on one step)."""

    PENDING = "pending"
    """Created, not yet started."""
    RUNNING = "running"
    """Started at least once and not finished (also: a container waiting for children)."""
    COMPLETE = "complete"
    """The step proceeded."""
    SLEEPING = "sleeping"
    """Waiting until ``sleep_until`` (delay, retry back-off, schedule)."""
    WAITING_FOR_EVENT = "waiting_for_event"
    """Waiting for an event or an activity result."""
    FAILED = "failed"
    """The step failed and will not be retried."""
    COMPENSATED = "compensated"
    """The step failed or was reverted and its compensation was scheduled."""
    CANCELLED = "cancelled"
    """Cancelled by a cancel condition, termination or the end of the workflow."""
    PENDING_PREDECESSOR = "pending_predecessor"
    """A compensation step waiting for the compensation before it to finish."""


class QueueType(StrEnum):
    """The logical work queues a :class:`~wfe_core.queues.QueueProvider` carries."""

    WORKFLOW = "workflow"
    """Ids of workflow instances that may have runnable work."""
    EVENT = "event"
    """Ids of events that may need delivering."""
    INDEX = "index"
    """Ids of workflow instances to (re)index for search."""


class LifecycleEventType(StrEnum):
    """What a :class:`LifecycleEvent` reports."""

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_RESUMED = "workflow_resumed"
    WORKFLOW_SUSPENDED = "workflow_suspended"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_TERMINATED = "workflow_terminated"
    WORKFLOW_ERROR = "workflow_error"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    EVENT_SET_ASIDE = "event_set_aside"
    """A published event was set aside because its data cannot be decoded (poison
    data): ``message`` holds the event id, name, key and the reason; the workflow
    fields are empty (``workflow_id`` and ``workflow_definition_id`` are ``""``,
    ``version`` is 0)."""


_POINTER_FIELDS: tuple[str, ...] = ()  # filled in below, after the class exists


@dataclass(eq=True)
class ExecutionPointer:
    """One token on one step of a workflow instance.

    ``scope`` lists the ids of the enclosing container pointers, innermost first.
    ``children`` lists the ids of the child pointers this (container) pointer spawned
    in its latest branch round, in the order they were spawned (a loop keeps only the
    current iteration's; every descendant names the container in its ``scope``).
    """

    id: str = field(default_factory=new_id)
    step_id: int = 0
    step_name: str | None = None
    active: bool = True
    status: PointerStatus = PointerStatus.PENDING
    sleep_until: datetime | None = None
    persistence_data: Any = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    event_name: str | None = None
    event_key: str | None = None
    event_published: bool = False
    event_data: Any = None
    retry_count: int = 0
    children: list[str] = field(default_factory=list)
    context_item: Any = None
    predecessor_id: str | None = None
    outcome: Any = None
    scope: list[str] = field(default_factory=list)
    extension_attributes: dict[str, Any] = field(default_factory=dict)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        owner: PointerList | None = self.__dict__.get("_owner")
        if owner is not None:
            owner._changed[id(self)] = self

    def mark_changed(self) -> None:
        """Flag this pointer for the next persist after mutating a container in place."""
        owner: PointerList | None = self.__dict__.get("_owner")
        if owner is not None:
            owner._changed[id(self)] = self

    def __deepcopy__(self, memo: dict[int, Any]) -> ExecutionPointer:
        clone = ExecutionPointer.__new__(ExecutionPointer)
        memo[id(self)] = clone
        d = clone.__dict__
        source = self.__dict__
        for name in _POINTER_FIELDS:
            value = source[name]
            # immutable values are shared, as deepcopy would, without its dispatch; the
            # id lists hold strings only
            kind = type(value)
            if kind in _IMMUTABLE:
                d[name] = value
            elif name in _ID_LISTS and kind is list:
                d[name] = list(value)
            elif kind is dict and not value:
                d[name] = {}
            else:
                d[name] = copy.deepcopy(value, memo)
        return clone

    def __getstate__(self) -> dict[str, Any]:
        return {name: self.__dict__[name] for name in _POINTER_FIELDS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


_POINTER_FIELDS = tuple(f.name for f in fields(ExecutionPointer))
_IMMUTABLE = frozenset({type(None), str, int, float, bool, datetime, PointerStatus})
_ID_LISTS = frozenset({"children", "scope"})


class PointerList(list[ExecutionPointer]):
    """The execution pointers of one instance, in creation order.

    A list that also indexes pointers by id (:meth:`get`) and records which pointers
    were added or changed since :meth:`WorkflowInstance.mark_persisted`.
    """

    def __init__(self, pointers: Iterable[ExecutionPointer] = ()) -> None:
        super().__init__()
        self._changed: dict[int, ExecutionPointer] = {}
        self._by_id: dict[str, ExecutionPointer] = {}
        self.extend(pointers)

    def _adopt(self, pointer: ExecutionPointer) -> ExecutionPointer:
        if not isinstance(pointer, ExecutionPointer):
            raise TypeError(
                f"execution_pointers holds ExecutionPointer objects, not {type(pointer).__name__}"
            )
        pointer.__dict__["_owner"] = self
        self._changed[id(pointer)] = pointer
        self._by_id[pointer.id] = pointer
        return pointer

    def append(self, pointer: ExecutionPointer) -> None:
        """Add a pointer at the end (it counts as changed)."""
        super().append(self._adopt(pointer))

    def extend(self, pointers: Iterable[ExecutionPointer]) -> None:
        """Add several pointers at the end (they count as changed)."""
        super().extend(self._adopt(p) for p in pointers)

    def insert(self, index: SupportsIndex, pointer: ExecutionPointer) -> None:
        """Insert a pointer (it counts as changed)."""
        super().insert(index, self._adopt(pointer))

    @overload
    def __setitem__(self, index: SupportsIndex, value: ExecutionPointer) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[ExecutionPointer]) -> None: ...
    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            super().__setitem__(index, [self._adopt(p) for p in value])
        else:
            super().__setitem__(index, self._adopt(value))

    def __iadd__(self, pointers: Iterable[ExecutionPointer]) -> PointerList:  # type: ignore[override,misc]
        self.extend(pointers)
        return self

    def get(self, pointer_id: str) -> ExecutionPointer | None:
        """Return the pointer with this id, or None."""
        p = self._by_id.get(pointer_id)
        if p is None:  # ids may have been reassigned after adoption
            for candidate in self:
                if candidate.id == pointer_id:
                    self._by_id[pointer_id] = candidate
                    return candidate
        return p

    def changed(self) -> list[ExecutionPointer]:
        """The pointers added or changed since the last :meth:`clear_changes`.

        In the order they were first changed; pointers added since then come in the
        order they were added.
        """
        return list(self._changed.values())

    def clear_changes(self) -> None:
        """Forget which pointers changed (after they were written or freshly loaded)."""
        self._changed.clear()

    def __deepcopy__(self, memo: dict[int, Any]) -> PointerList:
        clone = PointerList.__new__(PointerList)
        memo[id(self)] = clone
        list.__init__(clone)
        clone._changed = {}
        clone._by_id = {}
        changed_ids = set(self._changed)
        for p in self:
            cp = copy.deepcopy(p, memo)
            list.append(clone, cp)
            cp.__dict__["_owner"] = clone
            clone._by_id[cp.id] = cp
            if id(p) in changed_ids:
                clone._changed[id(cp)] = cp
        return clone

    def __reduce__(self) -> Any:
        return (PointerList, (list(self),))


@dataclass(eq=True)
class WorkflowInstance:
    """A running (or finished) workflow: a header, the user's data and its pointers.

    ``revision`` is the optimistic-concurrency counter: ``create_workflow`` stores
    revision 1, and every successful ``persist_workflow`` checks that the stored
    revision equals this one and then bumps both by one.

    ``control_request`` is read from the store and never written by
    ``persist_workflow``: a suspend / resume / terminate request recorded by
    ``request_control`` (from any process) that the host holding the instance has not
    applied yet, else None.

    ``idempotency_key`` is the key the instance was started with
    (``start_workflow(..., idempotency_key=...)``), else None: unique per workflow
    definition while the instance is stored, written by ``create_workflow`` only.
    """

    workflow_definition_id: str
    version: int = 1
    id: str = ""
    description: str | None = None
    reference: str | None = None
    status: WorkflowStatus = WorkflowStatus.RUNNABLE
    data: Any = None
    execution_pointers: PointerList = field(default_factory=PointerList)
    next_execution: datetime | None = None
    create_time: datetime = field(default_factory=utcnow)
    complete_time: datetime | None = None
    revision: int = 0
    control_request: str | None = None
    idempotency_key: str | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "execution_pointers" and not isinstance(value, PointerList):
            value = PointerList(value)
        object.__setattr__(self, name, value)

    def __deepcopy__(self, memo: dict[int, Any]) -> WorkflowInstance:
        clone = WorkflowInstance.__new__(WorkflowInstance)
        memo[id(self)] = clone
        d = clone.__dict__
        for name, value in self.__dict__.items():
            d[name] = value if type(value) in _HEADER_IMMUTABLE else copy.deepcopy(value, memo)
        return clone

    def changed_pointers(self) -> list[ExecutionPointer]:
        """Pointers added or changed since the instance was loaded or last persisted."""
        return self.execution_pointers.changed()

    def mark_persisted(self) -> None:
        """Record that every pointer is now as stored (providers call this)."""
        self.execution_pointers.clear_changes()

    def pointer(self, pointer_id: str) -> ExecutionPointer | None:
        """Return the execution pointer with this id, or None."""
        return self.execution_pointers.get(pointer_id)

    @property
    def execution_deadline(self) -> datetime | None:
        """When this instance's execution timeout expires (``start_workflow(...,
        execution_timeout=...)``), or None: it is then TERMINATED. Stored on the first
        pointer (``EXECUTION_DEADLINE_ATTRIBUTE``); read-only."""
        if not self.execution_pointers:
            return None
        value = self.execution_pointers[0].extension_attributes.get(EXECUTION_DEADLINE_ATTRIBUTE)
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return None
        return None


@dataclass(eq=True)
class Event:
    """A published event: delivered to every live subscription with the same name and
    key whose ``subscribe_as_of`` is at or before ``event_time``.

    ``set_aside`` is None for an ordinary event; for one that could not be delivered
    because its data cannot be decoded (poison data), it holds the reason, and the event
    counts as processed: later events for the same name and key are delivered past it.

    ``headers`` are propagation headers (e.g. the W3C ``traceparent`` of the trace that
    published the event, added by an instrumentation such as ``wfe_otel``): text keys and
    values the engine stores with the event and hands on to the pointer it resumes;
    empty by default.
    """

    event_name: str
    event_key: str
    event_data: Any = None
    event_time: datetime = field(default_factory=utcnow)
    id: str = ""
    is_processed: bool = False
    set_aside: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=True)
class EventSubscription:
    """A waiting pointer's interest in events of one name and key.

    ``external_token`` / ``external_worker_id`` / ``external_token_expiry`` hold an
    activity worker's claim; a claim whose expiry has passed counts as no claim.
    """

    workflow_id: str
    step_id: int
    execution_pointer_id: str
    event_name: str
    event_key: str
    subscribe_as_of: datetime = field(default_factory=utcnow)
    subscription_data: Any = None
    id: str = ""
    external_token: str | None = None
    external_worker_id: str | None = None
    external_token_expiry: datetime | None = None


@dataclass(eq=True)
class ScheduledCommand:
    """A command to run at or after ``execute_time``; one per ``(command_name, data)``."""

    PROCESS_WORKFLOW = "process_workflow"
    PROCESS_EVENT = "process_event"

    command_name: str
    data: str
    execute_time: datetime


@dataclass(eq=True)
class ExecutionError:
    """A step failure recorded for a workflow instance (append-only log)."""

    workflow_id: str
    execution_pointer_id: str | None
    message: str
    error_type: str | None = None
    traceback: str | None = None
    error_time: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=new_id)


@dataclass(eq=True)
class LifecycleEvent:
    """A notification about a workflow or step, sent through a lifecycle publisher."""

    type: LifecycleEventType
    workflow_id: str
    workflow_definition_id: str
    version: int
    reference: str | None = None
    step_id: int | None = None
    step_name: str | None = None
    execution_pointer_id: str | None = None
    message: str | None = None
    event_time: datetime = field(default_factory=utcnow)


_HEADER_IMMUTABLE = frozenset({type(None), str, int, bool, datetime, WorkflowStatus})
