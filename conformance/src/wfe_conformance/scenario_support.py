"""Workflows, data types, steps and polling helpers used by :mod:`wfe_conformance.scenarios`.

Every workflow here is a module-level class. Workflows that need to report what ran
take a :class:`Recorder` in their constructor; their plain-function steps close over it,
so each test gets its own record even though definition ids repeat across tests.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
from wfe_core.persistence import PersistenceProvider

from wfe_core import (
    ErrorBehavior,
    ExecutionResult,
    HostOptions,
    StepBody,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
)

__all__ = [
    "SCENARIO_TYPES",
    "ActivityFailWorkflow",
    "ActivityInput",
    "ActivityOutput",
    "ActivityWorkflow",
    "AddNumbers",
    "AttachWorkflow",
    "BasicWorkflow",
    "BlockingWorkflow",
    "CancelledEventWorkflow",
    "ChildData",
    "ChildFailWorkflow",
    "ChildWaitWorkflow",
    "ChildWorkflow",
    "CompensationSequenceWorkflow",
    "CompensationWorkflow",
    "Data",
    "DataIOWorkflow",
    "DecideWorkflow",
    "DecimalAdd",
    "DecimalData",
    "DecimalWorkflow",
    "DelayWorkflow",
    "DictDataWorkflow",
    "EndWithOpenWaitWorkflow",
    "EndWorkflowWorkflow",
    "EventOrderWorkflow",
    "EventWorkflow",
    "FailingSagaWorkflow",
    "FlakyWorkflow",
    "ForeachCompensationWorkflow",
    "ForeachParallelWorkflow",
    "ForeachSequentialWorkflow",
    "ForkWorkflow",
    "HostBuilder",
    "HostFactory",
    "IfWorkflow",
    "MiddlewareWorkflow",
    "MultiStepCompensationWorkflow",
    "NestedSagaCompensationWorkflow",
    "ParallelEventsWorkflow",
    "ParallelWorkflow",
    "ParentFailWorkflow",
    "ParentWaitWorkflow",
    "ParentWorkflow",
    "Recorder",
    "RecurWorkflow",
    "RetrySagaWorkflow",
    "SagaRetryLimitWorkflow",
    "SagaWorkflow",
    "ScheduleWorkflow",
    "SlowStepWorkflow",
    "SubtractNumbers",
    "TwoHostWorkflow",
    "TypedEventWorkflow",
    "WaitEffectiveDateWorkflow",
    "WaitEventWorkflow",
    "WaitTimeoutWorkflow",
    "WhenWorkflow",
    "WhileWorkflow",
    "far_future",
    "subscriptions_for",
    "wait_for_subscription",
    "wait_until",
]

# --------------------------------------------------------------------------------------
# Polling helpers
# --------------------------------------------------------------------------------------


async def wait_until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 5.0,
    message: str = "condition",
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` (sync or async) until it is true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {message}")
        await anyio.sleep(interval)


def far_future() -> datetime:
    """A time after every subscription a test creates (for ``get_subscriptions``)."""
    return datetime.now(UTC) + timedelta(days=3650)


async def subscriptions_for(provider: PersistenceProvider, name: str, key: str) -> list[Any]:
    """Every live subscription for ``name`` / ``key``, whatever its ``subscribe_as_of``."""
    return list(await provider.get_subscriptions(name, key, far_future()))


async def wait_for_subscription(
    provider: PersistenceProvider, name: str, key: str, timeout: float = 5.0, count: int = 1
) -> None:
    """Wait until at least ``count`` live subscriptions for ``name`` / ``key`` exist."""

    async def present() -> bool:
        return len(await subscriptions_for(provider, name, key)) >= count

    await wait_until(present, timeout, f"{count} subscription(s) for {name!r}/{key!r}")


# --------------------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------------------

HostBuilder = Callable[[HostOptions], WorkflowHost]
"""Builds an (unstarted) host on the provider under test from the given options."""


class HostFactory:
    """Builds, prepares and starts hosts for one test and stops them all afterwards."""

    def __init__(self, build: HostBuilder, defaults: dict[str, Any], stop_timeout: float) -> None:
        self._build = build
        self._defaults = defaults
        self._stop_timeout = stop_timeout
        self._running: list[WorkflowHost] = []

    async def __call__(
        self,
        *workflows: Workflow[Any],
        configure: Callable[[WorkflowHost], None] | None = None,
        **option_overrides: Any,
    ) -> WorkflowHost:
        """Build a host with the test defaults plus ``option_overrides``, register the
        scenario types and ``workflows``, run ``configure`` on it and start it."""
        options = HostOptions(**{**self._defaults, **option_overrides})
        host = self._build(options)
        host.register_type(*SCENARIO_TYPES)
        for workflow in workflows:
            host.register_workflow(workflow)
        if configure is not None:
            configure(host)
        await host.__aenter__()
        self._running.append(host)
        return host

    async def stop(self, host: WorkflowHost) -> None:
        """Stop one host now (it is not stopped again at teardown)."""
        if host in self._running:
            self._running.remove(host)
            await host.__aexit__(None, None, None)

    async def close(self) -> None:
        """Stop every host still running, bounded by the stop timeout."""
        with anyio.move_on_after(self._stop_timeout):
            while self._running:
                await self.stop(self._running[-1])


# --------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------


class Recorder:
    """What the steps of one test did, in order, with monotonic timestamps."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, float]] = []

    def hit(self, name: str) -> None:
        """Record that ``name`` happened now."""
        self.entries.append((name, time.monotonic()))

    @property
    def names(self) -> list[str]:
        """The recorded names in order."""
        return [name for name, _ in self.entries]

    def count(self, name: str) -> int:
        """How often ``name`` was recorded."""
        return sum(1 for n, _ in self.entries if n == name)

    def counts(self) -> Counter[str]:
        """How often each name was recorded."""
        return Counter(self.names)

    def times(self, name: str) -> list[float]:
        """The timestamps of ``name``, in order."""
        return [t for n, t in self.entries if n == name]

    def index(self, name: str) -> int:
        """Position of the first record of ``name``."""
        return self.names.index(name)

    def last_index(self, name: str) -> int:
        """Position of the last record of ``name``."""
        return len(self.entries) - 1 - self.names[::-1].index(name)

    def only(self, names: Iterable[str]) -> list[str]:
        """The recorded names restricted to ``names``, in order."""
        wanted = set(names)
        return [n for n in self.names if n in wanted]

    def step(self, name: str) -> Callable[[StepContext[Any]], Awaitable[None]]:
        """An async step that records ``name`` and proceeds."""

        async def record(context: StepContext[Any]) -> None:
            self.hit(name)

        record.__name__ = record.__qualname__ = name.replace("-", "_")
        return record

    def failing(self, name: str, failures: int = 1_000_000) -> Callable[[StepContext[Any]], None]:
        """A sync step that records ``name`` and raises on its first ``failures`` runs."""

        def fail(context: StepContext[Any]) -> None:
            self.hit(name)
            attempt = self.count(name)
            if attempt <= failures:
                raise RuntimeError(f"{name} failed on attempt {attempt}")

        fail.__name__ = fail.__qualname__ = name.replace("-", "_")
        return fail

    def failing_when_flag(self, name: str) -> Callable[[StepContext[Any]], None]:
        """A step that records ``name`` and raises when the workflow data's flag is set."""

        def fail(context: StepContext[Any]) -> None:
            self.hit(name)
            if context.data.flag:
                raise RuntimeError(f"{name} failed")

        fail.__name__ = fail.__qualname__ = name.replace("-", "_")
        return fail


