"""wfe_core.testing: the virtual clock, the test environment and the pytest plugin.

The proof of issue 12 item 7: a workflow with a 3-day ``wait_for`` timeout and a
2-day delay runs to completion in well under a second of real time.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from wfe_core.models import PointerStatus, WorkflowStatus, utcnow
from wfe_core.testing import StepRecord, VirtualClock, WorkflowTestEnv

from wfe_core import ErrorBehavior, StepContext, Workflow, WorkflowBuilder
from wfe_core import clock as engine_clock

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
WALL_BOUND = 10.0  # generous: 3 days of real time can never fit in it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------
# workflows
# --------------------------------------------------------------------------------------


@dataclass
class Order:
    order_id: str = ""
    payment: object = None
    timed_out: bool = False
    status: str = "new"
    tries: int = 0
    ticks: int = 0


def place(context: StepContext[Order]) -> None:
    context.data.status = "awaiting payment"


def finish(context: StepContext[Order]) -> None:
    context.data.status = "cancelled" if context.data.timed_out else "shipped"


class PaymentWorkflow(Workflow[Order]):
    """place -> wait 3 days for "payment" -> 2-day cooling-off delay -> finish."""

    id = "kit-payment"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        (
            builder.start_with(place)
            .name("place")
            .wait_for("payment", key=lambda o: o.order_id, timeout=timedelta(days=3))
            .output(payment=lambda s: s.event_data, timed_out=lambda s: s.timed_out)
            .delay(timedelta(days=2))
            .then(finish)
            .name("finish")
        )


def flaky(context: StepContext[Order]) -> None:
    context.data.tries += 1
    if context.data.tries < 3:
        raise RuntimeError(f"try {context.data.tries} fails")


class FlakyWorkflow(Workflow[Order]):
    """A step that fails twice, retried hourly."""

    id = "kit-flaky"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(flaky).name("flaky").on_error(
            ErrorBehavior.RETRY, retry_interval=timedelta(hours=1)
        )


def tick(context: StepContext[Order]) -> None:
    context.data.ticks += 1


class DailyWorkflow(Workflow[Order]):
    """One tick a day, three days running."""

    id = "kit-daily"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        (
            builder.start_with(place)
            .name("place")
            .delay(timedelta(days=1))
            .then(tick)
            .name("day 1")
            .delay(timedelta(days=1))
            .then(tick)
            .name("day 2")
            .delay(timedelta(days=1))
            .then(tick)
            .name("day 3")
        )


async def nap(context: StepContext[Order]) -> None:
    """Waits a whole day of engine time inside the step (as a step timeout's watchdog
    does with wfe_core.clock.sleep)."""
    await engine_clock.sleep(24 * 3600)
    context.data.status = "rested"


class NapWorkflow(Workflow[Order]):
    id = "kit-nap"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(nap).name("nap")


# --------------------------------------------------------------------------------------
# the proof: days of timers in well under a second
# --------------------------------------------------------------------------------------


@pytest.fixture
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The store of a parametrized test: memory, a SQLite file, a PostgreSQL schema."""
    kind = request.param
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'wfe.db'}"
    else:
        from wfe_conformance.services import postgres_url
        from wfe_postgres.testing import temporary_schema

        url = postgres_url()
        async with temporary_schema(url) as schema:
            yield f"{url}?schema={schema}&min_size=1&max_size=4"


@pytest.mark.parametrize("store_url", ["memory", "sqlite", "postgres"], indirect=True)
async def test_a_three_day_timeout_runs_in_under_a_second(store_url: str) -> None:
    store = store_url.split(":", 1)[0]
    async with WorkflowTestEnv(store_url, start=T0) as env:  # (opening a store is not timed)
        started = time.monotonic()
        handle = await env.start(PaymentWorkflow(), Order("A-1"))
        instance = await env.wait_for_workflow(handle, timeout=WALL_BOUND)
        wall = time.monotonic() - started
        virtual_elapsed = env.now() - T0
        await env.assert_steps(
            handle,
            [
                ("place", PointerStatus.COMPLETE, 1),
                ("wait_for(payment)", PointerStatus.COMPLETE, 1),
                ("delay", PointerStatus.COMPLETE),
                "finish",
            ],
        )
    assert instance.status is WorkflowStatus.COMPLETE
    assert instance.data.timed_out is True
    assert instance.data.status == "cancelled"
    assert virtual_elapsed >= timedelta(days=5)  # 3-day timeout + 2-day delay
    assert wall < WALL_BOUND, f"took {wall:.2f}s of real time"
    print(f"{store}: 5 virtual days in {wall:.3f}s")


