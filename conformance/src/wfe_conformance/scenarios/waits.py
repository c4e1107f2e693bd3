"""Waits: parallel branches waiting for events, cancel conditions and timeouts, and no
subscription left behind after delivery, termination or completion.
"""

from __future__ import annotations

import time
from datetime import timedelta

import anyio
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.scenarios.events import EventWorkflow, WaitEventWorkflow
from wfe_conformance.scenarios.support import (
    EVENT_1,
    EVENT_2,
    EVENT_3,
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
    PointerStatus,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "CancelledEventWorkflow",
    "EndWithOpenWaitWorkflow",
    "ParallelEventsWorkflow",
    "ParallelWorkflow",
    "WaitScenarioTests",
    "WaitTimeoutWorkflow",
]


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


class WaitScenarioTests(ScenarioBase):
    """Event waits in parallel branches, cancelled or timed out, and their subscriptions."""

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
