"""RetryPolicy (validation, delays, attempts, non-retryable errors), the back-off
helper every engine loop uses, and a guard that no loop doubles a delay by hand."""

from __future__ import annotations

import ast
import random
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from wfe_core.retry import Backoff, backoff_delay

from wfe_core import (
    DefinitionError,
    ErrorBehavior,
    HostOptions,
    PointerStatus,
    RetryPolicy,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio

FAST = HostOptions(poll_interval=0.05, idle_time=0.01, error_retry_interval=0.01)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------- the helper


def test_backoff_grows_by_the_coefficient_up_to_the_cap() -> None:
    """Without jitter: initial * coefficient ** (attempt - 1), capped at maximum."""
    delays = [backoff_delay(n, 0.1, 2.0, 1.0) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff_delay(3, 0.5, 1.0) == 0.5  # coefficient 1: constant
    assert backoff_delay(0, 0.5, 2.0) == 0.5  # attempt < 1 counts as the first
    assert backoff_delay(10_000, 0.1, 10.0, 3.0) == 3.0  # no float overflow
    assert backoff_delay(1, 0.0) == 0.0


def test_jitter_stays_within_its_fraction_below_the_delay() -> None:
    """With jitter j a delay d lies in [d * (1 - j), d]: never above the cap."""
    rng = random.Random(7)
    seen = [backoff_delay(6, 0.1, 2.0, 2.0, 0.2, rng=rng) for _ in range(500)]
    assert all(1.6 <= d <= 2.0 for d in seen)
    assert max(seen) - min(seen) > 0.2  # it really spreads


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same delays."""
    a = [backoff_delay(n, 0.05, 2.0, 1.0, 0.5, rng=random.Random(3)) for n in range(1, 6)]
    b = [backoff_delay(n, 0.05, 2.0, 1.0, 0.5, rng=random.Random(3)) for n in range(1, 6)]
    assert a == b


def test_backoff_iterator_counts_and_resets() -> None:
    """Backoff hands out growing delays and starts over after reset()."""
    wait = Backoff(0.01, maximum=0.04, jitter=0.0)
    assert [next(wait) for _ in range(4)] == pytest.approx([0.01, 0.02, 0.04, 0.04])
    wait.reset()
    assert next(wait) == pytest.approx(0.01)


_SOURCES = [
    Path(__file__).resolve().parents[2] / pkg / "src"
    for pkg in ("wfe_core", "wfe_sql", "wfe_sqlite", "wfe_postgres", "wfe_redis", "wfe_memory")
]


def _hand_rolled_doubling(tree: ast.AST) -> list[int]:
    """Lines that grow a delay by hand: ``x * 2`` inside ``min(...)``, or ``2 ** n``."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Pow)
            and isinstance(node.left, ast.Constant)
            and node.left.value == 2
            and not isinstance(node.right, ast.Constant)
        ):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "min":
            for arg in node.args:
                if (
                    isinstance(arg, ast.BinOp)
                    and isinstance(arg.op, ast.Mult)
                    and isinstance(arg.right, ast.Constant)
                    and arg.right.value == 2
                ):
                    lines.append(node.lineno)
    return lines


def test_no_engine_loop_backs_off_by_hand() -> None:
    """Every back-off loop uses wfe_core.retry (jittered), none doubles a delay itself."""
    offenders = []
    for root in _SOURCES:
        for path in root.rglob("*.py"):
            for line in _hand_rolled_doubling(ast.parse(path.read_text(), str(path))):
                offenders.append(f"{path}:{line}")
    assert offenders == [], "use wfe_core.retry.Backoff / backoff_delay: " + ", ".join(offenders)


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"initial_interval": timedelta(0)}, "initial_interval must be positive"),
        ({"initial_interval": 1.0}, "initial_interval must be a timedelta"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient must be a number >= 1"),
        ({"maximum_interval": timedelta(seconds=-1)}, "maximum_interval must be positive"),
        (
            {"initial_interval": timedelta(seconds=10), "maximum_interval": timedelta(seconds=1)},
            "shorter than initial_interval",
        ),
        ({"maximum_attempts": 0}, "maximum_attempts must be an int >= 1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
        ({"non_retryable": (ValueError, "nope")}, "not an exception class"),
        ({"non_retryable": 3}, "must be a tuple of exception classes"),
    ],
)
def test_bad_policies_are_refused_with_the_reason(kwargs: dict[str, Any], words: str) -> None:
    """Each invalid setting raises DefinitionError naming it."""
    with pytest.raises(DefinitionError, match=words):
        RetryPolicy(**kwargs)


def test_policy_delays_attempts_and_non_retryable() -> None:
    """delay() grows and caps; exhausted() counts the first run; retries() by type."""
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=3,
        maximum_interval=timedelta(seconds=5),
        maximum_attempts=3,
        jitter=0,
        non_retryable=KeyError,  # type: ignore[arg-type]  # one class is accepted too
    )
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3)] == [1, 3, 5]
    assert not policy.exhausted(1)
    assert policy.exhausted(2)
    assert policy.non_retryable == (KeyError,)
    assert not policy.retries(KeyError("x"))
    assert policy.retries(ValueError("x"))


