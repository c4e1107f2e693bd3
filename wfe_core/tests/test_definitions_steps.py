"""Every step type of the DSL loads from a document and runs; error behaviour, retry
intervals, sagas and compensation work as in code-built workflows."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from definitions_support import TIMEOUT, Board, doc, fast_host

from wfe_core import WorkflowHost, WorkflowStatus

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def note(text: str, step_id: str | None = None, next_id: str | None = None) -> dict[str, Any]:
    """A Note step appending ``text`` (a Python string literal) to data.log."""
    step: dict[str, Any] = {"StepType": "Note", "Inputs": {"Text": json.dumps(text)}}
    if step_id:
        step["Id"] = step_id
    if next_id:
        step["NextStepId"] = next_id
    return step


ADD_A = {"StepType": "Add", "Inputs": {"Value": "data.a"}, "Outputs": {"a": "step.value"}}


async def run(
    host: WorkflowHost, steps: list[dict[str, Any]], data: Board | None = None, **top: Any
) -> Any:
    """Load the document on ``host``, run one instance, return the ended instance."""
    host.load_definition(doc(steps, **top))
    workflow_id = await host.start_workflow("t", data or Board())
    return await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)


async def test_while_loops() -> None:
    """While repeats its branch while the condition holds, then goes on."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "Id": "w",
                "StepType": "While",
                "Inputs": {"Condition": "data.a < 3"},
                "Do": [[ADD_A]],
                "NextStepId": "n",
            },
            note("done", "n"),
        ]
        done = await run(host, steps)
    assert (done.status, done.data.a, done.data.log) == (WorkflowStatus.COMPLETE, 3, ["done"])


async def test_foreach_parallel_and_sequential() -> None:
    """ForEach runs its branch per item (context.Item), in parallel or in order."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "Id": "f",
                "StepType": "ForEach",
                "Inputs": {"Collection": "[3, 1, 2]"},
                "Do": [[{"StepType": "Collect"}]],
                "NextStepId": "g",
            },
            {
                "Id": "g",
                "StepType": "WorkflowCore.Primitives.Foreach, WorkflowCore",
                "Inputs": {"Collection": "data.items", "RunParallel": False},
                "Do": [[{"StepType": "Note", "Inputs": {"Text": "str(context.Item)"}}]],
            },
        ]
        done = await run(host, steps, Board(items=[5, 4, 6]))
    assert done.status is WorkflowStatus.COMPLETE
    assert sorted(done.data.seen) == [1, 2, 3]
    assert done.data.log == ["5", "4", "6"]


async def test_parallel_joins() -> None:
    """Parallel (Sequence) runs every branch and goes on when all are done."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "Id": "p",
                "StepType": "Parallel",
                "NextStepId": "j",
                "Do": [[note("x")], [note("y", "y1", "y2"), note("z", "y2")]],
            },
            note("joined", "j"),
        ]
        done = await run(host, steps)
    assert done.status is WorkflowStatus.COMPLETE
    assert sorted(done.data.log[:3]) == ["x", "y", "z"]
    assert done.data.log[3] == "joined"


async def test_delay_schedule_and_recur() -> None:
    """Delay waits its Period; Schedule runs its branch after the Interval; Recur
    repeats until its StopCondition (durations as timedeltas, seconds or TimeSpans)."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "Id": "d",
                "StepType": "Delay",
                "Inputs": {"Period": "TimeSpan.FromMilliseconds(30)"},
                "NextStepId": "d2",
            },
            {
                "Id": "d2",
                "StepType": "Delay",
                "Inputs": {"Period": "'00:00:00.03'"},
                "NextStepId": "s",
            },
            {
                "Id": "s",
                "StepType": "Schedule",
                "Inputs": {"Interval": "0.03"},
                "Do": [[note("scheduled")]],
                "NextStepId": "r",
            },
            {
                "Id": "r",
                "StepType": "Recur",
                "Inputs": {
                    "Interval": "timedelta(milliseconds=20)",
                    "StopCondition": "data.a >= 2",
                },
                "Do": [[ADD_A]],
                "NextStepId": "end",
            },
            note("end", "end"),
        ]
        done = await run(host, steps)
    assert done.status is WorkflowStatus.COMPLETE
    assert done.data.log == ["scheduled", "end"]
    assert done.data.a >= 2


async def test_a_bad_duration_is_a_step_error() -> None:
    """A Period that is no duration fails the step with the document path."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {"StepType": "Delay", "Inputs": {"Period": "'soon'"}, "ErrorBehavior": "Terminate"}
        ]
        done = await run(host, steps)
        errors = await host.get_errors(done.id)
    assert done.status is WorkflowStatus.TERMINATED
    assert "Steps[0].Inputs.Period" in errors[0].message


