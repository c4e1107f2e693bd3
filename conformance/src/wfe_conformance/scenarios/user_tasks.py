"""User tasks: a step waits for a person, who completes it with one of its options
through the client; the option's branch runs. Ports of Workflow Core's
``UserScenario`` and ``RetrySagaWithUserTaskScenario``, plus escalation, refusals,
concurrent completion and durability across a host restart.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from wfe_core.persistence import PersistenceProvider
from wfe_core.user_tasks import USER_TASK_EVENT

from wfe_conformance.scenarios.support import (
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    noop,
    subscriptions_for,
)
from wfe_core import (
    ErrorBehavior,
    OpenUserTask,
    UserTaskInvalidOption,
    UserTaskNotAssigned,
    UserTaskNotFound,
    UserTaskNotOpen,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)

__all__ = [
    "ApprovalWorkflow",
    "EscalatingTaskWorkflow",
    "RetrySagaWithUserTaskWorkflow",
    "UserTaskScenarioTests",
]


class ApprovalWorkflow(RecordingWorkflow):
    """Workflow Core's HumanWorkflow: a task for ``data.text`` (default user1) with
    the options yes / no, each with its branch; the choice lands in ``data.last``."""

    id = "scn-user-approval"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .user_task("Do you approve", assign_to=lambda d: d.text or "user1")
            .with_option("yes", "I approve")
            .do(lambda b: b.start_with(rec.step("approved")))
            .with_option("no", "I do not approve")
            .do(lambda b: b.start_with(rec.step("disapproved")))
            .output(last=lambda s: s.option)
            .then(rec.step("after"))
        )


class RetrySagaWithUserTaskWorkflow(RecordingWorkflow):
    """Workflow Core's RetrySagaWithUserTaskScenario: a saga (retried on error) whose
    user task's option branch fails twice, so the task is asked three times."""

    id = "scn-user-retry-saga"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        def event1(context: Any) -> None:
            rec.hit("event1")
            if rec.count("event1") < 3:
                raise RuntimeError("event1 fails on its first two runs")
            rec.hit("event2")

        (
            builder.start_with(noop)
            .compensate_with(rec.step("comp1"))
            .saga(
                lambda s: (
                    s.start_with(noop)
                    .compensate_with(rec.step("comp2"))
                    .user_task("prompt", assign_to="assigner")
                    .with_option("a", "Option A")
                    .do(
                        lambda b: (
                            b.start_with(noop)
                            .then(event1)
                            .compensate_with(rec.step("comp3"))
                            .then(rec.step("event3"))
                            .compensate_with(rec.step("comp4"))
                        )
                    )
                )
            )
            .on_error(ErrorBehavior.RETRY, retry_interval=timedelta(milliseconds=50))
            .then(rec.step("tail"))
        )


class EscalatingTaskWorkflow(RecordingWorkflow):
    """A task for user alice, escalated after ``after`` (1 s) to the group ``managers`` (its
    action records ``escalated``); the chosen option's branch records its value."""

    id = "scn-user-escalation"

    def __init__(self, rec: Recorder, after: timedelta = timedelta(seconds=1)) -> None:
        super().__init__(rec)
        self.after = after

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        (
            builder.start_with(noop)
            .user_task(lambda d: f"Review {d.key}", assign_to="alice")
            .with_option("ok", "Looks good")
            .do(lambda b: b.start_with(rec.step("ok")))
            .with_escalation(
                self.after,
                group="managers",
                action=lambda b: b.start_with(rec.step("escalated")),
            )
            .then(rec.step("after"))
        )


