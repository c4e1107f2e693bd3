"""The README's order example runs and ends as it says: one order shipped, one cancelled.

The workflow runs with its real one-day payment window under the test kit's virtual
clock (``wfe_core.testing``): no real time is spent waiting for the timeout.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_core.testing import WorkflowTestEnv

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "order_workflow.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wfe_example_order_workflow", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_paid_order_ships_and_unpaid_order_is_cancelled(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    async with WorkflowTestEnv() as env:
        env.host.register_type(example.Payment)
        started = env.now()
        workflow = example.OrderWorkflow()  # the real window: one day
        handles = {
            order_id: await env.start(
                workflow, example.OrderData(order_id, Decimal(amount), placed_at=started)
            )
            for order_id, amount in (("A-1001", "49.90"), ("A-1002", "15.00"))
        }
        await env.publish_event("payment", "A-1001", example.Payment(Decimal("49.90"), "card-7781"))
        paid, unpaid = [await env.wait_for_workflow(h, timeout=30) for h in handles.values()]
        assert paid.status is unpaid.status is WorkflowStatus.COMPLETE
        assert env.now() - started >= timedelta(days=1)  # the unpaid order's window passed
        for handle, branch in (
            (handles["A-1001"], "ship_order"),
            (handles["A-1002"], "cancel_order"),
        ):
            history = await env.step_history(handle)
            assert history[0].name == "place_order"
            assert history[1].status is PointerStatus.COMPLETE
            assert history[-1].name == branch
            assert history[-1].status is PointerStatus.COMPLETE
    paid, unpaid = paid.data, unpaid.data
    assert paid.status == "shipped"
    assert paid.timed_out is False
    assert paid.payment == example.Payment(Decimal("49.90"), "card-7781")
    assert unpaid.status == "cancelled"
    assert unpaid.timed_out is True
    assert unpaid.payment is None
    out = capsys.readouterr().out
    assert "A-1001: paid (card-7781), shipped" in out
    assert "A-1002: no payment in time, cancelled" in out


async def test_the_example_script_runs(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    results = await example.main(payment_timeout=0.5)
    paid, unpaid = results["A-1001"], results["A-1002"]
    assert paid.status == "shipped"
    assert paid.timed_out is False
    assert paid.payment == example.Payment(Decimal("49.90"), "card-7781")
    assert unpaid.status == "cancelled"
    assert unpaid.timed_out is True
    assert unpaid.payment is None
    out = capsys.readouterr().out
    assert "A-1001: shipped" in out
    assert "A-1002: cancelled" in out
