"""Steps and built definitions: step bodies, the context a step runs with, execution
results, :class:`WorkflowStep`, :class:`WorkflowDefinition` and the registry.

A :class:`~wfe_core.workflow.Workflow` subclass describes a workflow in code; its
``build`` fills a :class:`~wfe_core.builder.WorkflowBuilder`, which produces a
:class:`WorkflowDefinition` — a numbered list of :class:`WorkflowStep` objects that the
executor walks with execution pointers.

This module is low in the engine: it imports neither the builder, the primitives, the
executor nor the host (they import it). :mod:`wfe_core.definition` re-exports its
names together with ``Workflow``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from wfe_core.errors import DefinitionError, WorkflowNotRegistered
from wfe_core.event_names import ACTIVITY_EVENT
from wfe_core.models import ExecutionPointer, WorkflowInstance
from wfe_core.persistence import check_key
from wfe_core.retry import RetryPolicy

if TYPE_CHECKING:
    from wfe_core.engine import WorkflowEngine

__all__ = [
    "ErrorBehavior",
    "ExecutionResult",
    "Outcome",
    "StepBody",
    "StepContext",
    "WorkflowDefinition",
    "WorkflowRegistry",
    "WorkflowStep",
]

TData = TypeVar("TData")


class ErrorBehavior(StrEnum):
    """What happens when a step raises."""

    RETRY = "retry"
    """Run the step again after ``retry_interval`` (growing by ``backoff``), at most
    ``max_retries`` times -- or as its :class:`~wfe_core.retry.RetryPolicy` says; then
    the step fails."""
    SUSPEND = "suspend"
    """Suspend the workflow; ``resume_workflow`` runs the step again."""
    TERMINATE = "terminate"
    """Terminate the workflow."""
    COMPENSATE = "compensate"
    """Run the compensation of the step (or of the enclosing saga)."""


@dataclass(slots=True)
class ExecutionResult:
    """What a step returns: proceed, sleep, branch, wait for an event, or end.

    Build one with the class methods; a step function returning ``None`` means
    :meth:`next`.
    """

    proceed: bool = False
    outcome_value: Any = None
    persistence_data: Any = None
    sleep_for: timedelta | None = None
    sleep_until: datetime | None = None
    event_name: str | None = None
    event_key: str | None = None
    event_as_of: datetime | None = None
    subscription_data: Any = None
    branch_values: list[Any] | None = None
    branch_children: list[int] | None = None
    end: bool = False

    @classmethod
    def next(cls) -> ExecutionResult:
        """Proceed to the next step."""
        return cls(proceed=True)

    @classmethod
    def outcome(cls, value: Any) -> ExecutionResult:
        """Proceed, recording ``value`` as the outcome (``.when(value)`` matches it)."""
        return cls(proceed=True, outcome_value=value)

    @classmethod
    def persist(cls, data: Any) -> ExecutionResult:
        """Stay on this step, keep ``data`` as its persistence data, run again."""
        return cls(proceed=False, persistence_data=data)

    @classmethod
    def sleep(cls, duration: timedelta | datetime, data: Any = None) -> ExecutionResult:
        """Run this step again after ``duration`` (a timedelta) or at an aware datetime."""
        if isinstance(duration, datetime):
            if duration.tzinfo is None:
                raise ValueError("ExecutionResult.sleep needs a timezone-aware datetime")
            return cls(proceed=False, sleep_until=duration, persistence_data=data)
        if not isinstance(duration, timedelta):
            raise TypeError(
                "ExecutionResult.sleep takes a timedelta or datetime, "
                f"not {type(duration).__name__}"
            )
        return cls(proceed=False, sleep_for=duration, persistence_data=data)

    @classmethod
    def branch(cls, values: Sequence[Any], data: Any = None) -> ExecutionResult:
        """Start the step's child branches once per value (``context.item``)."""
        return cls(proceed=False, branch_values=list(values), persistence_data=data)

    @classmethod
    def wait_for_event(
        cls, name: str, key: str, effective_date: datetime | None = None
    ) -> ExecutionResult:
        """Wait for an event with this name and key published at or after
        ``effective_date`` (default: now).

        A name or key no store can keep (longer than
        :data:`~wfe_core.persistence.MAX_KEY_LENGTH` characters, or holding a NUL) raises
        ``ValueError`` here, inside the step: an ordinary step error, recorded and handled
        by the step's error behaviour."""
        check_key(name, "event name")
        check_key(key, "event key")
        if effective_date is not None and effective_date.tzinfo is None:
            raise ValueError("effective_date must be timezone-aware")
        return cls(proceed=False, event_name=name, event_key=key, event_as_of=effective_date)

    @classmethod
    def wait_for_activity(
        cls, name: str, params: Any = None, effective_date: datetime | None = None
    ) -> ExecutionResult:
        """Wait for an activity worker to take and complete activity ``name``."""
        result = cls.wait_for_event(ACTIVITY_EVENT, name, effective_date)
        result.subscription_data = params
        return result

    @classmethod
    def end_workflow(cls) -> ExecutionResult:
        """End the workflow now: it completes, every other open pointer is cancelled."""
        return cls(proceed=True, end=True)


