"""Workflows the dashboard's tests (and its screenshots) run: ``wfe worker --app
wfe_dashboard_app:workflows`` from this folder.

* ``approval``: prepare -> wait for ``approve`` (key: the order) -> finish. Its data is
  a dataclass the dashboard does not know, so the dashboard shows it as stored.
* ``fanout``: begin -> two parallel branches -> a foreach over the items -> a step
  that fails twice before it succeeds (retried) -> done. Plain dict data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from wfe_core.builder import WorkflowBuilder
from wfe_core.definition import StepContext, Workflow
from wfe_core.retry import RetryPolicy


@dataclass
class Approval:
    """An order waiting for someone's approval."""

    order: str = ""
    amount: Decimal = Decimal("0")
    decision: Any = None
    done: bool = False


async def prepare(context: StepContext[Approval]) -> None:
    """Nothing to do but start."""
    context.data.done = False


async def finish(context: StepContext[Approval]) -> None:
    """Record that the order was approved."""
    context.data.done = True


class ApprovalWorkflow(Workflow[Approval]):
    """prepare -> wait for ``approve`` keyed by the order -> finish."""

    id = "approval"
    version = 1
    data_type = Approval

    def build(self, builder: WorkflowBuilder[Approval]) -> None:
        (
            builder.start_with(prepare)
            .name("prepare")
            .wait_for("approve", key=lambda d: d.order)
            .name("wait for approval")
            .output(decision=lambda step: step.event_data)
            .then(finish)
            .name("finish")
        )


def _mark(name: str) -> Any:
    async def step(context: StepContext[dict[str, Any]]) -> None:
        context.data.setdefault("done", []).append(
            name if context.item is None else f"{name}:{context.item}"
        )

    step.__name__ = name.replace(" ", "_")
    return step


async def flaky(context: StepContext[dict[str, Any]]) -> None:
    """Fail on the first two attempts."""
    if context.pointer.retry_count < 2:
        raise RuntimeError(
            f"the warehouse did not answer (attempt {context.pointer.retry_count + 1})"
        )
    context.data["flaky"] = "ok"


class FanoutWorkflow(Workflow[dict[str, Any]]):
    """begin -> parallel(pack -> label | notify) -> each item -> flaky (retried) -> done."""

    id = "fanout"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        (
            builder.start_with(_mark("begin"))
            .name("begin")
            .parallel()
            .do(
                lambda b: (
                    b.start_with(_mark("pack")).name("pack").then(_mark("label")).name("label")
                )
            )
            .do(lambda b: b.start_with(_mark("notify")).name("notify"))
            .join()
            .name("ship in parallel")
            .foreach(lambda d: d.get("items", []), parallel=False)
            .do(lambda b: b.start_with(_mark("count")).name("count item"))
            .name("each item")
            .then(flaky)
            .name("call warehouse")
            .retry_policy(
                RetryPolicy(
                    initial_interval=timedelta(milliseconds=50), maximum_attempts=5, jitter=0
                )
            )
            .then(_mark("done"))
            .name("done")
        )


workflows: list[Workflow[Any]] = [ApprovalWorkflow(), FanoutWorkflow()]
"""What the worker registers."""
