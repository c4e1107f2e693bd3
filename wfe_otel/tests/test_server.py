"""``/metrics``, ``/healthz`` and ``/readyz``: :func:`wfe_otel.serve_metrics` in this
process, and ``wfe worker --metrics-port`` as a subprocess scraped over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from wfe_otel_testapp import FAST, Doomed, Greet, Traced

import wfe_otel
from wfe_core import WorkflowClient, WorkflowHost, WorkflowStatus

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` in a
    Prometheus text exposition (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{(.*)\}})? (\S+)$", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if labels.items() <= found.items():
            total += float(match.group(3))
    return total


async def test_serve_metrics_health_and_readiness(tmp_path: Path) -> None:
    """Metrics of a running host; /healthz always 200; /readyz 503 before the host runs
    and once its store is unreachable, 200 while it runs."""
    url = f"sqlite:///{tmp_path / 'served.db'}"
    host = WorkflowHost.from_url(url, options=FAST)
    for wf in (Greet, Traced, Doomed):
        host.register_workflow(wf())
    server = await wfe_otel.serve_metrics(host, 0)
    try:
        assert isinstance(host.instrumentation, wfe_otel.WfeInstrumentation)
        assert server.port > 0
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            before = await http.get("/readyz")
            assert before.status_code == 503
            assert "not running" in before.json()["reasons"][0]
            await host.start()
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
            ids = [await host.start_workflow(Greet.id, {}) for _ in range(3)]
            ids.append(await host.start_workflow(Doomed.id, {}))
            for wid in ids:
                await host.wait_for_workflow(wid, 20)

            async def counted() -> bool:
                text = (await http.get("/metrics")).text
                return _value(text, "wfe_workflows_completed_total", definition=Greet.id) == 3

            await _until(counted)
            metrics = await http.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            text = metrics.text
            assert _value(text, "wfe_workflows_started_total", definition=Greet.id) == 3
            assert _value(text, "wfe_workflows_failed_total", definition=Doomed.id) == 1
            assert _value(text, "wfe_workflows_terminated_total", definition=Doomed.id) == 1
            assert _value(text, "wfe_step_duration_seconds_count", outcome="completed") == 6
            assert _value(text, "wfe_step_duration_seconds_count", outcome="failed") == 1
            assert _value(text, "wfe_store_group_commit_groups_total") >= 1
            # the store goes away: not ready, still live
            await host.persistence.close()
            gone = await http.get("/readyz")
            assert gone.status_code == 503
            assert any("store" in r for r in gone.json()["reasons"])
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.stop()
        await host.stop()
    assert host.instrumentation is None  # the server's own instrumentation is undone


async def test_the_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    async with WorkflowClient.from_url(f"sqlite:///{tmp_path / 'busy.db'}") as client:
        first = await wfe_otel.serve_metrics(client, 0)
        try:
            with pytest.raises(OSError, match=r"cannot serve metrics on 127\.0\.0\.1"):
                await wfe_otel.serve_metrics(WorkflowClient(client.persistence), first.port)
            async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 200  # a client: store only
        finally:
            await first.stop()


# ---------------------------------------------------------------- wfe worker subprocess


class _Worker:
    """``wfe worker --metrics-port 0 --json`` running in a subprocess."""

    def __init__(self, db: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("WFE_METRICS_PORT", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wfe_core.cli",
                "worker",
                "--app",
                "wfe_otel_testapp:workflows",
                "--url",
                f"sqlite:///{db}",
                "--poll-interval",
                "0.05",
                "--metrics-port",
                "0",
                "--json",
                *extra,
            ],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.printed: list[str] = []
        self._stderr: str | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """The first JSON line of ``event`` on stdout (bounded wait)."""
        for doc in self.lines:
            if doc.get("event") == event:
                return doc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line is None:
                break
            self.printed.append(line)
            if line.startswith('{"event"'):
                doc = json.loads(line)
                self.lines.append(doc)
                if doc.get("event") == event:
                    return doc
        self.stop()
        raise AssertionError(f"no {event} line; stderr: {self.stderr()}")

    def output(self) -> str:
        """Everything printed on stdout (after the process ended)."""
        self._reader.join(30)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.printed.append(line)
        return "".join(self.printed)

    def stderr(self) -> str:
        """stderr (once the process ended)."""
        if self.proc.poll() is None:
            return "(running)"
        if self._stderr is None:
            assert self.proc.stderr is not None
            self._stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        return self._stderr

    def stop(self) -> int:
        """SIGTERM (then kill after 30 s); the exit status. Closes the pipes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        status = self.proc.wait(30)
        self.stderr()
        self._reader.join(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return status


@pytest.fixture
def worker_db(tmp_path: Path) -> Path:
    return tmp_path / "worker.db"


async def test_wfe_worker_metrics_port_serves_metrics_and_health(worker_db: Path) -> None:
    worker = _Worker(worker_db)
    try:
        serving = worker.wait_for("metrics_serving")
        worker.wait_for("worker_started")
        base = serving["url"]
        assert base.startswith("http://127.0.0.1:")
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            WorkflowClient.from_url(f"sqlite:///{worker_db}") as client,
        ):
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
            client.register_workflow(Greet())
            first = await client.start_workflow(Greet.id, {})
            assert (await client.wait_for_workflow(first, 30)).status is WorkflowStatus.COMPLETE

            async def completed(n: int) -> bool:
                text = (await http.get("/metrics")).text
                return _value(text, "wfe_workflows_completed_total", definition=Greet.id) == n

            await _until(lambda: completed(1))
            text = (await http.get("/metrics")).text
            assert _value(text, "wfe_step_duration_seconds_count", definition=Greet.id) == 2
            # more work: the counters increase
            more = [await client.start_workflow(Greet.id, {}) for _ in range(4)]
            for wid in more:
                await client.wait_for_workflow(wid, 30)
            await _until(lambda: completed(5))
            text = (await http.get("/metrics")).text
            assert _value(text, "wfe_step_duration_seconds_count", definition=Greet.id) == 10

            async def no_backlog() -> bool:  # the gauge is read from the store
                text = (await http.get("/metrics")).text
                return (
                    "wfe_workflows_runnable" in text and _value(text, "wfe_workflows_runnable") == 0
                )

            await _until(no_backlog)
    finally:
        assert worker.stop() == 0, worker.stderr()
    stopped = worker.wait_for("worker_stopped")
    assert stopped["event"] == "worker_stopped"


async def test_wfe_worker_otel_flag_traces_with_the_console_exporter(worker_db: Path) -> None:
    """--otel with OTEL_TRACES_EXPORTER=console: the worker prints its spans."""
    os.environ["OTEL_TRACES_EXPORTER"] = "console"
    try:
        worker = _Worker(worker_db, "--otel")
    finally:
        del os.environ["OTEL_TRACES_EXPORTER"]
    try:
        worker.wait_for("worker_started")
        async with WorkflowClient.from_url(f"sqlite:///{worker_db}") as client:
            client.register_workflow(Greet())
            wid = await client.start_workflow(Greet.id, {})
            assert (await client.wait_for_workflow(wid, 30)).status is WorkflowStatus.COMPLETE
    finally:
        assert worker.stop() == 0, worker.stderr()
    printed = worker.output()
    assert f'"name": "wfe.pass {Greet.id}"' in printed
    assert f'"wfe.workflow.id": "{wid}"' in printed
