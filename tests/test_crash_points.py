"""Deterministic crash points: a worker killed (``os._exit``) at each named point of the
durable paths, then a fresh worker on the same SQLite file: nothing is lost and no
step whose completion was checkpointed runs again.

The promise is at-least-once per step: a step that ran but whose checkpoint was never
written (killed at ``checkpoint.before_persist``) may run once more -- at most twice
in all. Every other step runs exactly once.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from wfe_core.crashpoints import CRASH_POINTS

# (crash spec, scenario, steps that may run twice: ran, but their checkpoint was lost)
CASES: list[tuple[str, str, frozenset[str]]] = [
    ("start.after_create", "event", frozenset()),
    ("checkpoint.before_persist", "event", frozenset({"a"})),  # a's checkpoint
    ("checkpoint.before_persist:3", "event", frozenset({"b"})),  # b's (after the wait)
    ("checkpoint.after_persist", "event", frozenset()),
    ("checkpoint.after_persist:3", "event", frozenset()),
    # the if-block's result is written with b's checkpoint: lost with it, the if runs
    # again (same decision) and so does b, the last user step -- never a
    ("checkpoint.before_persist:2", "control", frozenset({"b"})),
    ("checkpoint.after_persist:2", "control", frozenset()),
    ("delivery.after_persist", "event", frozenset()),
    ("delivery.after_subscription", "event", frozenset()),
    ("activity.after_submit", "activity", frozenset()),
    ("delivery.after_persist", "activity", frozenset()),
    ("child.after_create", "child", frozenset()),
    ("checkpoint.after_persist:2", "child", frozenset()),  # the parent's, child stored
    ("ended.before_parent_event", "child", frozenset()),
    ("control.after_persist", "terminate", frozenset()),
    ("control.after_subscriptions", "terminate", frozenset()),
    ("control.after_persist", "child_terminate", frozenset()),
    ("ended.before_parent_event", "child_terminate", frozenset()),
]


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
check_outcome: Callable[..., None] = _load_scenarios().check_outcome

pytestmark = pytest.mark.slow


def _param(spec: str, scenario: str, may_rerun: frozenset[str]) -> object:
    return pytest.param(spec, scenario, may_rerun, id=f"{spec}-{scenario}")


def test_every_crash_point_is_covered() -> None:
    covered = {spec.split(":")[0] for spec, _, _ in CASES}
    assert covered == set(CRASH_POINTS)


@pytest.mark.parametrize(
    ("crash_at", "scenario", "may_rerun"),
    [_param(*case) for case in CASES],
)
def test_crash_then_restart_loses_nothing(
    tmp_path: Path, crash_at: str, scenario: str, may_rerun: frozenset[str]
) -> None:
    outcome = run_scenario(tmp_path, scenario, crash_at)
    check_outcome(outcome, scenario, may_rerun)
