"""OpenTelemetry traces and metrics for a wfe client or host: :func:`instrument`.

**Traces.** A span ``wfe.pass <definition>`` around every pass over an instance and a
span ``wfe.step <step name>`` (its child) around every step run. When a workflow is
started, the trace context current there (the web request's span, say) is stored with
the instance -- its W3C ``traceparent`` under
:data:`~wfe_core.telemetry.TRACE_CONTEXT_ATTRIBUTE` on the first pointer -- and every
pass span of the instance, on whichever host and after any restart, is a child of it:
one trace from the request through every step. Started outside any span, the workflow's
first pass span is the root of its trace, and its context is stored the same way (with
that pass's checkpoint), so the later passes still share one trace. A published event
carries the publisher's context (``Event.headers``); the step it resumes links to it.
A step of a pass that is not sampled gets no span (its metrics are still recorded).

**Metrics.** See :mod:`wfe_otel.metrics` and the README for the list.

Only the OpenTelemetry *API* is used: spans and metrics go to the tracer and meter
providers given, or to the global ones (no-ops until an SDK is configured).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import Token
from datetime import datetime
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider, get_meter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from wfe_core.errors import ConcurrencyError, ControlPending, LeaseLost
from wfe_core.models import (
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.options import MiddlewarePhase
from wfe_core.telemetry import (
    EVENT_CONTEXT_ATTRIBUTE,
    TRACE_CONTEXT_ATTRIBUTE,
    StepInfo,
    StepObservation,
    current_ids,
)

from wfe_otel.metrics import WfeMetrics

__all__ = ["SCOPE", "WfeInstrumentation", "instrument"]

log = logging.getLogger("wfe_otel")

SCOPE = "wfe_otel"
"""The instrumentation scope name of wfe's tracer and meter."""

_STARTED_MEMORY = 10_000  # ids of instances started here, awaiting their started event


