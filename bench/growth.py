"""Growth: does the engine slow down or bloat as things pile up?

1. A ``while_`` loop of N iterations (10,000; --quick 2,000) in one workflow on memory
   and SQLite: wall time of the first and of the last 1,000 iterations.
2. SQLite store with 10,000 vs a large number (1,000,000; --quick 100,000) of finished
   instances (bulk-copied with SQL from one real finished instance, one transaction):
   get_runnable_instances time and start-to-complete latency of the perf workflow.
3. RSS of one host (memory store) holding 10,000 workflows waiting for events.

    python -m bench.growth [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfe_core.host import HostOptions
from wfe_core.models import utcnow

from bench.wfe_cell import EventData, EventWorkflow, PerfData, PerfWorkflow, WriteCounter
from wfe_core import Workflow, WorkflowHost

STAMPS: list[float] = []


@dataclass
class LoopData:
    """Data of the loop workflow."""

    i: int = 0
    n: int = 10_000


async def loop_body(context: Any) -> None:
    if context.data.i % 1000 == 0:
        STAMPS.append(time.perf_counter())
    context.data.i += 1
    if context.data.i == context.data.n:  # the loop's own end, not the waiter's poll
        STAMPS.append(time.perf_counter())


class LoopWorkflow(Workflow[LoopData]):
    """while_(i < n): i += 1."""

    id = "bench_loop"
    data_type = LoopData

    def build(self, builder: Any) -> None:
        builder.start_with(lambda c: None).while_(lambda d: d.i < d.n).do(
            lambda b: b.start_with(loop_body)
        )


async def loop_growth(url: str, iterations: int) -> dict[str, Any]:
    """Run the loop; per-1,000-iteration times, first vs last."""
    STAMPS.clear()
    host = WorkflowHost.from_url(url)
    host.register_workflow(LoopWorkflow())
    async with host:
        t0 = time.perf_counter()
        wid = await host.start_workflow("bench_loop", LoopData(n=iterations))
        instance = await host.wait_for_workflow(wid, timeout=3600)
        t_end = time.perf_counter()
        pointers = len(instance.execution_pointers)
    per_k = [b - a for a, b in itertools.pairwise(STAMPS)]
    return {
        "iterations": iterations,
        "total_s": t_end - t0,
        "per_1000_s": per_k,
        "first_1000_s": per_k[0] if per_k else None,
        "last_1000_s": per_k[-1] if per_k else None,
        "last_over_first": (per_k[-1] / per_k[0]) if len(per_k) > 1 else None,
        "pointers_at_end": pointers,
    }


def bulk_copy(db: str, template_id: str, count: int) -> float:
    """Copy the finished instance ``template_id`` ``count`` times (new workflow ids, one
    transaction, generated inside SQLite); return seconds taken."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        for table, key in (("wfe_workflows", "id"), ("wfe_execution_pointers", "workflow_id")):
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            select = ", ".join(
                "'bulk' || printf('%09d', n.i)" if c == key else f"t.{c}" for c in cols
            )
            conn.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                f"INSERT INTO {table} ({', '.join(cols)}) "
                f"SELECT {select} FROM n, {table} t WHERE t.{key} = ?",
                (count, template_id),
            )
        conn.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        conn.close()


