"""The demo behind ``wfe demo``: event-driven orders, a payment timeout and a worker restart.

:class:`OrderWorkflow` is the README's event-driven example: an order is received, then
waits for a ``payment`` event keyed by its order id; a paid order ships, an order whose
payment does not come within its payment window is cancelled.

:func:`run_demo` runs it end to end on a store URL, with a live table of the orders:

1. worker 1 starts and the orders are placed; each waits for its payment;
2. payments for the first orders are published: those orders resume and ship;
3. worker 1 is stopped while the other orders are still waiting;
4. payments for all but the last order are published while no worker runs (the events
   are stored, nothing is lost);
5. worker 2 starts on the same store, delivers the stored payments and ships those
   orders; the last order's payment never comes, so it times out and is cancelled.

The workflow is also usable on its own: ``wfe worker --app wfe_core.demo:workflows``
runs it, and ``wfe start order --app wfe_core.demo:workflows --data
'{"order_id": "A-1", "amount": "12.50"}'`` starts one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wfe_core.builder import WorkflowBuilder
from wfe_core.client import WorkflowClient
from wfe_core.definition import StepContext, Workflow
from wfe_core.host import HostOptions, WorkflowHost
from wfe_core.models import (
    LifecycleEvent,
    LifecycleEventType,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.registry import url_scheme

__all__ = [
    "DemoOrder",
    "OrderData",
    "OrderWorkflow",
    "Payment",
    "payment_outcome",
    "run_demo",
    "workflows",
]

PAYMENT_EVENT = "payment"
"""The name of the event an order waits for (its key is the order id)."""


@dataclass
class Payment:
    """The data of a ``payment`` event."""

    amount: Decimal
    reference: str


@dataclass
class OrderData:
    """One order, as the workflow sees it."""

    order_id: str = ""
    amount: Decimal = Decimal("0")
    placed_at: datetime | None = None
    payment_window: timedelta = timedelta(days=1)
    payment: Any = None
    timed_out: bool = False
    status: str = "new"
    shipped_with: str = ""


async def receive_order(context: StepContext[OrderData]) -> None:
    """Accept the order and start waiting for its payment."""
    order = context.data
    if order.placed_at is None:
        order.placed_at = context.workflow.create_time
    order.status = "awaiting payment"


def _payment_reference(payment: Any) -> str:
    if isinstance(payment, Payment):
        return payment.reference
    if isinstance(payment, dict):
        return str(payment.get("reference", "?"))
    return "?"


async def ship_order(context: StepContext[OrderData]) -> None:
    """Ship a paid order."""
    order = context.data
    order.status = "shipped"
    order.shipped_with = _payment_reference(order.payment)


async def cancel_order(context: StepContext[OrderData]) -> None:
    """Cancel an order whose payment did not come in time."""
    order = context.data
    order.status = "cancelled"


def payment_outcome(order: OrderData) -> str:
    """Which way an order goes after the wait: ``ship`` or ``cancel``."""
    return "cancel" if order.timed_out else "ship"


class OrderWorkflow(Workflow[OrderData]):
    """receive order -> wait for ``payment`` (key: order id, timeout: the order's
    payment window) -> ship, or cancel when the payment did not come.

    The wait subscribes as of ``placed_at``, so a payment published right after the
    order was placed is not missed even if it arrives before the wait is reached.
    """

    id = "order"
    version = 1
    data_type = OrderData
    description = "Receive an order, wait for its payment, then ship or cancel it."

    def build(self, builder: WorkflowBuilder[OrderData]) -> None:
        """Describe the steps."""
        (
            builder.start_with(receive_order)
            .name("receive order")
            .wait_for(
                PAYMENT_EVENT,
                key=lambda order: order.order_id,
                effective_date=lambda order: order.placed_at,
                timeout=lambda order: order.payment_window,
            )
            .name("wait for payment")
            .output(payment=lambda step: step.event_data, timed_out=lambda step: step.timed_out)
            .decide(payment_outcome)
            .branch("ship", lambda b: b.start_with(ship_order).name("ship"))
            .branch("cancel", lambda b: b.start_with(cancel_order).name("cancel"))
            .name("paid?")
        )


workflows: list[Workflow[Any]] = [OrderWorkflow()]
"""What ``wfe worker --app wfe_core.demo:workflows`` registers."""


# --------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------


@dataclass
class DemoOrder:
    """One order of a demo run and how it ended."""

    order_id: str
    amount: Decimal
    workflow_id: str = ""
    paid: str = "never"
    """When its payment was published: ``worker up``, ``worker down`` or ``never``."""
    workflow_status: str = ""
    outcome: str = ""
    finished_by: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "order_id": self.order_id,
            "amount": str(self.amount),
            "workflow_id": self.workflow_id,
            "payment_published": self.paid,
            "status": self.workflow_status,
            "outcome": self.outcome,
            "finished_by": self.finished_by,
        }


@dataclass
class _Run:
    """The state shown while the demo runs."""

    orders: list[DemoOrder]
    started: float = field(default_factory=time.monotonic)
    instances: dict[str, WorkflowInstance] = field(default_factory=dict)
    finished_by: dict[str, str] = field(default_factory=dict)
    worker: str = "-"

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:5.1f}s"


class _Stores:
    """Opens hosts on the demo's store: a fresh store connection per worker (a real
    restart), except for ``memory://``, whose data lives in one provider object."""

    def __init__(self, url: str, options: HostOptions, namespace: str | None = None) -> None:
        self.url = url
        self.options = options
        self.store_options: dict[str, Any] = {} if namespace is None else {"namespace": namespace}
        self.shared: WorkflowHost | None = None
        if url_scheme(url) == "memory":
            self.shared = WorkflowHost.from_url(url, **self.store_options)

    def worker(self) -> WorkflowHost:
        """A new (not yet started) worker host with the demo workflow registered."""
        if self.shared is not None:
            host = WorkflowHost(self.shared.persistence, options=self.options)
        else:
            host = WorkflowHost.from_url(self.url, options=self.options, **self.store_options)
        for wf in workflows:
            host.register_workflow(type(wf)())
        return host

    @asynccontextmanager
    async def client(self) -> AsyncIterator[WorkflowClient]:
        """A client: it reads the store and publishes events; it runs nothing."""
        shared = self.shared
        if shared is not None:
            client = WorkflowClient(
                shared.persistence,
                lock_provider=shared.lock_provider,
                queue_provider=shared.queue_provider,
                lifecycle=shared.lifecycle,
            )
        else:
            client = WorkflowClient.from_url(self.url, **self.store_options)
        client.register_type(OrderData, Payment)
        async with client:
            yield client


