"""A typed workflow: ``Workflow[Order]`` types the whole builder chain.

``test_typed_builder.py`` runs ``mypy --strict`` on this file (it must pass) and on
copies with a misspelt attribute (mypy must name it), and builds the definition.
Every function of the chain is checked against ``Order``: data functions take an
``Order``, function steps a ``StepContext[Order]``, ``output`` functions the step
body (``WaitFor`` after ``wait_for``, ``Charge`` after ``then(Charge)``) and branches
a ``WorkflowBuilder[Order]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from wfe_core import ExecutionResult, StepBody, StepContext, Workflow, WorkflowBuilder


@dataclass
class Order:
    """The data of one order."""

    order_id: str = ""
    amount: Decimal = Decimal("0")
    placed_at: datetime | None = None
    lines: list[str] = field(default_factory=list)
    payment: Any = None
    receipt: str = ""
    attempts: int = 0
    shipped: bool = False


class Charge(StepBody):
    """Charge ``amount``; outputs ``receipt``."""

    amount: Decimal = Decimal("0")
    label: str = ""
    receipt: str = ""

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        """Charge and proceed."""
        self.receipt = f"{self.label}: {self.amount}"
        return ExecutionResult.next()


def place(context: StepContext[Order]) -> None:
    """Mark the order placed."""
    context.data.attempts = 0


async def ship(context: StepContext[Order]) -> None:
    """Ship it."""
    context.data.shipped = True


def pack(context: StepContext[Order]) -> None:
    """Pack one line (``context.item``)."""
    context.data.lines.append(f"packed {context.item}")


def label_of(order: Order, context: StepContext[Order]) -> str:
    """A two-argument input function: the data and the step context."""
    return f"{order.order_id}@{context.step.id}"


class OrderWorkflow(Workflow[Order]):
    """place -> wait for the payment -> charge -> pack every line -> ship if paid."""

    id = "typed-order"

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        """Describe the steps; every lambda below is checked against ``Order``."""
        (
            builder.start_with(place)
            .wait_for(
                "payment",
                key=lambda o: o.order_id,
                effective_date=lambda o: o.placed_at,
                timeout=timedelta(hours=1),
            )
            .output(payment=lambda step: step.event_data)
            .then(Charge)
            .input(amount=lambda o: o.amount)
            .input(label=label_of)
            .input(label=lambda o, context: f"{o.order_id}/{context.step.id}")
            .output(receipt=lambda step: step.receipt)
            .foreach(lambda o: o.lines, parallel=False)
            .do(lambda b: b.start_with(pack))
            .while_(lambda o: o.attempts < 3 and not o.receipt)
            .do(lambda b: b.start_with(place).delay(timedelta(seconds=1)))
            .if_(lambda o: o.payment is not None)
            .do(lambda b: b.start_with(ship))
            .decide(lambda o: o.shipped)
            .branch(True, lambda b: b.start_with(ship))
            .recur(timedelta(minutes=5), until=lambda o: o.shipped)
            .do(lambda b: b.start_with(place))
            .activity("audit", params=lambda o: {"order": o.order_id})
            .output(receipt=lambda step: str(step.result))
            .cancel_condition(lambda o: o.amount < 0)
        )
