"""Per-step timeouts (``.timeout(...)``) and workflow execution timeouts
(``start_workflow(..., execution_timeout=...)``) on the memory store and a SQLite file."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from wfe_core.clock import use_clock
from wfe_core.event_names import EXECUTION_DEADLINE_ATTRIBUTE

from wfe_core import (
    ErrorBehavior,
    ExecutionResult,
    HostOptions,
    PointerStatus,
    RetryPolicy,
    StepContext,
    StepTimeout,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio

FAST = HostOptions(poll_interval=0.05, idle_time=0.01, error_retry_interval=0.01)
Data = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Slow(Workflow[Data]):
    """A step that waits for ``context.cancelled`` (or ``release``), with a timeout."""

    id = "timeouts-slow"
    data_type = dict

    def __init__(self, configure: Callable[[Any], Any], fail_runs: int = 1_000) -> None:
        self.configure = configure
        self.fail_runs = fail_runs
        self.runs = 0
        self.saw_cancel: list[bool] = []
        self.cancelled_body = 0

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        async def slow(context: StepContext[Data]) -> None:
            self.runs += 1
            if self.runs > self.fail_runs:
                return
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.saw_cancel.append(context.cancelled.is_set())
                self.cancelled_body += 1
                raise

        step = builder.start_with(slow).name("slow").timeout(timedelta(milliseconds=100))
        self.configure(step).then(lambda c: None).name("after")


async def _run(wf: Workflow[Any], **start: Any) -> Any:
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(wf)
        wid = await host.start_workflow(wf.id, {}, **start)
        done = await host.wait_for_workflow(wid, 20)
        return done, await host.get_errors(wid)


async def test_step_timeout_fires_cancelled_then_cancels_and_retries() -> None:
    """Past its timeout the step sees context.cancelled, is cancelled, fails with
    StepTimeout and is retried by its policy until it succeeds."""
    wf = Slow(lambda s: s.on_error(ErrorBehavior.RETRY, timedelta(milliseconds=10)), fail_runs=2)
    done, errors = await _run(wf)
    assert done.status is WorkflowStatus.COMPLETE
    assert wf.runs == 3
    assert wf.cancelled_body == 2
    assert wf.saw_cancel == [True, True]
    assert [e.error_type for e in errors] == ["wfe_core.errors.StepTimeout"] * 2
    assert "slow" in errors[0].message
    assert "0.1s" in errors[0].message


async def test_step_timeout_with_terminate_policy_terminates() -> None:
    """A timed-out step under on_error(TERMINATE) ends the workflow TERMINATED."""
    wf = Slow(lambda s: s.on_error(ErrorBehavior.TERMINATE))
    done, errors = await _run(wf)
    assert done.status is WorkflowStatus.TERMINATED
    assert done.execution_pointers[0].status is PointerStatus.FAILED
    assert len(errors) == 1
    assert errors[0].error_type.endswith("StepTimeout")


async def test_step_timeout_can_be_non_retryable() -> None:
    """StepTimeout listed in non_retryable fails the step at the first timeout."""
    policy = RetryPolicy(initial_interval=timedelta(milliseconds=10), non_retryable=(StepTimeout,))
    wf = Slow(lambda s: s.retry_policy(policy))
    done, _ = await _run(wf)
    assert done.status is WorkflowStatus.TERMINATED
    assert wf.runs == 1


class ParallelSlow(Workflow[Data]):
    """Two parallel branches: one times out once (then succeeds on its retry), the
    other checks, after that timeout, that its own cancel signal did not fire."""

    id = "timeouts-parallel"
    data_type = dict

    def __init__(self) -> None:
        self.other_cancelled: bool | None = None
        self.timed_out = asyncio.Event()

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        async def hangs(context: StepContext[Data]) -> None:
            if self.timed_out.is_set():
                return
            try:
                await asyncio.sleep(30)
            finally:
                self.timed_out.set()

        async def patient(context: StepContext[Data]) -> ExecutionResult | None:
            if not self.timed_out.is_set():
                return ExecutionResult.sleep(timedelta(milliseconds=10))
            self.other_cancelled = context.cancelled.is_set()
            return None

        policy = RetryPolicy(initial_interval=timedelta(milliseconds=50), jitter=0)
        (
            builder.start_with(lambda c: None)
            .parallel()
            .do(
                lambda b: (
                    b.start_with(hangs).timeout(timedelta(milliseconds=100)).retry_policy(policy)
                )
            )
            .do(lambda b: b.start_with(patient))
            .join()
        )


async def test_a_step_timeout_does_not_cancel_parallel_steps() -> None:
    """The timeout fires the timed-out step's own cancel signal, not the pass's."""
    wf = ParallelSlow()
    done, errors = await _run(wf)
    assert done.status is WorkflowStatus.COMPLETE
    assert wf.other_cancelled is False
    assert [e.error_type for e in errors] == ["wfe_core.errors.StepTimeout"]


class SyncSlow(Workflow[Data]):
    """A sync step (a thread) that outlives its timeout; its late result is dropped."""

    id = "timeouts-sync"
    data_type = dict

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        def blocking(context: StepContext[Data]) -> None:
            self.release.wait(10)
            context.data["late"] = True
            self.finished.set()

        (
            builder.start_with(blocking)
            .timeout(timedelta(milliseconds=100))
            .on_error(ErrorBehavior.TERMINATE)
        )


async def test_a_sync_step_past_its_timeout_runs_on_and_its_result_is_dropped() -> None:
    """The thread cannot be killed: the step fails at the timeout, the thread's
    result later changes nothing."""
    wf = SyncSlow()
    try:
        done, _ = await _run(wf)
    finally:
        wf.release.set()
    assert done.status is WorkflowStatus.TERMINATED
    assert "late" not in done.data
    assert await asyncio.to_thread(wf.finished.wait, 10)


class _JumpingClock:
    """A clock whose long sleeps (an hour or more) pass at once; "now" stays real, so
    leases and claims are unaffected."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0 if seconds >= 3600 else seconds)