# --------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------


@dataclass
class ActivityInput:
    """Typed activity parameters."""

    name: str = ""
    amount: Decimal = Decimal("0")


@dataclass
class ActivityOutput:
    """Typed activity result."""

    code: str = ""
    value: int = 0


@dataclass
class ChildData:
    """Data of the child workflows."""

    value: int = 0
    note: str = ""


@dataclass
class Data:
    """The general scenario data."""

    key: str = ""
    counter: int = 0
    a: int = 0
    b: int = 0
    total: int = 0
    op: str = ""
    flag: bool = False
    text: str = ""
    last: str | None = None
    timed_out: bool = False
    received: list[str] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    base_time: datetime | None = None
    activity_result: ActivityOutput | None = None
    child_result: ChildData | None = None


@dataclass
class DecimalData:
    """Data that must keep 18-place decimals exact through the store."""

    a: Decimal = Decimal("0")
    b: Decimal = Decimal("0")
    total: Decimal = Decimal("0")
    when: datetime | None = None


SCENARIO_TYPES: tuple[type, ...] = (Data, DecimalData, ActivityInput, ActivityOutput, ChildData)
"""Every type the scenarios hand to the host (registered on every host)."""

# --------------------------------------------------------------------------------------
# Step bodies
# --------------------------------------------------------------------------------------


