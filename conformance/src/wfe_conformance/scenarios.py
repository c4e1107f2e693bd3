"""End-to-end engine scenarios run through :class:`~wfe_core.WorkflowHost` on the
provider under test (``HostScenarioTests``).

Each test builds its hosts with the ``host_factory`` fixture (fast poll and retry
intervals), registers module-level workflows from :mod:`wfe_conformance.scenario_support`
and waits on conditions with bounded timeouts, never on fixed sleeps. A provider whose
hosts need their own lock or queue provider overrides ``host_builder``.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from wfe_core.persistence import MAX_KEY_LENGTH, PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.limits import BadWaitKeyWorkflow, NulErrorWorkflow
from wfe_conformance.scenario_support import (
    ACTIVITY,
    EVENT_1,
    EVENT_2,
    EVENT_3,
    ORDER_EVENT,
    ActivityFailWorkflow,
    ActivityInput,
    ActivityOutput,
    ActivityWorkflow,
    AttachWorkflow,
    BasicWorkflow,
    BlockingWorkflow,
    CancelledEventWorkflow,
    ChildData,
    ChildFailWorkflow,
    ChildWaitWorkflow,
    ChildWorkflow,
    CompensationSequenceWorkflow,
    CompensationWorkflow,
    Data,
    DataIOWorkflow,
    DecideWorkflow,
    DecimalData,
    DecimalWorkflow,
    DelayWorkflow,
    DictDataWorkflow,
    EndWithOpenWaitWorkflow,
    EndWorkflowWorkflow,
    EventOrderWorkflow,
    EventWorkflow,
    FailingSagaWorkflow,
    FlakyWorkflow,
    ForeachCompensationWorkflow,
    ForeachParallelWorkflow,
    ForeachSequentialWorkflow,
    ForkWorkflow,
    HostBuilder,
    HostFactory,
    IfWorkflow,
    MiddlewareWorkflow,
    MultiStepCompensationWorkflow,
    NestedSagaCompensationWorkflow,
    ParallelEventsWorkflow,
    ParallelWorkflow,
    ParentFailWorkflow,
    ParentWaitWorkflow,
    ParentWorkflow,
    Recorder,
    RecurWorkflow,
    RetrySagaWorkflow,
    SagaRetryLimitWorkflow,
    SagaWorkflow,
    ScheduleWorkflow,
    SlowStepWorkflow,
    TwoHostWorkflow,
    TypedEventWorkflow,
    WaitEffectiveDateWorkflow,
    WaitEventWorkflow,
    WaitTimeoutWorkflow,
    WhenWorkflow,
    WhileWorkflow,
    far_future,
    subscriptions_for,
    wait_for_subscription,
    wait_until,
)
from wfe_core import (
    DefinitionError,
    ErrorBehavior,
    HostOptions,
    LifecycleEvent,
    LifecycleEventType,
    MiddlewarePhase,
    PointerStatus,
    StepContext,
    TokenMismatch,
    WfeError,
    WorkflowHost,
    WorkflowInstance,
    WorkflowNotFound,
    WorkflowNotRegistered,
    WorkflowStatus,
)

__all__ = ["HostScenarioTests"]


def uid() -> str:
    """A fresh unique key."""
    return uuid.uuid4().hex


def capture(events: list[LifecycleEvent]) -> Callable[[WorkflowHost], None]:
    """A host configurator that appends every lifecycle event to ``events``."""

    def configure(host: WorkflowHost) -> None:
        host.on_lifecycle_event(events.append)

    return configure


def types_of(events: list[LifecycleEvent], workflow_id: str) -> list[LifecycleEventType]:
    """The types of the lifecycle events about ``workflow_id``, in order."""
    return [e.type for e in events if e.workflow_id == workflow_id]


class HostScenarioTests(SuiteBase):
    """Every engine scenario end to end through ``WorkflowHost`` on the provider."""

    timeout: float = 10.0
    """Upper bound (seconds) for every wait on a workflow or condition."""

    host_defaults: dict[str, Any] = {
        "poll_interval": 0.05,
        "idle_time": 0.01,
        "error_retry_interval": 0.05,
        "lock_ttl": 5.0,
        "stop_timeout": 5.0,
    }
    """HostOptions for every scenario host (a test may override some)."""

    # ----------------------------------------------------------------------------------
    # fixtures
    # ----------------------------------------------------------------------------------

    @pytest.fixture
    def host_builder(self, provider: PersistenceProvider) -> HostBuilder:
        """Builds an unstarted host on ``provider``; override to wire the store's own
        lock / queue providers. Hosts built by one test must cooperate on one store."""

        def build(options: HostOptions) -> WorkflowHost:
            return WorkflowHost(provider, options=options)

        return build

    @pytest.fixture
    async def host_factory(self, host_builder: HostBuilder) -> AsyncIterator[HostFactory]:
        """``await make(*workflows, configure=None, **option_overrides)`` builds, prepares
        and starts a host; every host still running is stopped at teardown (bounded)."""
        factory = HostFactory(host_builder, dict(self.host_defaults), self.timeout)
        try:
            yield factory
        finally:
            await factory.close()

    async def finished(self, host: WorkflowHost, workflow_id: str) -> WorkflowInstance:
        """Wait (bounded) until the workflow is COMPLETE or TERMINATED."""
        return await host.wait_for_workflow(workflow_id, timeout=self.timeout)

    async def until(
        self, predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], message: str
    ) -> None:
        """Wait (bounded) until ``predicate`` holds."""
        await wait_until(predicate, self.timeout, message)

    async def status_is(self, host: WorkflowHost, wid: str, status: WorkflowStatus) -> None:
        """Wait (bounded) until the workflow has ``status``."""

        async def check() -> bool:
            return (await host.get_workflow_instance(wid)).status == status

        await self.until(check, f"workflow {wid} to be {status}")

    # ----------------------------------------------------------------------------------
    # basics and data
    # ----------------------------------------------------------------------------------

    async def test_basic_two_steps_run_once_each(self, host_factory: HostFactory) -> None:
        """A sync StepBody then an async function each run exactly once; COMPLETE."""
        rec = Recorder()
        host = await host_factory(BasicWorkflow(rec))
        wid = await host.start_workflow(BasicWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.complete_time is not None
        assert inst.data.received == ["hello", "world"]
        assert rec.count("world") == 1

    async def test_run_workflow_returns_final_instance(self, host_factory: HostFactory) -> None:
        """run_workflow starts a workflow and returns its finished instance."""
        host = await host_factory(DataIOWorkflow())
        inst = await host.run_workflow(DataIOWorkflow.id, Data(a=4, b=5), timeout=self.timeout)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.total == 9

    async def test_start_without_data_builds_default_data(self, host_factory: HostFactory) -> None:
        """start_workflow with data=None starts with data_type()."""
        host = await host_factory(DataIOWorkflow())
        wid = await host.start_workflow(DataIOWorkflow.id)
        inst = await self.finished(host, wid)
        assert isinstance(inst.data, Data)
        assert inst.data.total == 0

    async def test_input_output_mapping(self, host_factory: HostFactory) -> None:
        """Inputs map data into the step and outputs map its result back (2 + 3 = 5)."""
        host = await host_factory(DataIOWorkflow())
        wid = await host.start_workflow(DataIOWorkflow.id, Data(a=2, b=3))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.total == 5

    async def test_decimal_with_18_places_survives_step_and_store(
        self, host_factory: HostFactory
    ) -> None:
        """An 18-place Decimal passes input -> step -> output and is stored typed."""
        a = Decimal("0.123456789012345678")
        b = Decimal("1.000000000000000001")
        when = datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC)
        host = await host_factory(DecimalWorkflow())
        wid = await host.start_workflow(DecimalWorkflow.id, DecimalData(a=a, b=b, when=when))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert isinstance(inst.data, DecimalData)
        assert isinstance(inst.data.total, Decimal)
        assert str(inst.data.total) == "1.123456789012345679"
        # a second host reads the instance back from the store
        other = await host_factory(DecimalWorkflow())
        stored = await other.get_workflow_instance(wid)
        assert isinstance(stored.data, DecimalData)
        assert stored.data == DecimalData(a=a, b=b, total=a + b, when=when)
        assert str(stored.data.a) == "0.123456789012345678"

    async def test_dict_data_output_sets_key(self, host_factory: HostFactory) -> None:
        """With dict data, inputs read keys and an output writes a new key."""
        host = await host_factory(DictDataWorkflow())
        wid = await host.start_workflow(DictDataWorkflow.id, {"a": 2, "b": 3})
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data == {"a": 2, "b": 3, "total": 5}

    async def test_start_unknown_definition_raises(self, host_factory: HostFactory) -> None:
        """Starting an unregistered definition raises WorkflowNotRegistered."""
        host = await host_factory()
        with pytest.raises(WorkflowNotRegistered):
            await host.start_workflow("scn-no-such-workflow", Data())

    async def test_start_with_wrong_data_type_raises_and_stores_nothing(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Data of another type than data_type raises TypeError and stores nothing."""
        host = await host_factory(DataIOWorkflow())
        with pytest.raises(TypeError):
            await host.start_workflow(DataIOWorkflow.id, DecimalData())
        assert await provider.query_workflows(definition_id=DataIOWorkflow.id) == []

    async def test_control_calls_report_state_and_unknown_ids(
        self, host_factory: HostFactory
    ) -> None:
        """suspend/resume/terminate return False when the status does not allow them and
        raise WorkflowNotFound for an unknown id."""
        rec = Recorder()
        host = await host_factory(BasicWorkflow(rec))
        inst = await host.run_workflow(BasicWorkflow.id, Data(), timeout=self.timeout)
        assert inst.status == WorkflowStatus.COMPLETE
        assert await host.suspend_workflow(inst.id) is False
        assert await host.resume_workflow(inst.id) is False
        assert await host.terminate_workflow(inst.id) is False
        for call in (host.suspend_workflow, host.resume_workflow, host.terminate_workflow):
            with pytest.raises(WorkflowNotFound):
                await call(f"no-such-workflow-{uid()}")

    async def test_register_same_definition_twice_raises(self, host_factory: HostFactory) -> None:
        """Registering the same id and version twice raises DefinitionError."""
        host = await host_factory(DataIOWorkflow())
        with pytest.raises(DefinitionError):
            host.register_workflow(DataIOWorkflow())

    # ----------------------------------------------------------------------------------
    # control flow
    # ----------------------------------------------------------------------------------

    async def test_if_runs_true_blocks_and_skips_false(self, host_factory: HostFactory) -> None:
        """if blocks run only when true; the step after runs after the last block."""
        rec = Recorder()
        host = await host_factory(IfWorkflow(rec))
        wid = await host.start_workflow(IfWorkflow.id, Data(counter=2))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["start", "if1", "if3a", "if3b", "after"]

    async def test_while_loop_iterates_until_false(self, host_factory: HostFactory) -> None:
        """while runs its body until the condition is false, then the next step once."""
        rec = Recorder()
        host = await host_factory(WhileWorkflow(rec))
        wid = await host.start_workflow(WhileWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.counter == 3
        assert rec.names == ["start", "body", "body", "body", "after"]

    async def test_foreach_parallel_runs_every_item(self, host_factory: HostFactory) -> None:
        """A parallel foreach runs its body per item (context.item) before continuing."""
        rec = Recorder()
        host = await host_factory(ForeachParallelWorkflow(rec))
        wid = await host.start_workflow(ForeachParallelWorkflow.id, Data(items=[2, 2, 3]))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.total == 7
        assert rec.names == ["body", "body", "body", "after"]

    async def test_foreach_sequential_keeps_item_order(self, host_factory: HostFactory) -> None:
        """A sequential foreach finishes each item before the next, whatever they take."""
        rec = Recorder()
        host = await host_factory(ForeachSequentialWorkflow(rec))
        wid = await host.start_workflow(ForeachSequentialWorkflow.id, Data(items=[3, 1, 2]))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["item:3", "item:1", "item:2", "after"]

    async def test_foreach_empty_collection_skips_body(self, host_factory: HostFactory) -> None:
        """An empty foreach (parallel or sequential) skips its body and goes on."""
        rec = Recorder()
        host = await host_factory(ForeachParallelWorkflow(rec), ForeachSequentialWorkflow(rec))
        first = await host.start_workflow(ForeachParallelWorkflow.id, Data(items=[]))
        second = await host.start_workflow(ForeachSequentialWorkflow.id, Data(items=[]))
        assert (await self.finished(host, first)).status == WorkflowStatus.COMPLETE
        assert (await self.finished(host, second)).status == WorkflowStatus.COMPLETE
        assert rec.names == ["after", "after"]

    async def test_outcome_fork_follows_matching_branch_only(
        self, host_factory: HostFactory
    ) -> None:
        """With outcome True, when(True) runs and when(False) does not."""
        rec = Recorder()
        host = await host_factory(ForkWorkflow(rec))
        wid = await host.start_workflow(ForkWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["C"]

    async def test_when_runs_every_matching_branch_then_continues(
        self, host_factory: HostFactory
    ) -> None:
        """Every when() matching the outcome runs; the next step runs after all of them."""
        rec = Recorder()
        host = await host_factory(WhenWorkflow(rec))
        wid = await host.start_workflow(WhenWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"two-a": 1, "two-a2": 1, "two-b": 1, "after": 1}
        assert rec.names[-1] == "after"

    async def test_decide_picks_branch_by_value(self, host_factory: HostFactory) -> None:
        """decide runs the branch whose value matches ("+" adds, "-" subtracts)."""
        rec = Recorder()
        host = await host_factory(DecideWorkflow(rec))
        plus = await host.start_workflow(DecideWorkflow.id, Data(op="+", a=2, b=3))
        minus = await host.start_workflow(DecideWorkflow.id, Data(op="-", a=2, b=3))
        assert (await self.finished(host, plus)).data.total == 5
        assert (await self.finished(host, minus)).data.total == -1
        assert rec.count("after") == 2

    async def test_attach_makes_a_loop(self, host_factory: HostFactory) -> None:
        """attach jumps back to a named step, making a loop."""
        rec = Recorder()
        host = await host_factory(AttachWorkflow(rec))
        wid = await host.start_workflow(AttachWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"step1": 4, "step2": 3}

    async def test_end_workflow_completes_and_skips_later_steps(
        self, host_factory: HostFactory
    ) -> None:
        """end_workflow completes the workflow at once; later steps never run."""
        rec = Recorder()
        host = await host_factory(EndWorkflowWorkflow(rec))
        wid = await host.start_workflow(EndWorkflowWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.complete_time is not None
        assert rec.names == ["body"]

    async def test_delay_resumes_after_period(self, host_factory: HostFactory) -> None:
        """delay sleeps for its period, then the workflow goes on."""
        rec = Recorder()
        host = await host_factory(DelayWorkflow(rec, timedelta(milliseconds=300)))
        wid = await host.start_workflow(DelayWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["a", "b"]
        assert rec.times("b")[0] - rec.times("a")[0] >= 0.29

    async def test_schedule_runs_side_branch_later_while_main_continues(
        self, host_factory: HostFactory
    ) -> None:
        """schedule runs its branch after the delay; the main chain does not wait."""
        rec = Recorder()
        host = await host_factory(ScheduleWorkflow(rec))
        wid = await host.start_workflow(ScheduleWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["first", "main2", "side"]
        assert rec.times("side")[0] - rec.times("first")[0] >= 0.19

    async def test_recur_runs_until_condition(self, host_factory: HostFactory) -> None:
        """recur runs its branch every interval until the condition holds."""
        rec = Recorder()
        host = await host_factory(RecurWorkflow(rec))
        wid = await host.start_workflow(RecurWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.counter == 3
        assert rec.counts() == {"first": 1, "main2": 1, "tick": 3}
        assert rec.index("main2") < rec.index("tick")

    # ----------------------------------------------------------------------------------
    # events
    # ----------------------------------------------------------------------------------

    async def test_wait_for_resumes_on_publish_with_event_data(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Each wait_for resumes on its event and outputs the event data."""
        key = uid()
        host = await host_factory(EventWorkflow())
        wid = await host.start_workflow(EventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        await host.publish_event(EVENT_1, key, "Pass1")
        await wait_for_subscription(provider, EVENT_2, key, self.timeout)
        await host.publish_event(EVENT_2, key, "Pass2")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert (inst.data.text, inst.data.last) == ("Pass1", "Pass2")

    async def test_events_delivered_oldest_first(self, host_factory: HostFactory) -> None:
        """Five same-key events published before the workflow reach five waits in
        event-time order (late subscribers, effective dates, oldest first)."""
        key = uid()
        base = datetime.now(UTC) - timedelta(hours=1)
        host = await host_factory(EventOrderWorkflow())
        for i in (5, 3, 1, 4, 2):  # publication order differs from event-time order
            await host.publish_event(
                ORDER_EVENT, key, f"e{i}", effective_date=base + timedelta(minutes=i, seconds=1)
            )
        wid = await host.start_workflow(EventOrderWorkflow.id, Data(key=key, base_time=base))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.received == ["e1", "e2", "e3", "e4", "e5"]

    async def test_parallel_branch_waits_while_others_finish(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """In parallel, the other branches finish while one waits; join waits for it."""
        key = uid()
        rec = Recorder()
        host = await host_factory(ParallelWorkflow(rec))
        wid = await host.start_workflow(ParallelWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        await self.until(
            lambda: {"a2", "c1"} <= set(rec.names), "the branches without a wait to finish"
        )
        assert "b2" not in rec.names
        assert "joined" not in rec.names
        await host.publish_event(EVENT_1, key, "go")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"a1": 1, "a2": 1, "b1": 1, "b2": 1, "c1": 1, "joined": 1}
        assert rec.names[-1] == "joined"

    async def test_parallel_branches_wait_for_different_events(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Two branches wait for different events on one instance; both are delivered."""
        key = uid()
        rec = Recorder()
        host = await host_factory(ParallelEventsWorkflow(rec))
        wid = await host.start_workflow(ParallelEventsWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        await wait_for_subscription(provider, EVENT_2, key, self.timeout)
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.publish_event, EVENT_1, key, "one")
            tg.start_soon(host.publish_event, EVENT_2, key, "two")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert (inst.data.text, inst.data.last) == ("one", "two")
        assert rec.counts() == {"after1": 1, "after2": 1, "joined": 1}

    async def test_cancel_condition_cancels_wait_and_removes_subscription(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A wait whose cancel condition becomes true is cancelled, its subscription is
        removed and its event is then ignored; the other branch goes on."""
        key = uid()
        rec = Recorder()
        host = await host_factory(CancelledEventWorkflow(rec))
        wid = await host.start_workflow(CancelledEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        await wait_for_subscription(provider, EVENT_2, key, self.timeout)
        await host.publish_event(EVENT_2, key, "Pass")
        await wait_for_subscription(provider, EVENT_3, key, self.timeout)

        async def first_wait_gone() -> bool:
            return await subscriptions_for(provider, EVENT_1, key) == []

        await self.until(first_wait_gone, "the cancelled wait's subscription to be removed")
        await host.publish_event(EVENT_1, key, "Fail")
        await host.publish_event(EVENT_3, key, "done")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.text == "Pass"
        assert inst.data.last == "done"
        assert rec.counts() == {"after2": 1, "end": 1}
        cancelled = [p for p in inst.execution_pointers if p.status == PointerStatus.CANCELLED]
        assert cancelled, "the first wait's pointer is CANCELLED"

    async def test_wait_for_timeout_proceeds_with_timed_out(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A wait with a timeout proceeds with event_data None and timed_out True."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitTimeoutWorkflow(rec))
        started = time.monotonic()
        wid = await host.start_workflow(WaitTimeoutWorkflow.id, Data(key=key, last="unset"))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.timed_out is True
        assert inst.data.last is None
        assert rec.times("after")[0] - started >= 0.19
        assert await subscriptions_for(provider, EVENT_1, key) == []

    async def test_late_subscription_receives_future_dated_event(
        self, host_factory: HostFactory
    ) -> None:
        """An event published before the wait subscribed, dated at or after the
        subscription, is still delivered (once due)."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitEventWorkflow(rec))
        published = time.monotonic()
        await host.publish_event(
            EVENT_1, key, "early bird", effective_date=datetime.now(UTC) + timedelta(seconds=0.4)
        )
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.last == "early bird"
        assert rec.times("after")[0] - published >= 0.38

    async def test_wait_with_effective_date_receives_earlier_event(
        self, host_factory: HostFactory
    ) -> None:
        """A wait whose effective date precedes an already published event receives it."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitEffectiveDateWorkflow(rec))
        before = datetime.now(UTC) - timedelta(seconds=1)
        await host.publish_event(EVENT_1, key, "stored")
        wid = await host.start_workflow(
            WaitEffectiveDateWorkflow.id, Data(key=key, base_time=before)
        )
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.last == "stored"

    async def test_wait_without_effective_date_ignores_earlier_event(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A wait without effective date subscribes as of now: an older event is ignored."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitEventWorkflow(rec))
        await host.publish_event(EVENT_1, key, "old")
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        await host.publish_event(EVENT_1, key, "new")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.last == "new"
        assert rec.count("after") == 1

    async def test_future_dated_event_waits_for_its_time(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """An event with a future effective date is delivered only once that time comes."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitEventWorkflow(rec))
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        published = time.monotonic()
        await host.publish_event(
            EVENT_1, key, "later", effective_date=datetime.now(UTC) + timedelta(seconds=0.4)
        )
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.last == "later"
        assert rec.times("after")[0] - published >= 0.38

    async def test_event_is_broadcast_to_every_waiting_workflow(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """One event resumes every workflow waiting for its name and key."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitEventWorkflow(rec))
        first = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        second = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout, count=2)
        await host.publish_event(EVENT_1, key, "all")
        for wid in (first, second):
            inst = await self.finished(host, wid)
            assert inst.status == WorkflowStatus.COMPLETE
            assert inst.data.last == "all"
        assert rec.count("after") == 2

    async def test_event_data_keeps_its_type(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A registered dataclass published as event data reaches the workflow typed."""
        key = uid()
        host = await host_factory(TypedEventWorkflow())
        wid = await host.start_workflow(TypedEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_2, key, self.timeout)
        await host.publish_event(EVENT_2, key, ActivityOutput("evt", 7))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.activity_result == ActivityOutput("evt", 7)
        assert isinstance(inst.data.activity_result, ActivityOutput)

    async def test_event_published_while_suspended_waits_for_resume(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """An event for a suspended workflow is delivered but nothing runs until resume."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitEventWorkflow(rec))
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        assert await host.suspend_workflow(wid) is True
        await host.publish_event(EVENT_1, key, "while suspended")

        async def delivered() -> bool:
            return await subscriptions_for(provider, EVENT_1, key) == []

        await self.until(delivered, "the event to reach the suspended workflow")
        assert "after" not in rec.names
        assert (await host.get_workflow_instance(wid)).status == WorkflowStatus.SUSPENDED
        assert await host.resume_workflow(wid) is True
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.last == "while suspended"
        assert rec.count("after") == 1

    async def test_idle_waiting_workflow_is_not_reprocessed(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A workflow that only waits for an event (also after a resume) gets no passes
        until the event comes."""
        key = uid()
        rec = Recorder()

        def configure(host: WorkflowHost) -> None:
            host.use_workflow_middleware(
                MiddlewarePhase.EXECUTE_WORKFLOW, lambda instance: rec.hit("pass")
            )

        host = await host_factory(WaitEventWorkflow(rec), configure=configure)
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        assert await host.suspend_workflow(wid) is True
        assert await host.resume_workflow(wid) is True
        await self.until(lambda: rec.count("pass") >= 1, "the pass after the resume")
        before = rec.count("pass")
        await anyio.sleep(0.3)  # let time pass: an idle waiting workflow stays idle
        assert rec.count("pass") - before <= 2, rec.count("pass") - before
        await host.publish_event(EVENT_1, key, "go")
        assert (await self.finished(host, wid)).status == WorkflowStatus.COMPLETE

    async def test_event_nobody_waits_for_is_stored_and_harmless(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """An event nobody waits for is stored; the host keeps working."""
        host = await host_factory(DataIOWorkflow())
        event_id = await host.publish_event("scn-nobody", uid(), {"x": 1})
        stored = await provider.get_event(event_id)
        assert stored.event_name == "scn-nobody"
        inst = await host.run_workflow(DataIOWorkflow.id, Data(a=1, b=1), timeout=self.timeout)
        assert inst.data.total == 2

    # ----------------------------------------------------------------------------------
    # no subscription left behind
    # ----------------------------------------------------------------------------------

    async def test_no_subscription_left_after_delivery(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A delivered event removes the pointer's subscription."""
        key = uid()
        host = await host_factory(EventWorkflow())
        wid = await host.start_workflow(EventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        await host.publish_event(EVENT_1, key, "Pass1")
        await wait_for_subscription(provider, EVENT_2, key, self.timeout)
        assert await subscriptions_for(provider, EVENT_1, key) == []
        await host.publish_event(EVENT_2, key, "Pass2")
        assert (await self.finished(host, wid)).status == WorkflowStatus.COMPLETE
        assert await subscriptions_for(provider, EVENT_2, key) == []

    async def test_no_subscription_left_after_termination(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Terminating a waiting workflow removes its subscriptions."""
        key = uid()
        rec = Recorder()
        host = await host_factory(WaitEventWorkflow(rec))
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        assert await host.terminate_workflow(wid) is True
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert await subscriptions_for(provider, EVENT_1, key) == []
        await host.publish_event(EVENT_1, key, "too late")
        assert (await host.get_workflow_instance(wid)).status == WorkflowStatus.TERMINATED
        assert rec.count("after") == 0

    async def test_no_subscription_left_after_completion(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A workflow ended while a branch still waits leaves no subscription."""
        key = uid()
        rec = Recorder()
        host = await host_factory(EndWithOpenWaitWorkflow(rec))
        wid = await host.start_workflow(EndWithOpenWaitWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert await subscriptions_for(provider, EVENT_1, key) == []
        assert rec.names == ["ending"]

    # ----------------------------------------------------------------------------------
    # activities
    # ----------------------------------------------------------------------------------

    async def test_activity_typed_parameters_and_result(self, host_factory: HostFactory) -> None:
        """A worker gets typed activity parameters; its typed result reaches the data."""
        key = uid()
        host = await host_factory(ActivityWorkflow())
        wid = await host.start_workflow(ActivityWorkflow.id, Data(key=key))
        activity = await host.get_pending_activity(ACTIVITY, worker_id="w1", timeout=self.timeout)
        assert activity is not None
        assert activity.activity_name == ACTIVITY
        assert activity.parameters == ActivityInput(key, Decimal("12.345"))
        assert isinstance(activity.parameters, ActivityInput)
        await host.submit_activity_success(activity.token, ActivityOutput("a1", 2))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.activity_result == ActivityOutput("a1", 2)
        assert isinstance(inst.data.activity_result, ActivityOutput)

    async def test_activity_failure_applies_error_behaviour(
        self, host_factory: HostFactory
    ) -> None:
        """A submitted activity failure fails the step; its on_error (TERMINATE) applies."""
        rec = Recorder()
        host = await host_factory(ActivityFailWorkflow(rec))
        wid = await host.start_workflow(ActivityFailWorkflow.id, Data(key=uid()))
        activity = await host.get_pending_activity(ACTIVITY, worker_id="w1", timeout=self.timeout)
        assert activity is not None
        await host.submit_activity_failure(activity.token, "card declined")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.count("after") == 0
        errors = await host.get_errors(wid)
        assert any("card declined" in e.message for e in errors), errors

    async def test_claimed_activity_is_not_offered_again_until_released(
        self, host_factory: HostFactory
    ) -> None:
        """A claimed activity is offered to nobody else; releasing it offers it again."""
        host = await host_factory(ActivityWorkflow())
        wid = await host.start_workflow(ActivityWorkflow.id, Data(key=uid()))
        first = await host.get_pending_activity(ACTIVITY, worker_id="A", timeout=self.timeout)
        assert first is not None
        assert await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=0.05) is None
        await host.release_activity_token(first.token)
        second = await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=self.timeout)
        assert second is not None
        assert second.parameters == first.parameters
        await host.submit_activity_success(second.token, ActivityOutput("b", 1))
        inst = await self.finished(host, wid)
        assert inst.data.activity_result == ActivityOutput("b", 1)

    async def test_activity_token_expires_and_is_reclaimed(self, host_factory: HostFactory) -> None:
        """An unsubmitted claim expires; another worker gets the activity and the first
        worker's late submit raises TokenMismatch."""
        host = await host_factory(ActivityWorkflow(), activity_token_ttl=0.2)
        wid = await host.start_workflow(ActivityWorkflow.id, Data(key=uid()))
        a = await host.get_pending_activity(ACTIVITY, worker_id="A", timeout=self.timeout)
        assert a is not None
        assert a.token_expiry is not None
        assert await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=0.05) is None
        b = await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=self.timeout)
        assert b is not None
        assert b.token != a.token
        assert b.parameters == a.parameters
        with pytest.raises(TokenMismatch):
            await host.submit_activity_success(a.token, ActivityOutput("late", 0))
        await host.submit_activity_success(b.token, ActivityOutput("b", 2))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.activity_result == ActivityOutput("b", 2)

    async def test_unknown_activity_token_is_a_clear_error(self, host_factory: HostFactory) -> None:
        """Submitting a token the host never issued raises a wfe error with a message."""
        host = await host_factory(ActivityWorkflow())
        with pytest.raises((WfeError, ValueError)) as caught:
            await host.submit_activity_success("not-a-token", ActivityOutput())
        assert str(caught.value)

    # ----------------------------------------------------------------------------------
    # compensation and sagas
    # ----------------------------------------------------------------------------------

    async def test_compensation_not_run_without_failure(self, host_factory: HostFactory) -> None:
        """A step that succeeds is never compensated."""
        rec = Recorder()
        host = await host_factory(CompensationWorkflow(rec))
        wid = await host.start_workflow(CompensationWorkflow.id, Data(flag=False))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["first", "risky", "after"]
        assert await host.get_errors(wid) == []

    async def test_compensation_runs_on_failure_then_continues(
        self, host_factory: HostFactory
    ) -> None:
        """A failing step with COMPENSATE runs its compensation; the workflow goes on."""
        rec = Recorder()
        host = await host_factory(CompensationWorkflow(rec))
        wid = await host.start_workflow(CompensationWorkflow.id, Data(flag=True))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["first", "risky", "undo", "after"]
        assert len(await host.get_errors(wid)) == 1

    async def test_compensation_sequence_runs_in_order(self, host_factory: HostFactory) -> None:
        """compensate_with_sequence runs every compensation step, in order."""
        rec = Recorder()
        host = await host_factory(CompensationSequenceWorkflow(rec))
        wid = await host.start_workflow(CompensationSequenceWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"first": 1, "risky": 1, "undo1": 1, "undo2": 1, "after": 1}
        assert rec.index("undo1") < rec.index("undo2")

    async def test_saga_without_failure_compensates_nothing(
        self, host_factory: HostFactory
    ) -> None:
        """A saga whose steps all succeed runs no compensation."""
        rec = Recorder()
        host = await host_factory(SagaWorkflow(rec))
        wid = await host.start_workflow(SagaWorkflow.id, Data(flag=False))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["pre", "s1", "s2", "s3", "tail"]

    async def test_saga_failure_compensates_completed_steps_in_reverse(
        self, host_factory: HostFactory
    ) -> None:
        """A failure inside a saga compensates the saga's steps that ran, newest first;
        the rest of the saga is skipped, steps outside are not compensated and the
        workflow goes on after the saga."""
        rec = Recorder()
        host = await host_factory(SagaWorkflow(rec))
        wid = await host.start_workflow(SagaWorkflow.id, Data(flag=True))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        counts = rec.counts()
        assert (counts["pre"], counts["s1"], counts["s2"], counts["tail"]) == (1, 1, 1, 1)
        assert counts["s3"] == 0, "the saga stops at the failing step"
        assert (counts["undo2"], counts["undo1"]) == (1, 1)
        assert (counts["undo3"], counts["undo-pre"], counts["undo-tail"]) == (0, 0, 0)
        assert rec.index("undo2") < rec.index("undo1")
        assert len(await host.get_errors(wid)) == 1

    async def test_saga_level_compensation_runs_when_saga_fails(
        self, host_factory: HostFactory
    ) -> None:
        """A saga's own compensate_with runs once when a step inside it fails."""
        rec = Recorder()
        host = await host_factory(SagaWorkflow(rec))
        wid = await host.start_workflow(SagaWorkflow.id, Data(flag=True))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.count("undo-saga") == 1
        assert rec.index("undo1") < rec.index("undo-saga")

    async def test_saga_step_retries_then_compensates(self, host_factory: HostFactory) -> None:
        """A saga step with RETRY and max_retries fails after its retries; then the saga
        compensates."""
        rec = Recorder()
        host = await host_factory(SagaRetryLimitWorkflow(rec))
        wid = await host.start_workflow(SagaRetryLimitWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.count("s2") == 2
        assert rec.only(["undo2", "undo1", "tail"]) == ["undo2", "undo1", "tail"]

    async def test_multistep_compensation_runs_in_reverse_order(
        self, host_factory: HostFactory
    ) -> None:
        """Saga compensations run newest first; a sequence runs in its own order."""
        rec = Recorder()
        host = await host_factory(MultiStepCompensationWorkflow(rec))
        wid = await host.start_workflow(MultiStepCompensationWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        undo = ["undo4", "undo3", "undo2a", "undo2b", "undo1"]
        assert rec.only(undo) == undo
        assert rec.count("after") == 1

    async def test_nested_saga_compensation_order(self, host_factory: HostFactory) -> None:
        """Compensations of steps nested in blocks inside a saga run newest first."""
        rec = Recorder()
        host = await host_factory(NestedSagaCompensationWorkflow(rec))
        wid = await host.start_workflow(NestedSagaCompensationWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        undo = ["undo4", "undo3", "undo2a", "undo2b", "undo1a", "undo1b"]
        assert rec.only(undo) == undo

    async def test_retry_saga_compensates_then_retries_whole_saga(
        self, host_factory: HostFactory
    ) -> None:
        """saga.on_error(RETRY) compensates and reruns the whole saga until it succeeds."""
        rec = Recorder()
        host = await host_factory(RetrySagaWorkflow(rec))
        wid = await host.start_workflow(RetrySagaWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        self._assert_retry_saga_counts(rec)
        assert len(await host.get_errors(wid)) == 2

    async def test_nested_retry_saga(self, host_factory: HostFactory) -> None:
        """A retried saga whose failing step is nested in a block behaves the same."""
        rec = Recorder()
        host = await host_factory(RetrySagaWorkflow(rec, nested=True))
        wid = await host.start_workflow(RetrySagaWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        self._assert_retry_saga_counts(rec)
        assert len(await host.get_errors(wid)) == 2

    @staticmethod
    def _assert_retry_saga_counts(rec: Recorder) -> None:
        counts = rec.counts()
        assert counts["pre"] == 1
        assert counts["s1"] == 3
        assert counts["s2"] == 3
        assert counts["undo1"] == 2
        assert counts["undo2"] == 2
        assert counts["s3"] == 1
        assert counts["undo3"] == 0
        assert counts["undo-pre"] == 0
        assert counts["tail"] == 1
        assert rec.names[-1] == "tail"

    async def test_failing_saga_with_terminate(self, host_factory: HostFactory) -> None:
        """saga.on_error(TERMINATE): a failure inside terminates; nothing later runs."""
        rec = Recorder()
        host = await host_factory(FailingSagaWorkflow(rec))
        wid = await host.start_workflow(FailingSagaWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.count("s3") == 0
        assert rec.count("tail") == 0
        assert len(await host.get_errors(wid)) == 1

    async def test_foreach_with_compensation(self, host_factory: HostFactory) -> None:
        """A compensated failure inside foreach/decide runs its sequence once; the
        workflow completes."""
        rec = Recorder()
        host = await host_factory(ForeachCompensationWorkflow(rec))
        wid = await host.start_workflow(ForeachCompensationWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["risky", "undo-a", "undo-b", "after"]
        assert len(await host.get_errors(wid)) == 1

    # ----------------------------------------------------------------------------------
    # middleware
    # ----------------------------------------------------------------------------------

    async def test_step_middleware_runs_as_onion(self, host_factory: HostFactory) -> None:
        """Step middleware nests in registration order around the step."""
        rec = Recorder()

        def middleware(n: int) -> Callable[..., Awaitable[Any]]:
            async def handle(
                context: StepContext[Any], call_next: Callable[[], Awaitable[Any]]
            ) -> Any:
                rec.hit(f"enter{n}")
                result = await call_next()
                rec.hit(f"exit{n}")
                return result

            return handle

        def configure(host: WorkflowHost) -> None:
            for n in (1, 2, 3):
                host.use_step_middleware(middleware(n))

        host = await host_factory(MiddlewareWorkflow(rec), configure=configure)
        wid = await host.start_workflow(MiddlewareWorkflow.id, Data())
        assert (await self.finished(host, wid)).status == WorkflowStatus.COMPLETE
        assert rec.names == ["enter1", "enter2", "enter3", "step", "exit3", "exit2", "exit1"]

    async def test_workflow_middleware_phases(self, host_factory: HostFactory) -> None:
        """PRE runs once before the first step, EXECUTE after passes, POST once after
        completion."""
        rec = Recorder()
        seen: list[tuple[str, str]] = []

        def middleware(phase: str) -> Callable[[WorkflowInstance], None]:
            def handle(instance: WorkflowInstance) -> None:
                rec.hit(phase)
                seen.append((phase, instance.workflow_definition_id))

            return handle

        def configure(host: WorkflowHost) -> None:
            host.use_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, middleware("pre"))
            host.use_workflow_middleware(MiddlewarePhase.EXECUTE_WORKFLOW, middleware("execute"))
            host.use_workflow_middleware(MiddlewarePhase.POST_WORKFLOW, middleware("post"))

        host = await host_factory(MiddlewareWorkflow(rec), configure=configure)
        wid = await host.start_workflow(MiddlewareWorkflow.id, Data())
        assert (await self.finished(host, wid)).status == WorkflowStatus.COMPLETE
        await self.until(lambda: "post" in rec.names, "the POST_WORKFLOW middleware")
        assert rec.count("pre") == 1
        assert rec.count("post") == 1
        assert rec.count("execute") >= 1
        assert rec.index("pre") < rec.index("step") < rec.index("post")
        assert {d for _, d in seen} == {MiddlewareWorkflow.id}

    # ----------------------------------------------------------------------------------
    # errors
    # ----------------------------------------------------------------------------------

    async def test_default_error_behaviour_retries(self, host_factory: HostFactory) -> None:
        """Without on_error a failing step is retried until it succeeds."""
        rec = Recorder()
        host = await host_factory(FlakyWorkflow(rec, failures=2))
        wid = await host.start_workflow(FlakyWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"flaky": 3, "after": 1}
        assert len(await host.get_errors(wid)) == 2

    async def test_max_retries_exhausted_fails_step_and_terminates(
        self, host_factory: HostFactory
    ) -> None:
        """After max_retries the pointer FAILS, the workflow is TERMINATED and every
        failure is recorded with its type and traceback."""
        rec = Recorder()
        workflow = FlakyWorkflow(
            rec,
            failures=1_000,
            behavior=ErrorBehavior.RETRY,
            retry_interval=timedelta(milliseconds=20),
            max_retries=2,
        )
        host = await host_factory(workflow)
        wid = await host.start_workflow(FlakyWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.counts() == {"flaky": 3}
        failed = [p for p in inst.execution_pointers if p.status == PointerStatus.FAILED]
        assert len(failed) == 1
        errors = await host.get_errors(wid)
        assert len(errors) == 3
        for error in errors:
            assert error.workflow_id == wid
            assert error.execution_pointer_id == failed[0].id
            assert error.error_type is not None
            assert "ValueError" in error.error_type
            assert error.traceback is not None
            assert "kaboom" in error.traceback
            assert "kaboom" in error.message

    async def test_retry_backoff_grows_intervals(self, host_factory: HostFactory) -> None:
        """With backoff the retry intervals grow (about x backoff each time)."""
        rec = Recorder()
        workflow = FlakyWorkflow(
            rec,
            failures=3,
            behavior=ErrorBehavior.RETRY,
            retry_interval=timedelta(milliseconds=100),
            max_retries=5,
            backoff=2.0,
        )
        host = await host_factory(workflow)
        wid = await host.start_workflow(FlakyWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        times = rec.times("flaky")
        assert len(times) == 4
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] >= 0.09, gaps
        assert gaps[1] >= 0.18, gaps
        assert gaps[2] >= 0.36, gaps
        assert gaps[2] > gaps[0] * 1.5, gaps  # nominally x4; generous for loaded machines

    async def test_suspend_on_error_then_resume_continues(self, host_factory: HostFactory) -> None:
        """on_error(SUSPEND) suspends the workflow; resume runs the step again."""
        rec = Recorder()
        host = await host_factory(FlakyWorkflow(rec, failures=1, behavior=ErrorBehavior.SUSPEND))
        wid = await host.start_workflow(FlakyWorkflow.id, Data())
        await self.status_is(host, wid, WorkflowStatus.SUSPENDED)
        assert rec.counts() == {"flaky": 1}
        assert await host.resume_workflow(wid) is True
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"flaky": 2, "after": 1}

    async def test_terminate_on_error(self, host_factory: HostFactory) -> None:
        """on_error(TERMINATE) terminates the workflow at the first failure."""
        rec = Recorder()
        host = await host_factory(FlakyWorkflow(rec, failures=1, behavior=ErrorBehavior.TERMINATE))
        wid = await host.start_workflow(FlakyWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert inst.complete_time is not None
        assert rec.counts() == {"flaky": 1}
        assert len(await host.get_errors(wid)) == 1

    async def test_wait_for_with_unstorable_key_is_a_step_error(
        self, host_factory: HostFactory
    ) -> None:
        """A wait_for whose key no store can keep (401 characters, or a NUL) fails as an
        ordinary step error: the error is recorded and on_error(TERMINATE) applies."""
        host = await host_factory(BadWaitKeyWorkflow())
        for key in ("k" * (MAX_KEY_LENGTH + 1), f"nul\x00{uid()}"):
            wid = await host.start_workflow(BadWaitKeyWorkflow.id, Data(key=key))
            inst = await self.finished(host, wid)
            assert inst.status == WorkflowStatus.TERMINATED, inst.status
            assert inst.data.flag is False
            errors = await host.get_errors(wid)
            assert len(errors) == 1, errors
            assert "event key" in errors[0].message, errors[0].message
            waiting = [p for p in inst.execution_pointers if p.step_id == 1]
            assert [p.status for p in waiting] == [PointerStatus.FAILED]
            assert waiting[0].event_key is None

    async def test_step_error_message_with_nul_is_recorded(self, host_factory: HostFactory) -> None:
        """A step that raises an exception whose message holds a NUL (which no store
        keeps as it is) gets its error recorded, escaped, and its policy followed."""
        host = await host_factory(NulErrorWorkflow())
        wid = await host.start_workflow(NulErrorWorkflow.id, Data())
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED, inst.status
        errors = await host.get_errors(wid)
        assert len(errors) == 1, errors
        assert errors[0].message == "bad\\x00byte", errors[0].message
        assert "\x00" not in (errors[0].traceback or "")

    async def test_publish_event_with_unstorable_key_is_refused(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """publish_event with a name or key over 400 characters or holding a NUL raises
        ValueError naming it, and stores nothing; 400 characters are published."""
        host = await host_factory()
        for name, key in (
            (EVENT_1, "k" * (MAX_KEY_LENGTH + 1)),
            ("n" * (MAX_KEY_LENGTH + 1), "k"),
            (EVENT_1, "a\x00b"),
        ):
            with pytest.raises(ValueError, match=r"event (name|key)"):
                await host.publish_event(name, key, "data")
        assert await provider.get_runnable_events(far_future()) == []
        key = uid() + "k" * (MAX_KEY_LENGTH - 32)
        event_id = await host.publish_event(EVENT_1, key, "data")
        assert (await provider.get_event(event_id)).event_key == key

    # ----------------------------------------------------------------------------------
    # suspend, resume, terminate, stop
    # ----------------------------------------------------------------------------------

    async def test_suspend_then_resume_continues(self, host_factory: HostFactory) -> None:
        """A suspended workflow runs nothing until resumed, then goes on."""
        rec = Recorder()
        host = await host_factory(DelayWorkflow(rec, timedelta(milliseconds=200)))
        wid = await host.start_workflow(DelayWorkflow.id, Data())
        await self.until(lambda: "a" in rec.names, "the first step")
        assert await host.suspend_workflow(wid) is True
        assert (await host.get_workflow_instance(wid)).status == WorkflowStatus.SUSPENDED
        await anyio.sleep(0.5)  # let the delay expire while suspended
        assert "b" not in rec.names
        assert (await host.get_workflow_instance(wid)).status == WorkflowStatus.SUSPENDED
        assert await host.resume_workflow(wid) is True
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["a", "b"]

    async def test_terminate_cancels_running_step(self, host_factory: HostFactory) -> None:
        """terminate_workflow returns True and a running step sees context.cancelled."""
        rec = Recorder()
        host = await host_factory(BlockingWorkflow(rec))
        wid = await host.start_workflow(BlockingWorkflow.id, Data())
        await self.until(lambda: "block-start" in rec.names, "the blocking step to start")
        assert await host.terminate_workflow(wid) is True
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        await self.until(lambda: "saw-cancel" in rec.names, "the step to see the cancellation")
        assert "not-cancelled" not in rec.names
        assert "after" not in rec.names

    async def test_stop_waits_for_running_steps(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Stopping a host waits for its running step and persists its result; another
        host carries on from there without running it again."""
        rec = Recorder()
        host = await host_factory(SlowStepWorkflow(rec))
        wid = await host.start_workflow(SlowStepWorkflow.id, Data())
        await self.until(lambda: "slow-start" in rec.names, "the slow step to start")
        await host_factory.stop(host)
        assert "slow-end" in rec.names
        stored = await provider.get_workflow_instance(wid)
        slow = [p for p in stored.execution_pointers if p.step_name == "slow"]
        assert len(slow) == 1
        assert slow[0].status == PointerStatus.COMPLETE
        other = await host_factory(SlowStepWorkflow(rec))
        inst = await self.finished(other, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.text == "slow done"
        assert rec.counts() == {"slow-start": 1, "slow-end": 1, "after": 1}

    # ----------------------------------------------------------------------------------
    # sub-workflows
    # ----------------------------------------------------------------------------------

    async def test_sub_workflow_result(self, host_factory: HostFactory) -> None:
        """A sub-workflow step outputs the child's final data as .result."""
        rec = Recorder()
        host = await host_factory(ParentWorkflow(rec), ChildWorkflow())
        wid = await host.start_workflow(ParentWorkflow.id, Data(a=21))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.child_result == ChildData(value=42, note="doubled")
        assert isinstance(inst.data.child_result, ChildData)
        assert rec.count("after") == 1

    async def test_sub_workflow_failure_fails_parent_step(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A child that terminates on failure fails the parent's step (here: TERMINATE)."""
        rec = Recorder()
        host = await host_factory(ParentFailWorkflow(rec), ChildFailWorkflow())
        wid = await host.start_workflow(ParentFailWorkflow.id, Data(a=1))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.count("after") == 0
        children = await provider.query_workflows(definition_id=ChildFailWorkflow.id)
        assert [c.status for c in children] == [WorkflowStatus.TERMINATED]
        assert await host.get_errors(wid)

    async def test_terminated_child_fails_parent_step(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Terminating a running child fails the parent's sub-workflow step."""
        rec = Recorder()
        host = await host_factory(ParentWaitWorkflow(rec), ChildWaitWorkflow())
        wid = await host.start_workflow(ParentWaitWorkflow.id, Data(key=uid()))

        async def child_started() -> bool:
            return bool(await provider.query_workflows(definition_id=ChildWaitWorkflow.id))

        await self.until(child_started, "the child workflow to start")
        (child,) = await provider.query_workflows(definition_id=ChildWaitWorkflow.id)
        assert await host.terminate_workflow(child.id) is True
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.count("after") == 0

    # ----------------------------------------------------------------------------------
    # lifecycle events
    # ----------------------------------------------------------------------------------

    async def test_lifecycle_events_on_completion(self, host_factory: HostFactory) -> None:
        """A run publishes WORKFLOW_STARTED, STEP_STARTED/COMPLETED and WORKFLOW_COMPLETED."""
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(BasicWorkflow(rec), configure=capture(events))
        wid = await host.start_workflow(BasicWorkflow.id, Data())
        await self.finished(host, wid)
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_COMPLETED in types_of(events, wid),
            "WORKFLOW_COMPLETED",
        )
        seen = types_of(events, wid)
        assert seen.index(LifecycleEventType.WORKFLOW_STARTED) < seen.index(
            LifecycleEventType.WORKFLOW_COMPLETED
        )
        assert seen.count(LifecycleEventType.STEP_STARTED) >= 2
        assert seen.count(LifecycleEventType.STEP_COMPLETED) >= 2
        assert seen.count(LifecycleEventType.WORKFLOW_COMPLETED) == 1
        assert all(e.workflow_definition_id == BasicWorkflow.id for e in events)

    async def test_lifecycle_completed_on_end_workflow(self, host_factory: HostFactory) -> None:
        """A workflow ended by end_workflow publishes WORKFLOW_COMPLETED too."""
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(EndWorkflowWorkflow(rec), configure=capture(events))
        wid = await host.start_workflow(EndWorkflowWorkflow.id, Data())
        await self.finished(host, wid)
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_COMPLETED in types_of(events, wid),
            "WORKFLOW_COMPLETED after end_workflow",
        )

    async def test_lifecycle_events_on_suspend_and_resume(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Suspending and resuming publish WORKFLOW_SUSPENDED and WORKFLOW_RESUMED."""
        key = uid()
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(WaitEventWorkflow(rec), configure=capture(events))
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        assert await host.suspend_workflow(wid) is True
        assert await host.resume_workflow(wid) is True
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_RESUMED in types_of(events, wid),
            "WORKFLOW_RESUMED",
        )
        seen = types_of(events, wid)
        assert seen.index(LifecycleEventType.WORKFLOW_SUSPENDED) < seen.index(
            LifecycleEventType.WORKFLOW_RESUMED
        )
        await host.publish_event(EVENT_1, key, "after resume")
        assert (await self.finished(host, wid)).status == WorkflowStatus.COMPLETE

    async def test_lifecycle_events_on_error_and_termination(
        self, host_factory: HostFactory
    ) -> None:
        """A failing step publishes WORKFLOW_ERROR; terminating publishes
        WORKFLOW_TERMINATED."""
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(
            FlakyWorkflow(rec, failures=1, behavior=ErrorBehavior.TERMINATE),
            configure=capture(events),
        )
        wid = await host.start_workflow(FlakyWorkflow.id, Data())
        await self.finished(host, wid)
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_TERMINATED in types_of(events, wid),
            "WORKFLOW_TERMINATED",
        )
        assert LifecycleEventType.WORKFLOW_ERROR in types_of(events, wid)
        assert LifecycleEventType.WORKFLOW_COMPLETED not in types_of(events, wid)

    async def test_lifecycle_terminated_on_user_terminate(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """terminate_workflow publishes WORKFLOW_TERMINATED."""
        key = uid()
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(WaitEventWorkflow(rec), configure=capture(events))
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        assert await host.terminate_workflow(wid) is True
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_TERMINATED in types_of(events, wid),
            "WORKFLOW_TERMINATED",
        )

    # ----------------------------------------------------------------------------------
    # several hosts
    # ----------------------------------------------------------------------------------

    async def test_two_hosts_run_every_step_exactly_once(self, host_factory: HostFactory) -> None:
        """Two hosts on one store run each step of each workflow exactly once."""
        rec = Recorder()
        first = await host_factory(TwoHostWorkflow(rec))
        second = await host_factory(TwoHostWorkflow(rec))
        ids = []
        for n in range(20):
            host = first if n % 2 == 0 else second
            ids.append(await host.start_workflow(TwoHostWorkflow.id, Data()))
        for wid in ids:
            assert (await self.finished(first, wid)).status == WorkflowStatus.COMPLETE
        expected = {f"{wid}:{n}": 1 for wid in ids for n in (1, 2, 3)}
        assert dict(rec.counts()) == expected