class WfeInstrumentation:
    """The :class:`~wfe_core.telemetry.Instrumentation` of ``wfe_otel`` (made and
    attached by :func:`instrument`); also the optional
    :class:`~wfe_core.telemetry.EventPropagation` and
    :class:`~wfe_core.telemetry.LeaseObserver` hooks."""

    def __init__(
        self,
        host: Any,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        refresh_interval: float = 5.0,
    ) -> None:
        from wfe_otel import __version__

        self.host = host
        """The client or host instrumented."""
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        """Where the spans go."""
        self.metrics = WfeMetrics(
            get_meter(SCOPE, __version__, meter_provider=meter_provider), host, refresh_interval
        )
        """The instruments (see :mod:`wfe_otel.metrics`)."""
        self._started_here: OrderedDict[str, str] = OrderedDict()
        self._unsubscribe: Callable[[], None] | None = None
        self.closed = False
        """True after :meth:`close`: nothing is recorded any more."""

    # ------------------------------------------------------------------ setup
    def attach(self) -> None:
        """Make this the host's instrumentation and register its workflow middleware
        and lifecycle handler (done by :func:`instrument`)."""
        current = getattr(self.host, "instrumentation", None)
        if current is not None:
            raise ValueError(
                f"this {type(self.host).__name__} is instrumented already ({current!r}); "
                "call instrument() once per client or host"
            )
        self.host.instrumentation = self
        self.host.use_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, self._starting)
        self.host.use_workflow_middleware(MiddlewarePhase.POST_WORKFLOW, self._ended)
        self._unsubscribe = self.host.on_lifecycle_event(self._lifecycle)

    def close(self) -> None:
        """Stop recording and detach from the host (its middleware stays registered but
        does nothing); idempotent."""
        if self.closed:
            return
        self.closed = True
        if getattr(self.host, "instrumentation", None) is self:
            self.host.instrumentation = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ------------------------------------------------------------------ starting
    def _starting(self, instance: WorkflowInstance) -> None:
        """PRE_WORKFLOW: store the current trace context with the new instance."""
        if self.closed:
            return
        self._started_here[instance.id] = instance.workflow_definition_id
        while len(self._started_here) > _STARTED_MEMORY:
            self._started_here.popitem(last=False)
        if not trace.get_current_span().get_span_context().is_valid:
            return  # no trace here: the first pass span will be the trace's root
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            _store_context(instance, carrier)

    def _lifecycle(self, event: LifecycleEvent) -> None:
        """Count a start once it is stored (only starts made in this process: with a
        shared lifecycle publisher every host hears of every start)."""
        if event.type is LifecycleEventType.WORKFLOW_STARTED and not self.closed:
            definition = self._started_here.pop(event.workflow_id, None)
            if definition is not None:
                self.metrics.started.add(1, (("definition", definition),))

    def _ended(self, instance: WorkflowInstance) -> None:
        """POST_WORKFLOW: count the end (in the process that wrote it, once)."""
        if self.closed:
            return
        definition = instance.workflow_definition_id
        labels = (("definition", definition),)
        m = self.metrics
        if instance.status is WorkflowStatus.COMPLETE:
            m.completed.add(1, labels)
        elif instance.status is WorkflowStatus.TERMINATED:
            m.terminated.add(1, labels)
            if current_ids().get("workflow_id") == instance.id:  # ended by its own pass
                m.failed.add(1, labels)
        end = instance.complete_time or utcnow()
        m.workflow_duration.record(
            max((end - instance.create_time).total_seconds(), 0.0), {"definition": definition}
        )

    def lease_taken_over(self, workflow_id: str) -> None:
        """Count a takeover of an expired claim (the
        :class:`~wfe_core.telemetry.LeaseObserver` hook)."""
        if not self.closed:
            self.metrics.leases_taken_over.add(1, ())

    # ------------------------------------------------------------------ propagation
    def event_headers(self, event_name: str, event_key: str) -> dict[str, str]:
        """The current trace context, to store with an event published now."""
        if self.closed:
            return {}
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    # ------------------------------------------------------------------ passes and steps
    def workflow_pass(self, instance: WorkflowInstance) -> AbstractContextManager[object]:
        """A span around one pass, child of the context the instance was started in."""
        metrics = self.metrics
        if metrics.loop is None:
            metrics.loop = asyncio.get_running_loop()
        stored = _stored_context(instance)
        span = self.tracer.start_span(
            f"wfe.pass {instance.workflow_definition_id}",
            context=_NO_PARENT if stored is None else stored,
            kind=SpanKind.CONSUMER,
            attributes=_instance_attributes(instance),
            record_exception=False,
            set_status_on_exception=False,
        )
        if stored is None and instance.execution_pointers:
            # The trace's root: the passes after this one (on any host) are its children.
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            if carrier:
                # A pointer that has not started yet is written by the step it runs in
                # this pass: no write of its own (no extra checkpoint before the step).
                first = instance.execution_pointers[0]
                _store_context(instance, carrier, mark=first.start_time is not None)
        return _PassScope(span, instance, metrics)

    def step(
        self,
        instance: WorkflowInstance,
        step: StepInfo,
        pointer: ExecutionPointer,
        observation: StepObservation,
    ) -> AbstractContextManager[object]:
        """A span around one step run (child of the pass span), and its metrics. A
        container step (if, while, for-each, parallel, saga: ``is_container``) gets
        neither; the steps inside it do."""
        if getattr(step, "is_container", False):
            return _NOTHING
        definition = instance.workflow_definition_id
        name = step.display_name
        if not trace.get_current_span().is_recording():
            # The pass is not sampled (so, with a parent-based sampler, no step of it
            # would be): the step's metrics only, no span to make and drop.
            return _StepMetrics(observation, self.metrics, definition, name)
        # the definition and version are on the parent pass span (and in its name)
        attributes: dict[str, Any] = {
            "wfe.workflow.id": instance.id,
            "wfe.step.name": name,
            "wfe.step.id": step.id,
            "wfe.pointer.id": pointer.id,
            "wfe.step.attempt": pointer.retry_count + 1,
        }
        links: list[Link] | None = None
        if pointer.event_published:
            event = pointer.extension_attributes.get(EVENT_CONTEXT_ATTRIBUTE)
            if isinstance(event, dict):
                links = self._event_link(event, pointer, definition, attributes)
        span = self.tracer.start_span(
            f"wfe.step {name}",
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        )
        return _StepScope(span, observation, self.metrics, definition, name)

    def _event_link(
        self,
        event: dict[str, Any],
        pointer: ExecutionPointer,
        definition: str,
        attributes: dict[str, Any],
    ) -> list[Link]:
        """The link to the trace that published the event resuming ``pointer``; the
        delivery latency is recorded once (on the step's first run after it)."""
        links: list[Link] = []
        headers = event.get("headers")
        if isinstance(headers, dict):
            context = trace.get_current_span(propagate.extract(headers)).get_span_context()
            if context.is_valid:
                links.append(Link(context, {"wfe.event.id": str(event.get("event_id", ""))}))
        attributes["wfe.event.name"] = pointer.event_name or ""
        attributes["wfe.event.id"] = str(event.get("event_id", ""))
        when = event.get("event_time")
        if pointer.retry_count == 0 and isinstance(when, str):
            try:
                latency = (utcnow() - datetime.fromisoformat(when)).total_seconds()
            except (ValueError, TypeError):
                return links
            self.metrics.event_latency.record(
                max(latency, 0.0), {"definition": definition, "event": pointer.event_name or ""}
            )
        return links


