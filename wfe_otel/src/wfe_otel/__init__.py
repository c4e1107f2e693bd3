"""wfe-otel: OpenTelemetry traces and metrics, Prometheus /metrics and health checks."""