def test_builder_validates_the_policy_and_timeout_calls() -> None:
    """policy= with the shorthand, a non-policy, or a bad timeout fail at build time."""
    b: WorkflowBuilder[Any] = WorkflowBuilder()
    step = b.start_with(lambda c: None)
    with pytest.raises(DefinitionError, match="either policy= or retry_interval"):
        step.on_error(ErrorBehavior.RETRY, max_retries=2, policy=RetryPolicy())
    with pytest.raises(DefinitionError, match="must be a RetryPolicy"):
        step.on_error(ErrorBehavior.RETRY, policy="often")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="timeout must be a positive timedelta"):
        step.timeout(timedelta(0))
    with pytest.raises(DefinitionError, match="default_retry_policy takes a RetryPolicy"):
        b.default_retry_policy(3)  # type: ignore[arg-type]


class _Flaky(Workflow[dict[str, Any]]):
    """One failing step configured by the test, then "after"."""

    id = "retry-flaky"
    data_type = dict

    def __init__(self, fails: int, configure: Any, error: type[Exception] = ValueError) -> None:
        self.fails = fails
        self.configure = configure
        self.error = error
        self.times: list[float] = []

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        def flaky(context: StepContext[dict[str, Any]]) -> None:
            self.times.append(time.monotonic())
            if len(self.times) <= self.fails:
                raise self.error(f"attempt {len(self.times)}")

        self.configure(builder.start_with(flaky).name("flaky")).then(lambda c: None).name("after")


async def _run(workflow: Workflow[Any]) -> Any:
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(workflow)
        return await host.run_workflow(workflow.id, {}, timeout=30)


def _policy(**kw: Any) -> RetryPolicy:
    base: dict[str, Any] = {"initial_interval": timedelta(milliseconds=20), "jitter": 0}
    return RetryPolicy(**(base | kw))


async def test_maximum_attempts_count_the_first_run() -> None:
    """maximum_attempts=3: three runs, then the step fails and the workflow terminates."""
    wf = _Flaky(99, lambda s: s.retry_policy(_policy(maximum_attempts=3)))
    done = await _run(wf)
    assert done.status is WorkflowStatus.TERMINATED
    assert len(wf.times) == 3
    assert done.execution_pointers[0].status is PointerStatus.FAILED


async def test_policy_retries_until_success_with_growing_capped_waits() -> None:
    """Waits grow by the coefficient and stop at maximum_interval."""
    policy = _policy(backoff_coefficient=4, maximum_interval=timedelta(milliseconds=80))
    wf = _Flaky(3, lambda s: s.on_error(ErrorBehavior.RETRY, policy=policy))
    done = await _run(wf)
    assert done.status is WorkflowStatus.COMPLETE
    gaps = [b - a for a, b in zip(wf.times, wf.times[1:], strict=False)]
    assert gaps[0] >= 0.015
    assert gaps[1] >= 0.07
    assert gaps[2] >= 0.07
    assert gaps[2] < 5  # capped (80 ms), not 320 ms * slack


async def test_non_retryable_error_fails_at_once() -> None:
    """An error listed in non_retryable is not retried: the step fails on its first run."""
    wf = _Flaky(99, lambda s: s.retry_policy(_policy(non_retryable=(KeyError,))), KeyError)
    done = await _run(wf)
    assert done.status is WorkflowStatus.TERMINATED
    assert len(wf.times) == 1


async def test_definition_default_policy_applies_to_steps_without_settings() -> None:
    """Workflow.retry_policy is the default; a step's own on_error wins over it."""

    class Defaulted(_Flaky):
        id = "retry-defaulted"
        retry_policy = _policy(maximum_attempts=2)

    wf = Defaulted(99, lambda s: s)
    assert (await _run(wf)).status is WorkflowStatus.TERMINATED
    assert len(wf.times) == 2

    class Overridden(_Flaky):
        id = "retry-overridden"
        retry_policy = _policy(maximum_attempts=2)

    own = Overridden(3, lambda s: s.on_error(ErrorBehavior.RETRY, timedelta(milliseconds=5)))
    assert (await _run(own)).status is WorkflowStatus.COMPLETE
    assert len(own.times) == 4


async def test_shorthand_keeps_its_exact_waits() -> None:
    """on_error(RETRY, retry_interval, max_retries, backoff) works as before (no jitter)."""
    wf = _Flaky(99, lambda s: s.on_error(ErrorBehavior.RETRY, timedelta(milliseconds=30), 2, 2.0))
    done = await _run(wf)
    assert done.status is WorkflowStatus.TERMINATED
    assert len(wf.times) == 3
    gaps = [b - a for a, b in zip(wf.times, wf.times[1:], strict=False)]
    assert gaps[0] >= 0.029
    assert gaps[1] >= 0.059


def test_readme_timeouts_and_retries_example_runs(tmp_path: Path) -> None:
    """The README's "Timeouts and retries" example runs as written."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Timeouts and retries", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    script = tmp_path / "readme_timeouts.py"
    script.write_text(match.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "terminated 2 True"
