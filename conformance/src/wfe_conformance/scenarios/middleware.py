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
    MiddlewarePhase,
    StepContext,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowInstance,
    WorkflowStatus,
)

__all__ = [
    "MiddlewareScenarioTests",
    "MiddlewareWorkflow",
]


class MiddlewareWorkflow(RecordingWorkflow):
    """A single recorded step."""

    id = "scn-middleware"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(self.rec.step("step")).name("step")


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
