"""Three worker processes share one SQLite file with no other service.

First they run 300 event-driven workflows (a step, a wait for a published event, two
more steps): every step runs exactly once. Then one worker is killed with SIGKILL in the
middle of a step; the others finish its work once its lease has run out, nothing is
lost, and no step of a finished workflow runs again.

This file is also the workers' program: ``python test_multiprocess.py DB LOG_DIR NAME
MODULE``
hosts the two workflows below on the file until SIGTERM. Every step appends
``<workflow id> <step>`` to ``LOG_DIR/NAME.log`` when it runs, so the test can count how
often each step ran across all workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wfe_core import HostOptions, StepContext, Workflow, WorkflowBuilder, WorkflowHost

WORKERS = 3
ORDERS = 300
CRASHING = 6
APP = Path(__file__)

EVENT = "mp-go"
GATE = "gate"  # file in LOG_DIR: while it is missing, crash-slow steps wait


@dataclass
class MpData:
    """Workflow data: the key of the event an order waits for."""

    key: str = ""


def _log_dir() -> Path:
    return Path(os.environ["WFE_MP_LOG_DIR"])


def record(context: StepContext[MpData], step: str) -> None:
    """Append one line for this step run to this worker's log (one write, O_APPEND)."""
    line = f"{context.workflow.id} {step}\n".encode()
    fd = os.open(
        _log_dir() / f"{os.environ['WFE_MP_NAME']}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def order_one(context: StepContext[MpData]) -> None:
    record(context, "one")


async def order_two(context: StepContext[MpData]) -> None:
    record(context, "two")


async def order_three(context: StepContext[MpData]) -> None:
    record(context, "three")


class EventOrder(Workflow[MpData]):
    """one, then wait for the event ``mp-go`` with the order's key, then two and three."""

    id = "mp-event-order"
    version = 1
    data_type = MpData

    def build(self, builder: WorkflowBuilder[MpData]) -> None:
        builder.start_with(order_one).wait_for(EVENT, key=lambda data: data.key).then(
            order_two
        ).then(order_three)


async def crash_first(context: StepContext[MpData]) -> None:
    record(context, "first")


async def crash_slow(context: StepContext[MpData]) -> None:
    record(context, "slow-start")
    gate = _log_dir() / GATE
    while True:  # the test kills a worker while it waits here
        if gate.exists():
            break
        await asyncio.sleep(0.02)
    record(context, "slow-end")


async def crash_last(context: StepContext[MpData]) -> None:
    record(context, "last")


class Crashing(Workflow[MpData]):
    """first, then a slow step (waits for the gate file), then last."""

    id = "mp-crash"
    version = 1
    data_type = MpData

    def build(self, builder: WorkflowBuilder[MpData]) -> None:
        builder.start_with(crash_first).then(crash_slow).then(crash_last)


OPTIONS: dict[str, Any] = {
    "poll_interval": 0.2,
    "idle_time": 0.05,
    "lock_ttl": 2.0,
    "error_retry_interval": 0.2,
    "stop_timeout": 2.0,
}


def make_host(db: str) -> WorkflowHost:
    """A host on the SQLite file with both workflows registered."""
    host = WorkflowHost.from_url(f"sqlite:///{db}", options=HostOptions(**OPTIONS))
    host.register_workflow(EventOrder())
    host.register_workflow(Crashing())
    return host


async def serve(db: str) -> None:
    """Run a worker until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with make_host(db):
        (_log_dir() / f"{os.environ['WFE_MP_NAME']}.ready").touch()
        await stop.wait()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def count(db: Path, sql: str, *args: object) -> int:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return int(conn.execute(sql, args).fetchone()[0])
    finally:
        conn.close()


def step_runs(logs: Path) -> Counter[tuple[str, str]]:
    """How often each (workflow id, step) ran, over every worker's log."""
    runs: Counter[tuple[str, str]] = Counter()
    for log in logs.glob("*.log"):
        for line in log.read_text().splitlines():
            workflow_id, step = line.split(" ")
            runs[(workflow_id, step)] += 1
    return runs


def runs_by_worker(logs: Path, step: str) -> dict[str, set[str]]:
    """The workflows each worker ran ``step`` of."""
    out: dict[str, set[str]] = {}
    for log in logs.glob("*.log"):
        out[log.stem] = {
            line.split(" ")[0] for line in log.read_text().splitlines() if line.endswith(step)
        }
    return out


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, subprocess.Popen[bytes]]]]:
    db = tmp_path / "shared.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    errors = {f"w{n}": (logs / f"w{n}.err").open("wb") for n in range(WORKERS)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(APP), str(db), str(logs), name, MpData.__module__],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        for name, err in errors.items()
    }
    try:
        wait_until(
            lambda: (
                all((logs / f"{name}.ready").exists() for name in procs)
                or any(p.poll() is not None for p in procs.values())
            ),
            60,
            "the workers to start",
        )
        for name, proc in procs.items():
            assert proc.poll() is None, (logs / f"{name}.err").read_text()
        yield db, logs, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for err in errors.values():
            err.close()