def _stage(instance: WorkflowInstance | None, now: datetime) -> str:
    if instance is None:
        return "starting"
    data = instance.data
    if instance.status is WorkflowStatus.COMPLETE and isinstance(data, OrderData):
        return _outcome(instance)
    if instance.status is not WorkflowStatus.RUNNABLE:
        return instance.status.value
    for p in instance.execution_pointers:
        if p.end_time is None and p.status is PointerStatus.WAITING_FOR_EVENT:
            if p.event_published:
                return "payment received"
            if p.sleep_until is not None:
                left = max((p.sleep_until - now).total_seconds(), 0.0)
                return f"waiting for payment ({left:.1f}s left)"
            return "waiting for payment"
    return "running"


def _outcome(instance: WorkflowInstance) -> str:
    data = instance.data
    if not isinstance(data, OrderData):
        return ""
    return "cancelled (timeout)" if data.status == "cancelled" and data.timed_out else data.status


def _live_view(run: _Run, progress: Progress) -> Group:
    now = datetime.now(UTC)
    table = Table(title=f"orders  (worker: {run.worker})", title_justify="left", expand=False)
    table.add_column("order", no_wrap=True)
    table.add_column("amount", justify="right")
    table.add_column("state")
    table.add_column("finished by")
    for order in run.orders:
        instance = run.instances.get(order.workflow_id)
        table.add_row(
            order.order_id,
            str(order.amount),
            _stage(instance, now),
            run.finished_by.get(order.workflow_id, ""),
        )
    return Group(table, progress)


def _payment(order: DemoOrder) -> Payment:
    return Payment(order.amount, "card-" + order.order_id)


def summary_table(orders: list[DemoOrder]) -> Table:
    """The final table: order, status, outcome."""
    table = Table(title="demo summary", title_justify="left")
    table.add_column("order", no_wrap=True)
    table.add_column("amount", justify="right")
    table.add_column("paid")
    table.add_column("status")
    table.add_column("outcome")
    table.add_column("worker")
    for o in orders:
        table.add_row(
            o.order_id, str(o.amount), o.paid, o.workflow_status, o.outcome, o.finished_by
        )
    return table


