"""Workflows the wfe_otel tests run, in this process and in worker subprocesses
(``wfe worker --app wfe_otel_testapp:workflows`` with this directory as the cwd), and
the traced worker of the two-process test (``python wfe_otel_testapp.py DB OUT ID``)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from wfe_core import ErrorBehavior, HostOptions, StepContext, Workflow, WorkflowBuilder

Data = dict[str, Any]
FAST = HostOptions(poll_interval=0.05, idle_time=0.01, error_retry_interval=0.01)
_failed: set[str] = set()


class Greet(Workflow[Data]):
    """Two steps."""

    id = "otel-greet"
    data_type = dict

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        def hello(context: StepContext[Data]) -> None:
            context.workflow.data["hello"] = True

        async def bye(context: StepContext[Data]) -> None:
            context.workflow.data["bye"] = True

        builder.start_with(hello).name("hello").then(bye).name("bye")


class Traced(Workflow[Data]):
    """A step, a wait for the event ``go`` (key: data["key"]), a step that fails once
    (retried), a last step."""

    id = "otel-traced"
    data_type = dict

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        def first(context: StepContext[Data]) -> None:
            context.workflow.data["first"] = True

        def flaky(context: StepContext[Data]) -> None:
            if context.workflow.id not in _failed:
                _failed.add(context.workflow.id)
                raise RuntimeError("first try fails")

        def last(context: StepContext[Data]) -> None:
            context.workflow.data["last"] = True

        (
            builder.start_with(first)
            .name("first")
            .wait_for("go", key=lambda data: data["key"])
            .name("wait-go")
            .then(flaky)
            .name("flaky")
            .on_error(ErrorBehavior.RETRY, timedelta(milliseconds=10))
            .then(last)
            .name("last")
        )


class Doomed(Workflow[Data]):
    """A step that always fails and terminates the workflow."""

    id = "otel-doomed"
    data_type = dict

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        def boom(context: StepContext[Data]) -> None:
            raise ValueError("boom")

        builder.start_with(boom).name("boom").on_error(ErrorBehavior.TERMINATE)


workflows = [Greet, Traced, Doomed]


def span_record(span: Any) -> dict[str, Any]:
    """What the tests read of a finished SDK span, as JSON-able data."""
    ctx = span.get_span_context()
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [e.name for e in span.events],
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in span.links
        ],
    }


async def _run_traced_worker(db: str, workflow_id: str) -> dict[str, Any]:
    """Run a traced host on ``db`` until ``workflow_id`` ends; return its status and
    spans."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import wfe_otel
    from wfe_core import WorkflowHost

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    host = WorkflowHost.from_url(f"sqlite:///{db}", options=FAST)
    for wf in workflows:
        host.register_workflow(wf())
    wfe_otel.instrument(host, tracer_provider=provider)
    async with host:
        ended = await host.wait_for_workflow(workflow_id, 60)
    spans = [span_record(s) for s in exporter.get_finished_spans()]
    provider.shutdown()
    return {"status": ended.status.value, "spans": spans}


if __name__ == "__main__":
    found = asyncio.run(_run_traced_worker(sys.argv[1], sys.argv[3]))
    Path(sys.argv[2]).write_text(json.dumps(found))