def client(db: Path, action: Callable[[WorkflowHost], Awaitable[None]]) -> None:
    """Run ``await action(host)`` on a host that is not started: it only starts
    workflows and publishes events; the workers do the work."""

    async def main() -> None:
        host = make_host(str(db))
        try:
            await action(host)
        finally:
            await host.persistence.close()

    asyncio.run(main())


@pytest.mark.slow
def test_three_workers_share_one_file_and_survive_a_kill(
    workers: tuple[Path, Path, dict[str, subprocess.Popen[bytes]]],
) -> None:
    """Every step runs exactly once across three processes; a killed worker's work is
    finished by the others after its lease runs out; finished workflows never rerun."""
    db, logs, procs = workers
    keys = [f"order-{n}" for n in range(ORDERS)]
    ids: list[str] = []

    async def start_orders(host: WorkflowHost) -> None:
        for key in keys:
            ids.append(await host.start_workflow(EventOrder.id, MpData(key)))

    client(db, start_orders)
    wait_until(
        lambda: (
            count(db, "SELECT COUNT(*) FROM wfe_subscriptions WHERE event_name = ?", EVENT)
            == ORDERS
        ),
        120,
        f"{ORDERS} workflows waiting for their event",
    )

    async def publish(host: WorkflowHost) -> None:
        for key in keys:
            await host.publish_event(EVENT, key, {"paid": True})

    client(db, publish)
    finished = "SELECT COUNT(*) FROM wfe_workflows WHERE workflow_definition_id = ? AND status = ?"
    wait_until(
        lambda: count(db, finished, EventOrder.id, "complete") == ORDERS,
        120,
        f"{ORDERS} workflows to complete",
    )
    runs = step_runs(logs)
    for workflow_id in ids:
        for step in ("one", "two", "three"):
            assert runs[(workflow_id, step)] == 1, (workflow_id, step, runs[(workflow_id, step)])
    assert sum(runs.values()) == 3 * ORDERS
    busy = [name for name, done in runs_by_worker(logs, "one").items() if done]
    assert len(busy) >= 2, f"the work was not shared between workers: {busy}"
    assert count(db, "SELECT COUNT(*) FROM wfe_subscriptions") == 0

    # --- kill a worker in the middle of a step ----------------------------------------
    crash_ids: list[str] = []

    async def start_crashing(host: WorkflowHost) -> None:
        for n in range(CRASHING):
            crash_ids.append(await host.start_workflow(Crashing.id, MpData(f"c{n}")))

    client(db, start_crashing)

    def victim() -> str | None:
        for name, started in runs_by_worker(logs, "slow-start").items():
            if started & set(crash_ids) and name in procs:
                return name
        return None

    wait_until(lambda: victim() is not None, 60, "a worker to be inside the slow step")
    killed = victim()
    assert killed is not None
    held = runs_by_worker(logs, "slow-start")[killed] & set(crash_ids)
    procs[killed].send_signal(signal.SIGKILL)
    procs[killed].wait(timeout=10)
    (logs / GATE).touch()  # from now on the slow step completes
    wait_until(
        lambda: count(db, finished, Crashing.id, "complete") == CRASHING,
        120,
        "the crashing workflows to complete on the surviving workers",
    )
    runs = step_runs(logs)
    survivors_ran = runs_by_worker(logs, "slow-end")
    for workflow_id in crash_ids:
        assert runs[(workflow_id, "last")] == 1, workflow_id
        assert runs[(workflow_id, "slow-end")] == 1, workflow_id
    for workflow_id in held:  # the killed worker's steps were run again by a survivor
        assert runs[(workflow_id, "slow-start")] >= 2, workflow_id
        assert workflow_id not in survivors_ran.get(killed, set())
    # nothing of the finished workflows ran again
    for workflow_id in ids:
        for step in ("one", "two", "three"):
            assert runs[(workflow_id, step)] == 1, (workflow_id, step)
    assert count(db, "SELECT COUNT(*) FROM wfe_workflows WHERE status != 'complete'") == 0


if __name__ == "__main__":
    # Load this file again under the module name the test process gave it, so stored
    # type tags (module.Class) match in every process.
    import importlib.util

    db_path, log_dir, name, module_name = sys.argv[1:5]
    os.environ["WFE_MP_LOG_DIR"] = log_dir
    os.environ["WFE_MP_NAME"] = name
    spec = importlib.util.spec_from_file_location(module_name, __file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    asyncio.run(module.serve(db_path))
