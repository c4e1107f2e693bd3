"""Process scaling (issue 15): ``wfe worker --processes P`` on one store.

``python -m bench.processes [--rounds R] [--n N] [--json OUT]``

For each cell (store, P, workload) -- SQLite file, PostgreSQL and PostgreSQL + Redis
(lock and queue), P = 1, 2, 4 (1 and 2 with Redis) on the ``user`` workload, P = 1, 2 on
the ``cpu`` workload -- on a fresh store:

1. a client pre-creates N instances (untimed) of the workload's workflow: ``user``, the
   user-path workflow (:class:`bench.user_path.UserWorkflow`: three plain ``def`` steps
   doing nearly nothing), or ``cpu`` (:class:`CpuWorkflow`: three ``def`` steps of ~1 ms
   of Python CPU each);
2. ``wfe worker --app <workload> --processes P --concurrency 32 --no-steps --json``
   starts (a real subprocess, as a user runs it), and the client polls
   ``count_workflows(status=COMPLETE)`` every 50 ms until all N are complete;
3. the worker is stopped with SIGTERM.

Measured per cell:

* ``wall wf/s`` = N / (worker start -> last completion seen by the poll): includes the
  processes' start-up (Python imports, opening the store: a second or more each, and
  the P processes start at once on 2 cores);
* ``steady wf/s``: from the moment every child has printed ``worker_started`` (the
  complete count is read then) to the last completion: (N - complete then) / that
  time. The processing rate with all P processes running; the ratio to P = 1 uses it;
* CPU seconds (``/proc``) over that steady window, as cores (the machine has 2): of the
  worker processes; of the PostgreSQL backends serving the bench's database (listed in
  ``pg_stat_activity`` when the window starts; the server's shared background
  processes -- WAL writer, checkpointer -- are not counted); of the Redis server (all
  its clients: other users' too); and of the whole machine (busy time of every
  process, other users' included);
* PostgreSQL: ``pg_stat_database.xact_commit`` of the bench's own scratch database
  (created for the run, so other users of the server do not count), and
  ``pg_stat_user_tables`` of the cell's schema: rows inserted into ``wfe_queue`` (each
  one ``pg_notify``), inserts + updates of ``wfe_locks`` (lock acquisitions and
  renewals; deleted rows = releases) and updates of ``wfe_workflows``. These counters
  include the idle polls of the window and the client's 50 ms count polls.

Rounds interleave the cells (the order flips every round); medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import PG_URL, REDIS_URL, new_tag
from bench.user_path import Order, UserWorkflow
from wfe_core import StepContext, Workflow, WorkflowBuilder, WorkflowClient, WorkflowStatus

CELLS: list[tuple[str, int, str]] = [
    ("sqlite", 1, "user"),
    ("sqlite", 2, "user"),
    ("sqlite", 4, "user"),
    ("postgres", 1, "user"),
    ("postgres", 2, "user"),
    ("postgres", 4, "user"),
    ("postgres+redis", 1, "user"),
    ("postgres+redis", 2, "user"),
    ("sqlite", 1, "cpu"),
    ("sqlite", 2, "cpu"),
    ("postgres", 1, "cpu"),
    ("postgres", 2, "cpu"),
]
"""Every (store, processes, workload) cell, in the order of the first round."""

BURN = 20_000
"""Loop iterations of a :class:`CpuWorkflow` step (about 1 ms of Python CPU here)."""


def burn(context: StepContext[Order]) -> None:
    """A ``def`` step that computes for about a millisecond (pure Python, holds the GIL)."""
    total = 0
    for i in range(BURN):
        total += i * i
    context.workflow.data.amount = total % 7


class CpuWorkflow(Workflow[Order]):
    """The ``cpu`` workload: three ``def`` steps that each compute for ~1 ms, as steps
    doing real work do (the user path's steps do nearly nothing)."""

    id = "bench_cpu"

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(burn).then(burn).then(burn)


WORKLOADS: dict[str, tuple[type[Workflow[Order]], str]] = {
    "user": (UserWorkflow, "bench.user_path:UserWorkflow"),
    "cpu": (CpuWorkflow, "bench.processes:CpuWorkflow"),
}
"""Workload name -> (workflow class, its ``--app`` spec)."""

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Store:
    """A fresh store of one kind: its URL and service URLs."""

    kind: str
    url: str
    services: dict[str, Any] = field(default_factory=dict)
    schema: str | None = None
    tmp: str | None = None
    prefix: str | None = None


@contextlib.asynccontextmanager
async def fresh_store(kind: str, pg_base: str) -> AsyncIterator[Store]:
    """A new SQLite file, PostgreSQL schema (in ``pg_base``'s database) or that plus a
    Redis key prefix; removed afterwards."""
    if kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="wfe_bench_procs_")
        store = Store(kind, f"sqlite:///{tmp}/wfe.db", tmp=tmp)
    else:
        schema = f"wfe_bench_{new_tag()}"
        store = Store(kind, f"{pg_base}?schema={schema}", schema=schema)
        if kind == "postgres+redis":
            store.prefix = f"wfe_bench_{new_tag()}:"
            redis = f"{REDIS_URL}?prefix={store.prefix}"
            store.services = {"lock_url": redis, "queue_url": redis}
    try:
        yield store
    finally:
        if store.tmp is not None:
            shutil.rmtree(store.tmp, ignore_errors=True)
        if store.schema is not None:
            from wfe_postgres.testing import drop_schema

            await drop_schema(pg_base, store.schema)
        if store.prefix is not None:
            import redis.asyncio as aioredis

            client = aioredis.from_url(REDIS_URL)
            try:
                keys = [k async for k in client.scan_iter(match=f"{store.prefix}*", count=1000)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _backend_pids(pg_base: str) -> set[int]:
    """The server processes serving connections to the bench's scratch database."""
    import asyncpg

    conn = await asyncpg.connect(pg_base)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {int(r["pid"]) for r in rows}


def _named(comm: str) -> set[int]:
    """Pids of the processes called ``comm``."""
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    pids.add(int(entry.name))
    return pids


def _cpu_of(pids: set[int]) -> float:
    """CPU seconds of ``pids`` together."""
    return sum(_cpu_seconds(pid) for pid in pids)


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts) - idle) / _TICKS, sum(parts) / _TICKS


