"""A checkout workflow used by the client examples: wait for the payment event, then
confirm -- or give up when it does not come in time.

Run a worker for it with ``wfe worker --app examples.checkout:workflows --url URL``;
start and pay for orders from a web app (``examples/web_app.py``) or from synchronous
code (``examples/sync_client.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from wfe_core import StepContext, Workflow, WorkflowBuilder


@dataclass
class Checkout:
    """One checkout, as the workflow sees it."""

    order_id: str = ""
    amount_cents: int = 0
    paid_cents: int = 0
    status: str = "new"
    placed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """Payments published from this time on count (even before the wait begins)."""


async def reserve(context: StepContext[Checkout]) -> None:
    """The order is placed: it waits for its payment."""
    context.data.status = "awaiting payment"


async def confirm(context: StepContext[Checkout]) -> None:
    """The payment arrived: the order is confirmed."""
    context.data.status = "confirmed" if context.data.paid_cents else "expired"


class CheckoutWorkflow(Workflow[Checkout]):
    """Wait up to a day for the ``payment`` event keyed by the order id."""

    id = "checkout"

    def build(self, builder: WorkflowBuilder[Checkout]) -> None:
        """Steps."""
        builder.start_with(reserve).wait_for(
            "payment",
            key=lambda c: c.order_id,
            effective_date=lambda c: c.placed_at,
            timeout=timedelta(days=1),
        ).output(paid_cents=lambda step: step.event_data or 0).then(confirm).name("confirm")


workflows = [CheckoutWorkflow()]
"""What ``wfe worker --app examples.checkout:workflows`` registers."""
