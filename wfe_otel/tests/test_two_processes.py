"""One trace across two processes: this process (a client, like a web app) starts a
workflow inside a span and publishes the event it waits for inside another; a worker
subprocess on the same SQLite file, traced into an in-memory exporter it dumps as
JSON, runs it. Every pass and step span is in the client's trace, each pass span a
child of the client's span, each step span a child of a pass span; the step the
event resumed links to the publishing span."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wfe_otel_testapp import Traced

import wfe_otel
from wfe_core import WorkflowClient

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _start_worker(db: Path, out: Path, workflow_id: str) -> subprocess.Popen[str]:
    """The traced worker process (``wfe_otel_testapp.py``'s main)."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "wfe_otel_testapp.py"), str(db), str(out), workflow_id],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_one_trace_from_a_client_span_through_a_worker_process(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    out = tmp_path / "spans.json"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("web-app")
    key = uuid.uuid4().hex
    async with WorkflowClient.from_url(f"sqlite:///{db}") as client:
        client.register_workflow(Traced())
        wfe_otel.instrument(client, tracer_provider=provider)
        with tracer.start_as_current_span("POST /orders") as request:
            wid = await client.start_workflow(Traced.id, {"key": key})
        worker = _start_worker(db, out, wid)
        try:
            deadline = time.monotonic() + 60
            while not await client.persistence.get_subscriptions(
                "go", key, datetime(9999, 1, 1, tzinfo=UTC)
            ):
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "the worker never reached the wait"
                await asyncio.sleep(0.05)
            with tracer.start_as_current_span("POST /webhook") as webhook:
                await client.publish_event("go", key, {"paid": True})
            _, err = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    assert worker.returncode == 0, err
    found = json.loads(out.read_text())
    assert found["status"] == "complete"
    spans = found["spans"]
    trace_id = format(request.get_span_context().trace_id, "032x")
    request_id = format(request.get_span_context().span_id, "016x")
    passes = [s for s in spans if s["name"] == f"wfe.pass {Traced.id}"]
    steps = [s for s in spans if s["name"].startswith("wfe.step ")]
    assert len(passes) >= 2  # before the event, after it (and around the retry)
    assert {s["trace_id"] for s in spans} == {trace_id}  # everything B made: A's trace
    assert all(p["parent_id"] == request_id for p in passes)
    pass_ids = {p["span_id"] for p in passes}
    assert all(s["parent_id"] in pass_ids for s in steps)
    names = [s["attributes"]["wfe.step.name"] for s in steps]
    for wanted in ("first", "wait-go", "flaky", "last"):
        assert any(wanted in n for n in names), names
    flaky = [s for s in steps if "flaky" in s["attributes"]["wfe.step.name"]]
    assert [s["attributes"]["wfe.step.attempt"] for s in flaky] == [1, 2]
    assert flaky[0]["status"] == "ERROR"
    assert flaky[0]["events"] == ["exception"]
    assert flaky[0]["attributes"]["wfe.step.will_retry"] is True
    assert flaky[1]["attributes"]["wfe.step.outcome"] == "completed"
    assert all(s["attributes"]["wfe.workflow.id"] == wid for s in passes + steps)
    (resumed,) = [s for s in steps if s["links"]]
    assert resumed["links"] == [
        {
            "trace_id": format(webhook.get_span_context().trace_id, "032x"),
            "span_id": format(webhook.get_span_context().span_id, "016x"),
        }
    ]
    # the client's own spans: the request and the webhook, nothing of the worker's
    assert {s.name for s in exporter.get_finished_spans()} == {"POST /orders", "POST /webhook"}
    provider.shutdown()