class HelloStep(StepBody):
    """A synchronous step body: appends "hello" to the data."""

    def run(self, context: StepContext[Any]) -> ExecutionResult:  # type: ignore[override]
        context.data.received.append("hello")
        return ExecutionResult.next()


class AddNumbers(StepBody):
    """total = a + b (inputs a, b; output total)."""

    a: int = 0
    b: int = 0
    total: int = 0

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.total = self.a + self.b
        return ExecutionResult.next()


class SubtractNumbers(StepBody):
    """total = a - b (inputs a, b; output total)."""

    a: int = 0
    b: int = 0
    total: int = 0

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.total = self.a - self.b
        return ExecutionResult.next()


class DecimalAdd(StepBody):
    """total = a + b on decimals (inputs a, b; output total)."""

    a: Decimal = Decimal("0")
    b: Decimal = Decimal("0")
    total: Decimal = Decimal("0")

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.total = self.a + self.b
        return ExecutionResult.next()


class ReturnOutcome(StepBody):
    """Proceeds with the outcome given as input ``value``."""

    value: Any = None

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        return ExecutionResult.outcome(self.value)


async def noop(context: StepContext[Any]) -> None:
    """A step that does nothing."""


async def increment(context: StepContext[Any]) -> None:
    """counter += 1."""
    context.data.counter += 1


async def append_last(context: StepContext[Any]) -> None:
    """Append ``data.last`` to ``data.received`` and count it."""
    context.data.received.append(context.data.last)
    context.data.counter += 1


async def double_value(context: StepContext[Any]) -> None:
    """Child step: value *= 2."""
    context.data.value *= 2
    context.data.note = "doubled"


# --------------------------------------------------------------------------------------
# Workflows
# --------------------------------------------------------------------------------------


class RecordingWorkflow(Workflow[Data]):
    """Base of the workflows whose steps report to a :class:`Recorder`."""

    id = "scn-recording-base"
    version = 1
    data_type = Data

    def __init__(self, rec: Recorder) -> None:
        super().__init__()
        self.rec = rec

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        raise NotImplementedError


class BasicWorkflow(RecordingWorkflow):
    """A sync StepBody, then a plain async function."""

    id = "scn-basic"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def world(context: StepContext[Any]) -> None:
            rec.hit("world")
            context.data.received.append("world")

        builder.start_with(HelloStep).name("hello").then(world).name("world")


class DataIOWorkflow(Workflow[Data]):
    """Inputs map data to a step, outputs map the step's result back (2 + 3 = 5)."""

    id = "scn-data-io"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(AddNumbers).input(a=lambda d: d.a, b=lambda d: d.b).output(
            total=lambda s: s.total
        )


class DecimalWorkflow(Workflow[DecimalData]):
    """Decimal inputs and outputs with 18 places."""

    id = "scn-decimal"
    version = 1
    data_type = DecimalData

    def build(self, builder: WorkflowBuilder[DecimalData]) -> None:
        builder.start_with(DecimalAdd).input(a=lambda d: d.a, b=lambda d: d.b).output(
            total=lambda s: s.total
        )


class DictDataWorkflow(Workflow[dict[str, Any]]):
    """Dynamic data: a dict; the output writes a new key."""

    id = "scn-dict-data"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        builder.start_with(AddNumbers).input(a=lambda d: d["a"], b=lambda d: d["b"]).output(
            total=lambda s: s.total
        )


class IfWorkflow(RecordingWorkflow):
    """Three if blocks on counter = 2: true, false, true (two steps)."""

    id = "scn-if"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(rec.step("start"))
            .if_(lambda d: d.counter > 1)
            .do(lambda b: b.start_with(rec.step("if1")))
            .if_(lambda d: d.counter > 5)
            .do(lambda b: b.start_with(rec.step("if2")))
            .if_(lambda d: d.counter < 3)
            .do(lambda b: b.start_with(rec.step("if3a")).then(rec.step("if3b")))
            .then(rec.step("after"))
        )


class WhileWorkflow(RecordingWorkflow):
    """while counter < 3: increment."""

    id = "scn-while"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def body(context: StepContext[Any]) -> None:
            rec.hit("body")
            context.data.counter += 1

        (
            builder.start_with(rec.step("start"))
            .while_(lambda d: d.counter < 3)
            .do(lambda b: b.start_with(body))
            .then(rec.step("after"))
        )