async def finished_growth(finished: int, samples: int) -> dict[str, Any]:
    """get_runnable_instances and start-to-complete with ``finished`` finished instances."""
    tmp = tempfile.mkdtemp(prefix="wfe_growth_")
    db = f"{tmp}/wfe.db"
    url = f"sqlite:///{db}"
    try:
        host = WorkflowHost.from_url(url)
        host.register_workflow(PerfWorkflow())
        async with host:
            template = await host.start_workflow("bench_perf", PerfData())
            await host.wait_for_workflow(template, timeout=60)
        insert_s = bulk_copy(db, template, finished)
        host = WorkflowHost.from_url(url, options=HostOptions(poll_interval=3600))
        host.register_workflow(PerfWorkflow())
        async with host:
            WriteCounter(host.persistence)
            runnable: list[float] = []
            for _ in range(samples):
                t0 = time.perf_counter()
                await host.persistence.get_runnable_instances(utcnow())
                runnable.append(time.perf_counter() - t0)
            await host.run_workflow("bench_perf", PerfData(), timeout=60)  # warm-up
            complete: list[float] = []
            for _ in range(samples):
                t0 = time.perf_counter()
                await host.run_workflow("bench_perf", PerfData(), timeout=60)
                complete.append(time.perf_counter() - t0)
        size = Path(db).stat().st_size  # noqa: ASYNC240
        return {
            "finished_instances": finished + 1,
            "bulk_insert_s": insert_s,
            "db_bytes": size,
            "get_runnable_ms_median": statistics.median(runnable) * 1000,
            "start_to_complete_ms_median": statistics.median(complete) * 1000,
            "samples": samples,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rss() -> int:
    import psutil  # type: ignore[import-untyped]

    return int(psutil.Process().memory_info().rss)


async def waiting_rss(count: int) -> dict[str, Any]:
    """RSS growth of one host (memory store) holding ``count`` waiting workflows."""
    host = WorkflowHost.from_url("memory://")
    host.register_workflow(EventWorkflow())
    counter = WriteCounter(host.persistence)
    waiting: set[str] = set()
    counter.on_subscribed = waiting.add
    async with host:
        wid = await host.start_workflow("bench_event", EventData(key="warm"))
        while wid not in waiting:  # noqa: ASYNC110 (bounded poll of a set)
            await asyncio.sleep(0.001)
        gc.collect()
        before = rss()
        t0 = time.perf_counter()
        for i in range(count):
            await host.start_workflow("bench_event", EventData(key=f"k{i}"))
            if i % 500 == 499:
                await asyncio.sleep(0)
        deadline = time.monotonic() + 600
        while len(waiting) < count + 1 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        gc.collect()
        after = rss()
        took = time.perf_counter() - t0
        reached = len(waiting) - 1
    return {
        "waiting_workflows": reached,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "bytes_per_waiting_workflow": (after - before) / max(1, reached),
        "seconds_to_park": took,
        "notes": "memory store: the RSS includes the stored instances, pointers and "
        "subscriptions (the store lives in the host's process)",
    }


async def run(quick: bool) -> dict[str, Any]:
    iterations = 2_000 if quick else 10_000
    large = 100_000 if quick else 1_000_000
    out: dict[str, Any] = {"quick": quick}
    out["loop_memory"] = await loop_growth("memory://", iterations)
    tmp = tempfile.mkdtemp(prefix="wfe_growth_loop_")
    try:
        out["loop_sqlite"] = await loop_growth(f"sqlite:///{tmp}/wfe.db", iterations)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    samples = 20 if quick else 50
    small = await finished_growth(10_000, samples)
    big = await finished_growth(large, samples)
    out["finished_small"] = small
    out["finished_large"] = big
    out["finished_ratio_start_to_complete"] = (
        big["start_to_complete_ms_median"] / small["start_to_complete_ms_median"]
    )
    out["finished_ratio_get_runnable"] = (
        big["get_runnable_ms_median"] / small["get_runnable_ms_median"]
    )
    out["waiting_rss"] = rss_in_subprocess(10_000)
    return out


def rss_in_subprocess(count: int) -> dict[str, Any]:
    """waiting_rss in a fresh interpreter, so earlier measurements' heap does not hide
    (or inflate) the growth."""
    cmd = [sys.executable, "-m", "bench.growth", "--only", "rss", "--count", str(count)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1000:]}
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.growth")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--only", choices=["loop", "finished", "rss"], default=None)
    p.add_argument("--count", type=int, default=2_000, help="waiting workflows (--only rss)")
    args = p.parse_args()
    if args.only == "loop":
        result: dict[str, Any] = asyncio.run(loop_growth("memory://", 2000))
    elif args.only == "finished":
        result = asyncio.run(finished_growth(10_000, 10))
    elif args.only == "rss":
        result = asyncio.run(waiting_rss(args.count))
    else:
        result = asyncio.run(run(args.quick))
    text = json.dumps(result, indent=1)
    if args.json_out:
        Path(args.json_out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
