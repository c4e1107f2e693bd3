"""The built-in step bodies behind the builder's control structures.

Containers (if, while, foreach, parallel, decide, when, saga, schedule, recur) start
child branches and stay open until every pointer in their scope has ended; the
executor only runs a container pointer again when its branches are all done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from wfe_core.errors import WfeError
from wfe_core.event_names import ACTIVITY_EVENT as ACTIVITY_EVENT
from wfe_core.event_names import PARENT_ATTRIBUTE as PARENT_ATTRIBUTE
from wfe_core.event_names import WORKFLOW_ENDED_EVENT as WORKFLOW_ENDED_EVENT
from wfe_core.steps import ExecutionResult, StepBody, StepContext

__all__ = [
    "ACTIVITY_EVENT",
    "PARENT_ATTRIBUTE",
    "WORKFLOW_ENDED_EVENT",
    "ActivityFailed",
    "ActivityResult",
    "SubWorkflowFailed",
    "WorkflowEnded",
]


@dataclass
class ActivityResult:
    """The event data of a submitted activity."""

    subscription_id: str
    success: bool
    data: Any = None


@dataclass
class WorkflowEnded:
    """The event data published when a child workflow ends."""

    workflow_id: str
    status: str
    data: Any = None


class ActivityFailed(WfeError):
    """Raised inside an activity step when its worker submitted a failure."""

    def __init__(self, activity_name: str, error: Any) -> None:
        super().__init__(f"activity {activity_name!r} failed: {error!r}")
        self.error = error


class SubWorkflowFailed(WfeError):
    """Raised inside a sub-workflow step when the child did not complete."""

    def __init__(self, child_id: str, status: str) -> None:
        super().__init__(f"child workflow {child_id!r} ended {status}, not complete")
        self.child_id = child_id
        self.status = status


def _branch_done(context: StepContext[Any]) -> bool:
    return bool(context.persistence_data)


class If(StepBody):
    """Run the branch once when ``condition`` is true, then proceed."""

    shares_checkpoint = True

    condition: bool = False

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if _branch_done(context):
            return ExecutionResult.next()
        if self.condition:
            return ExecutionResult.branch([None], True)
        return ExecutionResult.next()


class While(StepBody):
    """Run the branch again and again while ``condition`` holds."""

    shares_checkpoint = True

    condition: bool = False

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if self.condition:
            return ExecutionResult.branch([None], True)
        return ExecutionResult.next()


class Foreach(StepBody):
    """Run the branch once per item, all at once or one after another."""

    shares_checkpoint = True

    items: Any = ()
    parallel: bool = True

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        items = list(self.items or ())
        if self.parallel:
            if _branch_done(context) or not items:
                return ExecutionResult.next()
            return ExecutionResult.branch(items, True)
        index = 0 if context.persistence_data is None else int(context.persistence_data)
        if index >= len(items):
            return ExecutionResult.next()
        return ExecutionResult.branch([items[index]], index + 1)


class Sequence(StepBody):
    """Start every child branch at once and proceed when all are done (parallel/join)."""

    shares_checkpoint = True

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if _branch_done(context):
            return ExecutionResult.next()
        return ExecutionResult.branch([None], True)


class Decide(StepBody):
    """Start the branches whose value equals ``value``; proceed when they are done."""

    shares_checkpoint = True

    value: Any = None

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if _branch_done(context):
            return ExecutionResult.next()
        step = context.step
        chosen = [
            c for c, v in zip(step.children, step.child_values, strict=True) if v == self.value
        ]
        if not chosen:
            return ExecutionResult.next()
        result = ExecutionResult.branch([None], True)
        result.branch_children = chosen
        result.outcome_value = self.value
        return result


class OutcomeSwitch(StepBody):
    """``.when(value)``: start the branches matching the previous step's outcome."""

    shares_checkpoint = True

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if _branch_done(context):
            return ExecutionResult.next()
        pred = context.pointer.predecessor_id
        prev = context.workflow.pointer(pred) if pred else None
        value = prev.outcome if prev is not None else None
        step = context.step
        chosen = [c for c, v in zip(step.children, step.child_values, strict=True) if v == value]
        if not chosen:
            return ExecutionResult.next()
        result = ExecutionResult.branch([None], True)
        result.branch_children = chosen
        return result