async def test_wait_for_event_outputs() -> None:
    """WaitFor subscribes with its EventName and EventKey; EventData is an output."""
    async with fast_host() as host:
        host.load_definition(
            doc(
                [
                    {
                        "Id": "w",
                        "StepType": "WaitFor",
                        "NextStepId": "n",
                        "Inputs": {"EventName": '"paid"', "EventKey": "str(data.b)"},
                        "Outputs": {"result": "step.EventData", 'extra["at"]': "step.timed_out"},
                    },
                    note("after", "n"),
                ]
            )
        )
        workflow_id = await host.start_workflow("t", Board(b=7))
        await _wait_subscribed(host, workflow_id)
        await host.publish_event("paid", "7", {"amount": 3})
        done = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    assert done.status is WorkflowStatus.COMPLETE
    assert (done.data.result, done.data.extra, done.data.log) == (
        {"amount": 3},
        {"at": False},
        ["after"],
    )


async def _wait_subscribed(host: WorkflowHost, workflow_id: str) -> None:
    with anyio.fail_after(TIMEOUT):
        while True:
            instance = await host.get_workflow_instance(workflow_id)
            if any(p.event_name for p in instance.execution_pointers):
                return
            await anyio.sleep(0.02)


async def test_activity() -> None:
    """Activity hands its Parameters to a worker; Result is an output."""
    async with fast_host() as host:
        host.load_definition(
            doc(
                [
                    {
                        "StepType": "Activity",
                        "Inputs": {
                            "ActivityName": '"charge"',
                            "Parameters": "{'amount': data.a + 5}",
                        },
                        "Outputs": {"result": "step.Result"},
                    },
                ]
            )
        )
        workflow_id = await host.start_workflow("t", Board(a=1))
        pending = await host.get_pending_activity("charge", "worker", timeout=TIMEOUT)
        assert pending is not None
        assert pending.parameters == {"amount": 6}
        await host.submit_activity_success(pending.token, "charged")
        done = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    assert (done.status, done.data.result) == (WorkflowStatus.COMPLETE, "charged")


async def test_sub_workflow_and_end_workflow() -> None:
    """SubWorkflow starts a child (itself a document) and outputs its data;
    EndWorkflow ends the workflow where it stands."""
    async with fast_host() as host:
        host.load_definition(
            json.dumps(
                {
                    "Id": "child",
                    "Version": 1,
                    "DataType": "dict",
                    "Steps": [
                        {
                            "StepType": "Add",
                            "Inputs": {"Value": 'data["n"]'},
                            "Outputs": {"n": "step.value"},
                        }
                    ],
                }
            )
        )
        steps: list[dict[str, Any]] = [
            {
                "Id": "c",
                "StepType": "SubWorkflow",
                "NextStepId": "e",
                "Inputs": {"DefinitionId": '"child"', "Data": "{'n': data.a}"},
                "Outputs": {"result": "step.result"},
            },
            {"Id": "e", "StepType": "EndWorkflow", "NextStepId": "never"},
            note("never", "never"),
        ]
        done = await run(host, steps, Board(a=41))
    assert (done.status, done.data.result, done.data.log) == (
        WorkflowStatus.COMPLETE,
        {"n": 42},
        [],
    )


