"""``wfe worker``: run a host with the workflows of ``--app`` until Ctrl-C or SIGTERM,
printing what it does (tables, or JSON lines with ``--json``).

Stopping is :func:`wfe_core.shutdown.run_until_signalled`: the first signal stops the
worker, waiting for running steps (exit status 0); a second one forces the exit at
once, with one line on stderr and status 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

from wfe_core.cli.options import (
    FiniteFloatRange,
    Services,
    app_option,
    json_option,
    need_app,
    run,
    service_options,
    store_url,
    url_option,
)
from wfe_core.cli.session import open_worker
from wfe_core.errors import WfeError
from wfe_core.host import HostOptions
from wfe_core.logs import configure_logging
from wfe_core.models import LifecycleEvent, LifecycleEventType
from wfe_core.registry import redact_url, url_scheme
from wfe_core.shutdown import run_until_signalled

__all__ = ["worker"]


@click.command()
@app_option()
@url_option
@service_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1_000_000),
    default=None,
    help="Workflow passes run at once (HostOptions.max_concurrent_workflows).",
)
@click.option(
    "--poll-interval",
    type=FiniteFloatRange(min=0.01),
    default=None,
    help="Seconds between looks for due work (HostOptions.poll_interval).",
)
@click.option(
    "--stop-timeout",
    type=FiniteFloatRange(min=0),
    default=None,
    help="Seconds stopping waits for running steps (HostOptions.stop_timeout).",
)
@click.option(
    "--steps/--no-steps",
    default=True,
    show_default=True,
    help="Log every step, not only workflows.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Level of the log on stderr: wfe's records and your steps'.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    default="text",
    show_default=True,
    envvar="WFE_LOG_FORMAT",
    help="Log records as text or as one JSON object per line, each with its workflow_id, "
    "definition, step and pointer_id (json also prints the worker's own lines as --json). "
    "Env: WFE_LOG_FORMAT.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    envvar="WFE_METRICS_PORT",
    help="Serve /metrics (Prometheus), /healthz and /readyz on this port (0: any free "
    "port; the URL is printed). Needs wfe-otel. Env: WFE_METRICS_PORT.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    envvar="WFE_METRICS_HOST",
    help="Address the metrics server binds to. Env: WFE_METRICS_HOST.",
)
@click.option(
    "--otel",
    is_flag=True,
    default=False,
    envvar="WFE_OTEL",
    help="Trace passes and steps with OpenTelemetry, exporting as the OTEL_* environment "
    "says (OTEL_TRACES_EXPORTER=otlp|console|none, OTEL_EXPORTER_OTLP_ENDPOINT, "
    "OTEL_SERVICE_NAME). Needs wfe-otel. Env: WFE_OTEL=1.",
)
@json_option
def worker(
    app: str | None,
    url: str | None,
    services: Services,
    concurrency: int | None,
    poll_interval: float | None,
    stop_timeout: float | None,
    steps: bool,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
    otel: bool,
    as_json: bool,
) -> None:
    """Run a worker: a host running the workflows of --app until Ctrl-C or SIGTERM.

    --app module:attr names your workflows: a Workflow instance or class, a list of
    them, a function returning them, or a function register(host) (sync or async)
    that registers what it wants. Stopping waits for running steps, then exits 0.

    A second Ctrl-C or SIGTERM while it waits forces the exit: it stops at once with
    one line on stderr and exit status 128 + the signal's number (130 for Ctrl-C, 143
    for SIGTERM), as if killed by it. Steps still running are abandoned; as after a
    crash, they run again (on this or another worker) once their lock lease expires.
    """
    spec = need_app(app, "worker")
    store = store_url(url)
    fields: dict[str, Any] = {}
    if concurrency is not None:
        fields["max_concurrent_workflows"] = concurrency
    if poll_interval is not None:
        fields["poll_interval"] = poll_interval
    if stop_timeout is not None:
        fields["stop_timeout"] = stop_timeout
    _setup_logging(log_level, log_format.lower())
    log = _WorkerLog(as_json or log_format.lower() == "json", steps)
    try:
        options = HostOptions(**fields)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    run(_worker(store, spec, services, options, log, (metrics_port, metrics_host, otel)))


def _setup_logging(level: str, log_format: str) -> None:
    """Records of every logger to stderr (:func:`wfe_core.logs.configure_logging`):
    rich's text with the ids appended, or JSON lines."""
    if log_format == "json":
        configure_logging("json", level)
        return
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    configure_logging("text", level, handler=handler)