class StepContext(Generic[TData]):
    """What a running step sees: the instance, its pointer, the data and the host."""

    __slots__ = (
        "cancelled",
        "data",
        "host",
        "item",
        "persistence_data",
        "pointer",
        "step",
        "workflow",
    )

    def __init__(
        self,
        workflow: WorkflowInstance,
        step: WorkflowStep,
        pointer: ExecutionPointer,
        host: WorkflowEngine | None,
        cancelled: asyncio.Event,
    ) -> None:
        self.workflow = workflow
        self.step = step
        self.pointer = pointer
        self.data: TData = workflow.data
        self.item: Any = pointer.context_item
        self.persistence_data: Any = pointer.persistence_data
        self.cancelled = cancelled
        self.host = host


class StepBody:
    """Base class of step bodies. Attributes are the step's inputs and outputs.

    Override ``async def run(self, context) -> ExecutionResult`` (a sync ``run`` works
    too and runs in a worker thread, off the event loop). A fresh instance is made
    for every execution.
    """

    shares_checkpoint: ClassVar[bool] = False
    """True for built-in control steps (if, while, for-each, parallel, decide, saga
    blocks, wait-for, delay) that run no user code and have no effect outside the
    instance: when another step is ready to run in the same pass, their result is
    written with that step's checkpoint rather than in a transaction of its own. A
    crash in between re-runs the control step (it decides the same from the same
    stored data), never more than the last user step."""

    async def run(self, context: StepContext[Any]) -> ExecutionResult | None:
        """Do the step's work and say what comes next."""
        raise NotImplementedError(f"{type(self).__name__} must define run(self, context)")


class FunctionStep(StepBody):
    """Adapts a plain sync or async function ``fn(context)`` into a step body."""

    def __init__(self, fn: Callable[[StepContext[Any]], Any]) -> None:
        self.fn = fn

    async def run(self, context: StepContext[Any]) -> ExecutionResult | None:
        """Call the function (a sync one in a worker thread)."""
        result = self.fn(context)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]


def _call_style(fn: Callable[..., Any], max_args: int) -> int:
    """How many positional arguments ``fn`` takes (1..max_args)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return max_args
    return max(1, min(len(params), max_args))


def make_body(step: Any, where: str) -> tuple[Callable[[], StepBody], str, bool]:
    """Return (factory, name, run_in_thread) for a step given by the user."""
    if isinstance(step, type) and issubclass(step, StepBody):
        cls = step
        run = cls.run
        return cls, cls.__name__, not inspect.iscoroutinefunction(run)
    if isinstance(step, StepBody):
        raise DefinitionError(
            f"{where}: pass the StepBody class {type(step).__name__}, not an instance "
            "(a fresh instance is made for every execution)"
        )
    if callable(step) and not isinstance(step, type):
        fn = step
        name = getattr(fn, "__name__", type(fn).__name__)
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004
        )
        return (lambda: FunctionStep(fn)), name, not is_async
    raise DefinitionError(
        f"{where}: {step!r} is not a step: use a StepBody subclass or a function(context)"
    )


@dataclass(slots=True)
class Outcome:
    """An edge to ``next_step``: taken when the step proceeds and the value matches
    (no value: always)."""

    next_step: int
    value: Any = None
    has_value: bool = False

    def matches(self, outcome_value: Any) -> bool:
        """True when this edge is taken for ``outcome_value``."""
        return not self.has_value or self.value == outcome_value


@dataclass(eq=False)
class WorkflowStep:
    """One step of a definition: its body, wiring and error policy."""

    id: int
    body: Callable[[], StepBody]
    body_name: str
    name: str | None = None
    external_id: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    children: list[int] = field(default_factory=list)
    child_values: list[Any] = field(default_factory=list)
    inputs: list[tuple[str, Callable[..., Any], int]] = field(default_factory=list)
    outputs: list[tuple[str | None, Callable[..., Any]]] = field(default_factory=list)
    """Applied in order when the step proceeds: ``(attr, fn)`` sets ``data.<attr> =
    fn(step_body)``; ``(None, fn)`` calls ``fn(step_body, data)`` (an output action)."""
    error_behavior: ErrorBehavior | None = None
    retry_interval: timedelta | None = None
    max_retries: int | None = None
    backoff: float = 1.0
    retry_policy: RetryPolicy | None = None
    """The step's own retry policy (``.retry_policy(...)``); None: the legacy
    ``retry_interval`` / ``max_retries`` / ``backoff`` settings, else the definition's
    default policy, else every ``HostOptions.error_retry_interval`` for ever."""
    timeout: timedelta | None = None
    """``.timeout(...)``: past it the step's ``context.cancelled`` fires and it fails
    with :class:`~wfe_core.errors.StepTimeout`."""
    compensation_step_id: int | None = None
    is_saga: bool = False
    is_container: bool = False
    is_compensation: bool = False
    cancel_condition: Callable[[Any], bool] | None = None
    proceed_after_cancel: bool = False
    pending_attach: list[str] = field(default_factory=list)
    run_in_thread: bool = False
    """True for sync user code (a ``def`` step): it runs in a worker thread, or inline
    once known to be quick (``HostOptions.sync_steps``; :mod:`wfe_core.sync_steps`)."""
    inline_trials: int = 0
    """How many runs of this ``def`` step in a worker thread stayed under
    ``HostOptions.inline_step_limit`` in this process; -1 once one did not (it always
    runs in a thread then). Kept by :mod:`wfe_core.sync_steps`."""

    @property
    def label(self) -> str:
        """The name pointers on this step carry (``step_name``), shown by ``wfe show``
        and in logs: the builder's ``.name(...)``, else the function's or the StepBody
        class's name."""
        return self.name or self.body_name

    @property
    def display_name(self) -> str:
        """The step's name, or its body's name, with its id."""
        return f"step {self.id} ({self.label})"


