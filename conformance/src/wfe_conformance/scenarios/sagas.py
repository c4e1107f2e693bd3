"""Sagas: a failure inside a saga compensates the steps that ran, newest first; a saga may
retry as a whole or terminate.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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
    "FailingSagaWorkflow",
    "MultiStepCompensationWorkflow",
    "NestedSagaCompensationWorkflow",
    "RetrySagaWorkflow",
    "SagaRetryLimitWorkflow",
    "SagaScenarioTests",
    "SagaWorkflow",
]


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


class SagaScenarioTests(ScenarioBase):
    """Saga transactions and their compensation order end to end."""

    async def test_saga_without_failure_compensates_nothing(
        self, host_factory: HostFactory
    ) -> None:
        """A saga whose steps all succeed runs no compensation."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(SagaWorkflow(rec), Data(flag=False))
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["pre", "s1", "s2", "s3", "tail"]

    async def test_saga_failure_compensates_completed_steps_in_reverse(
        self, host_factory: HostFactory
    ) -> None:
        """A failure inside a saga compensates the saga's steps that ran, newest first;
        the rest of the saga is skipped, steps outside are not compensated and the
        workflow goes on after the saga."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(SagaWorkflow(rec), Data(flag=True))
        assert inst.status == WorkflowStatus.COMPLETE
        counts = rec.counts()
        assert (counts["pre"], counts["s1"], counts["s2"], counts["tail"]) == (1, 1, 1, 1)
        assert counts["s3"] == 0, "the saga stops at the failing step"
        assert (counts["undo2"], counts["undo1"]) == (1, 1)
        assert (counts["undo3"], counts["undo-pre"], counts["undo-tail"]) == (0, 0, 0)
        assert rec.index("undo2") < rec.index("undo1")
        assert len(await host.get_errors(inst.id)) == 1

    async def test_saga_level_compensation_runs_when_saga_fails(
        self, host_factory: HostFactory
    ) -> None:
        """A saga's own compensate_with runs once when a step inside it fails."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(SagaWorkflow(rec), Data(flag=True))
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.count("undo-saga") == 1
        assert rec.index("undo1") < rec.index("undo-saga")

    async def test_saga_step_retries_then_compensates(self, host_factory: HostFactory) -> None:
        """A saga step with RETRY and max_retries fails after its retries; then the saga
        compensates."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(SagaRetryLimitWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.count("s2") == 2
        assert rec.only(["undo2", "undo1", "tail"]) == ["undo2", "undo1", "tail"]

    async def test_multistep_compensation_runs_in_reverse_order(
        self, host_factory: HostFactory
    ) -> None:
        """Saga compensations run newest first; a sequence runs in its own order."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(MultiStepCompensationWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        undo = ["undo4", "undo3", "undo2a", "undo2b", "undo1"]
        assert rec.only(undo) == undo
        assert rec.count("after") == 1

    async def test_nested_saga_compensation_order(self, host_factory: HostFactory) -> None:
        """Compensations of steps nested in blocks inside a saga run newest first."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(NestedSagaCompensationWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        undo = ["undo4", "undo3", "undo2a", "undo2b", "undo1a", "undo1b"]
        assert rec.only(undo) == undo

    async def test_retry_saga_compensates_then_retries_whole_saga(
        self, host_factory: HostFactory
    ) -> None:
        """saga.on_error(RETRY) compensates and reruns the whole saga until it succeeds."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(RetrySagaWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        self._assert_retry_saga_counts(rec)
        assert len(await host.get_errors(inst.id)) == 2

    async def test_nested_retry_saga(self, host_factory: HostFactory) -> None:
        """A retried saga whose failing step is nested in a block behaves the same."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(RetrySagaWorkflow(rec, nested=True), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        self._assert_retry_saga_counts(rec)
        assert len(await host.get_errors(inst.id)) == 2

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
        host, inst = await host_factory.run_to_end(FailingSagaWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.count("s3") == 0
        assert rec.count("tail") == 0
        assert len(await host.get_errors(inst.id)) == 1
