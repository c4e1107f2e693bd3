"""Teeth for the crash-point tests: a broken copy of each durable path fails them.

Each mutant (``crash_scenarios.MUTANTS``, patched into both worker processes through
``WFE_TEST_MUTANT``) is run through the same scenario, killed at the same kind of
crash point, as in ``test_crash_points``, and the same check
(``crash_scenarios.check_outcome``) must fail: something is lost or a checkpointed
step runs again. The bound is short because not ending is often the expected result.

Where a mutant is caught only at one crash point, the comment says why (a reordered
pair of writes shows only when the process dies between them).
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


check_outcome: Callable[..., None] = _load_scenarios().check_outcome

# (mutant, scenario, crash spec, steps that may run twice in a correct engine)
TEETH: list[tuple[str, str, str, frozenset[str]]] = [
    # the event is lost: the workflow never completes
    ("delivery-swap", "event", "delivery.after_subscription", frozenset()),
    ("delivery-drop", "event", "delivery.after_subscription", frozenset()),
    # a's checkpoint was dropped: the restart runs a again
    ("checkpoint-drop", "event", "checkpoint.after_persist", frozenset()),
    # the instance was queued, not stored, when the worker died: the workflow is lost
    ("start-swap", "event", "start.after_create", frozenset()),
    ("start-drop", "event", "start.after_create", frozenset()),
    # the parent waits for a child that was never stored. The swap is caught only
    # between the two writes (the parent's 2nd checkpoint, before the late create);
    # killed at child.after_create it has done both writes and survives
    ("child-swap", "child", "checkpoint.after_persist:2", frozenset()),
    ("child-drop", "child", "child.after_create", frozenset()),
    # subscriptions dropped, TERMINATED not saved: the workflow is stuck, runnable, on
    # a wait nothing can end. Caught only at the new point between the two writes;
    # killed at control.after_persist (after both) it survives
    ("control-swap", "terminate", "control.after_subscriptions", frozenset()),
    # a's result rides on b's checkpoint, lost in the crash: a, a user step, runs again
    ("share-user", "control", "checkpoint.before_persist", frozenset({"b"})),
    ("control-swap", "child_terminate", "control.after_subscriptions", frozenset()),
]


@pytest.mark.parametrize(
    ("mutant", "scenario", "crash_at", "may_rerun"),
    [pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in TEETH],
)
def test_mutant_is_caught(
    tmp_path: Path, mutant: str, scenario: str, crash_at: str, may_rerun: frozenset[str]
) -> None:
    outcome = run_scenario(tmp_path, scenario, crash_at, mutant=mutant, wait=8.0)
    with pytest.raises(AssertionError):
        check_outcome(outcome, scenario, may_rerun)


def test_every_mutant_has_teeth() -> None:
    mutants = _load_scenarios().MUTANTS
    assert {case[0] for case in TEETH} == set(mutants)
