"""wfe cells: throughput (Workflow Core's perf workflow) and event latency.

Every cell opens a fresh store: memory, a new SQLite file (provider default: WAL +
synchronous=FULL), a new PostgreSQL schema (dropped afterwards), or that plus Redis lock
and queue under a new key prefix (deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from wfe_core.host import HostOptions, MiddlewarePhase
from wfe_core.models import WorkflowInstance

from bench.common import PG_URL, REDIS_URL, closed_loop, latency_summary, new_tag, versions
from wfe_core import Workflow, WorkflowHost

WRITE_METHODS = (
    "create_workflow",
    "persist_workflow",
    "create_subscription",
    "terminate_subscription",
    "terminate_subscriptions",
    "set_subscription_token",
    "clear_subscription_token",
    "create_event",
    "mark_event_processed",
    "mark_event_unprocessed",
    "schedule_command",
    "persist_errors",
)


@dataclass
class PerfData:
    """Data of the perf workflow."""

    value: float = 0.0
    branch: str = ""
    done: bool = False


async def step1(context: Any) -> None:
    context.data.value = random.random()


async def step2a(context: Any) -> None:
    context.data.branch = "a"


async def step2b(context: Any) -> None:
    context.data.branch = "b"


async def step3(context: Any) -> None:
    context.data.done = True


class PerfWorkflow(Workflow[PerfData]):
    """Workflow Core's performance workflow: three steps, the second an if/else on a
    random number."""

    id = "bench_perf"
    data_type = PerfData

    def build(self, builder: Any) -> None:
        (
            builder.start_with(step1)
            .if_(lambda d: d.value >= 0.5)
            .do(lambda b: b.start_with(step2a))
            .if_(lambda d: d.value < 0.5)
            .do(lambda b: b.start_with(step2b))
            .then(step3)
        )


@dataclass
class EventData:
    """Data of the event workflow."""

    key: str = ""
    got: object = None


RESUMED: dict[str, float] = {}


class Signals:
    """One-shot signals by name, set from step bodies or store hooks (same loop)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def set(self, name: str) -> None:
        self._events.setdefault(name, asyncio.Event()).set()

    async def wait(self, name: str, timeout: float, what: str) -> None:
        event = self._events.setdefault(name, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(what) from None
        finally:
            self._events.pop(name, None)


SIGNALS = Signals()


async def ev_begin(context: Any) -> None:
    return None


async def ev_resumed(context: Any) -> None:
    RESUMED[context.data.key] = time.perf_counter()
    SIGNALS.set("resumed:" + context.data.key)


class EventWorkflow(Workflow[EventData]):
    """Wait for event "go" keyed by data.key; the next step stamps the time."""

    id = "bench_event"
    data_type = EventData

    def build(self, builder: Any) -> None:
        (
            builder.start_with(ev_begin)
            .wait_for("go", key=lambda d: d.key)
            .output(got=lambda step: step.event_data)
            .then(ev_resumed)
        )


class WriteCounter:
    """Counts calls of the persistence provider's write methods (store writes)."""

    def __init__(self, persistence: Any) -> None:
        self.counts: dict[str, int] = {}
        self.on_subscribed: Callable[[str], None] | None = None
        for name in WRITE_METHODS:
            original = getattr(persistence, name, None)
            if original is not None:
                setattr(persistence, name, self._wrap(name, original))

    def _wrap(self, name: str, original: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == "persist_workflow" and self.on_subscribed is not None:
                subs = args[1] if len(args) > 1 else kwargs.get("subscriptions")
                if subs:
                    self.on_subscribed(args[0].id)
            return result

        return wrapper

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@contextlib.asynccontextmanager
async def open_host(store: str, options: HostOptions) -> AsyncIterator[WorkflowHost]:
    """A started host on a fresh store of kind ``store``; cleaned up afterwards."""
    tmp: str | None = None
    schema: str | None = None
    prefix: str | None = None
    kwargs: dict[str, Any] = {}
    if store == "memory":
        url = "memory://"
    elif store == "sqlite":
        tmp = tempfile.mkdtemp(prefix="wfe_bench_")
        url = f"sqlite:///{tmp}/wfe.db"
    elif store in ("postgres", "postgres+redis"):
        schema = f"wfe_bench_{new_tag()}"
        url = f"{PG_URL}?schema={schema}"
        if store == "postgres+redis":
            prefix = f"wfe_bench_{new_tag()}:"
            kwargs = {
                "lock_url": f"{REDIS_URL}?prefix={prefix}",
                "queue_url": f"{REDIS_URL}?prefix={prefix}",
            }
    else:
        raise ValueError(store)
    host = WorkflowHost.from_url(url, options=options, **kwargs)
    try:
        yield host
    finally:
        with contextlib.suppress(Exception):
            await host.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if schema is not None:
            from wfe_postgres.testing import drop_schema

            await drop_schema(PG_URL, schema)
        if prefix is not None:
            import redis.asyncio as aioredis

            client = aioredis.from_url(REDIS_URL)
            try:
                keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


def _group_commit(host: WorkflowHost) -> Any:
    """The SQL driver's group-commit statistics (``groups``, ``batches``), if any."""
    driver = getattr(host.persistence, "driver", None)
    return getattr(driver, "group_commit", None)


def _options(concurrency: int) -> HostOptions:
    return HostOptions(max_concurrent_workflows=max(32, concurrency))


async def run_throughput(store: str, n: int, concurrency: int) -> dict[str, Any]:
    """N perf workflows, ``concurrency`` in flight (closed loop)."""
    async with open_host(store, _options(concurrency)) as host:
        counter = WriteCounter(host.persistence)
        waiters: dict[str, asyncio.Future[float]] = {}
        early: dict[str, float] = {}

        def ended(instance: WorkflowInstance) -> None:
            now = time.perf_counter()
            fut = waiters.pop(instance.id, None)
            if fut is None:
                early[instance.id] = now  # ended before start_workflow returned
            elif not fut.done():
                fut.set_result(now)

        host.use_workflow_middleware(MiddlewarePhase.POST_WORKFLOW, ended)
        host.register_workflow(PerfWorkflow())
        await host.start()
        loop = asyncio.get_running_loop()

        async def one() -> float:
            t0 = time.perf_counter()
            wid = await host.start_workflow("bench_perf", PerfData())
            if wid in early:
                t1 = early.pop(wid)
            else:
                fut: asyncio.Future[float] = loop.create_future()
                waiters[wid] = fut
                t1 = await asyncio.wait_for(fut, 120)
            return t1 - t0

        await one()  # warm-up, untimed
        before = counter.total
        before_counts = dict(counter.counts)
        groups = _group_commit(host)
        groups_before = groups.synced if groups is not None else 0
        run = await closed_loop(one, n, concurrency)
        latencies, wall, cpu = run.latencies, run.wall, run.cpu
        writes = counter.total - before
        per_method = {
            k: (v - before_counts.get(k, 0)) / n
            for k, v in counter.counts.items()
            if v - before_counts.get(k, 0)
        }
        durable = (groups.synced - groups_before) / n if groups is not None else None
    return {
        "engine": "wfe",
        "store": store,
        "workload": "throughput",
        "n": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "workflows_per_s": n / wall,
        "latency_ms": latency_summary(latencies),
        "commits_per_workflow": writes / n,
        "durable_commits_per_workflow": durable,
        "store_writes_by_method": per_method,
        "notes": "commits_per_workflow = store writes per workflow (provider write calls, "
        "each atomic on its own), excluding the warm-up workflow; "
        "durable_commits_per_workflow = group-committed write transactions holding a "
        "durable write (synced commits) per workflow on the SQL stores",
    }


async def run_event(store: str, n: int, concurrency: int) -> dict[str, Any]:
    """N event workflows; publish once the wait is stored; latency = publish call start
    -> the next step starts."""
    async with open_host(store, _options(concurrency)) as host:
        counter = WriteCounter(host.persistence)
        counter.on_subscribed = lambda wid: SIGNALS.set("waiting:" + wid)
        host.register_workflow(EventWorkflow())
        await host.start()

        async def one() -> float:
            key = new_tag()
            wid = await host.start_workflow("bench_event", EventData(key=key))
            # publish only once the wait's subscription is committed
            await SIGNALS.wait("waiting:" + wid, 30, f"event workflow {wid} never waited")
            t0 = time.perf_counter()
            await host.publish_event("go", key, {"k": key})
            await SIGNALS.wait("resumed:" + key, 30, f"event workflow {wid} did not resume")
            return RESUMED.pop(key) - t0

        await one()  # warm-up
        before = counter.total
        run = await closed_loop(one, n, concurrency)
        latencies, wall, cpu = run.latencies, run.wall, run.cpu
        writes = counter.total - before
    return {
        "engine": "wfe",
        "store": store,
        "workload": "event",
        "n": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "workflows_per_s": n / wall,
        "latency_ms": latency_summary(latencies),
        "commits_per_workflow": writes / n,
        "notes": "latency = publish_event call start -> the step after wait_for starts "
        "(signalled in-loop); publish happens after the subscription is committed",
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Entry point used by bench.cell."""
    if args.workload == "throughput":
        result = await run_throughput(args.store, args.n, args.concurrency)
    elif args.workload in ("user", "user_async"):
        from bench.user_path import run_user

        result = await run_user(args.store, args.n, args.concurrency, args.workload)
    elif args.workload == "user_event":
        from bench.user_path import run_user_event

        result = await run_user_event(args.store, args.n, args.concurrency)
    else:
        result = await run_event(args.store, args.n, args.concurrency)
    result["versions"] = {**versions(), "wfe": _wfe_version()}
    return result


def _wfe_version() -> str:
    from importlib.metadata import version

    try:
        return version("wfe-core")
    except Exception:
        return "unknown"
