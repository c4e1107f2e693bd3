"""Spans and metrics of :func:`wfe_otel.instrument` on real stores (memory, a SQLite
file), read with the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from wfe_core.models import utcnow
from wfe_core.persistence import Claim
from wfe_core.telemetry import EVENT_CONTEXT_ATTRIBUTE, TRACE_CONTEXT_ATTRIBUTE
from wfe_otel_testapp import FAST, Doomed, Greet, Traced

import wfe_otel
from wfe_core import WorkflowClient, WorkflowHost, WorkflowStatus
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Telemetry:
    """SDK providers feeding in-memory readers."""

    spans: InMemorySpanExporter
    tracer_provider: TracerProvider
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` collected now."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **labels: Any) -> float:
        """Sum of the points of counter ``name`` whose attributes include ``labels``."""
        return sum(
            p.value for p in self.points(name) if labels.items() <= dict(p.attributes).items()
        )

    def count(self, name: str, **labels: Any) -> int:
        """Sum of the counts of histogram ``name``'s points matching ``labels``."""
        return sum(
            p.count for p in self.points(name) if labels.items() <= dict(p.attributes).items()
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, tracer_provider, reader, meter_provider)
    meter_provider.shutdown()
    tracer_provider.shutdown()


def _instrument(host: Any, t: Telemetry) -> wfe_otel.WfeInstrumentation:
    return wfe_otel.instrument(
        host, tracer_provider=t.tracer_provider, meter_provider=t.meter_provider
    )


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def _waiting(host: Any, key: str) -> bool:
    subs = await host.persistence.get_subscriptions("go", key, datetime(9999, 1, 1, tzinfo=UTC))
    return bool(subs)


