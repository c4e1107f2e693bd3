"""What ``wfe worker --metrics-port N --otel`` uses: tracing configured from the
standard ``OTEL_*`` environment variables, and the instrumentation plus the metrics
server around a worker's host (:func:`worker_telemetry`).

Tracing (``--otel``): an SDK :class:`~opentelemetry.sdk.trace.TracerProvider` made the
global one, its resource from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``, its
exporter from ``OTEL_TRACES_EXPORTER``: ``otlp`` (the default when the
``opentelemetry-exporter-otlp`` package is installed; configured by the
``OTEL_EXPORTER_OTLP_*`` variables), ``console`` (spans as JSON on stdout) or ``none``
(the default without that package: spans are made and the trace context still flows
through workflows and events, but nothing is exported).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from wfe_otel.instrumentation import instrument
from wfe_otel.server import MetricsServer, serve_metrics

__all__ = ["configure_tracing", "worker_telemetry"]


def _otlp_exporter() -> SpanExporter | None:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
    except ImportError:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            return None
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter


def configure_tracing() -> TracerProvider:
    """Make an SDK tracer provider configured from the ``OTEL_*`` environment (see the
    module) the global one, and return it (shut it down at exit to flush spans)."""
    provider = TracerProvider(resource=Resource.create())
    wanted = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    exporter: SpanExporter | None = None
    if wanted == "console":
        exporter = ConsoleSpanExporter()
    elif wanted in ("", "otlp"):
        exporter = _otlp_exporter()
        if exporter is None and wanted == "otlp":
            raise RuntimeError(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: "
                "pip install opentelemetry-exporter-otlp"
            )
    elif wanted != "none":
        raise RuntimeError(
            f"OTEL_TRACES_EXPORTER={wanted!r} is not supported by wfe worker --otel; use "
            "otlp, console or none"
        )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


@asynccontextmanager
async def worker_telemetry(
    host: Any,
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    tracing: bool = False,
) -> AsyncIterator[MetricsServer | None]:
    """Inside: ``host`` instrumented (traces with :func:`configure_tracing` when
    ``tracing``) and, with ``metrics_port``, ``/metrics``, ``/healthz`` and ``/readyz``
    served on ``metrics_host:metrics_port`` (the server is yielded; None without a
    port). Everything is undone and spans flushed on the way out."""
    provider = configure_tracing() if tracing else None
    server: MetricsServer | None = None
    made = None
    try:
        if metrics_port is not None:
            server = await serve_metrics(host, metrics_port, metrics_host, tracer_provider=provider)
        else:
            made = instrument(host, tracer_provider=provider)
        yield server
    finally:
        if server is not None:
            await server.stop()
        if made is not None:
            made.close()
        if provider is not None:
            provider.shutdown()
