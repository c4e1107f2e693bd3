"""Steps the builder did not name carry their function's or StepBody class's name."""

from __future__ import annotations

from typing import Any

import pytest

from wfe_core import (
    ExecutionResult,
    StepBody,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def reserve_stock(context: StepContext[Any]) -> None:
    """An unnamed function step."""


class ChargeCard(StepBody):
    """An unnamed StepBody step."""

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        return ExecutionResult.next()


async def ship(context: StepContext[Any]) -> None:
    """A step the builder names."""


class Labelled(Workflow[dict[str, Any]]):
    id = "labelled"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        builder.start_with(reserve_stock).then(ChargeCard).then(ship).name("ship it")


async def test_unnamed_steps_are_labelled_by_their_body() -> None:
    """step_name is the builder's name, else the function's or class's name."""
    async with MemoryPersistenceProvider() as store, WorkflowHost(store) as host:
        host.register_workflow(Labelled())
        done = await host.run_workflow("labelled", {}, timeout=30)
    assert done.status is WorkflowStatus.COMPLETE
    assert [p.step_name for p in done.execution_pointers] == [
        "reserve_stock",
        "ChargeCard",
        "ship it",
    ]


def test_data_type_is_taken_from_the_type_argument() -> None:
    """Workflow[Order] gives data_type Order; an explicit data_type wins."""
    from dataclasses import dataclass

    @dataclass
    class Order:
        order_id: str = ""

    class Inferred(Workflow[Order]):
        id = "inferred"

        def build(self, builder: WorkflowBuilder[Order]) -> None:
            builder.start_with(reserve_stock)

    class Explicit(Workflow[dict[str, Any]]):
        id = "explicit"
        data_type = dict

        def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
            builder.start_with(reserve_stock)

    class Parametrised(Workflow[dict[str, int]]):
        id = "parametrised"

        def build(self, builder: WorkflowBuilder[dict[str, int]]) -> None:
            builder.start_with(reserve_stock)

    assert Inferred.data_type is Order
    assert Explicit.data_type is dict
    assert Parametrised.data_type is dict
    assert Workflow.data_type is None
