"""Sub-workflows: a child's final data is the parent step's result; a failed or terminated
child fails the parent's step.
"""

from __future__ import annotations

from typing import Any

from wfe_core.persistence import PersistenceProvider

from wfe_conformance.scenarios.support import (
    EVENT_3,
    ChildData,
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    noop,
    uid,
)
from wfe_core import (
    ErrorBehavior,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "ChildFailWorkflow",
    "ChildWaitWorkflow",
    "ChildWorkflow",
    "ParentFailWorkflow",
    "ParentWaitWorkflow",
    "ParentWorkflow",
    "SubWorkflowScenarioTests",
]


async def double_value(context: StepContext[Any]) -> None:
    """Child step: value *= 2."""
    context.data.value *= 2
    context.data.note = "doubled"


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


class SubWorkflowScenarioTests(ScenarioBase):
    """Sub-workflow steps end to end."""

    async def test_sub_workflow_result(self, host_factory: HostFactory) -> None:
        """A sub-workflow step outputs the child's final data as .result."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(
            ParentWorkflow(rec), Data(a=21), also=[ChildWorkflow()]
        )
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.child_result == ChildData(value=42, note="doubled")
        assert isinstance(inst.data.child_result, ChildData)
        assert rec.count("after") == 1

    async def test_sub_workflow_failure_fails_parent_step(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A child that terminates on failure fails the parent's step (here: TERMINATE)."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(
            ParentFailWorkflow(rec), Data(a=1), also=[ChildFailWorkflow()]
        )
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.count("after") == 0
        children = await provider.query_workflows(definition_id=ChildFailWorkflow.id)
        assert [c.status for c in children] == [WorkflowStatus.TERMINATED]
        assert await host.get_errors(inst.id)

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
