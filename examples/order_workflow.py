"""An event-driven order workflow: wait for the payment, then ship — or cancel when the
payment does not arrive in time.

Run it with ``python examples/order_workflow.py``: it starts two orders on the in-memory
store, pays for one of them and lets the other one time out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from wfe_core import HostOptions, StepContext, Workflow, WorkflowBuilder, WorkflowHost
from wfe_memory import MemoryPersistenceProvider


@dataclass
class Payment:
    """The data of a "payment" event."""

    amount: Decimal
    reference: str


@dataclass
class OrderData:
    """One order, as the workflow sees it."""

    order_id: str = ""
    amount: Decimal = Decimal("0")
    placed_at: datetime | None = None
    payment: Payment | None = None
    timed_out: bool = False
    status: str = "new"


async def place_order(context: StepContext[OrderData]) -> None:
    """Record that the order is waiting for its payment."""
    order = context.data
    order.status = "awaiting payment"
    print(f"{order.order_id}: placed for {order.amount}, waiting for payment")


async def ship_order(context: StepContext[OrderData]) -> None:
    """Ship a paid order."""
    order = context.data
    order.status = "shipped"
    reference = order.payment.reference if order.payment else "?"
    print(f"{order.order_id}: paid ({reference}), shipped")


async def cancel_order(context: StepContext[OrderData]) -> None:
    """Cancel an order whose payment never came."""
    order = context.data
    order.status = "cancelled"
    print(f"{order.order_id}: no payment in time, cancelled")


def payment_outcome(order: OrderData) -> str:
    """Which way the order goes after the wait."""
    return "cancel" if order.timed_out else "ship"


class OrderWorkflow(Workflow[OrderData]):
    """place -> wait for "payment" keyed by the order id (with a timeout) -> ship or cancel.

    The wait subscribes as of ``placed_at``, so a payment published right after the
    order was placed is not missed even if it arrives before the wait is reached.
    """

    id = "order"
    version = 1
    data_type = OrderData

    def __init__(self, payment_timeout: timedelta = timedelta(days=1)) -> None:
        super().__init__()
        self.payment_timeout = payment_timeout

    def build(self, builder: WorkflowBuilder[OrderData]) -> None:
        (
            builder.start_with(place_order)
            .wait_for(
                "payment",
                key=lambda order: order.order_id,
                effective_date=lambda order: order.placed_at,
                timeout=self.payment_timeout,
            )
            .output(payment=lambda step: step.event_data, timed_out=lambda step: step.timed_out)
            .decide(payment_outcome)
            .branch("ship", lambda b: b.start_with(ship_order))
            .branch("cancel", lambda b: b.start_with(cancel_order))
        )


async def main(payment_timeout: float = 2.0) -> dict[str, OrderData]:
    """Start two orders, pay one, let the other time out; return each order's final data."""
    async with MemoryPersistenceProvider() as store:
        host = WorkflowHost(store, options=HostOptions(poll_interval=0.5))
        host.register_type(Payment)
        host.register_workflow(OrderWorkflow(timedelta(seconds=payment_timeout)))
        async with host:
            now = datetime.now(UTC)
            orders = {
                "A-1001": await host.start_workflow(
                    "order", OrderData("A-1001", Decimal("49.90"), placed_at=now)
                ),
                "A-1002": await host.start_workflow(
                    "order", OrderData("A-1002", Decimal("15.00"), placed_at=now)
                ),
            }
            await host.publish_event("payment", "A-1001", Payment(Decimal("49.90"), "card-7781"))
            results: dict[str, Any] = {}
            for order_id, workflow_id in orders.items():
                instance = await host.wait_for_workflow(workflow_id, timeout=payment_timeout + 30)
                results[order_id] = instance.data
    for order_id, order in results.items():
        print(f"{order_id}: {order.status}")
    return results


if __name__ == "__main__":
    asyncio.run(main())