class _WorkerLog:
    """Prints what a worker does: lifecycle events, start and stop."""

    _WORDS = {
        LifecycleEventType.WORKFLOW_STARTED: ("started", "cyan"),
        LifecycleEventType.WORKFLOW_RESUMED: ("resumed", "cyan"),
        LifecycleEventType.WORKFLOW_SUSPENDED: ("suspended", "yellow"),
        LifecycleEventType.WORKFLOW_COMPLETED: ("completed", "green"),
        LifecycleEventType.WORKFLOW_TERMINATED: ("terminated", "red"),
        LifecycleEventType.WORKFLOW_ERROR: ("step failed", "red"),
        LifecycleEventType.STEP_STARTED: ("step started", "dim"),
        LifecycleEventType.STEP_COMPLETED: ("step done", "dim"),
    }

    def __init__(self, as_json: bool, steps: bool) -> None:
        self.as_json = as_json
        self.steps = steps
        self.console = Console(highlight=False, soft_wrap=True)

    def info(self, kind: str, message: str, **details: Any) -> None:
        if self.as_json:
            doc = {"event": kind, "time": datetime.now(UTC).isoformat(), **details}
            click.echo(json.dumps(doc, ensure_ascii=False))
        else:
            stamp = datetime.now().strftime("%H:%M:%S")
            self.console.print(f"[dim]{stamp}[/dim] [bold]{message}[/bold]")

    def handle(self, event: LifecycleEvent) -> None:
        step_event = event.type in (
            LifecycleEventType.STEP_STARTED,
            LifecycleEventType.STEP_COMPLETED,
        )
        if step_event and not self.steps:
            return
        if self.as_json:
            click.echo(
                json.dumps(
                    {
                        "event": event.type.value,
                        "time": event.event_time.isoformat(),
                        "workflow_id": event.workflow_id,
                        "definition": event.workflow_definition_id,
                        "version": event.version,
                        "reference": event.reference,
                        "step_id": event.step_id,
                        "step_name": event.step_name,
                        "pointer_id": event.execution_pointer_id,
                        "message": event.message,
                    },
                    ensure_ascii=False,
                )
            )
            return
        word, style = self._WORDS.get(event.type, (event.type.value, ""))
        stamp = event.event_time.astimezone().strftime("%H:%M:%S")
        what = f"{event.workflow_definition_id} v{event.version} {event.workflow_id}"
        if event.reference:
            what += f" ref={event.reference}"
        if step_event or event.type is LifecycleEventType.WORKFLOW_ERROR:
            what += f"  step {event.step_name or event.step_id}"
        if event.message:
            what += f": {event.message}"
        indent = "  " if step_event else ""
        self.console.print(
            f"[dim]{stamp}[/dim] {indent}[{style or 'default'}]{word:<12}"
            f"[/{style or 'default'}] {what}",
            markup=True,
        )


async def _worker(
    url: str,
    spec: str,
    services: Services,
    options: HostOptions,
    log: _WorkerLog,
    telemetry: tuple[int | None, str, bool] = (None, "127.0.0.1", False),
) -> None:
    host, definitions = await open_worker(url, spec, services, options)
    host.on_lifecycle_event(log.handle)
    running: list[bool] = []

    def started() -> None:
        running.append(True)
        names = [f"{d.id} v{d.version}" for d in definitions]
        if url_scheme(url) == "memory" and not log.as_json:
            log.console.print(
                "[yellow]note: a memory:// store lives in this process only; other wfe "
                "commands cannot reach it[/yellow]"
            )
        log.info(
            "worker_started",
            f"worker started on {redact_url(url)} with {', '.join(names)} (Ctrl-C to stop)",
            url=redact_url(url),
            pid=os.getpid(),
            workflows=[{"id": d.id, "version": d.version} for d in definitions],
        )

    def stopping(signal_name: str | None) -> None:
        log.info(
            "worker_stopping",
            f"{signal_name or 'stop'}: stopping, waiting for running steps (again to force)",
            signal=signal_name,
        )

    def forced(sig: signal.Signals) -> None:
        if log.as_json:
            status = 128 + sig.value
            log.info("worker_forced", f"{sig.name} again", signal=sig.name, exit_status=status)

    telemetry_scope = await _telemetry(host, *telemetry, log)
    try:
        await run_until_signalled(
            host, on_started=started, on_stopping=stopping, on_forced=forced, label="wfe worker"
        )
    except WfeError as exc:
        if running:
            raise
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise click.ClickException(f"cannot start the worker on {redact_url(url)}: {exc}") from exc
    finally:
        await telemetry_scope.aclose()
    log.info("worker_stopped", "worker stopped")


async def _telemetry(
    host: Any, metrics_port: int | None, metrics_host: str, otel: bool, log: _WorkerLog
) -> contextlib.AsyncExitStack:
    """``--metrics-port`` / ``--otel``: instrument ``host`` with wfe-otel (imported only
    then) and serve its metrics; close the returned stack to undo it."""
    stack = contextlib.AsyncExitStack()
    if metrics_port is None and not otel:
        return stack
    try:
        from wfe_otel.worker import worker_telemetry
    except ImportError as exc:
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise click.ClickException(
            f"--metrics-port and --otel need the wfe-otel package ({exc}): pip install wfe-otel"
        ) from exc
    try:
        server = await stack.enter_async_context(
            worker_telemetry(
                host, metrics_port=metrics_port, metrics_host=metrics_host, tracing=otel
            )
        )
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise click.ClickException(str(exc)) from exc
    if server is not None:
        log.info(
            "metrics_serving",
            f"metrics on {server.url}/metrics (health: {server.url}/healthz, /readyz)",
            url=server.url,
            port=server.port,
        )
    return stack
