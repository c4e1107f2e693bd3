"""Control and several hosts: suspend, resume and terminate (also their answers for ended
and unknown workflows), stopping a host mid-step, and two hosts on one store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.scenarios.basics import BasicWorkflow
from wfe_conformance.scenarios.scheduling import DelayWorkflow
from wfe_conformance.scenarios.support import (
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    uid,
)
from wfe_core import (
    PointerStatus,
    StepContext,
    WorkflowBuilder,
    WorkflowNotFound,
    WorkflowStatus,
)

__all__ = [
    "BlockingWorkflow",
    "ControlScenarioTests",
    "SlowStepWorkflow",
    "TwoHostWorkflow",
]


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


class ControlScenarioTests(ScenarioBase):
    """Suspend, resume, terminate, stop, and two hosts sharing one store."""

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