async def _pg_counters(pg_base: str, schema: str | None) -> dict[str, int]:
    """xact_commit of the scratch database and the schema's table counters."""
    import asyncpg

    conn = await asyncpg.connect(pg_base)
    try:
        out = {
            "xact_commit": int(
                await conn.fetchval(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                )
            )
        }
        if schema is not None:
            rows = await conn.fetch(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                "WHERE schemaname = $1",
                schema,
            )
            for row in rows:
                for col in ("n_tup_ins", "n_tup_upd", "n_tup_del"):
                    out[f"{row['relname']}.{col}"] = int(row[col])
        return out
    finally:
        await conn.close()


class _Worker:
    """``wfe worker --processes P`` as a subprocess; its child pids from its JSON lines."""

    def __init__(self, store: Store, processes: int, app: str, log: Path) -> None:
        services = [a for k, v in store.services.items() for a in (f"--{k.replace('_', '-')}", v)]
        self.err = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wfe_core.cli",
                "worker",
                "--url",
                store.url,
                *services,
                "--app",
                app,
                "--processes",
                str(processes),
                "--concurrency",
                "32",
                "--no-steps",
                "--json",
                "--log-level",
                "error",
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
        )
        self.pids: set[int] = {self.proc.pid}
        self.started = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if '"worker_started"' in line or '"supervisor_started"' in line:
                doc = json.loads(line)
                self.pids.update(doc.get("pids", []))
                if doc["event"] == "worker_started":
                    self.pids.add(doc["pid"])
                    self.started += 1

    def cpu(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(10)
        self.err.close()
        return code


async def run_cell(
    kind: str, processes: int, workload: str, n: int, pg_base: str
) -> dict[str, Any]:
    """One cell on a fresh store (see the module's docstring)."""
    pg = kind.startswith("postgres")
    async with fresh_store(kind, pg_base) as store:
        async with WorkflowClient.from_url(store.url, **store.services) as creator:
            workflow_type, app = WORKLOADS[workload]
            workflow = workflow_type()
            creator.register_workflow(workflow)
            for start in range(0, n, 50):
                await asyncio.gather(
                    *(
                        creator.start_workflow(workflow.id, Order(amount=3))
                        for _ in range(start, min(n, start + 50))
                    )
                )
        # closed: its backends exited and flushed their statistics
        await asyncio.sleep(1.0 if pg else 0)
        before = await _pg_counters(pg_base, store.schema) if pg else {}
        polls = 0
        async with WorkflowClient.from_url(store.url, **store.services) as client:
            log = Path(tempfile.gettempdir()) / f"wfe_bench_procs_{new_tag()}.log"
            t0 = time.monotonic()
            worker = _Worker(store, processes, app, log)
            ready: tuple[float, int, float] | None = None  # time, done, worker CPU
            try:
                deadline = t0 + 900
                done = 0
                while done < n:
                    if worker.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{kind} P={processes}: {done}/{n} complete; worker exit "
                            f"{worker.proc.poll()}; log {log}: {log.read_text()[-2000:]}"
                        )
                    await asyncio.sleep(0.05)
                    if ready is None and worker.started >= processes:
                        count = await client.count_workflows(status=WorkflowStatus.COMPLETE)
                        ready = (time.monotonic(), count, worker.cpu())
                        backends = await _backend_pids(pg_base) if pg else set()
                        redis = _named("redis-server") if store.prefix else set()
                        redis_cpu0 = _cpu_of(redis)
                        pg_cpu0, (busy0, total0) = _cpu_of(backends), _machine_busy()
                    done = await client.count_workflows(status=WorkflowStatus.COMPLETE)
                    polls += 1
                t_end = time.monotonic()
                wall = t_end - t0
                worker_cpu = worker.cpu()
                pg_cpu1, (busy1, total1) = _cpu_of(backends), _machine_busy()
                redis_cpu1 = _cpu_of(redis)
            finally:
                code = worker.stop()
            log.unlink(missing_ok=True)
        if ready is None or ready[1] > n * 0.8:
            raise RuntimeError(f"{kind} P={processes}: too few left when all had started: {ready}")
        t_ready, done_ready, cpu_ready = ready
        window = t_end - t_ready
        after = {}
        if pg:
            await asyncio.sleep(1.5)  # backends flush their statistics when they exit
            after = await _pg_counters(pg_base, store.schema)
    result: dict[str, Any] = {
        "store": kind,
        "workload": workload,
        "processes": processes,
        "n": n,
        "wall_s": wall,
        "wall_wf_s": n / wall,
        "startup_s": t_ready - t0,
        "done_at_ready": done_ready,
        "steady_s": window,
        "steady_wf_s": (n - done_ready) / window,
        "worker_exit": code,
        "children_started": worker.started,
        "worker_cpu_cores": (worker_cpu - cpu_ready) / window,
        "postgres_cpu_cores": (pg_cpu1 - pg_cpu0) / window if pg else 0.0,
        "redis_cpu_cores": (redis_cpu1 - redis_cpu0) / window,
        "machine_busy_cores": (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1),
        "worker_cpu_ms_wf": (worker_cpu - cpu_ready) / (n - done_ready) * 1000,
        "count_polls": polls,
    }
    if pg:
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        result["pg"] = delta
        commits = delta["xact_commit"] - polls  # each count poll is one transaction
        result["commits_s"] = commits / wall
        result["commits_wf"] = commits / n
        result["queue_inserts_wf"] = delta.get("wfe_queue.n_tup_ins", 0) / n
        result["lock_writes_wf"] = (
            delta.get("wfe_locks.n_tup_ins", 0) + delta.get("wfe_locks.n_tup_upd", 0)
        ) / n
        result["workflow_updates_wf"] = delta.get("wfe_workflows.n_tup_upd", 0) / n
    return result


