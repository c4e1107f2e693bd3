"""Many worker processes on one store: ``MultiHostTests``.

An opt-in suite for stores that several processes share (SQLite files, PostgreSQL,
with their own or Redis locks and queues). Override ``store_url`` (and ``lock_url`` /
``queue_url`` to take those from another service); set ``workers`` and
``workflows`` on the class. It checks, across real OS processes:

* every step of every workflow runs exactly once and every published event is
  delivered exactly once (each workflow waits for its own event);
* a worker killed with SIGKILL in the middle of a step loses nothing: the others
  finish its work once its lease ran out, and no step of a finished workflow runs
  again.

This module is also the worker program::

    python -m wfe_conformance.multihost URL LOG_DIR NAME [--lock-url U] [--queue-url U]

Each step appends ``<workflow id> <step> [<event data>]`` to ``LOG_DIR/NAME.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wfe_conformance.base import SuiteBase
from wfe_core import (
    HostOptions,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
    register_type,
)

__all__ = ["MultiHostTests"]

EVENT = "mh-go"
GATE = "gate"  # a file in the log folder: while it is missing, slow steps wait


@dataclass
class MultiHostData:
    """Workflow data: the key of the event the workflow waits for, and since when."""

    key: str = ""
    since: datetime | None = None
    paid: Any = None


register_type(MultiHostData)


def _record(context: StepContext[MultiHostData], step: str, extra: str = "") -> None:
    """Append one line for this step run to this worker's log (a single O_APPEND write)."""
    line = f"{context.workflow.id} {step}{' ' + extra if extra else ''}\n".encode()
    path = Path(os.environ["WFE_MH_LOG_DIR"]) / f"{os.environ['WFE_MH_NAME']}.log"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def _one(context: StepContext[MultiHostData]) -> None:
    _record(context, "one")


async def _two(context: StepContext[MultiHostData]) -> None:
    _record(context, "two", str(context.data.paid))


async def _three(context: StepContext[MultiHostData]) -> None:
    _record(context, "three")


class EventOrder(Workflow[MultiHostData]):
    """one → wait for ``mh-go`` with the workflow's key → two (records the event) → three."""

    id = "mh-event-order"
    version = 1
    data_type = MultiHostData

    def build(self, builder: WorkflowBuilder[MultiHostData]) -> None:
        (
            builder.start_with(_one)
            .wait_for(EVENT, key=lambda d: d.key, effective_date=lambda d: d.since)
            .output(paid=lambda step: step.event_data)
            .then(_two)
            .then(_three)
        )


async def _slow(context: StepContext[MultiHostData]) -> None:
    _record(context, "slow-start")
    gate = Path(os.environ["WFE_MH_LOG_DIR"]) / GATE
    while not gate.exists():  # noqa: ASYNC110 - another process creates the file
        await asyncio.sleep(0.02)
    _record(context, "slow-end")


async def _last(context: StepContext[MultiHostData]) -> None:
    _record(context, "last")


class Crashing(Workflow[MultiHostData]):
    """one → a slow step that waits for the gate file → last."""

    id = "mh-crash"
    version = 1
    data_type = MultiHostData

    def build(self, builder: WorkflowBuilder[MultiHostData]) -> None:
        builder.start_with(_one).then(_slow).then(_last)


def make_host(url: str, lock_url: str | None, queue_url: str | None, lease: float) -> WorkflowHost:
    """A host on ``url`` with both workflows registered."""
    options = HostOptions(
        poll_interval=0.25,
        idle_time=0.05,
        lock_ttl=lease,
        error_retry_interval=0.2,
        stop_timeout=2.0,
        max_concurrent_workflows=64,
    )
    host = WorkflowHost.from_url(url, lock_url=lock_url, queue_url=queue_url, options=options)
    host.register_workflow(EventOrder())
    host.register_workflow(Crashing())
    return host


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with make_host(args.url, args.lock_url, args.queue_url, args.lease):
        (Path(args.log_dir) / f"{args.name}.ready").touch()
        await stop.wait()


def _wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _runs(logs: Path) -> tuple[Counter[tuple[str, str]], dict[str, list[str]]]:
    """How often each (workflow, step) ran, and the event data step two saw."""
    runs: Counter[tuple[str, str]] = Counter()
    paid: dict[str, list[str]] = {}
    for log in logs.glob("*.log"):
        for line in log.read_text().splitlines():
            parts = line.split(" ", 2)
            runs[(parts[0], parts[1])] += 1
            if parts[1] == "two":
                paid.setdefault(parts[0], []).append(parts[2] if len(parts) > 2 else "")
    return runs, paid


_LOST = ("claim was not renewed in time", "lost the claim", "claim was lost")


def _claims_lost(logs: Path) -> set[str]:
    """The workflows whose claim a worker logged as lost (not renewed within its lease:
    a host starved for longer than the lease on a loaded machine). Read from the
    workers' stderr, where the host's warnings go."""
    lost: set[str] = set()
    for err in logs.glob("*.err"):
        for line in err.read_text(errors="replace").splitlines():
            if any(marker in line for marker in _LOST):
                words = line.replace(",", " ").replace(":", " ").replace(";", " ").split()
                lost.update(w for w in words if len(w) == 36 and w.count("-") == 4)
    return lost