class ForeachParallelWorkflow(RecordingWorkflow):
    """Parallel foreach over data.items summing the items into data.total."""

    id = "scn-foreach-parallel"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def body(context: StepContext[Any]) -> None:
            rec.hit("body")
            context.data.total += context.item

        (
            builder.start_with(noop)
            .foreach(lambda d: d.items, parallel=True)
            .do(lambda b: b.start_with(body))
            .then(rec.step("after"))
        )


class ForeachSequentialWorkflow(RecordingWorkflow):
    """Sequential foreach; item n sleeps n * 50 ms before recording itself."""

    id = "scn-foreach-sequential"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def body(context: StepContext[Any]) -> ExecutionResult | None:
            if context.persistence_data is None:
                return ExecutionResult.sleep(timedelta(milliseconds=50 * context.item), "slept")
            rec.hit(f"item:{context.item}")
            return None

        (
            builder.start_with(noop)
            .foreach(lambda d: d.items, parallel=False)
            .do(lambda b: b.start_with(body))
            .then(rec.step("after"))
        )


class ForkWorkflow(RecordingWorkflow):
    """A step with outcome True; when(False) -> B, when(True) -> C."""

    id = "scn-fork"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(ReturnOutcome)
            .input(value=lambda d: True)
            .when(False)
            .do(lambda b: b.start_with(rec.step("B")))
            .when(True)
            .do(lambda b: b.start_with(rec.step("C")))
        )


class WhenWorkflow(RecordingWorkflow):
    """Outcome 2; when(1), when(2), when(2); then a step after the switch."""

    id = "scn-when"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(ReturnOutcome)
            .input(value=lambda d: 2)
            .when(1)
            .do(lambda b: b.start_with(rec.step("one")))
            .when(2)
            .do(lambda b: b.start_with(rec.step("two-a")).then(rec.step("two-a2")))
            .when(2)
            .do(lambda b: b.start_with(rec.step("two-b")))
            .then(rec.step("after"))
        )


class DecideWorkflow(RecordingWorkflow):
    """decide(op): "+" adds, "-" subtracts."""

    id = "scn-decide"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .decide(lambda d: d.op)
            .branch(
                "+",
                lambda b: (
                    b.start_with(AddNumbers)
                    .input(a=lambda d: d.a, b=lambda d: d.b)
                    .output(total=lambda s: s.total)
                ),
            )
            .branch(
                "-",
                lambda b: (
                    b.start_with(SubtractNumbers)
                    .input(a=lambda d: d.a, b=lambda d: d.b)
                    .output(total=lambda s: s.total)
                ),
            )
            .then(rec.step("after"))
        )


class AttachWorkflow(RecordingWorkflow):
    """A loop made with attach: step1; if counter < 3: step2 (counter += 1) -> step1."""

    id = "scn-attach"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def step2(context: StepContext[Any]) -> None:
            rec.hit("step2")
            context.data.counter += 1

        (
            builder.start_with(rec.step("step1"))
            .id("step1")
            .if_(lambda d: d.counter < 3)
            .do(lambda b: b.start_with(step2).attach("step1"))
        )


class EndWorkflowWorkflow(RecordingWorkflow):
    """while True: body; end_workflow. A step after the loop never runs."""

    id = "scn-end"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .while_(lambda d: True)
            .do(lambda b: b.start_with(rec.step("body")).end_workflow())
            .then(rec.step("after"))
        )


class DelayWorkflow(RecordingWorkflow):
    """a; delay; b."""

    id = "scn-delay"

    def __init__(self, rec: Recorder, delay: timedelta) -> None:
        super().__init__(rec)
        self.delay_for = delay

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        delay = self.delay_for
        builder.start_with(rec.step("a")).delay(lambda d: delay).then(rec.step("b"))


EVENT_1 = "scn-event-1"
EVENT_2 = "scn-event-2"
EVENT_3 = "scn-event-3"


class EventWorkflow(Workflow[Data]):
    """Two sequential waits; their event data land in text and last."""

    id = "scn-events"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .wait_for(EVENT_1, key=lambda d: d.key)
            .output(text=lambda s: s.event_data)
            .wait_for(EVENT_2, key=lambda d: d.key)
            .output(last=lambda s: s.event_data)
        )


