"""Activities: external workers claim typed parameters and submit typed results or
failures; claims are exclusive, expire and are released.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from wfe_conformance.scenarios.support import (
    ActivityInput,
    ActivityOutput,
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
    TokenMismatch,
    WfeError,
    Workflow,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "ACTIVITY",
    "ActivityFailWorkflow",
    "ActivityScenarioTests",
    "ActivityWorkflow",
]


ACTIVITY = "scn-activity"


class ActivityWorkflow(Workflow[Data]):
    """An activity with typed parameters whose typed result lands in activity_result."""

    id = "scn-activity"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .activity(ACTIVITY, params=lambda d: ActivityInput(d.key, Decimal("12.345")))
            .output(activity_result=lambda s: s.result)
        )


class ActivityFailWorkflow(RecordingWorkflow):
    """An activity whose failure terminates the workflow."""

    id = "scn-activity-fail"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .activity(ACTIVITY, params=lambda d: ActivityInput(d.key))
            .on_error(ErrorBehavior.TERMINATE)
            .then(self.rec.step("after"))
        )


class ActivityScenarioTests(ScenarioBase):
    """Activities handed to external workers end to end."""

    async def test_activity_typed_parameters_and_result(self, host_factory: HostFactory) -> None:
        """A worker gets typed activity parameters; its typed result reaches the data."""
        key = uid()
        host = await host_factory(ActivityWorkflow())
        wid = await host.start_workflow(ActivityWorkflow.id, Data(key=key))
        activity = await host.get_pending_activity(ACTIVITY, worker_id="w1", timeout=self.timeout)
        assert activity is not None
        assert activity.activity_name == ACTIVITY
        assert activity.parameters == ActivityInput(key, Decimal("12.345"))
        assert isinstance(activity.parameters, ActivityInput)
        await host.submit_activity_success(activity.token, ActivityOutput("a1", 2))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.activity_result == ActivityOutput("a1", 2)
        assert isinstance(inst.data.activity_result, ActivityOutput)

    async def test_activity_failure_applies_error_behaviour(
        self, host_factory: HostFactory
    ) -> None:
        """A submitted activity failure fails the step; its on_error (TERMINATE) applies."""
        rec = Recorder()
        host = await host_factory(ActivityFailWorkflow(rec))
        wid = await host.start_workflow(ActivityFailWorkflow.id, Data(key=uid()))
        activity = await host.get_pending_activity(ACTIVITY, worker_id="w1", timeout=self.timeout)
        assert activity is not None
        await host.submit_activity_failure(activity.token, "card declined")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.count("after") == 0
        errors = await host.get_errors(wid)
        assert any("card declined" in e.message for e in errors), errors

    async def test_claimed_activity_is_not_offered_again_until_released(
        self, host_factory: HostFactory
    ) -> None:
        """A claimed activity is offered to nobody else; releasing it offers it again."""
        host = await host_factory(ActivityWorkflow())
        wid = await host.start_workflow(ActivityWorkflow.id, Data(key=uid()))
        first = await host.get_pending_activity(ACTIVITY, worker_id="A", timeout=self.timeout)
        assert first is not None
        assert await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=0.05) is None
        await host.release_activity_token(first.token)
        second = await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=self.timeout)
        assert second is not None
        assert second.parameters == first.parameters
        await host.submit_activity_success(second.token, ActivityOutput("b", 1))
        inst = await self.finished(host, wid)
        assert inst.data.activity_result == ActivityOutput("b", 1)

    async def test_activity_token_expires_and_is_reclaimed(self, host_factory: HostFactory) -> None:
        """An unsubmitted claim expires; another worker gets the activity and the first
        worker's late submit raises TokenMismatch."""
        host = await host_factory(ActivityWorkflow(), activity_token_ttl=0.2)
        wid = await host.start_workflow(ActivityWorkflow.id, Data(key=uid()))
        a = await host.get_pending_activity(ACTIVITY, worker_id="A", timeout=self.timeout)
        assert a is not None
        assert a.token_expiry is not None
        assert await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=0.05) is None
        b = await host.get_pending_activity(ACTIVITY, worker_id="B", timeout=self.timeout)
        assert b is not None
        assert b.token != a.token
        assert b.parameters == a.parameters
        with pytest.raises(TokenMismatch):
            await host.submit_activity_success(a.token, ActivityOutput("late", 0))
        await host.submit_activity_success(b.token, ActivityOutput("b", 2))
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert inst.data.activity_result == ActivityOutput("b", 2)

    async def test_unknown_activity_token_is_a_clear_error(self, host_factory: HostFactory) -> None:
        """Submitting a token the host never issued raises a wfe error with a message."""
        host = await host_factory(ActivityWorkflow())
        with pytest.raises((WfeError, ValueError)) as caught:
            await host.submit_activity_success("not-a-token", ActivityOutput())
        assert str(caught.value)