class UserTaskScenarioTests(ScenarioBase):
    """User task scenarios."""

    async def open_tasks(self, host: WorkflowHost, wid: str, count: int = 1) -> list[OpenUserTask]:
        """Wait (bounded) until ``wid`` has ``count`` open tasks; return them."""
        found: list[OpenUserTask] = []

        async def listed() -> bool:
            found[:] = await host.get_open_user_tasks(workflow_id=wid)
            return len(found) == count

        await self.until(listed, f"{count} open user task(s) of {wid}")
        return found

    @pytest.mark.parametrize(("option", "branch"), [("yes", "approved"), ("no", "disapproved")])
    async def test_user_task_runs_the_chosen_options_branch(
        self, host_factory: HostFactory, option: str, branch: str
    ) -> None:
        """Completing a task with an option runs that option's branch only (UserScenario)."""
        rec = Recorder()
        host = await host_factory(ApprovalWorkflow(rec))
        wid = await host.start_workflow(ApprovalWorkflow.id, Data())
        (task,) = await self.open_tasks(host, wid)
        assert task.prompt == "Do you approve"
        assert task.assigned_user == "user1"
        assert task.assigned_group is None
        assert [(o.value, o.label) for o in task.options] == [
            ("yes", "I approve"),
            ("no", "I do not approve"),
        ]
        assert task.workflow_id == wid
        assert task.definition_id == ApprovalWorkflow.id
        await host.complete_user_task(task.task_id, option, user="user1")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == [branch, "after"]
        assert inst.data.last == option
        assert await host.get_open_user_tasks(workflow_id=wid) == []
        assert await host.get_errors(wid) == []

    async def test_retry_saga_with_user_task(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """A saga retried on error asks its user task again, each time as a new task
        (RetrySagaWithUserTaskScenario)."""
        rec = Recorder()
        host = await host_factory(RetrySagaWithUserTaskWorkflow(rec))
        wid = await host.start_workflow(RetrySagaWithUserTaskWorkflow.id, Data())
        seen: list[str] = []
        found: list[OpenUserTask] = []

        async def new_task() -> bool:
            found[:] = await host.get_open_user_tasks(workflow_id=wid)
            return len(found) == 1 and found[0].task_id not in seen

        for _ in range(3):
            await self.until(new_task, "a new user task")
            (task,) = found
            assert (task.prompt, task.assigned_user) == ("prompt", "assigner")
            assert [(o.value, o.label) for o in task.options] == [("a", "Option A")]
            await host.complete_user_task(task.task_id, "a", user="assigner")
            seen.append(task.task_id)
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert len(await host.get_errors(wid)) == 2
        assert rec.counts() == {
            "event1": 3,
            "event2": 1,
            "event3": 1,
            "comp2": 2,
            "comp3": 2,
            "tail": 1,
        }
        for task_id in seen:
            assert await subscriptions_for(provider, USER_TASK_EVENT, task_id) == []

    async def test_user_task_escalates_after_its_timeout(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """An open task is reassigned when its escalation is due, the escalation's
        action runs once, and the new assignee (a group member) completes it."""
        rec = Recorder()
        host = await host_factory(EscalatingTaskWorkflow(rec))
        wid = await host.start_workflow(EscalatingTaskWorkflow.id, Data(key="doc-7"))
        (task,) = await self.open_tasks(host, wid)
        assert (task.prompt, task.assigned_user, task.assigned_group) == (
            "Review doc-7",
            "alice",
            None,
        )
        assert task.escalation_due is not None
        assert task.escalations == 0

        async def escalated() -> bool:
            tasks = await host.get_open_user_tasks(group="managers", workflow_id=wid)
            return len(tasks) == 1 and rec.count("escalated") == 1

        await self.until(escalated, "the task to be escalated to managers")
        (task,) = await host.get_open_user_tasks(workflow_id=wid)
        assert (task.assigned_user, task.assigned_group) == (None, "managers")
        assert task.escalations == 1
        assert task.escalation_due is None
        assert await host.get_open_user_tasks(user="alice", workflow_id=wid) == []
        with pytest.raises(UserTaskNotAssigned):
            await host.complete_user_task(task.task_id, "ok", user="alice")
        with pytest.raises(UserTaskNotAssigned):
            await host.complete_user_task(task.task_id, "ok", user="bob", groups=["staff"])
        await host.complete_user_task(task.task_id, "ok", user="bob", groups=["managers"])
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["escalated", "ok", "after"]
        assert await subscriptions_for(provider, USER_TASK_EVENT, task.task_id) == []

    async def test_user_task_completed_before_escalation_never_escalates(
        self, host_factory: HostFactory
    ) -> None:
        """A task completed in time ends with no escalation and no waiting timer."""
        rec = Recorder()
        host = await host_factory(EscalatingTaskWorkflow(rec, after=timedelta(hours=1)))
        wid = await host.start_workflow(EscalatingTaskWorkflow.id, Data(key="k"))
        (task,) = await self.open_tasks(host, wid)
        assert task.escalation_due is not None
        assert task.escalation_due - task.created == timedelta(hours=1)
        await host.complete_user_task(task.task_id, "ok", user="alice")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["ok", "after"]

    async def test_user_task_refuses_wrong_completions(self, host_factory: HostFactory) -> None:
        """An unassigned user, an unknown option, an unknown task and a second
        completion are refused, and nothing happens."""
        rec = Recorder()
        host = await host_factory(ApprovalWorkflow(rec))
        wid = await host.start_workflow(ApprovalWorkflow.id, Data(text="carol"))
        (task,) = await self.open_tasks(host, wid)
        assert [t.task_id for t in await host.get_open_user_tasks(user="carol")] == [task.task_id]
        assert await host.get_open_user_tasks(user="mallory") == []
        assert await host.get_open_user_tasks(group="carol") == []
        with pytest.raises(UserTaskNotAssigned, match="carol"):
            await host.complete_user_task(task.task_id, "yes", user="mallory")
        with pytest.raises(UserTaskInvalidOption, match="maybe"):
            await host.complete_user_task(task.task_id, "maybe", user="carol")
        with pytest.raises(UserTaskNotFound):
            await host.complete_user_task(f"{wid}.no-such-pointer", "yes", user="carol")
        with pytest.raises(UserTaskNotFound):
            await host.complete_user_task("no-such-workflow.p", "yes", user="carol")
        assert [t.task_id for t in await host.get_open_user_tasks(workflow_id=wid)] == [
            task.task_id
        ]
        await host.complete_user_task(task.task_id, "no", user="carol")
        with pytest.raises(UserTaskNotOpen) as refused:
            await host.complete_user_task(task.task_id, "yes", user="carol")
        assert (refused.value.completed_by, refused.value.option) == ("carol", "no")
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        with pytest.raises(UserTaskNotOpen):
            await host.complete_user_task(task.task_id, "yes", user="carol")
        assert rec.names == ["disapproved", "after"]
        assert inst.data.last == "no"

    async def test_concurrent_completions_exactly_one_wins(self, host_factory: HostFactory) -> None:
        """Of completions racing from two hosts, exactly one is applied; the others
        are refused with UserTaskNotOpen."""
        rec = Recorder()
        first = await host_factory(ApprovalWorkflow(rec))
        second = await host_factory(ApprovalWorkflow(rec))
        wid = await first.start_workflow(ApprovalWorkflow.id, Data())
        (task,) = await self.open_tasks(first, wid)
        results = await asyncio.gather(
            first.complete_user_task(task.task_id, "yes", user="user1"),
            second.complete_user_task(task.task_id, "no", user="user1"),
            first.complete_user_task(task.task_id, "no", user="user1"),
            second.complete_user_task(task.task_id, "yes", user="user1"),
            return_exceptions=True,
        )
        wins = [r for r in results if r is None]
        refusals = [r for r in results if isinstance(r, UserTaskNotOpen)]
        assert len(wins) == 1, results
        assert len(refusals) == 3, results
        inst = await self.finished(first, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.count("approved") + rec.count("disapproved") == 1
        assert {r.option for r in refusals} == {inst.data.last}

    async def test_user_task_survives_a_host_restart(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """An open task is stored: a new host on the same store lists it and its
        completion finishes the workflow."""
        rec = Recorder()
        host = await host_factory(ApprovalWorkflow(rec))
        wid = await host.start_workflow(ApprovalWorkflow.id, Data())
        (task,) = await self.open_tasks(host, wid)
        await host_factory.stop(host)
        second = await host_factory(ApprovalWorkflow(rec))
        listed = await second.get_open_user_tasks(user="user1")
        assert task.task_id in [t.task_id for t in listed]
        (again,) = [t for t in listed if t.task_id == task.task_id]
        assert again.options == task.options
        assert again.created == task.created
        await second.complete_user_task(task.task_id, "yes", user="user1", data={"n": 1})
        inst = await self.finished(second, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["approved", "after"]
        assert await subscriptions_for(provider, USER_TASK_EVENT, task.task_id) == []

    async def test_user_task_outputs_the_completion(self, host_factory: HostFactory) -> None:
        """The step outputs the chosen option, the completing user and the data given."""
        rec = Recorder()
        host = await host_factory(ApprovalWorkflow(rec))
        wid = await host.start_workflow(ApprovalWorkflow.id, Data())
        (task,) = await self.open_tasks(host, wid)
        await host.complete_user_task(task.task_id, "yes", user="user1", data={"note": "fine"})
        inst = await self.finished(host, wid)
        pointer = next(p for p in inst.execution_pointers if p.step_name == "user_task")
        record = pointer.extension_attributes["wfe.user_task"]
        assert record["completed"]["user"] == "user1"
        assert record["completed"]["option"] == "yes"
        assert pointer.event_data["data"] == {"note": "fine"}
        assert pointer.outcome == "yes"
