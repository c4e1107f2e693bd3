"""The metrics of :class:`~wfe_otel.WfeInstrumentation`, made with the OpenTelemetry
metrics API (names and labels are listed in the README).

The observable gauges and counters read the store at most once every
``refresh_interval`` seconds: a collection (a Prometheus scrape, a periodic exporter)
reports the value cached by the last refresh and, when it is older than that, starts
a refresh on the host's event loop in the background -- a collection never waits for
the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from wfe_core.models import WorkflowStatus, utcnow

__all__ = ["BACKLOG_LIMIT", "Tally", "WfeMetrics"]

log = logging.getLogger("wfe_otel")

BACKLOG_LIMIT = 10_000
"""The due-workflow and due-event gauges count at most this many (a cheap capped read)."""

_DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class Tally:
    """A monotonic counter kept in the process and reported by an observable counter.

    Adding is a dictionary update (no SDK call on the engine's path); a collection (a
    Prometheus scrape, a periodic export, from any thread) reports a copy of the totals
    by label set. Labels are given as a tuple of ``(name, value)`` pairs.
    """

    __slots__ = ("totals",)

    def __init__(self) -> None:
        self.totals: dict[tuple[tuple[str, str], ...], int] = {}
        """The running totals by label set."""

    def add(self, amount: int, labels: tuple[tuple[str, str], ...]) -> None:
        """Count ``amount`` more under ``labels``."""
        totals = self.totals
        totals[labels] = totals.get(labels, 0) + amount

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        """The totals, for the observable counter's callback (a copy is taken under the
        GIL in one step, so a concurrent add cannot break the iteration)."""
        return [Observation(v, dict(k)) for k, v in self.totals.copy().items()]


class WfeMetrics:
    """The instruments, and the cached store readings behind the gauges."""

    def __init__(self, meter: Meter, host: Any, refresh_interval: float) -> None:
        self.host = host
        self.refresh_interval = refresh_interval
        self.loop: asyncio.AbstractEventLoop | None = None
        """The host's event loop (noted by the first pass or :meth:`refresh`); gauge
        refreshes run on it."""
        self._readings: dict[str, int] = {}
        self._read_at = float("-inf")
        self._refreshing = False
        self.started = self._tally(
            meter, "wfe.workflows.started", "{workflow}", "Workflows started."
        )
        self.completed = self._tally(
            meter, "wfe.workflows.completed", "{workflow}", "Workflows completed."
        )
        self.terminated = self._tally(
            meter,
            "wfe.workflows.terminated",
            "{workflow}",
            "Workflows terminated (by a request or by the engine).",
        )
        self.failed = self._tally(
            meter,
            "wfe.workflows.failed",
            "{workflow}",
            "Workflows the engine terminated during a pass (a failed step's "
            "error policy, exhausted retries, the execution timeout).",
        )
        self.workflow_duration = meter.create_histogram(
            "wfe.workflow.duration",
            unit="s",
            description="From start to end of the workflows that ended.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.step_duration = meter.create_histogram(
            "wfe.step.duration",
            unit="s",
            description="How long a step run took, by outcome.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.step_retries = self._tally(
            meter, "wfe.step.retries", "{retry}", "Failed step runs that will be retried."
        )
        self.event_latency = meter.create_histogram(
            "wfe.event.delivery_latency",
            unit="s",
            description="From an event's time (its publication) to the step it resumed.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.leases_lost = self._tally(
            meter,
            "wfe.lease.lost",
            "{pass}",
            "Passes stopped because this host lost its claim (another host "
            "may take the workflow over).",
        )
        self.leases_taken_over = self._tally(
            meter,
            "wfe.lease.takeovers",
            "{workflow}",
            "Claims this host took over from another holder whose lease had expired "
            "(that process died or hung mid-run).",
        )
        meter.create_observable_gauge(
            "wfe.workflows.runnable",
            callbacks=[self._gauge("runnable")],
            unit="{workflow}",
            description="Unfinished, unsuspended workflows (running, sleeping, waiting).",
        )
        meter.create_observable_gauge(
            "wfe.workflows.suspended",
            callbacks=[self._gauge("suspended")],
            unit="{workflow}",
            description="Suspended workflows.",
        )
        meter.create_observable_gauge(
            "wfe.workflows.due",
            callbacks=[self._gauge("due")],
            unit="{workflow}",
            description=f"Runnable backlog: workflows due to run now (at most {BACKLOG_LIMIT}).",
        )
        meter.create_observable_gauge(
            "wfe.events.due",
            callbacks=[self._gauge("events_due")],
            unit="{event}",
            description=f"Events due for delivery now (at most {BACKLOG_LIMIT}).",
        )
        meter.create_observable_counter(
            "wfe.store.group_commit.groups",
            callbacks=[self._group_commit("groups")],
            unit="{transaction}",
            description="Write transactions of the store's group commit (SQL stores).",
        )
        meter.create_observable_counter(
            "wfe.store.group_commit.batches",
            callbacks=[self._group_commit("batches")],
            unit="{batch}",
            description="Write batches committed in those transactions (batches / groups "
            "is the mean group size).",
        )

    @staticmethod
    def _tally(meter: Meter, name: str, unit: str, description: str) -> Tally:
        tally = Tally()
        meter.create_observable_counter(
            name, callbacks=[tally.observe], unit=unit, description=description
        )
        return tally

    # ------------------------------------------------------------------ store readings
    def _gauge(self, name: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            self._maybe_refresh()
            value = self._readings.get(name)
            return [] if value is None else [Observation(value)]

        return callback

    def _group_commit(self, name: str) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            driver = getattr(self.host.persistence, "driver", None)
            commit = getattr(driver, "group_commit", None)
            value = getattr(commit, name, None)
            return [Observation(value)] if isinstance(value, int) else []

        return callback

    def _maybe_refresh(self) -> None:
        """Start a refresh on the host's loop when the readings are stale (from any
        thread; never waits)."""
        loop = self.loop
        if (
            loop is None
            or loop.is_closed()
            or self._refreshing
            or time.monotonic() - self._read_at < self.refresh_interval
        ):
            return
        self._refreshing = True
        try:
            asyncio.run_coroutine_threadsafe(self.refresh(), loop)
        except RuntimeError:  # the loop is closing
            self._refreshing = False

    async def refresh(self) -> None:
        """Read the gauges' values from the store now (a failure keeps the old ones)."""
        self.loop = asyncio.get_running_loop()
        self._refreshing = True
        try:
            persistence = self.host.persistence
            now = utcnow()
            readings = {
                "runnable": await persistence.count_workflows(status=WorkflowStatus.RUNNABLE),
                "suspended": await persistence.count_workflows(status=WorkflowStatus.SUSPENDED),
                "due": len(await persistence.get_runnable_instances(now, BACKLOG_LIMIT)),
                "events_due": len(await persistence.get_runnable_events(now, BACKLOG_LIMIT)),
            }
            self._readings = readings
        except Exception as exc:
            log.debug("reading the workflow gauges failed: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                self._read_at = time.monotonic()
            self._refreshing = False
