"""wfe-otel: OpenTelemetry traces and metrics, Prometheus /metrics and health checks.

* :func:`instrument` -- spans per pass and step, trace context stored with every
  started workflow and published event, metrics (see the README);
* :func:`serve_metrics` -- ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``;
* ``wfe worker --metrics-port N --otel`` uses :mod:`wfe_otel.worker`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from wfe_otel.instrumentation import SCOPE, WfeInstrumentation, instrument
from wfe_otel.metrics import BACKLOG_LIMIT, WfeMetrics
from wfe_otel.server import MetricsServer, health_app, readiness, serve_metrics

__all__ = [
    "BACKLOG_LIMIT",
    "SCOPE",
    "MetricsServer",
    "WfeInstrumentation",
    "WfeMetrics",
    "__version__",
    "health_app",
    "instrument",
    "readiness",
    "serve_metrics",
]