@pytest.fixture
def jumping_clock() -> Iterator[_JumpingClock]:
    with use_clock(_JumpingClock()) as clock:
        assert isinstance(clock, _JumpingClock)
        yield clock


class DayLong(Workflow[Data]):
    """A step with a one-day timeout that would wait for ever."""

    id = "timeouts-day"
    data_type = dict

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        async def forever(context: StepContext[Data]) -> None:
            await context.cancelled.wait()
            await asyncio.sleep(30)

        builder.start_with(forever).timeout(timedelta(days=1)).on_error(ErrorBehavior.TERMINATE)


async def test_the_step_watchdog_runs_on_the_engine_clock(jumping_clock: _JumpingClock) -> None:
    """The watchdog waits with wfe_core.clock.sleep: a virtual clock fires a one-day
    timeout at once."""
    started = time.monotonic()
    done, errors = await _run(DayLong())
    assert done.status is WorkflowStatus.TERMINATED
    assert "86400s" in errors[0].message
    assert time.monotonic() - started < 10


class Waiting(Workflow[Data]):
    """Waits for an event that never comes."""

    id = "timeouts-waiting"
    data_type = dict

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(lambda c: None).wait_for("never", key="k").then(lambda c: None)


async def test_execution_timeout_terminates_a_waiting_workflow() -> None:
    """The instance is TERMINATED at its deadline, its subscription dropped and an
    error saying why recorded."""
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(Waiting())
        before = datetime.now(UTC)
        wid = await host.start_workflow(
            "timeouts-waiting", {}, execution_timeout=timedelta(milliseconds=300)
        )
        first = await host.get_workflow_instance(wid)
        assert first.execution_deadline is not None
        assert before < first.execution_deadline <= datetime.now(UTC) + timedelta(seconds=1)
        done = await host.wait_for_workflow(wid, 20)
        assert done.status is WorkflowStatus.TERMINATED
        assert all(p.end_time is not None for p in done.execution_pointers)
        assert await store.get_subscriptions("never", "k", datetime.now(UTC)) == []
        errors = await host.get_errors(wid)
        assert "execution timeout" in errors[-1].message


