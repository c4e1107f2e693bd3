"""Teeth for the crash-point tests: broken copies of event delivery fail them.

Each mutant replaces ``WorkflowHost._deliver`` in both worker processes (see
``crash_scenarios._mutant_deliver``); the delivery scenario of
``test_crash_points`` is then run unchanged, killed at
``delivery.after_subscription``, and the event is lost: the workflow never
completes. The bound is short because not completing is the expected result.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_scenarios() -> ModuleType:
    """``crash_scenarios`` (next to this file), loaded by path: no sys.path games."""
    name = "wfe_tests_crash_scenarios"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("crash_scenarios.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


run_scenario: Callable[..., Any] = _load_scenarios().run_scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "mutant",
    [
        "swap",  # the subscription is terminated before the delivered event is saved
        "drop",  # the delivered event is never saved (the instance write is dropped)
    ],
)
def test_delivery_mutant_loses_the_event(tmp_path: Path, mutant: str) -> None:
    outcome = run_scenario(
        tmp_path, "event", "delivery.after_subscription", mutant=mutant, wait=8.0
    )
    assert outcome.status != "complete", f"mutant {mutant} survived: {outcome}"
    assert outcome.runs["b"] == 0  # the step after the wait never ran
    assert outcome.runs["a"] == 1
