"""Time: delay, schedule (a side branch later) and recur (a branch every interval)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from wfe_conformance.scenarios.support import (
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
)
from wfe_core import (
    StepContext,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "DelayWorkflow",
    "RecurWorkflow",
    "ScheduleWorkflow",
    "SchedulingScenarioTests",
]


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


class SchedulingScenarioTests(ScenarioBase):
    """Delays, scheduled and recurring branches end to end."""

    async def test_delay_resumes_after_period(self, host_factory: HostFactory) -> None:
        """delay sleeps for its period, then the workflow goes on."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(
            DelayWorkflow(rec, timedelta(milliseconds=300)), Data()
        )
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["a", "b"]
        assert rec.times("b")[0] - rec.times("a")[0] >= 0.29

    async def test_schedule_runs_side_branch_later_while_main_continues(
        self, host_factory: HostFactory
    ) -> None:
        """schedule runs its branch after the delay; the main chain does not wait."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(ScheduleWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["first", "main2", "side"]
        assert rec.times("side")[0] - rec.times("first")[0] >= 0.19

    async def test_recur_runs_until_condition(self, host_factory: HostFactory) -> None:
        """recur runs its branch every interval until the condition holds."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(RecurWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.counter == 3
        assert rec.counts() == {"first": 1, "main2": 1, "tick": 3}
        assert rec.index("main2") < rec.index("tick")