class WorkflowDefinition:
    """A built workflow: id, version, data type and numbered steps."""

    def __init__(
        self,
        id: str,
        version: int,
        data_type: type[Any] | None,
        steps: list[WorkflowStep],
        description: str | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.id = id
        self.retry_policy = retry_policy
        """The default retry policy of steps that set no retry settings of their own."""
        self.version = version
        self.data_type = data_type
        self.steps = steps
        self.description = description
        self.cancellable_steps = [s for s in steps if s.cancel_condition is not None]


class WorkflowRegistry:
    """Definitions by ``(id, version)``; the newest version is the default."""

    def __init__(self) -> None:
        self._defs: dict[tuple[str, int], WorkflowDefinition] = {}
        self._latest: dict[str, WorkflowDefinition] = {}

    def add(self, definition: WorkflowDefinition) -> None:
        """Register a definition; the same ``(id, version)`` twice is an error."""
        key = (definition.id, definition.version)
        if key in self._defs:
            raise DefinitionError(
                f"workflow {definition.id!r} version {definition.version} is already registered"
            )
        self._defs[key] = definition
        latest = self._latest.get(definition.id)
        if latest is None or latest.version < definition.version:
            self._latest[definition.id] = definition

    def get(self, definition_id: str, version: int | None = None) -> WorkflowDefinition:
        """Return a definition (newest version when ``version`` is None)."""
        d = (
            self._latest.get(definition_id)
            if version is None
            else self._defs.get((definition_id, version))
        )
        if d is None:
            raise WorkflowNotRegistered(definition_id, version)
        return d

    def find(self, definition_id: str, version: int) -> WorkflowDefinition | None:
        """Return the exact definition or None."""
        return self._defs.get((definition_id, version))

    def all(self) -> list[WorkflowDefinition]:
        """Every registered definition."""
        return list(self._defs.values())


def const_or_fn(value: Any) -> Callable[..., Any]:
    """``value`` as a function of the data: itself when callable (and not a class),
    else a function returning it."""
    if callable(value) and not isinstance(value, type):
        return value  # type: ignore[no-any-return]
    return lambda _data: value


def duration_fn(value: Any, what: str) -> Callable[..., Any]:
    """A ``timedelta`` or a function of the data returning one, as a function of the
    data; anything else is a DefinitionError naming ``what``."""
    if isinstance(value, timedelta):
        return lambda _d: value
    if callable(value):
        return value  # type: ignore[no-any-return]
    raise DefinitionError(f"{what}: expected a timedelta or a function of the data, got {value!r}")


def as_iterable(value: Any) -> Iterable[Any]:
    """Items of a foreach collection (None means none)."""
    return () if value is None else value