_NOTHING = nullcontext()
_NO_PARENT = Context()  # an empty context: the span starts a trace


def _store_context(
    instance: WorkflowInstance, carrier: dict[str, str], *, mark: bool = True
) -> None:
    """Keep ``carrier`` (a W3C trace context) with ``instance``, on its first pointer
    (``mark``: flag the pointer for the next write; without it, the pointer must be
    written anyway)."""
    first = instance.execution_pointers[0]
    first.extension_attributes[TRACE_CONTEXT_ATTRIBUTE] = carrier
    if mark:
        first.mark_changed()


class _PassScope:
    """The current span while a pass runs; its outcome when the pass ends."""

    __slots__ = ("instance", "metrics", "span", "token")

    def __init__(self, span: Span, instance: WorkflowInstance, metrics: WfeMetrics) -> None:
        self.span = span
        self.instance = instance
        self.metrics = metrics
        self.token: Token[Context] | None = None

    def __enter__(self) -> Span:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self.span
        try:
            if exc is None:
                span.set_attributes(
                    {"wfe.pass.outcome": "ok", "wfe.workflow.status": self.instance.status.value}
                )
            elif isinstance(exc, LeaseLost):
                span.set_attribute("wfe.pass.outcome", "lease_lost")
                definition = self.instance.workflow_definition_id
                self.metrics.leases_lost.add(1, (("definition", definition),))
            elif isinstance(exc, ControlPending):
                span.set_attribute("wfe.pass.outcome", f"control:{exc.action}")
            elif isinstance(exc, ConcurrencyError):
                span.set_attribute("wfe.pass.outcome", "conflict")
            elif isinstance(exc, asyncio.CancelledError):
                span.set_attribute("wfe.pass.outcome", "cancelled")
            else:
                span.set_attribute("wfe.pass.outcome", "error")
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            span.end()
            if self.token is not None:
                otel_context.detach(self.token)


class _StepMetrics:
    """The metrics of a step run whose pass is not sampled: no span."""

    __slots__ = ("definition", "metrics", "name", "observation", "started")

    def __init__(
        self, observation: StepObservation, metrics: WfeMetrics, definition: str, name: str
    ) -> None:
        self.observation = observation
        self.metrics = metrics
        self.definition = definition
        self.name = name
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _record_step(
            self.metrics,
            self.observation,
            self.definition,
            self.name,
            time.perf_counter() - self.started,
        )