async def test_advancing_one_day_does_not_fire_a_three_day_timer() -> None:
    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(PaymentWorkflow(), Order("A-2"))
        await env.wait_for_step(handle, "wait_for(payment)", status=PointerStatus.WAITING_FOR_EVENT)
        await env.advance(timedelta(days=1))
        assert env.now() - T0 >= timedelta(days=1)
        history = await env.step_history(handle)
        assert [r.name for r in history] == ["place", "wait_for(payment)"]
        assert history[1].status is PointerStatus.WAITING_FOR_EVENT
        assert await handle.status() is WorkflowStatus.RUNNABLE

        await env.advance(timedelta(days=2))  # the timeout is due now
        record = await env.wait_for_step(handle, "delay", skip_time=False, timeout=WALL_BOUND)
        assert record.status is PointerStatus.SLEEPING
        assert (await handle.instance()).data.timed_out is True
        await env.advance(timedelta(days=2))
        instance = await env.wait_for_workflow(handle, skip_time=False, timeout=WALL_BOUND)
        assert instance.data.status == "cancelled"


async def test_an_event_published_under_the_virtual_clock_is_delivered() -> None:
    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(PaymentWorkflow(), Order("A-3"))
        await env.wait_for_step(handle, "wait_for(payment)", status=PointerStatus.WAITING_FOR_EVENT)
        await env.advance(timedelta(hours=20))
        event_id = await env.publish_event("payment", "A-3", {"amount": "9.99"})
        assert event_id
        instance = await env.wait_for_workflow(handle, timeout=WALL_BOUND)
        assert instance.data.timed_out is False
        assert instance.data.payment == {"amount": "9.99"}
        assert instance.data.status == "shipped"
        # 20 hours, then the 2-day delay: the 3-day timeout never had to pass
        assert timedelta(days=2, hours=20) <= env.now() - T0 < timedelta(days=3, hours=20)


async def test_advance_fires_everything_due_on_the_way_in_order() -> None:
    async with WorkflowTestEnv(start=T0, ticking=False) as env:
        handle = await env.start(DailyWorkflow(), Order("D"))
        await env.wait_idle()
        await env.advance(timedelta(days=2, hours=1))
        assert env.now() == T0 + timedelta(days=2, hours=1)  # a frozen clock: exactly
        data = (await handle.instance()).data
        assert data.ticks == 2
        await env.assert_steps(
            handle,
            [
                "place",
                "delay",
                ("day 1", "complete"),
                "delay",
                ("day 2", PointerStatus.COMPLETE),
                ("delay", PointerStatus.SLEEPING),
            ],
        )
        day2 = (await env.step_history(handle))[4]
        assert day2.start_time == T0 + timedelta(days=2)  # ran at its due time, not later
        assert await env.run_until_idle() == T0 + timedelta(days=3)
        assert (await handle.result(timeout=WALL_BOUND)).ticks == 3


async def test_retries_are_counted_in_the_step_history() -> None:
    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(FlakyWorkflow(), Order("F"))
        await env.wait_for_workflow(handle, timeout=WALL_BOUND)
        history = await env.assert_steps(handle, [("flaky", PointerStatus.COMPLETE, 3)])
        assert history[0] == StepRecord(
            name="flaky",
            status=PointerStatus.COMPLETE,
            attempts=3,
            step_id=history[0].step_id,
            pointer_id=history[0].pointer_id,
            start_time=history[0].start_time,
            end_time=history[0].end_time,
        )
        assert env.now() - T0 >= timedelta(hours=2)  # two hourly retries skipped
        with pytest.raises(AssertionError, match=r"step history of .* differs"):
            await env.assert_steps(handle, [("flaky", PointerStatus.COMPLETE, 1)])
        with pytest.raises(AssertionError, match="differs"):
            await env.assert_steps(handle, ["flaky", "more"])


async def test_a_step_waiting_on_the_engine_clock_is_skipped_to() -> None:
    started = time.monotonic()
    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(NapWorkflow(), Order("N"))
        await env.wait_for_step(handle, "nap", status=PointerStatus.PENDING, timeout=WALL_BOUND)
        instance = await env.wait_for_workflow(handle, timeout=WALL_BOUND)
        assert instance.data.status == "rested"
        assert env.now() - T0 >= timedelta(days=1)
    assert time.monotonic() - started < WALL_BOUND


