"""Lifecycle events: what a host publishes as workflows start, run steps, complete, fail,
are suspended, resumed and terminated.
"""

from __future__ import annotations

from wfe_core.persistence import PersistenceProvider

from wfe_conformance.scenarios.basics import BasicWorkflow
from wfe_conformance.scenarios.control_flow import EndWorkflowWorkflow
from wfe_conformance.scenarios.errors import FlakyWorkflow
from wfe_conformance.scenarios.events import WaitEventWorkflow
from wfe_conformance.scenarios.support import (
    EVENT_1,
    Data,
    HostFactory,
    Recorder,
    ScenarioBase,
    capture,
    types_of,
    uid,
    wait_for_subscription,
)
from wfe_core import (
    ErrorBehavior,
    LifecycleEvent,
    LifecycleEventType,
    WorkflowStatus,
)

__all__ = [
    "LifecycleScenarioTests",
]


class LifecycleScenarioTests(ScenarioBase):
    """Lifecycle events published by the host end to end."""

    async def test_lifecycle_events_on_completion(self, host_factory: HostFactory) -> None:
        """A run publishes WORKFLOW_STARTED, STEP_STARTED/COMPLETED and WORKFLOW_COMPLETED."""
        rec = Recorder()
        events: list[LifecycleEvent] = []
        _, inst = await host_factory.run_to_end(
            BasicWorkflow(rec), Data(), configure=capture(events)
        )
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_COMPLETED in types_of(events, inst.id),
            "WORKFLOW_COMPLETED",
        )
        seen = types_of(events, inst.id)
        assert seen.index(LifecycleEventType.WORKFLOW_STARTED) < seen.index(
            LifecycleEventType.WORKFLOW_COMPLETED
        )
        assert seen.count(LifecycleEventType.STEP_STARTED) >= 2
        assert seen.count(LifecycleEventType.STEP_COMPLETED) >= 2
        assert seen.count(LifecycleEventType.WORKFLOW_COMPLETED) == 1
        assert all(e.workflow_definition_id == BasicWorkflow.id for e in events)

    async def test_lifecycle_completed_on_end_workflow(self, host_factory: HostFactory) -> None:
        """A workflow ended by end_workflow publishes WORKFLOW_COMPLETED too."""
        rec = Recorder()
        events: list[LifecycleEvent] = []
        _, inst = await host_factory.run_to_end(
            EndWorkflowWorkflow(rec), Data(), configure=capture(events)
        )
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_COMPLETED in types_of(events, inst.id),
            "WORKFLOW_COMPLETED after end_workflow",
        )

    async def test_lifecycle_events_on_suspend_and_resume(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """Suspending and resuming publish WORKFLOW_SUSPENDED and WORKFLOW_RESUMED."""
        key = uid()
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(WaitEventWorkflow(rec), configure=capture(events))
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        assert await host.suspend_workflow(wid) is True
        assert await host.resume_workflow(wid) is True
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_RESUMED in types_of(events, wid),
            "WORKFLOW_RESUMED",
        )
        seen = types_of(events, wid)
        assert seen.index(LifecycleEventType.WORKFLOW_SUSPENDED) < seen.index(
            LifecycleEventType.WORKFLOW_RESUMED
        )
        await host.publish_event(EVENT_1, key, "after resume")
        assert (await self.finished(host, wid)).status == WorkflowStatus.COMPLETE

    async def test_lifecycle_events_on_error_and_termination(
        self, host_factory: HostFactory
    ) -> None:
        """A failing step publishes WORKFLOW_ERROR; terminating publishes
        WORKFLOW_TERMINATED."""
        rec = Recorder()
        events: list[LifecycleEvent] = []
        _, inst = await host_factory.run_to_end(
            FlakyWorkflow(rec, failures=1, behavior=ErrorBehavior.TERMINATE),
            Data(),
            configure=capture(events),
        )
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_TERMINATED in types_of(events, inst.id),
            "WORKFLOW_TERMINATED",
        )
        assert LifecycleEventType.WORKFLOW_ERROR in types_of(events, inst.id)
        assert LifecycleEventType.WORKFLOW_COMPLETED not in types_of(events, inst.id)

    async def test_lifecycle_terminated_on_user_terminate(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """terminate_workflow publishes WORKFLOW_TERMINATED."""
        key = uid()
        rec = Recorder()
        events: list[LifecycleEvent] = []
        host = await host_factory(WaitEventWorkflow(rec), configure=capture(events))
        wid = await host.start_workflow(WaitEventWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, EVENT_1, key, self.timeout)
        assert await host.terminate_workflow(wid) is True
        await self.until(
            lambda: LifecycleEventType.WORKFLOW_TERMINATED in types_of(events, wid),
            "WORKFLOW_TERMINATED",
        )