async def test_execution_timeout_cancels_running_steps() -> None:
    """A step still running at the deadline sees context.cancelled; the instance ends
    TERMINATED."""
    seen: list[bool] = []

    class Busy(Workflow[Data]):
        id = "timeouts-busy"
        data_type = dict

        def build(self, builder: WorkflowBuilder[Data]) -> None:
            async def busy(context: StepContext[Data]) -> None:
                await asyncio.wait_for(context.cancelled.wait(), 10)
                seen.append(True)

            builder.start_with(busy).then(lambda c: None)

    done, _ = await _run(Busy(), execution_timeout=timedelta(milliseconds=200))
    assert done.status is WorkflowStatus.TERMINATED
    assert seen == [True]


async def test_execution_timeout_is_durable_across_restarts(tmp_path: Path) -> None:
    """A deadline that passes while no host runs is enforced by the next host."""
    from wfe_sqlite import SqlitePersistenceProvider

    url = tmp_path / "wfe.db"
    async with SqlitePersistenceProvider(str(url)) as store:
        async with WorkflowHost(store, options=FAST) as host:
            host.register_workflow(Waiting())
            wid = await host.start_workflow(
                "timeouts-waiting", {}, execution_timeout=timedelta(milliseconds=300)
            )

            async def waiting() -> bool:
                inst = await host.get_workflow_instance(wid)
                return len(inst.execution_pointers) == 2

            await _until(waiting)
        stored = await store.get_workflow_instance(wid)
        assert stored.status is WorkflowStatus.RUNNABLE
        assert stored.next_execution == stored.execution_deadline
        assert EXECUTION_DEADLINE_ATTRIBUTE in stored.execution_pointers[0].extension_attributes
        deadline = stored.execution_deadline
        assert deadline is not None

        async def passed() -> bool:
            return datetime.now(UTC) > deadline

        await _until(passed)  # no host runs while the deadline passes
        async with WorkflowHost(store, options=FAST) as host:
            host.register_workflow(Waiting())
            done = await host.wait_for_workflow(wid, 20)
    assert done.status is WorkflowStatus.TERMINATED


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (timedelta(0), ValueError, "must be positive"),
        (timedelta(seconds=-5), ValueError, "must be positive"),
        (30, TypeError, "must be a timedelta"),
    ],
)
async def test_bad_execution_timeouts_are_refused(
    value: Any, error: type[Exception], words: str
) -> None:
    """A zero, negative or non-timedelta execution_timeout raises before anything is
    stored."""
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(Waiting())
        with pytest.raises(error, match=words):
            await host.start_workflow("timeouts-waiting", {}, execution_timeout=value)
        assert await host.count_workflows() == 0


async def test_no_deadline_without_an_execution_timeout() -> None:
    """Instances started without execution_timeout have no deadline."""
    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(Waiting())
        wid = await host.start_workflow("timeouts-waiting", {})
        assert (await host.get_workflow_instance(wid)).execution_deadline is None


class Child(Workflow[Data]):
    """Waits for an event that never comes."""

    id = "timeouts-child"
    data_type = dict

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(lambda c: None).wait_for("never", key="child")


class Parent(Workflow[Data]):
    """Runs :class:`Child`; the sub_workflow step terminates the parent if it fails."""

    id = "timeouts-parent"
    data_type = dict

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(lambda c: None).sub_workflow("timeouts-child").on_error(
            ErrorBehavior.TERMINATE
        )


async def test_a_parent_hears_that_its_child_expired() -> None:
    """A child terminated by its execution timeout tells its parent, whose
    sub_workflow step then fails (here: terminating the parent)."""
    from wfe_core.client.children import parent_of
    from wfe_core.client.control import set_execution_deadline

    from wfe_core import MiddlewarePhase

    def child_deadline(instance: Any) -> None:
        if parent_of(instance) is not None:
            set_execution_deadline(instance, timedelta(milliseconds=300))

    async with MemoryPersistenceProvider() as store, WorkflowHost(store, options=FAST) as host:
        host.register_workflow(Child())
        host.register_workflow(Parent())
        host.use_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, child_deadline)
        wid = await host.start_workflow("timeouts-parent", {})
        parent = await host.wait_for_workflow(wid, 20)
        assert parent.status is WorkflowStatus.TERMINATED
        errors = await host.get_errors(wid)
        assert errors
        assert "SubWorkflowFailed" in (errors[-1].error_type or "")
        children = await host.query_workflows(definition_id="timeouts-child")
        assert [c.status for c in children] == [WorkflowStatus.TERMINATED]
