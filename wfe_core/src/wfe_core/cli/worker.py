"""``wfe worker``: run a host with the workflows of ``--app`` until Ctrl-C or SIGTERM,
printing what it does (tables, or JSON lines with ``--json``).

Stopping is :func:`wfe_core.shutdown.run_until_signalled`: the first signal stops the
worker, waiting for running steps (exit status 0); a second one forces the exit at
once, with one line on stderr and status 128 + the signal's number.

Retention (``--purge-after 30d``): the worker deletes finished instances (``complete``
and ``terminated``, or those of ``--purge-status``) that ended longer ago than that, once
at start and then every ``--purge-every`` (default 1h), by the engine's clock, logging
each purge. Several workers doing it at once is harmless (a purge deletes what it
finds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

from wfe_core import clock
from wfe_core.capabilities import Capability
from wfe_core.cli.options import (
    FiniteFloatRange,
    Services,
    app_option,
    duration_param,
    json_option,
    need_app,
    run,
    service_options,
    store_url,
    url_option,
)
from wfe_core.cli.processes import WorkerCommand, child_commands, processes_option, run_processes
from wfe_core.cli.session import open_worker
from wfe_core.errors import WfeError
from wfe_core.host import HostOptions
from wfe_core.logs import configure_logging
from wfe_core.models import LifecycleEvent, LifecycleEventType, WorkflowStatus
from wfe_core.registry import redact_url, url_scheme
from wfe_core.shutdown import run_until_signalled

__all__ = ["worker"]

_FINISHED = {"complete": WorkflowStatus.COMPLETE, "terminated": WorkflowStatus.TERMINATED}


def _purge_statuses(
    ctx: click.Context, param: click.Parameter, value: str
) -> tuple[WorkflowStatus, ...]:
    """``--purge-status complete,terminated`` as statuses."""
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in _FINISHED]
    if unknown or not names:
        raise click.BadParameter(
            f"{value!r}: give finished statuses separated by commas, from "
            f"{', '.join(_FINISHED)} (e.g. complete,terminated)"
        )
    return tuple(dict.fromkeys(_FINISHED[name] for name in names))


@click.command(cls=WorkerCommand)
@app_option()
@url_option
@service_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1_000_000),
    default=None,
    envvar="WFE_CONCURRENCY",
    help="Workflow passes run at once (HostOptions.max_concurrent_workflows). "
    "Env: WFE_CONCURRENCY.",
)
@click.option(
    "--poll-interval",
    type=FiniteFloatRange(min=0.01),
    default=None,
    envvar="WFE_POLL_INTERVAL",
    help="Seconds between looks for due work (HostOptions.poll_interval). Env: WFE_POLL_INTERVAL.",
)
@click.option(
    "--stop-timeout",
    type=FiniteFloatRange(min=0),
    default=None,
    envvar="WFE_STOP_TIMEOUT",
    help="Seconds stopping waits for running steps (HostOptions.stop_timeout). "
    "Env: WFE_STOP_TIMEOUT.",
)
@click.option(
    "--steps/--no-steps",
    default=True,
    show_default=True,
    envvar="WFE_STEPS",
    help="Log every step, not only workflows. Env: WFE_STEPS=0|1.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    envvar="WFE_LOG_LEVEL",
    help="Level of the log on stderr: wfe's records and your steps'. Env: WFE_LOG_LEVEL.",
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
@click.option(
    "--purge-after",
    "purge_after",
    envvar="WFE_PURGE_AFTER",
    default=None,
    metavar="DURATION",
    callback=duration_param,
    help="Retention: delete finished instances that ended longer ago than this (e.g. "
    "30d), at start and then every --purge-every. Default: keep them.",
)
@click.option(
    "--purge-status",
    "purge_status",
    envvar="WFE_PURGE_STATUS",
    default="complete,terminated",
    show_default=True,
    callback=_purge_statuses,
    help="Which finished instances --purge-after deletes (comma-separated).",
)
@click.option(
    "--purge-every",
    "purge_every",
    envvar="WFE_PURGE_EVERY",
    default="1h",
    show_default=True,
    metavar="DURATION",
    callback=duration_param,
    help="How often --purge-after purges.",
)
@processes_option
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
    purge_after: timedelta | None,
    purge_status: tuple[WorkflowStatus, ...],
    purge_every: timedelta,
    processes: int,
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

    --purge-after 30d keeps the store small: finished instances that ended more than
    30 days ago are deleted at start and then every hour (--purge-every).

    --processes N runs N worker processes (one core each) under a supervisor that
    forwards Ctrl-C/SIGTERM to them and restarts one that dies.
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
    if purge_every.total_seconds() <= 0:
        raise click.BadParameter("must be longer than 0", param_hint="'--purge-every'")
    retention = None
    if purge_after is not None:
        retention = _Retention(purge_after, purge_status, purge_every)
    if processes > 1:
        if url_scheme(store) == "memory":
            raise click.UsageError("--processes needs a store the processes share, not memory://")
        commands = child_commands(click.get_current_context(), processes, metrics_port)
        raise click.exceptions.Exit(run_processes(commands, log.as_json))
    run(_worker(store, spec, services, options, log, (metrics_port, metrics_host, otel), retention))


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
    retention: _Retention | None = None,
) -> None:
    host, definitions = await open_worker(url, spec, services, options)
    host.on_lifecycle_event(log.handle)
    running: list[bool] = []
    purging: list[asyncio.Task[None]] = []
    if retention is not None and Capability.PURGE not in host.persistence.capabilities:
        with contextlib.suppress(Exception):
            await host.persistence.close()
        raise click.ClickException(
            f"--purge-after: the store at {redact_url(url)} "
            f"({type(host.persistence).__name__}) does not support purging (it does not "
            "declare the PURGE capability)"
        )

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
        if retention is not None:
            purging.append(asyncio.get_running_loop().create_task(retention.run(host, log)))

    def stopping(signal_name: str | None) -> None:
        for task in purging:  # before the host closes its store
            task.cancel()
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
        for task in purging:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await telemetry_scope.aclose()
    log.info("worker_stopped", "worker stopped")


class _Retention:
    """``--purge-after``: purge finished instances older than ``after`` now and then
    every ``every``, by the engine's clock (:mod:`wfe_core.clock`)."""

    def __init__(
        self, after: timedelta, statuses: tuple[WorkflowStatus, ...], every: timedelta
    ) -> None:
        self.after = after
        self.statuses = statuses
        self.every = every

    async def run(self, host: Any, log: _WorkerLog) -> None:
        """Purge, sleep, purge... until cancelled; a failed purge is logged and retried
        at the next round."""
        while True:
            await self.purge_once(host, log)
            await clock.sleep(self.every.total_seconds())

    async def purge_once(self, host: Any, log: _WorkerLog) -> None:
        """One round: every status in turn."""
        try:
            cutoff = clock.now() - self.after
        except OverflowError:
            return  # nothing ended before the year 1
        for status in self.statuses:
            try:
                count = await host.persistence.purge_workflows(status, cutoff)
            except WfeError as exc:
                logging.getLogger("wfe.worker").warning(
                    "retention: purging %s instances failed (retrying in %s): %s",
                    status.value,
                    self.every,
                    exc,
                )
                continue
            log.info(
                "workflows_purged",
                f"retention: purged {count} {status.value} workflow"
                f"{'s' if count != 1 else ''} that ended before {cutoff:%Y-%m-%d %H:%M:%S} UTC",
                status=status.value,
                purged=count,
                older_than=cutoff.isoformat(),
            )


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