class Saga(StepBody):
    """A transaction scope: when a step inside fails, the completed steps inside are
    compensated in reverse order (see the executor)."""

    shares_checkpoint = True

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if _branch_done(context):
            return ExecutionResult.next()
        return ExecutionResult.branch([None], True)


class WaitFor(StepBody):
    """Wait for an event; outputs ``event_data`` and ``timed_out``."""

    shares_checkpoint = True

    event_name: str = ""
    event_key: str = ""
    effective_date: datetime | None = None
    timeout: timedelta | None = None
    event_data: Any = None
    timed_out: bool = False

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        pointer = context.pointer
        if pointer.event_published:
            self.event_data = pointer.event_data
            return ExecutionResult.next()
        if pointer.event_name is not None:  # woken by the timeout, not an event
            self.timed_out = True
            self.event_data = None
            return ExecutionResult.next()
        result = ExecutionResult.wait_for_event(
            self.event_name, str(self.event_key), self.effective_date
        )
        result.sleep_for = self.timeout  # with an event: the time-out
        return result


class Delay(StepBody):
    """Sleep for ``period``, then proceed."""

    shares_checkpoint = True

    period: timedelta = timedelta(0)

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if context.persistence_data:
            return ExecutionResult.next()
        return ExecutionResult.sleep(self.period, True)


class Schedule(StepBody):
    """Side branch: after ``interval``, run the branch once."""

    interval: timedelta = timedelta(0)

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        state = context.persistence_data
        if state is None:
            return ExecutionResult.sleep(self.interval, "due")
        if state == "due":
            return ExecutionResult.branch([None], "running")
        return ExecutionResult.next()


class Recur(StepBody):
    """Side branch: run the branch every ``interval`` until ``until`` is true."""

    interval: timedelta = timedelta(0)
    until: bool = False

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if self.until:
            return ExecutionResult.next()
        if context.persistence_data == "due":
            return ExecutionResult.branch([None], "ran")
        return ExecutionResult.sleep(self.interval, "due")


class Activity(StepBody):
    """Wait for an activity worker; outputs ``result``."""

    activity_name: str = ""
    params: Any = None
    effective_date: datetime | None = None
    result: Any = None

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        pointer = context.pointer
        if pointer.event_published:
            outcome = pointer.event_data
            if isinstance(outcome, ActivityResult):
                if not outcome.success:
                    raise ActivityFailed(self.activity_name, outcome.data)
                self.result = outcome.data
            else:
                self.result = outcome
            return ExecutionResult.next()
        return ExecutionResult.wait_for_activity(
            self.activity_name, self.params, self.effective_date
        )


class SubWorkflow(StepBody):
    """Start a child workflow and wait for it; outputs ``result`` (its final data)."""

    definition_id: str = ""
    version: int | None = None
    child_data: Any = None
    result: Any = None

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        pointer = context.pointer
        if pointer.event_published:
            ended = pointer.event_data
            if not isinstance(ended, WorkflowEnded):
                raise SubWorkflowFailed(str(pointer.event_key), "with an unexpected result")
            if ended.status != "complete":
                raise SubWorkflowFailed(ended.workflow_id, ended.status)
            self.result = ended.data
            return ExecutionResult.next()
        host = context.host
        if host is None:
            raise WfeError("sub_workflow needs a host")
        child_id = await host.start_child(
            context.workflow, pointer, self.definition_id, self.version, self.child_data
        )
        return ExecutionResult.wait_for_event(
            WORKFLOW_ENDED_EVENT, child_id, context.pointer.start_time
        )


class EndWorkflow(StepBody):
    """End the workflow here."""

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        return ExecutionResult.end_workflow()


class Compensation(StepBody):
    """Marker body of the container that holds a compensation sequence."""

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        if _branch_done(context):
            return ExecutionResult.next()
        return ExecutionResult.branch([None], True)