def _named(spans: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


async def test_one_trace_from_the_request_through_every_pass_and_step(
    telemetry: Telemetry,
) -> None:
    """Started in a request's span: every pass span is its child, every step span a
    child of a pass span, all in its trace; the failed try is recorded as an error
    with will_retry, the event's step links to the publisher's span; the metrics count
    it all."""
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        for wf in (Greet, Traced, Doomed):
            host.register_workflow(wf())
        _instrument(host, telemetry)
        key = uuid.uuid4().hex
        with tracer.start_as_current_span("request") as request:
            wid = await host.start_workflow(Traced.id, {"key": key})
        await _until(lambda: _waiting(host, key))
        with tracer.start_as_current_span("webhook", kind=SpanKind.SERVER) as webhook:
            event_id = await host.publish_event("go", key, {"ok": True})
        stored_event = await host.persistence.get_event(event_id)
        done = await host.wait_for_workflow(wid, 20)
    assert done.status is WorkflowStatus.COMPLETE
    trace_id = request.get_span_context().trace_id
    assert stored_event.headers["traceparent"].split("-")[1] == format(
        webhook.get_span_context().trace_id, "032x"
    )
    assert TRACE_CONTEXT_ATTRIBUTE in done.execution_pointers[0].extension_attributes

    spans = telemetry.finished()
    passes = _named(spans, f"wfe.pass {Traced.id}")
    steps = _named(spans, "wfe.step ")
    assert len(passes) >= 2  # before the event and after it
    assert {s.context.trace_id for s in passes + steps} == {trace_id}
    for p in passes:
        assert p.parent is not None
        assert p.parent.span_id == request.get_span_context().span_id
        assert p.attributes is not None
        assert p.attributes["wfe.workflow.id"] == wid
        assert p.attributes["wfe.workflow.definition"] == Traced.id
        assert p.attributes["wfe.workflow.version"] == 1
    pass_ids = {p.context.span_id for p in passes}
    for s in steps:
        assert s.parent is not None
        assert s.parent.span_id in pass_ids
    by_name: dict[str, list[ReadableSpan]] = {}
    for s in steps:
        assert s.attributes is not None
        by_name.setdefault(str(s.attributes["wfe.step.name"]), []).append(s)
    assert {"first", "wait-go", "flaky", "last"} <= {n.split("(")[-1].rstrip(")") for n in by_name}
    flaky = next(v for k, v in by_name.items() if "flaky" in k)
    assert [s.attributes["wfe.step.attempt"] for s in flaky if s.attributes] == [1, 2]
    failed, retried = flaky
    assert failed.attributes is not None
    assert failed.attributes["wfe.step.outcome"] == "failed"
    assert failed.attributes["wfe.step.will_retry"] is True
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert failed.events[0].attributes is not None
    assert "first try fails" in str(failed.events[0].attributes["exception.message"])
    assert retried.attributes is not None
    assert retried.attributes["wfe.step.outcome"] == "completed"
    assert retried.status.status_code is StatusCode.UNSET
    pointer_ids = {p.id for p in done.execution_pointers}
    for s in steps:
        assert s.attributes is not None
        assert s.attributes["wfe.pointer.id"] in pointer_ids
        assert s.attributes["wfe.workflow.id"] == wid
    # the step resumed by the event links to the webhook's span
    resumed = [s for s in steps if s.links]
    assert len(resumed) == 1
    assert resumed[0].links[0].context.span_id == webhook.get_span_context().span_id
    assert resumed[0].attributes is not None
    assert resumed[0].attributes["wfe.event.id"] == event_id
    waited = next(p for p in done.execution_pointers if p.event_published)
    assert waited.extension_attributes[EVENT_CONTEXT_ATTRIBUTE]["event_id"] == event_id

    # metrics
    assert telemetry.total("wfe.workflows.started", definition=Traced.id) == 1
    assert telemetry.total("wfe.workflows.completed", definition=Traced.id) == 1
    assert telemetry.total("wfe.workflows.failed") == 0
    assert telemetry.total("wfe.step.retries", definition=Traced.id) == 1
    assert telemetry.count("wfe.step.duration", definition=Traced.id) == len(steps)
    assert telemetry.count("wfe.step.duration", outcome="failed") == 1
    assert telemetry.count("wfe.event.delivery_latency", definition=Traced.id, event="go") == 1
    assert telemetry.count("wfe.workflow.duration", definition=Traced.id) == 1


async def test_failed_and_terminated_workflows_are_counted_apart(telemetry: Telemetry) -> None:
    """A workflow its failing step terminates is 'failed' and 'terminated'; one a user
    terminates only 'terminated'."""
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        for wf in (Greet, Traced, Doomed):
            host.register_workflow(wf())
        _instrument(host, telemetry)
        doomed = await host.start_workflow(Doomed.id, {})
        waiting = await host.start_workflow(Traced.id, {"key": uuid.uuid4().hex})
        assert (await host.wait_for_workflow(doomed, 20)).status is WorkflowStatus.TERMINATED
        assert await host.terminate_workflow(waiting)
        assert (await host.wait_for_workflow(waiting, 20)).status is WorkflowStatus.TERMINATED
    assert telemetry.total("wfe.workflows.started") == 2
    assert telemetry.total("wfe.workflows.terminated", definition=Doomed.id) == 1
    assert telemetry.total("wfe.workflows.terminated", definition=Traced.id) == 1
    assert telemetry.total("wfe.workflows.failed", definition=Doomed.id) == 1
    assert telemetry.total("wfe.workflows.failed", definition=Traced.id) == 0
    assert telemetry.total("wfe.step.retries") == 0
    (boom,) = [
        s
        for s in telemetry.finished()
        if s.name.startswith("wfe.step ")
        and s.attributes
        and s.attributes["wfe.workflow.id"] == doomed
    ]
    assert boom.attributes is not None
    assert boom.attributes["wfe.step.will_retry"] is False
    assert boom.status.status_code is StatusCode.ERROR


async def test_a_workflow_started_outside_any_span_is_one_trace_rooted_at_its_first_pass(
    telemetry: Telemetry,
) -> None:
    """No span where it was started: the first pass span is the trace's root, its
    context is stored with the instance, and the passes after the wait (a new pass on
    the event) are its children -- one trace, no extra span."""
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(Traced())
        _instrument(host, telemetry)
        key = uuid.uuid4().hex
        wid = await host.start_workflow(Traced.id, {"key": key})
        await _until(lambda: _waiting(host, key))
        stored = await host.persistence.get_workflow_instance(wid)
        await host.publish_event("go", key, {"ok": True})
        assert (await host.wait_for_workflow(wid, 20)).status is WorkflowStatus.COMPLETE
    carrier = stored.execution_pointers[0].extension_attributes[TRACE_CONTEXT_ATTRIBUTE]
    spans = telemetry.finished()
    assert not _named(spans, "wfe.workflow")
    passes = sorted(_named(spans, f"wfe.pass {Traced.id}"), key=lambda s: s.start_time or 0)
    assert len(passes) >= 2
    root = passes[0]
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["wfe.workflow.id"] == wid
    assert carrier["traceparent"].split("-")[2] == format(root.context.span_id, "016x")
    assert all(
        p.parent is not None and p.parent.span_id == root.context.span_id for p in passes[1:]
    )
    steps = _named(spans, "wfe.step ")
    assert {s.attributes["wfe.step.name"] for s in steps if s.attributes} >= {
        "step 0 (first)",
        "step 3 (last)",
    }
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_lease_takeover_is_counted_and_logged(
    telemetry: Telemetry, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """An instance claimed by a process that died (its lease runs out unrenewed) is
    taken over by the host: one ``wfe.lease.takeovers``, a WARNING naming it, and the
    workflow completes; a plain run (a free instance) counts none."""
    from wfe_sqlite import SqlitePersistenceProvider

    def opened() -> Any:
        if kind == "memory":
            return MemoryPersistenceProvider()
        return SqlitePersistenceProvider(tmp_path / "takeover.db")

    async with opened() as store:
        await store.ensure_store_exists()
        client = WorkflowClient(store)
        client.register_workflow(Greet())
        orphan = await client.start_workflow(Greet.id, {})
        lease = utcnow() + timedelta(milliseconds=500)
        assert await store.claim_workflow(orphan, "dead-host", lease) == Claim.CLAIMED
        async with WorkflowHost(store, options=FAST) as host:
            host.register_workflow(Greet())
            _instrument(host, telemetry)
            plain = await host.start_workflow(Greet.id, {})
            assert (await host.wait_for_workflow(plain, 20)).status is WorkflowStatus.COMPLETE
            assert telemetry.total("wfe.lease.takeovers") == 0
            assert (await host.wait_for_workflow(orphan, 20)).status is WorkflowStatus.COMPLETE
    assert telemetry.total("wfe.lease.takeovers") == 1
    warnings = [r for r in caplog.records if "took over workflow" in r.getMessage()]
    assert [getattr(r, "workflow_id", None) for r in warnings] == [orphan]


async def test_without_instrumentation_nothing_is_stored(telemetry: Telemetry) -> None:
    """Off (the default): no trace context on the instance, no headers on events."""
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(Greet())
        assert host.instrumentation is None
        with tracer.start_as_current_span("request"):
            wid = await host.start_workflow(Greet.id, {})
            event_id = await host.publish_event("nobody", "k", None)
        done = await host.wait_for_workflow(wid, 20)
        assert (await host.persistence.get_event(event_id)).headers == {}
    assert TRACE_CONTEXT_ATTRIBUTE not in done.execution_pointers[0].extension_attributes
    assert [s.name for s in telemetry.finished()] == ["request"]


async def test_instrumenting_twice_is_refused_and_close_detaches(telemetry: Telemetry) -> None:
    async with MemoryPersistenceProvider() as store:
        client = WorkflowClient(store)
        made = _instrument(client, telemetry)
        assert client.instrumentation is made
        with pytest.raises(ValueError, match="instrumented already"):
            _instrument(client, telemetry)
        made.close()
        assert client.instrumentation is None
        with pytest.raises(ValueError, match="refresh_interval"):
            wfe_otel.instrument(client, refresh_interval=0)


async def test_gauges_read_the_store_and_group_commits(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    """The backlog gauges report the store's counts (read on the host's loop, cached);
    a SQLite store's group commit counters are reported."""
    url = f"sqlite:///{tmp_path / 'gauges.db'}"
    async with WorkflowClient.from_url(url) as client:
        client.register_workflow(Traced())
        made = _instrument(client, telemetry)
        ids = [await client.start_workflow(Traced.id, {"key": str(n)}) for n in range(3)]
        assert await client.suspend_workflow(ids[0])
        await made.metrics.refresh()
        assert telemetry.total("wfe.workflows.runnable") == 2
        assert telemetry.total("wfe.workflows.suspended") == 1
        assert telemetry.total("wfe.workflows.due") == 2  # nothing runs them: all due
        assert telemetry.total("wfe.events.due") == 0
        assert telemetry.total("wfe.workflows.started", definition=Traced.id) == 3
        groups = telemetry.total("wfe.store.group_commit.groups")
        batches = telemetry.total("wfe.store.group_commit.batches")
        assert groups >= 1
        assert batches >= groups
        # a collection starts a refresh by itself once the readings are stale
        made.metrics.refresh_interval = 0.01
        await client.resume_workflow(ids[0])

        async def refreshed() -> bool:
            return telemetry.total("wfe.workflows.suspended") == 0

        await _until(refreshed)
        made.close()


async def test_a_pass_not_sampled_makes_no_step_spans_but_counts_its_steps() -> None:
    """A sampler that keeps no trace: no span at all, yet every step run is measured."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    t = Telemetry(spans, tracer_provider, reader, meter_provider)
    try:
        async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
            host.register_workflow(Greet())
            _instrument(host, t)
            wid = await host.start_workflow(Greet.id, {})
            assert (await host.wait_for_workflow(wid, 20)).status is WorkflowStatus.COMPLETE
        assert t.finished() == []
        assert t.count("wfe.step.duration", definition=Greet.id) == 2
        assert t.total("wfe.workflows.completed", definition=Greet.id) == 1
    finally:
        meter_provider.shutdown()
        tracer_provider.shutdown()
