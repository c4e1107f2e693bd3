"""Middleware: step middleware nests as an onion; workflow middleware runs in its phases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from wfe_conformance.scenarios.support import (
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
)
from wfe_core import (
    ExecutionResult,
    MiddlewarePhase,
    StepBody,
    StepContext,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowInstance,
    WorkflowStatus,
)

__all__ = [
    "AddStep",
    "MiddlewareScenarioTests",
    "MiddlewareWorkflow",
    "OutputActionWorkflow",
]


class MiddlewareWorkflow(RecordingWorkflow):
    """A single recorded step."""

    id = "scn-middleware"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(self.rec.step("step")).name("step")


class AddStep(StepBody):
    """Adds its inputs ``a`` and ``b`` into ``total``."""

    a: int = 0
    b: int = 0
    total: int = 0

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.total = self.a + self.b
        return ExecutionResult.next()


def _note_total(step: AddStep, data: Data) -> None:
    """An output action: it sees the step and the data."""
    data.items.append(step.total)
    data.text = f"{step.a}+{step.b}={step.total} (counter {data.counter})"


class OutputActionWorkflow(RecordingWorkflow):
    """Two additions whose output actions see both the step and the data."""

    id = "scn-output-action"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(AddStep).input(a=lambda d: d.a, b=lambda d: d.b).output(
            _note_total, total=lambda step: step.total
        ).then(AddStep).input(a=lambda d: d.total, b=lambda d: 10).output(_note_total)


class MiddlewareScenarioTests(ScenarioBase):
    """Step and workflow middleware end to end."""

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

        _, inst = await host_factory.run_to_end(
            MiddlewareWorkflow(rec), Data(), configure=configure
        )
        assert inst.status == WorkflowStatus.COMPLETE
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

        _, inst = await host_factory.run_to_end(
            MiddlewareWorkflow(rec), Data(), configure=configure
        )
        assert inst.status == WorkflowStatus.COMPLETE
        await self.until(lambda: "post" in rec.names, "the POST_WORKFLOW middleware")
        assert rec.count("pre") == 1
        assert rec.count("post") == 1
        assert rec.count("execute") >= 1
        assert rec.index("pre") < rec.index("step") < rec.index("post")
        assert {d for _, d in seen} == {MiddlewareWorkflow.id}

    async def test_wrapping_workflow_middleware_runs_around_each_pass(
        self, host_factory: HostFactory
    ) -> None:
        """An ``async mw(instance, next)`` in EXECUTE_WORKFLOW wraps each pass (the first
        registered outermost) and sees the instance before and after it; in PRE_WORKFLOW
        the wrapping ones nest around the later middleware; a middleware that fails
        before ``next`` neither stops the pass nor the other middleware."""
        rec = Recorder()

        def wrapper(name: str) -> Callable[[WorkflowInstance, Any], Awaitable[None]]:
            async def handle(instance: WorkflowInstance, call_next: Any) -> None:
                rec.hit(f"{name}:before:{instance.status.value}")
                await call_next()
                rec.hit(f"{name}:after:{instance.status.value}")

            return handle

        async def broken(instance: WorkflowInstance, call_next: Any) -> None:
            rec.hit("broken")
            raise RuntimeError("a middleware that fails before next")

        def plain(instance: WorkflowInstance) -> None:
            rec.hit("pre:plain")

        def configure(host: WorkflowHost) -> None:
            host.use_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, wrapper("pre-outer"))
            host.use_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, plain)
            host.use_workflow_middleware(MiddlewarePhase.EXECUTE_WORKFLOW, wrapper("outer"))
            host.use_workflow_middleware(MiddlewarePhase.EXECUTE_WORKFLOW, broken)
            host.use_workflow_middleware(MiddlewarePhase.EXECUTE_WORKFLOW, wrapper("inner"))

        _, inst = await host_factory.run_to_end(
            MiddlewareWorkflow(rec), Data(), configure=configure
        )
        assert inst.status == WorkflowStatus.COMPLETE
        # the pass's last write ends the workflow (waiters wake) before the pass returns
        # through the middleware: wait for the outermost one to finish
        await self.until(
            lambda: "outer:after:complete" in rec.names, "the EXECUTE_WORKFLOW middleware"
        )
        names = rec.names
        assert names[:3] == ["pre-outer:before:runnable", "pre:plain", "pre-outer:after:runnable"]
        assert rec.count("step") == 1
        step = rec.index("step")
        # around the pass that ran the step: outer, then the broken one, then inner
        assert names[step - 3 : step] == [
            "outer:before:runnable",
            "broken",
            "inner:before:runnable",
        ]
        assert names[step + 1 : step + 3] == ["inner:after:complete", "outer:after:complete"]
        assert rec.count("outer:before:runnable") == rec.count("inner:before:runnable")

    async def test_output_actions_see_the_step_and_the_data(
        self, host_factory: HostFactory
    ) -> None:
        """``.output(action)`` calls ``action(step, data)`` when the step proceeds, in
        order with the keyword mappings; the changes it makes to the data are stored."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(
            OutputActionWorkflow(rec), Data(a=2, b=3, counter=7)
        )
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.total == 5  # the keyword mapping of the first step
        assert inst.data.items == [5, 15]
        assert inst.data.text == "5+10=15 (counter 7)"
