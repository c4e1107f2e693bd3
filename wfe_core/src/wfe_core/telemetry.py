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

**Propagation.** An instrumentation may also implement the optional
:class:`EventPropagation` hook: the client then asks it for headers to store with every
event it publishes (:attr:`wfe_core.models.Event.headers`, e.g. the W3C
``traceparent``), and the host hands those headers on to the pointer the event resumes
(:data:`EVENT_CONTEXT_ATTRIBUTE`), where the step's instrumentation finds them. An
instrumentation stores the trace context a workflow was started in under
:data:`TRACE_CONTEXT_ATTRIBUTE` on its first pointer (no schema change: pointer
``extension_attributes`` are stored by every store).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from wfe_core.models import Event, ExecutionPointer, WorkflowInstance

log = logging.getLogger("wfe_core.telemetry")

__all__ = [
    "EVENT_CONTEXT_ATTRIBUTE",
    "TRACE_CONTEXT_ATTRIBUTE",
    "EventPropagation",
    "Instrumentation",
    "LeaseObserver",
    "StepInfo",
    "StepObservation",
    "current_ids",
    "decode_headers",
    "encode_headers",
    "event_headers",
    "note_delivered_event",
    "pass_ids",
    "step_ids",
    "took_over",
]

TRACE_CONTEXT_ATTRIBUTE = "wfe.trace_context"
"""Extension attribute on an instance's first pointer: the propagation headers (a
``dict[str, str]``, e.g. ``traceparent``) of the trace the instance was started in, set
by an instrumentation when it is started."""

EVENT_CONTEXT_ATTRIBUTE = "wfe.event_context"
"""Extension attribute on a pointer resumed by an event that carried headers:
``{"headers": {...}, "event_id": ..., "event_time": <ISO 8601>}`` (see
:func:`note_delivered_event`)."""

_pass: ContextVar[tuple[str, str, int] | None] = ContextVar("wfe_pass", default=None)
_step: ContextVar[tuple[str, int, str, int] | None] = ContextVar("wfe_step", default=None)


class StepInfo(Protocol):
    """What the hooks read of a step (a :class:`wfe_core.steps.WorkflowStep`; typed
    structurally so that this module needs nothing of the step types)."""

    @property
    def id(self) -> int:
        """The step's id in its definition."""
        ...

    @property
    def display_name(self) -> str:
        """The step's name for people (``"step 2 (charge)"``)."""
        ...


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
def step_ids(step: StepInfo, pointer: ExecutionPointer) -> Iterator[None]:
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
        step: StepInfo,
        pointer: ExecutionPointer,
        observation: StepObservation,
    ) -> AbstractContextManager[object]:
        """A scope around one run of ``step`` on ``pointer``; ``observation`` is filled
        in before it closes."""
        ...


@runtime_checkable
class EventPropagation(Protocol):
    """The optional hook of an :class:`Instrumentation` that propagates context through
    events: the client calls it when it publishes an event (only when an
    instrumentation is set) and stores what it returns as the event's ``headers``."""

    def event_headers(self, event_name: str, event_key: str) -> dict[str, str]:
        """Headers to store with an event being published now (may be empty)."""
        ...


def event_headers(
    instrumentation: Instrumentation | None, event_name: str, event_key: str
) -> dict[str, str]:
    """The headers ``instrumentation`` attaches to an event published now: empty when
    there is no instrumentation or it has no :class:`EventPropagation` hook; a hook
    that raises attaches nothing (publishing never fails for it)."""
    if instrumentation is None:
        return {}
    hook = getattr(instrumentation, "event_headers", None)
    if hook is None:
        return {}
    try:
        found = hook(event_name, event_key)
    except Exception:
        return {}
    return check_headers(found) if found else {}


@runtime_checkable
class LeaseObserver(Protocol):
    """The optional hook of an :class:`Instrumentation` told of lease takeovers: this
    process claimed an instance whose previous holder's lease had expired (see
    :class:`~wfe_core.persistence.Claim`)."""

    def lease_taken_over(self, workflow_id: str) -> None:
        """Called once per takeover, right after the claim; must not raise."""
        ...


def took_over(instrumentation: Instrumentation | None, workflow_id: str) -> None:
    """Tell ``instrumentation`` (when it has the :class:`LeaseObserver` hook) that
    ``workflow_id`` was taken over; a hook that raises is logged, never propagated."""
    hook = getattr(instrumentation, "lease_taken_over", None)
    if hook is None:
        return
    try:
        hook(workflow_id)
    except Exception:
        log.exception(
            "the instrumentation's lease_taken_over hook failed",
            extra={"workflow_id": workflow_id},
        )


def check_headers(headers: object) -> dict[str, str]:
    """``headers`` checked: a mapping of text to text (a copy); anything else is a
    ``TypeError`` naming the problem."""
    if not isinstance(headers, Mapping):
        raise TypeError(f"event headers must be a dict of str to str, not {type(headers).__name__}")
    checked: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"event headers must be a dict of str to str; {key!r}: {value!r} is not"
            )
        checked[key] = value
    return checked


def encode_headers(headers: object) -> str | None:
    """Event headers as a store keeps them in a text column: JSON, or None when empty."""
    checked = check_headers(headers)
    if not checked:
        return None
    return json.dumps(checked, ensure_ascii=False, sort_keys=True)


def decode_headers(text: str | None) -> dict[str, str]:
    """The headers :func:`encode_headers` wrote (empty for None)."""
    if not text:
        return {}
    return check_headers(json.loads(text))


def note_delivered_event(pointer: ExecutionPointer, event: Event) -> None:
    """Hand an event's headers on to the pointer it resumes (under
    :data:`EVENT_CONTEXT_ATTRIBUTE`, with the event's id and time), so the step's
    instrumentation can link to the publisher's trace and measure the delivery
    latency. An event without headers leaves the pointer as it is."""
    if not event.headers:
        return
    pointer.extension_attributes = {
        **pointer.extension_attributes,
        EVENT_CONTEXT_ATTRIBUTE: {
            "headers": dict(event.headers),
            "event_id": event.id,
            "event_time": event.event_time.isoformat(),
        },
    }