ORDER_EVENT = "scn-ordered"


class EventOrderWorkflow(Workflow[Data]):
    """A loop of five waits; wait i subscribes as of base_time + i minutes."""

    id = "scn-event-order"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        def as_of(d: Data) -> datetime:
            assert d.base_time is not None
            return d.base_time + timedelta(minutes=d.counter + 1)

        (
            builder.start_with(noop)
            .while_(lambda d: d.counter < 5)
            .do(
                lambda b: (
                    b.start_with(noop)
                    .wait_for(ORDER_EVENT, key=lambda d: d.key, effective_date=as_of)
                    .output(last=lambda s: s.event_data)
                    .then(append_last)
                )
            )
        )


class WaitEventWorkflow(RecordingWorkflow):
    """Wait (as of now) for EVENT_1 keyed by data.key; then record "after"."""

    id = "scn-wait-event"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .wait_for(EVENT_1, key=lambda d: d.key)
            .output(last=lambda s: s.event_data)
            .then(self.rec.step("after"))
        )


class TypedEventWorkflow(Workflow[Data]):
    """Wait for EVENT_2 keyed by data.key; its typed payload lands in activity_result."""

    id = "scn-typed-event"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .wait_for(EVENT_2, key=lambda d: d.key)
            .output(activity_result=lambda s: s.event_data)
        )


class WaitEffectiveDateWorkflow(RecordingWorkflow):
    """Wait for EVENT_1 keyed by data.key as of data.base_time; then record "after"."""

    id = "scn-wait-effective"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .wait_for(EVENT_1, key=lambda d: d.key, effective_date=lambda d: d.base_time)
            .output(last=lambda s: s.event_data)
            .then(self.rec.step("after"))
        )


class ParallelWorkflow(RecordingWorkflow):
    """Three parallel branches, one waiting for EVENT_1; then a joined step."""

    id = "scn-parallel"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .parallel()
            .do(lambda b: b.start_with(rec.step("a1")).then(rec.step("a2")))
            .do(
                lambda b: (
                    b.start_with(rec.step("b1"))
                    .wait_for(EVENT_1, key=lambda d: d.key)
                    .output(last=lambda s: s.event_data)
                    .then(rec.step("b2"))
                )
            )
            .do(lambda b: b.start_with(rec.step("c1")))
            .join()
            .then(rec.step("joined"))
        )


class ParallelEventsWorkflow(RecordingWorkflow):
    """Two parallel branches waiting for different events with the same key."""

    id = "scn-parallel-events"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .parallel()
            .do(
                lambda b: (
                    b.start_with(noop)
                    .wait_for(EVENT_1, key=lambda d: d.key)
                    .output(text=lambda s: s.event_data)
                    .then(rec.step("after1"))
                )
            )
            .do(
                lambda b: (
                    b.start_with(noop)
                    .wait_for(EVENT_2, key=lambda d: d.key)
                    .output(last=lambda s: s.event_data)
                    .then(rec.step("after2"))
                )
            )
            .join()
            .then(rec.step("joined"))
        )


class CancelledEventWorkflow(RecordingWorkflow):
    """Waits for EVENT_1 and EVENT_2 in parallel, each cancelled once text is set; then
    waits for EVENT_3."""

    id = "scn-cancelled-event"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .parallel()
            .do(
                lambda b: (
                    b.start_with(noop)
                    .wait_for(EVENT_1, key=lambda d: d.key)
                    .output(text=lambda s: s.event_data)
                    .cancel_condition(lambda d: d.text != "")
                    .then(rec.step("after1"))
                )
            )
            .do(
                lambda b: (
                    b.start_with(noop)
                    .wait_for(EVENT_2, key=lambda d: d.key)
                    .output(text=lambda s: s.event_data)
                    .cancel_condition(lambda d: d.text != "")
                    .then(rec.step("after2"))
                )
            )
            .join()
            .wait_for(EVENT_3, key=lambda d: d.key)
            .output(last=lambda s: s.event_data)
            .then(rec.step("end"))
        )


ACTIVITY = "scn-activity"


class ActivityWorkflow(Workflow[Data]):
    """An activity with typed parameters whose typed result lands in activity_result."""

    id = "scn-activity"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .activity(ACTIVITY, params=lambda d: ActivityInput(d.key, Decimal("12.345")))
            .output(activity_result=lambda s: s.result)
        )


