"""Compensation: a failing step with on_error(COMPENSATE) runs its compensation (a step or
a sequence) and the workflow goes on.
"""

from __future__ import annotations

from wfe_conformance.scenarios.support import (
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    noop,
)
from wfe_core import (
    ErrorBehavior,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "CompensationScenarioTests",
    "CompensationSequenceWorkflow",
    "CompensationWorkflow",
    "ForeachCompensationWorkflow",
]


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


class CompensationScenarioTests(ScenarioBase):
    """Step compensation end to end (sagas are in :mod:`wfe_conformance.scenarios.sagas`)."""

    async def test_compensation_not_run_without_failure(self, host_factory: HostFactory) -> None:
        """A step that succeeds is never compensated."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(CompensationWorkflow(rec), Data(flag=False))
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["first", "risky", "after"]
        assert await host.get_errors(inst.id) == []

    async def test_compensation_runs_on_failure_then_continues(
        self, host_factory: HostFactory
    ) -> None:
        """A failing step with COMPENSATE runs its compensation; the workflow goes on."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(CompensationWorkflow(rec), Data(flag=True))
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["first", "risky", "undo", "after"]
        assert len(await host.get_errors(inst.id)) == 1

    async def test_compensation_sequence_runs_in_order(self, host_factory: HostFactory) -> None:
        """compensate_with_sequence runs every compensation step, in order."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(CompensationSequenceWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"first": 1, "risky": 1, "undo1": 1, "undo2": 1, "after": 1}
        assert rec.index("undo1") < rec.index("undo2")

    async def test_foreach_with_compensation(self, host_factory: HostFactory) -> None:
        """A compensated failure inside foreach/decide runs its sequence once; the
        workflow completes."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(ForeachCompensationWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["risky", "undo-a", "undo-b", "after"]
        assert len(await host.get_errors(inst.id)) == 1
