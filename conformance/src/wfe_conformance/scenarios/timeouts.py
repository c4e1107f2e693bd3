"""Timeouts: a step's ``.timeout(...)`` (its ``context.cancelled`` fires, it fails with
StepTimeout under its error policy) and a workflow's ``execution_timeout`` (the
instance is TERMINATED when it expires, also after a host restart).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from wfe_core.models import utcnow
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.scenarios.support import (
    EVENT_1,
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    capture,
    far_future,
    noop,
    subscriptions_for,
    types_of,
)
from wfe_core import (
    ErrorBehavior,
    LifecycleEvent,
    LifecycleEventType,
    PointerStatus,
    RetryPolicy,
    StepContext,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "HangingStepWorkflow",
    "TimeoutScenarioTests",
    "WaitingWorkflow",
]

STEP_LIMIT = timedelta(milliseconds=300)


class HangingStepWorkflow(RecordingWorkflow):
    """ "hang" (limited to ``STEP_LIMIT``) hangs on its first ``hangs`` runs until
    cancelled, recording "saw-cancel" when its ``context.cancelled`` had fired; its
    error policy is ``behavior`` (RETRY: a quick retry policy); inside a saga with a
    compensated "before" step when ``saga``; then "after"."""

    id = "scn-timeout-step"

    def __init__(
        self,
        rec: Recorder,
        hangs: int,
        behavior: ErrorBehavior | None,
        saga: bool = False,
    ) -> None:
        super().__init__(rec)
        self.hangs = hangs
        self.behavior = behavior
        self.saga = saga

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec, hangs, behavior = self.rec, self.hangs, self.behavior

        async def hang(context: StepContext[Any]) -> None:
            rec.hit("hang")
            if rec.count("hang") > hangs:
                return
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if context.cancelled.is_set():
                    rec.hit("saw-cancel")
                raise

        def limited(b: WorkflowBuilder[Data]) -> Any:
            step = b.start_with(hang).name("hang").timeout(STEP_LIMIT)
            if behavior is ErrorBehavior.RETRY:
                return step.retry_policy(
                    RetryPolicy(initial_interval=timedelta(milliseconds=20), jitter=0)
                )
            return step if behavior is None else step.on_error(behavior)

        if self.saga:
            (
                builder.start_with(noop)
                .saga(
                    lambda b: (
                        b.start_with(rec.step("before"))
                        .compensate_with(rec.step("undo-before"))
                        .then(hang)
                        .name("hang")
                        .timeout(STEP_LIMIT)
                    )
                )
                .then(rec.step("after"))
            )
        else:
            limited(builder).then(rec.step("after"))


class WaitingWorkflow(RecordingWorkflow):
    """ "start", then waits for ``EVENT_1`` with the data's key, then "after"."""

    id = "scn-timeout-waiting"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(self.rec.step("start"))
            .wait_for(EVENT_1, key=lambda d: d.key)
            .then(self.rec.step("after"))
        )


class TimeoutScenarioTests(ScenarioBase):
    """Step timeouts and workflow execution timeouts end to end."""

    async def test_step_timeout_retries_then_succeeds(self, host_factory: HostFactory) -> None:
        """A step past its timeout sees context.cancelled, is cancelled, fails with
        StepTimeout and is retried by its policy; the retry succeeds."""
        rec = Recorder()
        workflow = HangingStepWorkflow(rec, hangs=1, behavior=ErrorBehavior.RETRY)
        host, inst = await host_factory.run_to_end(workflow, Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"hang": 2, "saw-cancel": 1, "after": 1}
        errors = await host.get_errors(inst.id)
        assert len(errors) == 1
        assert (errors[0].error_type or "").endswith("StepTimeout")
        assert "hang" in errors[0].message

    async def test_step_timeout_with_terminate_policy(self, host_factory: HostFactory) -> None:
        """A timed-out step under on_error(TERMINATE) terminates the workflow."""
        rec = Recorder()
        workflow = HangingStepWorkflow(rec, hangs=1, behavior=ErrorBehavior.TERMINATE)
        _host, inst = await host_factory.run_to_end(workflow, Data())
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.counts() == {"hang": 1, "saw-cancel": 1}
        failed = [p for p in inst.execution_pointers if p.status == PointerStatus.FAILED]
        assert [p.step_name for p in failed] == ["hang"]

    async def test_step_timeout_in_a_saga_compensates(self, host_factory: HostFactory) -> None:
        """A step timing out inside a saga compensates the saga's completed steps and
        the workflow carries on after the saga."""
        rec = Recorder()
        workflow = HangingStepWorkflow(rec, hangs=1, behavior=None, saga=True)
        _, inst = await host_factory.run_to_end(workflow, Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.only(["before", "hang", "undo-before", "after"]) == [
            "before",
            "hang",
            "undo-before",
            "after",
        ]

    async def test_execution_timeout_terminates_a_waiting_workflow(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """An instance still waiting for an event at its execution deadline is
        TERMINATED: pointers ended, subscription dropped, a WORKFLOW_TERMINATED
        lifecycle event and an error saying the execution timeout expired."""
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(WaitingWorkflow(rec), configure=capture(events))
        wid = await host.start_workflow(
            WaitingWorkflow.id, Data(key="exp-1"), execution_timeout=timedelta(milliseconds=500)
        )
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert inst.execution_deadline is not None
        assert inst.complete_time is not None
        assert inst.complete_time >= inst.execution_deadline
        assert all(p.end_time is not None for p in inst.execution_pointers)
        assert rec.counts() == {"start": 1}
        assert await subscriptions_for(provider, EVENT_1, "exp-1") == []
        errors = await host.get_errors(wid)
        assert any("execution timeout" in e.message for e in errors)
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_TERMINATED in types_of(events, wid),
            "the terminated lifecycle event",
        )

    async def test_execution_timeout_survives_a_host_restart(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A deadline that passes while no host runs is enforced by the next host."""
        rec = Recorder()
        host = await host_factory(WaitingWorkflow(rec))
        wid = await host.start_workflow(
            WaitingWorkflow.id, Data(key="exp-2"), execution_timeout=timedelta(milliseconds=600)
        )

        async def waiting() -> bool:
            inst = await host.get_workflow_instance(wid)
            return any(p.status == PointerStatus.WAITING_FOR_EVENT for p in inst.execution_pointers)

        await self.until(waiting, "the workflow to wait for its event")
        await host_factory.stop(host)
        stored = await provider.get_workflow_instance(wid)
        assert stored.status == WorkflowStatus.RUNNABLE
        deadline = stored.execution_deadline
        assert stored.next_execution is not None
        assert deadline is not None
        assert stored.next_execution <= deadline < far_future()
        # no host runs while the deadline passes
        await self.until(lambda: utcnow() > deadline, "the deadline to pass")
        second = await host_factory(WaitingWorkflow(rec))
        inst = await self.finished(second, wid)
        assert inst.status == WorkflowStatus.TERMINATED

    async def test_execution_timeout_not_reached_completes(self, host_factory: HostFactory) -> None:
        """An instance that ends before its deadline completes normally."""
        rec = Recorder()
        host = await host_factory(WaitingWorkflow(rec))
        wid = await host.start_workflow(
            WaitingWorkflow.id, Data(key="exp-3"), execution_timeout=timedelta(minutes=10)
        )

        async def waiting() -> bool:
            inst = await host.get_workflow_instance(wid)
            return any(p.status == PointerStatus.WAITING_FOR_EVENT for p in inst.execution_pointers)

        await self.until(waiting, "the workflow to wait for its event")
        await host.publish_event(EVENT_1, "exp-3")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"start": 1, "after": 1}