async def run_demo(
    url: str = "sqlite:///wfe.db",
    *,
    orders: int = 5,
    payment_window: float = 4.0,
    console: Console | None = None,
    timeout: float = 45.0,
    namespace: str | None = None,
) -> list[DemoOrder]:
    """Run the demo on the store at ``url`` (in ``namespace``: None lets the store
    resolve it); return how each order ended.

    ``orders`` (at least 3) orders are placed; the last one is never paid and is
    cancelled after ``payment_window`` seconds. Progress goes to ``console``. Raises
    ``TimeoutError`` when the run does not finish within ``timeout`` seconds.
    """
    if orders < 3:
        raise ValueError("the demo needs at least 3 orders")
    console = console or Console()
    options = HostOptions(poll_interval=0.2, idle_time=0.02, stop_timeout=10.0)
    stores = _Stores(url, options, namespace)
    tag = secrets.token_hex(2).upper()
    run = _Run(
        [DemoOrder(f"{tag}-{i}", Decimal(10 * i) + Decimal("0.50")) for i in range(1, orders + 1)]
    )
    paid_early = run.orders[: orders // 2]
    paid_late = run.orders[len(paid_early) : orders - 1]
    unpaid = run.orders[-1]
    progress = Progress(
        TextColumn("finished"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("orders", total=orders)

    def say(message: str) -> None:
        console.print(f"[dim]{run.elapsed()}[/dim]  {message}", highlight=False, soft_wrap=True)

    def track(label: str) -> Callable[[LifecycleEvent], None]:
        def handler(event: LifecycleEvent) -> None:
            if event.type in (
                LifecycleEventType.WORKFLOW_COMPLETED,
                LifecycleEventType.WORKFLOW_TERMINATED,
            ):
                run.finished_by[event.workflow_id] = label

        return handler

    async with stores.client() as client:
        window = timedelta(seconds=payment_window)

        async def refresh() -> None:
            ids = [o.workflow_id for o in run.orders if o.workflow_id]
            for inst in await client.persistence.get_workflow_instances(ids):
                run.instances[inst.id] = inst
            done = sum(
                1
                for i in run.instances.values()
                if i.status in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
            )
            progress.update(task, completed=done)

        async def wait_until(cond: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + timeout
            while True:
                await refresh()
                live.update(_live_view(run, progress))
                if cond():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the demo timed out waiting for {what}")
                await asyncio.sleep(0.1)

        def names(group: list[DemoOrder]) -> str:
            return ", ".join(o.order_id for o in group)

        def stage_is(order: DemoOrder, *prefixes: str) -> bool:
            stage = _stage(run.instances.get(order.workflow_id), datetime.now(UTC))
            return stage.startswith(prefixes)

        def finished(group: list[DemoOrder]) -> bool:
            return all(
                o.workflow_id in run.instances
                and run.instances[o.workflow_id].status
                in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
                for o in group
            )

        console.print(
            f"[bold]wfe demo[/bold] — event-driven orders on {stores.url}", highlight=False
        )
        with Live(
            _live_view(run, progress), console=console, transient=True, refresh_per_second=10
        ) as live:
            worker1 = stores.worker()
            worker1.on_lifecycle_event(track("worker 1"))
            await worker1.start()
            try:
                run.worker = "worker 1"
                say("worker 1 started")
                placed = datetime.now(UTC)
                for order in run.orders:
                    order.workflow_id = await worker1.start_workflow(
                        OrderWorkflow.id,
                        OrderData(
                            order.order_id, order.amount, placed_at=placed, payment_window=window
                        ),
                        reference=order.order_id,
                    )
                say(
                    f"placed {orders} orders ({run.orders[0].order_id} … {unpaid.order_id}); "
                    f"each waits up to {payment_window:g}s for its payment event"
                )
                await wait_until(
                    lambda: all(stage_is(o, "waiting") for o in run.orders),
                    "every order to wait for its payment",
                )
                say(f"all {orders} orders are waiting for a [bold]payment[/bold] event")
                for order in paid_early:
                    await worker1.publish_event(PAYMENT_EVENT, order.order_id, _payment(order))
                    order.paid = "worker up"
                say("published payments for " + names(paid_early))
                await wait_until(lambda: finished(paid_early), "the paid orders to ship")
                say(names(paid_early) + " resumed on their payment and shipped")
                waiting = [o for o in run.orders if not finished([o])]
                await worker1.stop()
            finally:
                await worker1.stop()  # idempotent: this one only matters on an error
            run.worker = "none (stopped)"
            say(
                f"[bold]worker 1 stopped[/bold] with {len(waiting)} orders still waiting; "
                "their state is in the store"
            )
            for order in paid_late:
                await client.publish_event(PAYMENT_EVENT, order.order_id, _payment(order))
                order.paid = "worker down"
            say(
                "published payments for "
                + names(paid_late)
                + " while no worker runs (stored, not lost)"
            )
            await refresh()
            live.update(_live_view(run, progress))
            await asyncio.sleep(0.5)
            worker2 = stores.worker()
            worker2.on_lifecycle_event(track("worker 2"))
            await worker2.start()
            run.worker = "worker 2"
            say(
                "[bold]worker 2 started[/bold] on the same store: it picks up where worker 1 "
                "stopped"
            )
            try:
                await wait_until(lambda: finished(paid_late), "the late payments to be delivered")
                say(names(paid_late) + " got their stored payments and shipped")
                await wait_until(lambda: finished(run.orders), "the unpaid order to time out")
                say(
                    f"{unpaid.order_id} got no payment within {payment_window:g}s and was cancelled"
                )
            finally:
                await worker2.stop()
            run.worker = "none (stopped)"
            live.update(_live_view(run, progress))
        for order in run.orders:
            inst = run.instances[order.workflow_id]
            order.workflow_status = inst.status.value
            order.outcome = _outcome(inst)
            order.finished_by = run.finished_by.get(order.workflow_id, "")
    return run.orders