def _by_worker(logs: Path, step: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for log in logs.glob("*.log"):
        out[log.stem] = {
            line.split(" ")[0]
            for line in log.read_text().splitlines()
            if line.split(" ")[1] == step
        }
    return out


class MultiHostTests(SuiteBase):
    """Several worker processes on one store: exactly-once steps and event delivery,
    and recovery from a worker killed mid-step."""

    workers = 3
    """How many worker processes share the store."""
    workflows = 300
    """How many event-driven workflows they run."""
    crashing = 6
    """How many workflows run the slow step a worker is killed in."""
    lease = 4.0
    """The workflow lock's lease in seconds (how long a killed worker's work waits)."""
    timeout = 180.0
    """Bound on each wait of the test."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        """The URL of a fresh, empty store every worker process can open: override."""
        raise NotImplementedError("override `store_url` with the URL of a fresh shared store")

    @pytest.fixture
    def lock_url(self) -> str | None:
        """A URL to take the lock provider from (default: the store's own)."""
        return None

    @pytest.fixture
    def queue_url(self) -> str | None:
        """A URL to take the queue provider from (default: the store's own)."""
        return None

    @pytest.fixture
    def cluster(
        self, tmp_path: Path, store_url: str, lock_url: str | None, queue_url: str | None
    ) -> Iterator[tuple[Path, dict[str, subprocess.Popen[bytes]]]]:
        """Start the worker processes; stop them (SIGTERM, then SIGKILL) afterwards."""
        logs = tmp_path / "mh-logs"
        logs.mkdir()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        extra: list[str] = []
        if lock_url:
            extra += ["--lock-url", lock_url]
        if queue_url:
            extra += ["--queue-url", queue_url]
        errors = {f"w{n}": (logs / f"w{n}.err").open("wb") for n in range(self.workers)}
        procs = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wfe_conformance.multihost",
                    store_url,
                    str(logs),
                    name,
                    "--lease",
                    str(self.lease),
                    *extra,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            for name, err in errors.items()
        }
        try:
            _wait_until(
                lambda: (
                    all((logs / f"{n}.ready").exists() for n in procs)
                    or any(p.poll() is not None for p in procs.values())
                ),
                60,
                "the workers to start",
            )
            for name, proc in procs.items():
                assert proc.poll() is None, (logs / f"{name}.err").read_text()
            yield logs, procs
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

    def _client(self, store_url: str, action: Callable[[WorkflowHost], Awaitable[None]]) -> None:
        """Run ``await action(host)`` on a host that is not started (a client)."""

        async def main() -> None:
            host = make_host(store_url, None, None, self.lease)
            try:
                await host.persistence.ensure_store_exists()
                await action(host)
            finally:
                await host.stop()

        asyncio.run(main())

    def _count(self, store_url: str, definition_id: str, status: WorkflowStatus) -> int:
        found = 0

        async def action(host: WorkflowHost) -> None:
            nonlocal found
            skip = 0
            while True:
                page = await host.persistence.query_workflows(
                    status=status, definition_id=definition_id, skip=skip, take=500
                )
                found += len(page)
                if len(page) < 500:
                    return
                skip += 500

        self._client(store_url, action)
        return found

    def _diagnose(self, exc: AssertionError, logs: Path, store_url: str) -> str:
        """What the workers did, for a failure message."""
        counts = {
            status.value: self._count(store_url, EventOrder.id, status) for status in WorkflowStatus
        }
        runs, _ = _runs(logs)
        steps = Counter(step for (_, step) in runs.elements())
        errors = "".join(
            f"\n--- {err.name} (last lines) ---\n" + "\n".join(err.read_text().splitlines()[-15:])
            for err in sorted(logs.glob("*.err"))
        )
        stuck: list[str] = []

        async def inspect_stuck(host: WorkflowHost) -> None:
            store = host.persistence
            page = await store.query_workflows(
                status=WorkflowStatus.RUNNABLE, definition_id=EventOrder.id, take=3
            )
            for inst in page:
                key = inst.data.key
                subs = await store.get_subscriptions(EVENT, key, datetime(9999, 1, 1, tzinfo=UTC))
                events = [
                    await store.get_event(i)
                    for i in await store.get_events(EVENT, key, datetime(2000, 1, 1, tzinfo=UTC))
                ]
                pointers = [
                    (
                        p.step_id,
                        p.status.value,
                        p.active,
                        p.event_published,
                        p.sleep_until,
                        p.end_time is not None,
                    )
                    for p in inst.execution_pointers
                ]
                stuck.append(
                    f"\n{inst.id} key={key} rev={inst.revision} next={inst.next_execution} "
                    f"pointers={pointers} subs={[(x.id, x.subscribe_as_of) for x in subs]} "
                    f"events={[(e.id, e.event_time, e.is_processed) for e in events]}"
                )

        self._client(store_url, inspect_stuck)
        return f"{exc}; statuses {counts}; step runs {dict(steps)}{''.join(stuck)}{errors}"

    def test_workers_run_every_step_and_event_exactly_once_and_survive_a_kill(
        self, cluster: tuple[Path, dict[str, subprocess.Popen[bytes]]], store_url: str
    ) -> None:
        """Across worker processes every step runs once and every event is delivered
        once; a worker killed mid-step loses nothing and finished work never reruns."""
        logs, procs = cluster
        keys = [f"order-{n}" for n in range(self.workflows)]
        ids: list[str] = []
        since = datetime.now(UTC)

        async def start(host: WorkflowHost) -> None:
            for key in keys:
                ids.append(await host.start_workflow(EventOrder.id, MultiHostData(key, since)))

        self._client(store_url, start)

        async def publish(host: WorkflowHost) -> None:
            for key in keys:
                await host.publish_event(EVENT, key, f"paid:{key}")

        self._client(store_url, publish)
        try:  # watch the step logs (cheap), then confirm in the store (loads instances)
            _wait_until(
                lambda: sum(1 for (_, step) in _runs(logs)[0] if step == "three") >= self.workflows,
                self.timeout,
                f"the last step of {self.workflows} workflows",
            )
            _wait_until(
                lambda: (
                    self._count(store_url, EventOrder.id, WorkflowStatus.COMPLETE) == self.workflows
                ),
                30,
                f"{self.workflows} workflows to be stored complete",
                interval=0.5,
            )
        except AssertionError as exc:
            raise AssertionError(self._diagnose(exc, logs, store_url)) from None
        runs, paid = _runs(logs)
        starved = _claims_lost(logs)
        for workflow_id, key in zip(ids, keys, strict=True):
            for step in ("one", "two", "three"):
                # A step runs twice only on a host starved past its lease (its claim lost
                # and logged, its checkpoint refused): never otherwise.
                assert runs[(workflow_id, step)] == 1 or workflow_id in starved, (
                    workflow_id,
                    step,
                    runs[(workflow_id, step)],
                )
            assert paid[workflow_id], workflow_id
            assert set(paid[workflow_id]) == {f"paid:{key}"}, (workflow_id, paid[workflow_id])
            if workflow_id not in starved:
                assert len(paid[workflow_id]) == 1, (workflow_id, paid[workflow_id])
        busy = [name for name, done in _by_worker(logs, "one").items() if done]
        assert len(busy) >= 2, f"the work was not shared between workers: {busy}"

        # --- kill a worker in the middle of a step ------------------------------------
        crash_ids: list[str] = []

        async def start_crashing(host: WorkflowHost) -> None:
            for n in range(self.crashing):
                crash_ids.append(await host.start_workflow(Crashing.id, MultiHostData(f"c{n}")))

        self._client(store_url, start_crashing)

        def victim() -> str | None:
            for name, started in _by_worker(logs, "slow-start").items():
                if started & set(crash_ids) and name in procs:
                    return name
            return None

        _wait_until(lambda: victim() is not None, 60, "a worker to be inside the slow step")
        killed = victim()
        assert killed is not None
        held = _by_worker(logs, "slow-start")[killed] & set(crash_ids)
        procs[killed].send_signal(signal.SIGKILL)
        procs[killed].wait(timeout=10)
        (logs / GATE).touch()  # from now on the slow step completes
        _wait_until(
            lambda: self._count(store_url, Crashing.id, WorkflowStatus.COMPLETE) == self.crashing,
            self.timeout,
            "the crashing workflows to complete on the surviving workers",
            interval=0.5,
        )
        runs, _ = _runs(logs)
        ended = _by_worker(logs, "slow-end")
        for workflow_id in crash_ids:
            assert runs[(workflow_id, "last")] == 1, workflow_id
            assert runs[(workflow_id, "slow-end")] == 1, workflow_id
        for workflow_id in held:  # the killed worker's step ran again on a survivor
            assert runs[(workflow_id, "slow-start")] >= 2, workflow_id
            assert workflow_id not in ended.get(killed, set())
        for workflow_id in ids:  # nothing of the finished workflows ran again
            for step in ("one", "two", "three"):
                assert runs[(workflow_id, step)] == 1, (workflow_id, step)


def main(argv: list[str] | None = None) -> None:
    """Run one worker process until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m wfe_conformance.multihost")
    parser.add_argument("url")
    parser.add_argument("log_dir")
    parser.add_argument("name")
    parser.add_argument("--lock-url")
    parser.add_argument("--queue-url")
    parser.add_argument("--lease", type=float, default=2.0)
    args = parser.parse_args(argv)
    os.environ["WFE_MH_LOG_DIR"] = args.log_dir
    os.environ["WFE_MH_NAME"] = args.name
    logging.basicConfig(level="WARNING", format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("wfe").setLevel(os.environ.get("WFE_MH_LOG_LEVEL", "WARNING"))
    asyncio.run(_serve(args))


if __name__ == "__main__":
    # run the copy imported under its real name, so the type tags stored for the data
    # (module.Class) are the same in the workers and in the test process
    from wfe_conformance.multihost import main as _main

    _main()
