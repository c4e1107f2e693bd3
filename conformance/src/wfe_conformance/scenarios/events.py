"""Events: wait_for resumes on a publish with the event data; effective dates, delivery
order, broadcast, typed data, suspended and idle waiting workflows.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.scenarios.basics import DataIOWorkflow
from wfe_conformance.scenarios.support import (
    EVENT_1,
    EVENT_2,
    ActivityOutput,
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    noop,
    subscriptions_for,
    uid,
    wait_for_subscription,
)
from wfe_core import (
    MiddlewarePhase,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)

__all__ = [
    "ORDER_EVENT",
    "EventOrderWorkflow",
    "EventScenarioTests",
    "EventWorkflow",
    "TypedEventWorkflow",
    "WaitEffectiveDateWorkflow",
    "WaitEventWorkflow",
]


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


async def append_last(context: StepContext[Any]) -> None:
    """Append ``data.last`` to ``data.received`` and count it."""
    context.data.received.append(context.data.last)
    context.data.counter += 1


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


class EventScenarioTests(ScenarioBase):
    """Publishing and delivering events to waiting workflows."""

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