async def _scratch_database() -> tuple[str, str]:
    """Create a scratch database (its xact_commit counts only this bench): its URL and
    name."""
    import asyncpg

    name = f"wfe_bench_procs_{new_tag()}"
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_URL.rsplit("/", 1)[0] + f"/{name}", name


async def _drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per cell, with the ratio of steady wf/s to the same store's P = 1."""
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["workload"], row["store"], row["processes"]), []).append(row)
    out: list[dict[str, Any]] = []
    for (workload, kind, processes), runs in sorted(cells.items()):
        keys = [k for k, v in runs[0].items() if isinstance(v, float | int) and k != "processes"]
        med = {k: statistics.median(r[k] for r in runs) for k in keys}
        out.append(
            {
                "workload": workload,
                "store": kind,
                "processes": processes,
                "rounds": len(runs),
                **med,
            }
        )
    for row in out:
        base = next(
            (
                r
                for r in out
                if (r["workload"], r["store"]) == (row["workload"], row["store"])
                and r["processes"] == 1
            ),
            None,
        )
        row["ratio"] = row["steady_wf_s"] / base["steady_wf_s"] if base else float("nan")
        row["wall_ratio"] = row["wall_wf_s"] / base["wall_wf_s"] if base else float("nan")
    return out


def table(summary: list[dict[str, Any]]) -> str:
    """The Markdown table of :func:`summarize`'s rows."""
    lines = [
        "| workload | store | P | steady wf/s | x P=1 | wall wf/s | x P=1 | start-up s "
        "| worker CPU (cores) | PG CPU (cores) | Redis CPU (cores) | machine busy (cores) "
        "| worker CPU ms/wf "
        "| PG commits/s | commits/wf | queue inserts (NOTIFY)/wf | lock writes/wf "
        "| instance updates/wf |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        pg = r["store"].startswith("postgres")

        def opt(key: str, fmt: str = ".2f", *, row: dict[str, Any] = r, on: bool = pg) -> str:
            return format(row[key], fmt) if on and key in row else "—"

        lines.append(
            f"| {r['workload']} | {r['store']} | {r['processes']} | "
            f"{r['steady_wf_s']:,.1f} | {r['ratio']:.2f} | "
            f"{r['wall_wf_s']:,.1f} | {r['wall_ratio']:.2f} | {r['startup_s']:.1f} | "
            f"{r['worker_cpu_cores']:.2f} | {opt('postgres_cpu_cores')} | "
            f"{opt('redis_cpu_cores', on='redis' in r['store'])} | "
            f"{r['machine_busy_cores']:.2f} | {r['worker_cpu_ms_wf']:.2f} | "
            f"{opt('commits_s', ',.0f')} | {opt('commits_wf')} | {opt('queue_inserts_wf')} | "
            f"{opt('lock_writes_wf')} | {opt('workflow_updates_wf')} |"
        )
    return "\n".join(lines)


async def main_async(rounds: int, n: int, cells: list[tuple[str, int, str]]) -> dict[str, Any]:
    """Every cell ``rounds`` times (order flipped each round)."""
    pg_base, name = await _scratch_database()
    rows: list[dict[str, Any]] = []
    try:
        for i in range(rounds):
            order = cells if i % 2 == 0 else list(reversed(cells))
            for kind, processes, workload in order:
                row = await run_cell(kind, processes, workload, n, pg_base)
                row["round"] = i
                rows.append(row)
                print(
                    f"round {i} {workload} {kind} P={processes}: "
                    f"steady {row['steady_wf_s']:.1f} wf/s, "
                    f"wall {row['wall_wf_s']:.1f} wf/s, workers {row['worker_cpu_cores']:.2f} "
                    f"cores, PG {row['postgres_cpu_cores']:.2f} cores",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await _drop_database(name)
    return {"rows": rows, "summary": summarize(rows)}


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.processes``."""
    parser = argparse.ArgumentParser(prog="python -m bench.processes", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--cells", help="e.g. sqlite:1:user,sqlite:2:cpu (default: all)")
    parser.add_argument("--json", type=Path, help="write the rows and the summary here")
    args = parser.parse_args(argv)
    cells = CELLS
    if args.cells:
        cells = [
            (c.split(":")[0], int(c.split(":")[1]), c.split(":")[2]) for c in args.cells.split(",")
        ]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = asyncio.run(main_async(args.rounds, args.n, cells))
    result["started"] = started
    result["nproc"] = os.cpu_count()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    print(f"Run {started}, {args.rounds} round(s), N = {args.n}, nproc = {os.cpu_count()}\n")
    print(table(result["summary"]))


if __name__ == "__main__":
    main()