async def test_waiting_for_a_workflow_nobody_moves_fails_clearly() -> None:
    class Forever(Workflow[Order]):
        id = "kit-forever"
        data_type = Order

        def build(self, builder: WorkflowBuilder[Order]) -> None:
            builder.start_with(place).name("place").wait_for("never", key="k")

    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(Forever(), Order())
        with pytest.raises(TimeoutError, match=r"wait_for\(never\)' waiting_for_event \(never/k"):
            await env.wait_for_workflow(handle, timeout=0.3)


async def test_the_engine_clock_is_virtual_only_inside_the_environment() -> None:
    env = WorkflowTestEnv(start=T0)
    with pytest.raises(RuntimeError, match="async with WorkflowTestEnv"):
        _ = env.host
    async with env:
        assert engine_clock.current() is env.clock
        assert abs(utcnow() - T0) < timedelta(seconds=WALL_BOUND)
    assert not isinstance(engine_clock.current(), VirtualClock)
    assert abs(utcnow() - datetime.now(UTC)) < timedelta(seconds=5)


async def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="store URL"):
        WorkflowTestEnv("wfe.db")
    with pytest.raises(ValueError, match="idle_timeout must be a positive"):
        WorkflowTestEnv(idle_timeout=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        WorkflowTestEnv(start=datetime(2030, 1, 1))
    async with WorkflowTestEnv(start=T0) as env:
        with pytest.raises(TypeError, match="advance takes a timedelta"):
            await env.advance(3600)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="only moves forward"):
            await env.advance(timedelta(seconds=-1))
        with pytest.raises(TypeError, match="assert_steps items"):
            await env.assert_steps("x", [42])  # type: ignore[list-item]


# --------------------------------------------------------------------------------------
# the virtual clock on its own
# --------------------------------------------------------------------------------------


async def test_virtual_clock_sleep_wakes_on_advance_only_when_due() -> None:
    clock = VirtualClock(T0, ticking=False)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [
        asyncio.create_task(sleeper("hour", 3600)),
        asyncio.create_task(sleeper("day", 86400)),
    ]
    for _ in range(50):
        if clock.sleepers == 2:
            break
        await asyncio.sleep(0.001)
    assert clock.sleepers == 2
    assert clock.next_wake == T0 + timedelta(hours=1)
    clock.advance(timedelta(minutes=59))
    await asyncio.sleep(0.01)
    assert woke == []
    clock.advance(60)
    await asyncio.wait_for(tasks[0], WALL_BOUND)
    assert woke == ["hour"]
    assert clock.next_wake == T0 + timedelta(days=1)
    assert clock.advance_to(T0 + timedelta(days=2)) == T0 + timedelta(days=2)
    await asyncio.wait_for(tasks[1], WALL_BOUND)
    assert woke == ["hour", "day"]
    assert clock.sleepers == 0
    left: datetime | None = clock.next_wake
    assert left is None
    assert clock.skipped == timedelta(days=2)


async def test_virtual_clock_rules() -> None:
    ticking = VirtualClock(T0)
    assert ticking.ticking
    assert ticking.now() >= T0
    frozen = VirtualClock(T0, ticking=False)
    assert frozen.now() == T0
    assert frozen.advance_to(T0 - timedelta(days=1)) == T0  # the past changes nothing
    with pytest.raises(ValueError, match="only moves forward"):
        frozen.advance(timedelta(seconds=-1))
    with pytest.raises(TypeError, match="timedelta or seconds"):
        frozen.advance("1d")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualClock(datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="must be a datetime"):
        VirtualClock("2030-01-01")  # type: ignore[arg-type]
    await frozen.sleep(0)  # no wait at all
    # a ticking clock also reaches a short deadline in real time
    await asyncio.wait_for(ticking.sleep(0.01), WALL_BOUND)
    with engine_clock.use_clock(frozen):
        assert utcnow() == T0


# --------------------------------------------------------------------------------------
# the pytest plugin
# --------------------------------------------------------------------------------------

PLUGIN_TEST = """
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from wfe_core import StepContext, Workflow, WorkflowBuilder
from wfe_core.testing import WorkflowTestEnv

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@dataclass
class D:
    done: bool = False


def done(context: StepContext[D]) -> None:
    context.data.done = True


class Slow(Workflow[D]):
    id = "slow"
    data_type = D

    def build(self, builder: WorkflowBuilder[D]) -> None:
        builder.start_with(lambda c: None).delay(timedelta(days=30)).then(done)


async def test_memory(wfe_env: WorkflowTestEnv) -> None:
    handle = await wfe_env.start(Slow(), D())
    instance = await wfe_env.wait_for_workflow(handle, timeout=10)
    assert instance.data.done
    assert type(wfe_env.host.persistence).__name__ == "MemoryPersistenceProvider"


@pytest.mark.wfe_env(url="sqlite:///{tmp_path}/wfe.db", ticking=False)
async def test_sqlite(wfe_env: WorkflowTestEnv, tmp_path) -> None:
    handle = await wfe_env.start(Slow(), D())
    await wfe_env.advance(timedelta(days=30))
    instance = await wfe_env.wait_for_workflow(handle, timeout=10, skip_time=False)
    assert instance.data.done
    assert (tmp_path / "wfe.db").exists()
"""


