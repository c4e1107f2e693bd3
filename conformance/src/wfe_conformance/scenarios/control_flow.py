"""Control flow: if, while, foreach (parallel and sequential), outcome forks, when, decide,
attach and end_workflow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from wfe_conformance.scenarios.support import (
    AddNumbers,
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    noop,
)
from wfe_core import (
    ExecutionResult,
    StepBody,
    StepContext,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "AttachWorkflow",
    "ControlFlowScenarioTests",
    "DecideWorkflow",
    "EndWorkflowWorkflow",
    "ForeachParallelWorkflow",
    "ForeachSequentialWorkflow",
    "ForkWorkflow",
    "IfWorkflow",
    "WhenWorkflow",
    "WhileWorkflow",
]


class ReturnOutcome(StepBody):
    """Proceeds with the outcome given as input ``value``."""

    value: Any = None

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        return ExecutionResult.outcome(self.value)


class SubtractNumbers(StepBody):
    """total = a - b (inputs a, b; output total)."""

    a: int = 0
    b: int = 0
    total: int = 0

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.total = self.a - self.b
        return ExecutionResult.next()


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


class ControlFlowScenarioTests(ScenarioBase):
    """Branching and looping constructs end to end."""

    async def test_if_runs_true_blocks_and_skips_false(self, host_factory: HostFactory) -> None:
        """if blocks run only when true; the step after runs after the last block."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(IfWorkflow(rec), Data(counter=2))
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["start", "if1", "if3a", "if3b", "after"]

    async def test_while_loop_iterates_until_false(self, host_factory: HostFactory) -> None:
        """while runs its body until the condition is false, then the next step once."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(WhileWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.counter == 3
        assert rec.names == ["start", "body", "body", "body", "after"]

    async def test_foreach_parallel_runs_every_item(self, host_factory: HostFactory) -> None:
        """A parallel foreach runs its body per item (context.item) before continuing."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(ForeachParallelWorkflow(rec), Data(items=[2, 2, 3]))
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.total == 7
        assert rec.names == ["body", "body", "body", "after"]

    async def test_foreach_sequential_keeps_item_order(self, host_factory: HostFactory) -> None:
        """A sequential foreach finishes each item before the next, whatever they take."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(
            ForeachSequentialWorkflow(rec), Data(items=[3, 1, 2])
        )
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
        _, inst = await host_factory.run_to_end(ForkWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["C"]

    async def test_when_runs_every_matching_branch_then_continues(
        self, host_factory: HostFactory
    ) -> None:
        """Every when() matching the outcome runs; the next step runs after all of them."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(WhenWorkflow(rec), Data())
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
        _, inst = await host_factory.run_to_end(AttachWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"step1": 4, "step2": 3}

    async def test_end_workflow_completes_and_skips_later_steps(
        self, host_factory: HostFactory
    ) -> None:
        """end_workflow completes the workflow at once; later steps never run."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(EndWorkflowWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.complete_time is not None
        assert rec.names == ["body"]