class ActivityFailWorkflow(RecordingWorkflow):
    """An activity whose failure terminates the workflow."""

    id = "scn-activity-fail"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .activity(ACTIVITY, params=lambda d: ActivityInput(d.key))
            .on_error(ErrorBehavior.TERMINATE)
            .then(self.rec.step("after"))
        )


class CompensationWorkflow(RecordingWorkflow):
    """first; risky (fails when flag) compensated by undo; after."""

    id = "scn-compensation"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(rec.step("first"))
            .then(rec.failing_when_flag("risky"))
            .compensate_with(rec.step("undo"))
            .on_error(ErrorBehavior.COMPENSATE)
            .then(rec.step("after"))
        )


class CompensationSequenceWorkflow(RecordingWorkflow):
    """risky (always fails) compensated by the sequence undo1, undo2; after."""

    id = "scn-compensation-sequence"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(rec.step("first"))
            .then(rec.failing("risky"))
            .compensate_with_sequence(
                lambda c: c.start_with(rec.step("undo1")).then(rec.step("undo2"))
            )
            .on_error(ErrorBehavior.COMPENSATE)
            .then(rec.step("after"))
        )


class SagaWorkflow(RecordingWorkflow):
    """pre; saga(s1, s2 fails when flag, s3) with compensations; tail."""

    id = "scn-saga"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(rec.step("pre"))
            .compensate_with(rec.step("undo-pre"))
            .saga(
                lambda s: (
                    s.start_with(rec.step("s1"))
                    .compensate_with(rec.step("undo1"))
                    .then(rec.failing_when_flag("s2"))
                    .compensate_with(rec.step("undo2"))
                    .then(rec.step("s3"))
                    .compensate_with(rec.step("undo3"))
                )
            )
            .compensate_with(rec.step("undo-saga"))
            .then(rec.step("tail"))
            .compensate_with(rec.step("undo-tail"))
        )


class SagaRetryLimitWorkflow(RecordingWorkflow):
    """saga(s1, s2 retried at most once then fails) with compensations; tail."""

    id = "scn-saga-retry-limit"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .saga(
                lambda s: (
                    s.start_with(rec.step("s1"))
                    .compensate_with(rec.step("undo1"))
                    .then(rec.failing("s2"))
                    .compensate_with(rec.step("undo2"))
                    .on_error(
                        ErrorBehavior.RETRY,
                        retry_interval=timedelta(milliseconds=20),
                        max_retries=1,
                    )
                )
            )
            .then(rec.step("tail"))
        )


class MultiStepCompensationWorkflow(RecordingWorkflow):
    """saga(s1..s4, s4 fails); s2 is compensated by a two-step sequence."""

    id = "scn-multistep-compensation"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .saga(
                lambda s: (
                    s.start_with(rec.step("s1"))
                    .compensate_with(rec.step("undo1"))
                    .then(rec.step("s2"))
                    .compensate_with_sequence(
                        lambda c: c.start_with(rec.step("undo2a")).then(rec.step("undo2b"))
                    )
                    .then(rec.step("s3"))
                    .compensate_with(rec.step("undo3"))
                    .then(rec.failing("s4"))
                    .compensate_with(rec.step("undo4"))
                )
            )
            .then(rec.step("after"))
        )


class NestedSagaCompensationWorkflow(RecordingWorkflow):
    """A saga whose steps are nested in if blocks, with compensation sequences."""

    id = "scn-nested-saga-compensation"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .saga(
                lambda s: (
                    s.start_with(rec.step("s1"))
                    .compensate_with_sequence(
                        lambda c: c.start_with(rec.step("undo1a")).then(rec.step("undo1b"))
                    )
                    .if_(lambda d: True)
                    .do(
                        lambda i: (
                            i.start_with(rec.step("s2"))
                            .compensate_with_sequence(
                                lambda c: c.start_with(rec.step("undo2a")).then(rec.step("undo2b"))
                            )
                            .if_(lambda d: True)
                            .do(
                                lambda j: (
                                    j.start_with(rec.step("s3"))
                                    .compensate_with(rec.step("undo3"))
                                    .then(rec.failing("s4"))
                                    .compensate_with(rec.step("undo4"))
                                )
                            )
                        )
                    )
                )
            )
            .then(rec.step("after"))
        )