def test_the_plugin_fixture_gives_a_running_environment(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kit_plugin=PLUGIN_TEST)
    result = pytester.runpytest_inprocess("-p", "anyio", "-q", "-W", "error")
    result.assert_outcomes(passed=2)


def test_the_store_url_comes_from_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nwfe_store_url = sqlite:///{tmp_path}/from-ini.db\n")
    pytester.makepyfile(
        test_ini="""
import pytest
pytestmark = pytest.mark.anyio

@pytest.fixture
def anyio_backend():
    return "asyncio"

async def test_url(wfe_env, tmp_path):
    assert type(wfe_env.host.persistence).__name__ == "SqlitePersistenceProvider"
    assert (tmp_path / "from-ini.db").exists()
"""
    )
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(passed=1)


def test_a_test_that_does_not_use_the_plugin_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_inprocess("-q", "-p", "no:anyio")
    result.assert_outcomes(passed=1)
    markers = pytester.runpytest_inprocess("--markers")
    markers.stdout.fnmatch_lines(["*wfe_env(url=None, **options)*"])


# --------------------------------------------------------------------------------------
# step timeouts and execution timeouts under the virtual clock
# --------------------------------------------------------------------------------------


async def hang_once(context: StepContext[Order]) -> None:
    context.data.tries += 1
    if context.data.tries == 1:
        await asyncio.Event().wait()  # hangs until the step timeout cancels it
    context.data.status = "answered"


class HangingWorkflow(Workflow[Order]):
    id = "kit-hanging"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(hang_once).name("call").timeout(timedelta(hours=2)).on_error(
            ErrorBehavior.RETRY, retry_interval=timedelta(hours=1)
        )


async def test_a_step_timeout_of_hours_fires_under_the_virtual_clock() -> None:
    started = time.monotonic()
    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(HangingWorkflow(), Order("H"))
        instance = await env.wait_for_workflow(handle, timeout=WALL_BOUND)
        assert instance.data.status == "answered"
        assert instance.data.tries == 2
        await env.assert_steps(handle, [("call", PointerStatus.COMPLETE, 2)])
        errors = await handle.errors()
        assert len(errors) == 1
        assert "StepTimeout" in (errors[0].error_type or "")
        assert env.now() - T0 >= timedelta(hours=3)  # 2-hour timeout + 1-hour retry
    assert time.monotonic() - started < WALL_BOUND


class WaitsForever(Workflow[Order]):
    id = "kit-waits-forever"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(place).name("place").wait_for("never", key=lambda o: o.order_id)


async def test_an_execution_timeout_of_days_terminates_under_the_virtual_clock() -> None:
    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(WaitsForever(), Order("X"), execution_timeout=timedelta(days=3))
        await env.advance(timedelta(days=2))
        assert await handle.status() is WorkflowStatus.RUNNABLE
        instance = await env.wait_for_workflow(handle, timeout=WALL_BOUND)
        assert instance.status is WorkflowStatus.TERMINATED
        assert timedelta(days=3) <= env.now() - T0 < timedelta(days=3, minutes=1)


def test_the_readme_testing_example_passes(pytester: pytest.Pytester) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    example = next(b for b in blocks if b.startswith("# test_orders.py"))
    pytester.makepyfile(test_orders=example)
    result = pytester.runpytest_inprocess("-q", "-W", "error")
    result.assert_outcomes(passed=2)


async def test_a_future_dated_event_is_skipped_to() -> None:
    async with WorkflowTestEnv(start=T0) as env:
        handle = await env.start(PaymentWorkflow(), Order("E"))
        await env.wait_for_step(handle, "wait_for(payment)", status=PointerStatus.WAITING_FOR_EVENT)
        due = env.now() + timedelta(days=2)
        await env.publish_event("payment", "E", "late but in time", effective_date=due)
        assert await env.next_due_time() == due
        record = await env.wait_for_step(handle, "delay", timeout=WALL_BOUND)
        assert record.start_time is not None
        assert record.start_time >= due
        instance = await handle.instance()
        assert instance.data.payment == "late but in time"
        assert instance.data.timed_out is False