async def test_decide_follows_every_selected_step() -> None:
    """SelectNextStep follows each id whose expression is true (with the outcome)."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "Id": "d",
                "StepType": "Decide",
                "Inputs": {"Expression": "data.a * 2"},
                "SelectNextStep": {"x": "outcome == 4", "y": "data.flag", "z": "outcome > 4"},
            },
            note("x", "x"),
            note("y", "y"),
            note("z", "z"),
        ]
        done = await run(host, steps, Board(a=2, flag=True))
    assert done.status is WorkflowStatus.COMPLETE
    assert sorted(done.data.log) == ["x", "y"]


async def test_select_next_step_on_a_user_step() -> None:
    """SelectNextStep works on any step: its outputs and its own body still run."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {**ADD_A, "Id": "a", "SelectNextStep": {"big": "data.b > 1", "small": "data.b <= 1"}},
            note("big", "big"),
            note("small", "small"),
        ]
        done = await run(host, steps, Board(b=5))
    assert (done.data.a, done.data.log) == (1, ["big"])


async def test_object_inputs() -> None:
    """An object input: '@' keys are expressions, the rest constants."""
    async with fast_host() as host:
        steps = [{"StepType": "Note", "Inputs": {"Text": {"@x": "data.a + 1", "y": [1, {"z": 2}]}}}]
        done = await run(host, steps, Board(a=1))
    assert done.data.log == [{"x": 2, "y": [1, {"z": 2}]}]


async def test_retry_interval_retries() -> None:
    """ErrorBehavior Retry with a RetryInterval runs the step again until it succeeds."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "StepType": "Flaky",
                "Inputs": {"Fails": "2"},
                "ErrorBehavior": "Retry",
                "RetryInterval": "00:00:00.02",
            }
        ]
        done = await run(host, steps)
        errors = await host.get_errors(done.id)
    assert (done.status, done.data.a, len(errors)) == (WorkflowStatus.COMPLETE, 3, 2)


async def test_terminate_and_default_error_behavior() -> None:
    """ErrorBehavior Terminate (on the step, or as the document's default) terminates."""
    async with fast_host() as host:
        done = await run(
            host, [{"StepType": "Flaky", "Inputs": {"Fails": "9"}, "ErrorBehavior": "terminate"}]
        )
        assert done.status is WorkflowStatus.TERMINATED
    async with fast_host() as host:
        done = await run(
            host,
            [{"StepType": "Flaky", "Inputs": {"Fails": "9"}}],
            DefaultErrorBehavior="Terminate",
        )
        assert done.status is WorkflowStatus.TERMINATED


async def test_saga_compensates_in_reverse() -> None:
    """A Saga block compensates its completed steps in reverse order when one fails."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "Id": "saga",
                "StepType": "Sequence",
                "Saga": True,
                "NextStepId": "after",
                "Do": [
                    [
                        {**note("one", "one", "two"), "CompensateWith": [note("undo one")]},
                        {
                            **note("two", "two", "boom"),
                            "CompensateWith": [
                                note("undo two", "u2", "u2b"),
                                note("undo two b", "u2b"),
                            ],
                        },
                        {"Id": "boom", "StepType": "Flaky", "Inputs": {"Fails": "9"}},
                    ]
                ],
            },
            note("after", "after"),
        ]
        done = await run(host, steps)
    assert done.status is WorkflowStatus.COMPLETE
    assert done.data.log == ["one", "two", "undo two", "undo two b", "undo one", "after"]


async def test_compensate_behavior_on_a_step() -> None:
    """ErrorBehavior Compensate runs the failing step's own CompensateWith."""
    async with fast_host() as host:
        steps: list[dict[str, Any]] = [
            {
                "StepType": "Flaky",
                "Inputs": {"Fails": "9"},
                "ErrorBehavior": "Compensate",
                "CompensateWith": [note("undone")],
            }
        ]
        done = await run(host, steps)
    assert "undone" in done.data.log