class RetrySagaWorkflow(RecordingWorkflow):
    """pre; saga(s1, s2 fails twice, s3) retried on error; tail. s2 is nested in an if
    block when ``nested``."""

    id = "scn-retry-saga"

    def __init__(self, rec: Recorder, nested: bool = False) -> None:
        super().__init__(rec)
        self.nested = nested

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        def body(s: Any) -> Any:
            first = s.start_with(rec.step("s1")).compensate_with(rec.step("undo1"))
            if self.nested:
                after_middle = first.if_(lambda d: True).do(
                    lambda i: i.start_with(rec.failing("s2", failures=2)).compensate_with(
                        rec.step("undo2")
                    )
                )
            else:
                after_middle = first.then(rec.failing("s2", failures=2)).compensate_with(
                    rec.step("undo2")
                )
            return after_middle.then(rec.step("s3")).compensate_with(rec.step("undo3"))

        (
            builder.start_with(rec.step("pre"))
            .compensate_with(rec.step("undo-pre"))
            .saga(body)
            .on_error(ErrorBehavior.RETRY, retry_interval=timedelta(milliseconds=50))
            .then(rec.step("tail"))
        )


class FailingSagaWorkflow(RecordingWorkflow):
    """saga(s1, if: s2 fails, s3) that terminates on error; tail."""

    id = "scn-failing-saga"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .saga(
                lambda s: (
                    s.start_with(rec.step("s1"))
                    .compensate_with(rec.step("undo1"))
                    .if_(lambda d: True)
                    .do(lambda i: i.start_with(rec.failing("s2")))
                    .then(rec.step("s3"))
                )
            )
            .on_error(ErrorBehavior.TERMINATE)
            .then(rec.step("tail"))
        )


class ForeachCompensationWorkflow(RecordingWorkflow):
    """foreach [1] -> decide -> a failing step compensated by a two-step sequence."""

    id = "scn-foreach-compensation"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .foreach(lambda d: [1])
            .do(
                lambda f: (
                    f.start_with(noop)
                    .decide(lambda d: "go")
                    .branch(
                        "go",
                        lambda g: (
                            g.start_with(rec.failing("risky"))
                            .compensate_with_sequence(
                                lambda c: c.start_with(rec.step("undo-a")).then(rec.step("undo-b"))
                            )
                            .on_error(ErrorBehavior.COMPENSATE)
                        ),
                    )
                )
            )
            .then(rec.step("after"))
        )


class MiddlewareWorkflow(RecordingWorkflow):
    """A single recorded step."""

    id = "scn-middleware"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(self.rec.step("step")).name("step")


class SlowStepWorkflow(RecordingWorkflow):
    """A step that takes 0.3 s and then writes data.text; then "after"."""

    id = "scn-slow"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def slow(context: StepContext[Any]) -> None:
            rec.hit("slow-start")
            await asyncio.sleep(0.3)
            context.data.text = "slow done"
            rec.hit("slow-end")

        builder.start_with(slow).name("slow").then(rec.step("after")).name("after")


class WaitTimeoutWorkflow(RecordingWorkflow):
    """Wait for EVENT_1 at most 200 ms; record timed_out and event_data."""

    id = "scn-wait-timeout"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .wait_for(EVENT_1, key=lambda d: d.key, timeout=timedelta(milliseconds=200))
            .output(timed_out=lambda s: s.timed_out, last=lambda s: s.event_data)
            .then(self.rec.step("after"))
        )


class FlakyWorkflow(RecordingWorkflow):
    """ "flaky" fails its first ``failures`` runs (with the given on_error, if any);
    then "after"."""

    id = "scn-flaky"

    def __init__(
        self,
        rec: Recorder,
        failures: int,
        behavior: ErrorBehavior | None = None,
        **on_error: Any,
    ) -> None:
        super().__init__(rec)
        self.failures = failures
        self.behavior = behavior
        self.on_error_kwargs = on_error

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        failures = self.failures

        def flaky(context: StepContext[Any]) -> None:
            rec.hit("flaky")
            attempt = rec.count("flaky")
            if attempt <= failures:
                raise ValueError(f"kaboom on attempt {attempt}")

        step = builder.start_with(flaky).name("flaky")
        if self.behavior is not None:
            step = step.on_error(self.behavior, **self.on_error_kwargs)
        step.then(rec.step("after")).name("after")