def _record_step(
    metrics: WfeMetrics,
    observation: StepObservation,
    definition: str,
    name: str,
    elapsed: float,
) -> None:
    """The step duration (by outcome) and, for a failure that will be retried, a retry."""
    if observation.error is not None and observation.will_retry:
        metrics.step_retries.add(1, (("definition", definition), ("step", name)))
    metrics.step_duration.record(
        elapsed, {"definition": definition, "step": name, "outcome": observation.outcome}
    )


class _StepScope:
    """The current span while a step runs; its outcome and metrics when it ends."""

    __slots__ = ("definition", "metrics", "name", "observation", "span", "started", "token")

    def __init__(
        self,
        span: Span,
        observation: StepObservation,
        metrics: WfeMetrics,
        definition: str,
        name: str,
    ) -> None:
        self.span = span
        self.observation = observation
        self.metrics = metrics
        self.definition = definition
        self.name = name
        self.token: Token[Context] | None = None
        self.started = 0.0

    def __enter__(self) -> Span:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        self.started = time.perf_counter()
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self.started
        span, observation, metrics = self.span, self.observation, self.metrics
        outcome = observation.outcome
        try:
            error = observation.error
            if error is None:
                span.set_attribute("wfe.step.outcome", outcome)
            else:
                retry = observation.will_retry
                span.set_attributes({"wfe.step.outcome": outcome, "wfe.step.will_retry": retry})
                span.record_exception(error, {"wfe.step.will_retry": retry})
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        finally:
            span.end()
            if self.token is not None:
                otel_context.detach(self.token)
        _record_step(metrics, observation, self.definition, self.name, elapsed)


def _instance_attributes(instance: WorkflowInstance) -> dict[str, Any]:
    return {
        "wfe.workflow.id": instance.id,
        "wfe.workflow.definition": instance.workflow_definition_id,
        "wfe.workflow.version": instance.version,
    }


_CONTEXTS: OrderedDict[tuple[tuple[str, str], ...], Context] = OrderedDict()
_CONTEXTS_KEPT = 4096  # instances whose stored context is parsed once, not every pass


def _stored_context(instance: WorkflowInstance) -> Context | None:
    """The trace context stored when ``instance`` was started, if any (parsed once per
    stored value while it is among the last few thousand used)."""
    if not instance.execution_pointers:
        return None
    carrier = instance.execution_pointers[0].extension_attributes.get(TRACE_CONTEXT_ATTRIBUTE)
    if not isinstance(carrier, dict) or not carrier:
        return None
    key = tuple(sorted((str(k), str(v)) for k, v in carrier.items()))
    found = _CONTEXTS.get(key)
    if found is None:
        found = propagate.extract(carrier)
        _CONTEXTS[key] = found
        if len(_CONTEXTS) > _CONTEXTS_KEPT:
            _CONTEXTS.popitem(last=False)
    else:
        _CONTEXTS.move_to_end(key)
    return found


def instrument(
    host: Any,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    refresh_interval: float = 5.0,
) -> WfeInstrumentation:
    """Trace and measure what ``host`` (a :class:`~wfe_core.host.WorkflowHost`, or a
    :class:`~wfe_core.client.WorkflowClient` that only starts workflows and publishes
    events) does, with OpenTelemetry: sets ``host.instrumentation``, registers a
    PRE_WORKFLOW middleware (stores the trace context with every new instance), a
    POST_WORKFLOW middleware (counts ends) and a lifecycle handler (counts starts).

    ``tracer_provider`` / ``meter_provider``: where spans and metrics go (default: the
    global providers of ``opentelemetry.trace`` / ``opentelemetry.metrics``).
    ``refresh_interval``: the store-reading gauges read the store at most this often
    (seconds). Call it before the host starts, once per client or host; undo it with
    :meth:`WfeInstrumentation.close`.
    """
    if refresh_interval <= 0:
        raise ValueError(f"refresh_interval must be positive, not {refresh_interval!r}")
    made = WfeInstrumentation(
        host,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        refresh_interval=refresh_interval,
    )
    made.attach()
    return made
