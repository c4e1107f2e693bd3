"""The README's order example runs and ends as it says: one order shipped, one cancelled."""

from __future__ import annotations

import importlib.util
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

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
