"""The "user path" cells (issue 15): workflows written as the README shows them.

* ``user``: three plain ``def`` steps; each workflow started with ``start_workflow``
  and observed with ``wait_for_workflow`` (closed loop, C in flight).
* ``user_async``: the same with ``async def`` steps (what a ``def`` step is compared to).
* ``user_event``: a ``def`` step, a wait for an event, a ``def`` step; latency = the
  ``publish_event`` call start -> the step after the wait starts.

Same stores and fresh-store rules as :mod:`bench.wfe_cell`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.common import closed_loop, latency_summary, new_tag
from bench.wfe_cell import SIGNALS, WriteCounter, _group_commit, _options, open_host
from wfe_core import StepContext, Workflow, WorkflowBuilder, WorkflowStatus


@dataclass
class Order:
    """The user-path workflow's data."""

    amount: int = 0
    reserved: bool = False
    charged: bool = False
    shipped: bool = False
    key: str = ""


def reserve(context: StepContext[Order]) -> None:
    context.workflow.data.reserved = True


def charge(context: StepContext[Order]) -> None:
    context.workflow.data.charged = context.workflow.data.amount >= 0


def ship(context: StepContext[Order]) -> None:
    context.workflow.data.shipped = True


async def reserve_async(context: StepContext[Order]) -> None:
    context.workflow.data.reserved = True


async def charge_async(context: StepContext[Order]) -> None:
    context.workflow.data.charged = context.workflow.data.amount >= 0


async def ship_async(context: StepContext[Order]) -> None:
    context.workflow.data.shipped = True


RESUMED: dict[str, float] = {}
ON_RESUMED: list[Any] = []  # hooks called with the key (tracing tools)


def resumed(context: StepContext[Order]) -> None:
    key = context.workflow.data.key
    RESUMED[key] = time.perf_counter()
    for hook in ON_RESUMED:
        hook(key)


class UserWorkflow(Workflow[Order]):
    """Three plain ``def`` steps."""

    id = "bench_user"

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(reserve).then(charge).then(ship)


class UserAsyncWorkflow(Workflow[Order]):
    """Three ``async def`` steps."""

    id = "bench_user_async"

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(reserve_async).then(charge_async).then(ship_async)


class UserEventWorkflow(Workflow[Order]):
    """A ``def`` step, a wait for "paid" keyed by the data's key, a ``def`` step."""

    id = "bench_user_event"

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        (builder.start_with(reserve).wait_for("paid", key=lambda d: d.key).then(resumed))


async def run_user(store: str, n: int, concurrency: int, workload: str) -> dict[str, Any]:
    """N workflows, ``concurrency`` in flight, each started then waited for."""
    workflow = UserAsyncWorkflow() if workload == "user_async" else UserWorkflow()
    async with open_host(store, _options(concurrency)) as host:
        counter = WriteCounter(host.persistence)
        host.register_workflow(workflow)
        await host.start()

        async def one() -> float:
            t0 = time.perf_counter()
            wid = await host.start_workflow(workflow.id, Order(amount=3))
            done = await host.wait_for_workflow(wid, 120)
            if done.status is not WorkflowStatus.COMPLETE or not done.data.shipped:
                raise RuntimeError(f"workflow {wid} ended {done.status}")
            return time.perf_counter() - t0

        await one()  # warm-up, untimed
        before = counter.total
        groups = _group_commit(host)
        groups_before = groups.synced if groups is not None else 0
        run = await closed_loop(one, n, concurrency)
        latencies, wall, cpu = run.latencies, run.wall, run.cpu
        writes = counter.total - before
        durable = (groups.synced - groups_before) / n if groups is not None else None
    return {
        "engine": "wfe",
        "store": store,
        "workload": workload,
        "n": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "workflows_per_s": n / wall,
        "latency_ms": latency_summary(latencies),
        "commits_per_workflow": writes / n,
        "durable_commits_per_workflow": durable,
        "notes": "start_workflow then wait_for_workflow per workflow; steps are "
        + ("async def" if workload == "user_async" else "plain def"),
    }


async def run_user_event(store: str, n: int, concurrency: int) -> dict[str, Any]:
    """N event workflows with ``def`` steps; publish once the wait is stored; latency =
    publish call start -> the step after the wait starts."""
    async with open_host(store, _options(concurrency)) as host:
        counter = WriteCounter(host.persistence)
        counter.on_subscribed = lambda wid: SIGNALS.set("waiting:" + wid)
        host.register_workflow(UserEventWorkflow())
        await host.start()

        async def one() -> float:
            key = new_tag()
            wid = await host.start_workflow(UserEventWorkflow.id, Order(key=key))
            await SIGNALS.wait("waiting:" + wid, 30, f"event workflow {wid} never waited")
            t0 = time.perf_counter()
            await host.publish_event("paid", key, {"k": key})
            done = await host.wait_for_workflow(wid, 60)
            if done.status is not WorkflowStatus.COMPLETE:
                raise RuntimeError(f"workflow {wid} ended {done.status}")
            return RESUMED.pop(key) - t0

        await one()  # warm-up
        before = counter.total
        run = await closed_loop(one, n, concurrency)
        latencies, wall, cpu = run.latencies, run.wall, run.cpu
        writes = counter.total - before
    return {
        "engine": "wfe",
        "store": store,
        "workload": "user_event",
        "n": n,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu,
        "workflows_per_s": n / wall,
        "latency_ms": latency_summary(latencies),
        "commits_per_workflow": writes / n,
        "notes": "def steps; latency = publish_event call start -> the step after the "
        "wait starts (stamped in the step, a worker thread or inline); completion "
        "observed with wait_for_workflow",
    }