class BlockingWorkflow(RecordingWorkflow):
    """A step that waits (at most 5 s) for its cancellation signal; then "after"."""

    id = "scn-blocking"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def block(context: StepContext[Any]) -> None:
            rec.hit("block-start")
            try:
                await asyncio.wait_for(context.cancelled.wait(), 5.0)
            except TimeoutError:
                rec.hit("not-cancelled")
            else:
                rec.hit("saw-cancel")

        builder.start_with(block).name("block").then(rec.step("after"))


class EndWithOpenWaitWorkflow(RecordingWorkflow):
    """One branch waits for EVENT_1; the other ends the workflow after 200 ms."""

    id = "scn-end-open-wait"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .parallel()
            .do(
                lambda b: (
                    b.start_with(noop)
                    .wait_for(EVENT_1, key=lambda d: d.key)
                    .then(rec.step("after-wait"))
                )
            )
            .do(
                lambda b: (
                    b.start_with(noop)
                    .delay(lambda d: timedelta(milliseconds=200))
                    .then(rec.step("ending"))
                    .end_workflow()
                )
            )
            .join()
            .then(rec.step("joined"))
        )


class ChildWorkflow(Workflow[ChildData]):
    """Doubles its value."""

    id = "scn-child"
    version = 1
    data_type = ChildData

    def build(self, builder: WorkflowBuilder[ChildData]) -> None:
        builder.start_with(double_value)


class ChildFailWorkflow(Workflow[ChildData]):
    """Fails and terminates."""

    id = "scn-child-fail"
    version = 1
    data_type = ChildData

    def build(self, builder: WorkflowBuilder[ChildData]) -> None:
        def fail(context: StepContext[Any]) -> None:
            raise RuntimeError("child failed")

        builder.start_with(fail).on_error(ErrorBehavior.TERMINATE)


class ChildWaitWorkflow(Workflow[ChildData]):
    """Waits for an event nobody publishes."""

    id = "scn-child-wait"
    version = 1
    data_type = ChildData

    def build(self, builder: WorkflowBuilder[ChildData]) -> None:
        builder.start_with(noop).wait_for(EVENT_3, key=lambda d: d.note)


class ParentWorkflow(RecordingWorkflow):
    """Runs scn-child with value = a; its final data lands in child_result."""

    id = "scn-parent"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .sub_workflow(ChildWorkflow.id, data=lambda d: ChildData(value=d.a))
            .output(child_result=lambda s: s.result)
            .then(self.rec.step("after"))
        )


class ParentFailWorkflow(RecordingWorkflow):
    """Runs scn-child-fail; terminates when the child fails."""

    id = "scn-parent-fail"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .sub_workflow(ChildFailWorkflow.id, data=lambda d: ChildData(value=d.a))
            .on_error(ErrorBehavior.TERMINATE)
            .then(self.rec.step("after"))
        )


class ParentWaitWorkflow(RecordingWorkflow):
    """Runs scn-child-wait; terminates when the child ends without completing."""

    id = "scn-parent-wait"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .sub_workflow(ChildWaitWorkflow.id, data=lambda d: ChildData(note=d.key))
            .on_error(ErrorBehavior.TERMINATE)
            .then(self.rec.step("after"))
        )


class TwoHostWorkflow(RecordingWorkflow):
    """Three steps, each recording "<workflow id>:<n>"."""

    id = "scn-two-hosts"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        def numbered(n: int) -> Callable[[StepContext[Any]], Awaitable[None]]:
            async def step(context: StepContext[Any]) -> None:
                rec.hit(f"{context.workflow.id}:{n}")

            return step

        builder.start_with(numbered(1)).then(numbered(2)).then(numbered(3))


class ScheduleWorkflow(RecordingWorkflow):
    """first; schedule(200 ms) -> side; main2 continues at once."""

    id = "scn-schedule"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(rec.step("first"))
            .schedule(lambda d: timedelta(milliseconds=200))
            .do(lambda b: b.start_with(rec.step("side")))
            .then(rec.step("main2"))
        )


class RecurWorkflow(RecordingWorkflow):
    """first; recur every 50 ms until counter >= 3 -> increment; main2."""

    id = "scn-recur"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        async def tick(context: StepContext[Any]) -> None:
            rec.hit("tick")
            context.data.counter += 1

        (
            builder.start_with(rec.step("first"))
            .recur(lambda d: timedelta(milliseconds=50), lambda d: d.counter >= 3)
            .do(lambda b: b.start_with(tick))
            .then(rec.step("main2"))
        )
