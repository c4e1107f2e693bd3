"""What the engine is doing, for logs, traces and metrics: the ids of the pass and step
running now, and the hooks an instrumentation (OpenTelemetry: ``wfe_otel``) implements.

**Ids in context.** While a pass runs, :func:`current_ids` returns the ``workflow_id``,
``definition`` and ``version`` of its instance, and while a step runs also its ``step``
(display name), ``step_id``, ``pointer_id`` and ``attempt`` (1 for the first run). They
live in :mod:`contextvars`, so every log record made meanwhile -- by the engine or by the
step's own code, in a thread the step runs in too -- can carry them
(:class:`wfe_core.logs.ContextFilter` adds them to records).

**Instrumentation.** A host with an :class:`Instrumentation` (``host.instrumentation``)
calls :meth:`Instrumentation.workflow_pass` around every pass and
:meth:`Instrumentation.step` around every step it runs; the step's
:class:`StepObservation` says how it ended before the scope closes. Without one (the
default) the engine makes no call at all: instrumentation that is off costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from wfe_core.models import ExecutionPointer, WorkflowInstance
    from wfe_core.steps import WorkflowStep

__all__ = [
    "Instrumentation",
    "StepObservation",
    "current_ids",
    "pass_ids",
    "step_ids",
]

_pass: ContextVar[tuple[str, str, int] | None] = ContextVar("wfe_pass", default=None)
_step: ContextVar[tuple[str, int, str, int] | None] = ContextVar("wfe_step", default=None)


def current_ids() -> dict[str, Any]:
    """The ids of the pass and step running in this context: ``workflow_id``,
    ``definition``, ``version`` (in a pass), ``step``, ``step_id``, ``pointer_id``,
    ``attempt`` (in a step); empty outside any pass."""
    found: dict[str, Any] = {}
    running = _pass.get()
    if running is not None:
        found["workflow_id"], found["definition"], found["version"] = running
    step = _step.get()
    if step is not None:
        found["step"], found["step_id"], found["pointer_id"], found["attempt"] = step
    return found


@contextmanager
def pass_ids(instance: WorkflowInstance) -> Iterator[None]:
    """Make ``instance``'s ids the current ones (:func:`current_ids`) inside."""
    token = _pass.set((instance.id, instance.workflow_definition_id, instance.version))
    try:
        yield
    finally:
        _pass.reset(token)


@contextmanager
def step_ids(step: WorkflowStep, pointer: ExecutionPointer) -> Iterator[None]:
    """Make the step's ids the current ones (:func:`current_ids`) inside."""
    token = _step.set((step.display_name, step.id, pointer.id, pointer.retry_count + 1))
    try:
        yield
    finally:
        _step.reset(token)


@dataclass
class StepObservation:
    """How a step run ended, filled in by the engine before :meth:`Instrumentation.step`'s
    scope closes."""

    outcome: str = "unknown"
    """``"completed"`` (the step proceeded), ``"waiting"`` (it sleeps, waits for an
    event or its children, or branched), ``"failed"`` (it raised: ``error`` is set; the
    step's error policy then retries, suspends, terminates or compensates), or
    ``"cancelled"`` (the pass was stopped under it)."""
    error: BaseException | None = None
    """What the step raised, when it failed."""
    will_retry: bool = False
    """The error policy will run the step again (a retry)."""


@runtime_checkable
class Instrumentation(Protocol):
    """Hooks around the engine's work (see the module docstring). Both are called on
    the pass's task; their scopes nest (a step inside its pass) and must not raise."""

    def workflow_pass(self, instance: WorkflowInstance) -> AbstractContextManager[object]:
        """A scope around one pass over ``instance`` (the instance as loaded)."""
        ...

    def step(
        self,
        instance: WorkflowInstance,
        step: WorkflowStep,
        pointer: ExecutionPointer,
        observation: StepObservation,
    ) -> AbstractContextManager[object]:
        """A scope around one run of ``step`` on ``pointer``; ``observation`` is filled
        in before it closes."""
        ...
