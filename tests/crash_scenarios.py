"""Crash-point scenarios shared by ``test_crash_points`` and ``test_crash_point_teeth``.

Run as a script this module is one worker process on a SQLite file::

    python crash_scenarios.py <scenario> <db file> <log file> <first|resume>

``first`` starts the scenario's workflow and drives it (publishes its event, submits
its activity, terminates it); with ``WFE_CRASH_AT`` set it is killed at that point
(exit status 77). ``resume`` is the next worker on the same file: it finds the
instance, gives it whatever stimulus it never got, waits for the end and prints the
outcome as one JSON line (``"lost"`` when the started workflow is not in the store).
Every step appends its name to the log file, so re-runs are counted across
processes. ``WFE_TEST_MUTANT`` names a broken copy of one durable path, patched in
by both workers (see :data:`MUTANTS`).

Imported, :func:`run_scenario` runs the two workers and returns the outcome, and
:func:`check_outcome` is what a correct engine must show (``test_crash_points``;
``test_crash_point_teeth`` shows it fails under each mutant).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wfe_core.builder import WorkflowBuilder
from wfe_core.client.children import child_id as _child_id
from wfe_core.client.control import control_applies as _control_applies
from wfe_core.client.core import workflow_lock as _workflow_lock
from wfe_core.crashpoints import CRASH_EXIT_CODE, crash_point
from wfe_core.definition import ErrorBehavior, StepContext
from wfe_core.errors import ConcurrencyError, SubscriptionNotFound
from wfe_core.executor import _Pass
from wfe_core.host.delivery import EventDelivery
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionPointer,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.options import MiddlewarePhase
from wfe_core.primitives import ACTIVITY_EVENT, PARENT_ATTRIBUTE
from wfe_core.queues import QueueType

from wfe_core import HostOptions, Workflow, WorkflowHost

SCENARIOS = ("event", "control", "activity", "child", "terminate", "child_terminate")
"""event: a -> wait_for(go) -> b; control: a -> if(true){b} -> c; activity:
a -> activity(work) -> b; child:
a -> sub_workflow(child: c) -> b; terminate: a -> wait_for(never) -> b, terminated;
child_terminate: a -> sub_workflow(child: c -> wait_for(never), terminated) -> b, the
parent terminated by its step's error policy when it hears that the child was."""

EVENT_NAME = "go"
EVENT_KEY = "crash-test"
ACTIVITY_NAME = "work"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_LOG: Path | None = None


def _log_step(name: str) -> None:
    assert _LOG is not None
    with _LOG.open("a", encoding="utf-8") as f:  # closed (in the OS) before the step ends
        f.write(name + "\n")


def _step(name: str) -> Any:
    def run(context: StepContext[Any]) -> None:
        _log_step(name)

    run.__name__ = f"step_{name}"
    return run


class EventFlow(Workflow[dict[str, Any]]):
    """a, wait for the event, b."""

    id = "crash-event"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("a")).wait_for(EVENT_NAME, EVENT_KEY).then(_step("b"))


class ActivityFlow(Workflow[dict[str, Any]]):
    """a, an activity, b."""

    id = "crash-activity"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("a")).activity(ACTIVITY_NAME).then(_step("b"))


class ChildFlow(Workflow[dict[str, Any]]):
    """The child: c."""

    id = "crash-child"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("c"))


class ParentFlow(Workflow[dict[str, Any]]):
    """a, the child, b."""

    id = "crash-parent"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("a")).sub_workflow(ChildFlow.id).then(_step("b"))


class TerminateFlow(Workflow[dict[str, Any]]):
    """a, wait for an event that never comes (the workflow is terminated), b."""

    id = "crash-terminate"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("a")).wait_for("never", EVENT_KEY).then(_step("b"))


class WaitingChildFlow(Workflow[dict[str, Any]]):
    """The child that is terminated: c, then wait for an event that never comes."""

    id = "crash-waiting-child"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("c")).wait_for("never", EVENT_KEY)


class TerminatedChildParentFlow(Workflow[dict[str, Any]]):
    """a, the child (terminated: the parent terminates too), b (never runs)."""

    id = "crash-parent-of-terminated"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("a")).sub_workflow(WaitingChildFlow.id).on_error(
            ErrorBehavior.TERMINATE
        ).then(_step("b"))


class ControlFlow(Workflow[dict[str, Any]]):
    """a, an if-block holding b (a control step: its result is written with b's
    checkpoint), c."""

    id = "crash-control"
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        """Steps."""
        builder.start_with(_step("a")).if_(lambda data: True).do(
            lambda branch: branch.start_with(_step("b"))
        ).then(_step("c"))


_MAIN = {
    "event": EventFlow.id,
    "control": ControlFlow.id,
    "activity": ActivityFlow.id,
    "child": ParentFlow.id,
    "terminate": TerminateFlow.id,
    "child_terminate": TerminatedChildParentFlow.id,
}
_CHILD = {"child": ChildFlow.id, "child_terminate": WaitingChildFlow.id}
_TERMINATE_MARK = "stimulus:terminate"
"""Logged just before the first worker calls ``terminate_workflow``: a terminate that
was called is not called again by the next worker (a call that died half-way must
not be lost; calling it again would hide that)."""


# ---------------------------------------------------------------------- mutants
MUTANTS: dict[str, str] = {
    "delivery-swap": "_deliver terminates the subscription before saving the event",
    "delivery-drop": "_deliver never saves the delivered event",
    "checkpoint-drop": "the checkpoint after the first completed step writes nothing",
    "start-swap": "start_workflow queues the new instance before storing it",
    "start-drop": "start_workflow never stores the new instance",
    "child-swap": "the child is stored after (not before) the parent's checkpoint",
    "child-drop": "the child is never stored",
    "control-swap": "terminate drops subscriptions and publishes the end before saving",
    "share-user": "a user step's result waits for the next step's checkpoint, as a "
    "control step's does",
}
"""``WFE_TEST_MUTANT`` values: each breaks one durable path (see :func:`_apply_mutant`)."""

_PENDING_CHILDREN: list[tuple[WorkflowHost, WorkflowInstance]] = []
_DROPPED: list[str] = []


async def _mutant_deliver(delivery: EventDelivery, event: Event, sub: EventSubscription) -> bool:
    """A broken ``EventDelivery.deliver``: the subscription is terminated *before* the
    delivered event is saved (``delivery-swap``), or the event is never saved
    (``delivery-drop``)."""
    self = delivery.client
    mutant = os.environ["WFE_TEST_MUTANT"]
    wid = sub.workflow_id
    lock_name = _workflow_lock(wid)
    if not await delivery._acquire(lock_name):
        return False
    try:
        if not await self._claim(wid):
            return False
        try:
            instance = await self.persistence.get_workflow_instance(wid)
            with contextlib.suppress(SubscriptionNotFound):
                await self.persistence.terminate_subscription(sub.id)
            crash_point("delivery.after_subscription")
            p = instance.pointer(sub.execution_pointer_id)
            if mutant == "delivery-swap" and p is not None and not p.event_published:
                p.event_data = event.event_data
                p.event_published = True
                p.active = True
                p.sleep_until = None
                instance.next_execution = utcnow()
                await self.persistence.persist_workflow(instance, owner=self.owner_id)
                crash_point("delivery.after_persist")
        finally:
            await self._release_claim(wid)
    finally:
        await self.lock_provider.release_lock(lock_name)
    await self._hint(wid, QueueType.WORKFLOW)
    return True


_ORIGINAL_CHECKPOINT = _Pass._checkpoint
_ORIGINAL_APPLY_CONTROL = WorkflowHost._apply_control


async def _mutant_checkpoint(self: _Pass) -> None:
    """``checkpoint-drop``: the first checkpoint (in this process) that follows a
    completed step skips its instance write (the crash points are still passed);
    ``child-swap``: a child started by the step is stored only after the checkpoint."""
    mutant = os.environ["WFE_TEST_MUTANT"]
    persistence = self.ex.persistence
    completed = any(p.status is PointerStatus.COMPLETE for p in self.instance.changed_pointers())
    if mutant == "checkpoint-drop" and completed and not _DROPPED:
        _DROPPED.append(self.instance.id)

        async def dropped(*args: Any, **kwargs: Any) -> None:
            return None

        persistence.persist_workflow = dropped  # type: ignore[method-assign]
        try:
            await _ORIGINAL_CHECKPOINT(self)
        finally:
            del persistence.persist_workflow
        return
    await _ORIGINAL_CHECKPOINT(self)
    while _PENDING_CHILDREN:
        host, child = _PENDING_CHILDREN.pop(0)
        with contextlib.suppress(ConcurrencyError):
            await host.persistence.create_workflow(child)
        crash_point("child.after_create")
        await host._hint(child.id, QueueType.WORKFLOW)


async def _mutant_start_child(
    self: WorkflowHost,
    parent: WorkflowInstance,
    pointer: ExecutionPointer,
    definition_id: str,
    version: int | None,
    data: Any,
) -> str:
    """``child-swap`` / ``child-drop``: the child is built as usual but not stored here
    -- later, after the parent's checkpoint (swap), or never (drop)."""
    child_id = _child_id(pointer.id, pointer.retry_count)
    definition = self.registry.get(definition_id, version)
    child = self._new_instance(definition, data, None, instance_id=child_id)
    child.execution_pointers[0].extension_attributes[PARENT_ATTRIBUTE] = parent.id
    await self._run_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, child)
    if os.environ["WFE_TEST_MUTANT"] == "child-swap":
        _PENDING_CHILDREN.append((self, child))
    else:
        crash_point("child.after_create")  # as if stored
    return child_id


async def _mutant_start_workflow(
    self: WorkflowHost,
    definition_id: str,
    data: Any = None,
    *,
    version: int | None = None,
    reference: str | None = None,
) -> str:
    """``start-swap``: the new instance is queued (and announced) before it is stored;
    ``start-drop``: it is never stored."""
    definition = self.registry.get(definition_id, version)
    instance = self._new_instance(definition, data, reference)
    await self._hint(instance.id, QueueType.WORKFLOW)
    crash_point("start.after_create")
    if os.environ["WFE_TEST_MUTANT"] == "start-swap":
        await self.persistence.create_workflow(instance)
    return instance.id


async def _mutant_apply_control(
    self: WorkflowHost, instance: WorkflowInstance, action: str
) -> bool:
    """``control-swap``: a terminate drops the subscriptions and handles the end (the
    parent's ended event) *before* it saves the TERMINATED status."""
    if action != "terminate" or not _control_applies(instance.status, action):
        return await _ORIGINAL_APPLY_CONTROL(self, instance, action)
    await self.persistence.terminate_subscriptions(instance.id)
    crash_point("control.after_subscriptions")
    now = utcnow()
    instance.status = WorkflowStatus.TERMINATED
    instance.complete_time = now
    instance.next_execution = None
    for p in instance.execution_pointers:
        if p.end_time is None:
            p.active = False
            p.status = PointerStatus.CANCELLED
            p.end_time = now
            p.sleep_until = None
    await self.workflow_ended(instance, WorkflowStatus.TERMINATED)
    await self.persistence.persist_workflow(instance, owner=self.owner_id, apply_control=True)
    crash_point("control.after_persist")
    instance.control_request = None
    return True


def _mutant_shares_checkpoint(self: _Pass, p: ExecutionPointer) -> bool:
    """``share-user``: every step (a user step too) leaves its result to the next
    checkpoint while another step is ready."""
    return bool(self.ready) and not self.errors and self.ended_status is None


def _apply_mutant(mutant: str) -> None:
    """Patch the broken copy named ``mutant`` (a key of :data:`MUTANTS`) into wfe."""
    if mutant not in MUTANTS:
        raise ValueError(f"unknown mutant {mutant!r}")
    kind = mutant.split("-")[0]
    if kind == "delivery":
        EventDelivery.deliver = _mutant_deliver  # type: ignore[method-assign]
    elif kind == "checkpoint":
        _Pass._checkpoint = _mutant_checkpoint  # type: ignore[method-assign]
    elif kind == "share":
        _Pass._shares_checkpoint = _mutant_shares_checkpoint  # type: ignore[method-assign]
    elif kind == "start":
        WorkflowHost.start_workflow = _mutant_start_workflow  # type: ignore[method-assign]
    elif kind == "child":
        WorkflowHost.start_child = _mutant_start_child  # type: ignore[method-assign]
        _Pass._checkpoint = _mutant_checkpoint  # type: ignore[method-assign]
    else:
        WorkflowHost._apply_control = _mutant_apply_control  # type: ignore[method-assign]


# ---------------------------------------------------------------------- worker
async def _until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _find(host: WorkflowHost, definition_id: str) -> str | None:
    found = await host.persistence.query_workflows(definition_id=definition_id)
    return found[0].id if found else None


async def _ended(host: WorkflowHost, wid: str) -> bool:
    status = (await host.get_workflow_instance(wid)).status
    return status in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)


def _terminate_called() -> bool:
    assert _LOG is not None
    return _LOG.exists() and _TERMINATE_MARK in _LOG.read_text(encoding="utf-8").split()


async def _stimulus(host: WorkflowHost, scenario: str, wid: str) -> None:
    """Give the workflow what it waits for, unless it got it already (a terminate is
    never called twice: see ``_TERMINATE_MARK``)."""
    if scenario == "event":
        if await host.persistence.get_events(EVENT_NAME, EVENT_KEY, _EPOCH):
            return

        async def subscribed() -> bool:
            subs = await host.persistence.get_subscriptions(EVENT_NAME, EVENT_KEY, utcnow())
            return bool(subs) or await _ended(host, wid)

        await _until("the subscription", subscribed)
        await host.publish_event(EVENT_NAME, EVENT_KEY, "payload")
    elif scenario == "activity":
        if await host.persistence.get_events(ACTIVITY_EVENT, ACTIVITY_NAME, _EPOCH):
            return

        async def claimed() -> Any:
            return await host.get_pending_activity(ACTIVITY_NAME, "worker", timeout=0.1)

        pending = await _until("the activity", claimed)
        await host.submit_activity_success(pending.token, 42)
    elif scenario in ("terminate", "child_terminate"):
        if _terminate_called():
            return

        async def subscribed_never() -> list[EventSubscription]:
            return await host.persistence.get_subscriptions("never", EVENT_KEY, utcnow())

        subs = await _until("the subscription", subscribed_never)
        _log_step(_TERMINATE_MARK)
        await host.terminate_workflow(subs[0].workflow_id)  # the main one, or the child


async def _worker(scenario: str, db: str, phase: str, timeout: float) -> dict[str, Any]:
    mutant = os.environ.get("WFE_TEST_MUTANT")
    if mutant:
        _apply_mutant(mutant)
    options = HostOptions(
        lock_ttl=2.0,
        poll_interval=0.1,
        activity_token_ttl=2.0,
        error_retry_interval=0.2,
        stop_timeout=2.0,
    )
    host = WorkflowHost.from_url(f"sqlite:///{db}", options=options)
    flows: tuple[Workflow[Any], ...] = (
        EventFlow(),
        ControlFlow(),
        ActivityFlow(),
        ChildFlow(),
        ParentFlow(),
        TerminateFlow(),
        WaitingChildFlow(),
        TerminatedChildParentFlow(),
    )
    for wf in flows:
        host.register_workflow(wf)
    async with host:
        definition = _MAIN[scenario]
        if phase == "resume":  # every crash point comes after the instance is stored
            found = await _find(host, definition)
            if found is None:
                return {"id": None, "status": "lost"}
            wid = found
        else:
            wid = await host.start_workflow(definition, {})
        await _stimulus(host, scenario, wid)
        outcome: dict[str, Any] = {"id": wid}
        try:
            instance = await host.wait_for_workflow(wid, timeout)
            outcome["status"] = instance.status.value
        except TimeoutError:
            outcome["status"] = "timeout:" + (await host.get_workflow_instance(wid)).status.value
        child = await _find(host, _CHILD[scenario]) if scenario in _CHILD else None
        if child is not None:
            with contextlib.suppress(TimeoutError):
                await host.wait_for_workflow(child, 5.0 if phase == "resume" else timeout)
            outcome["child_status"] = (await host.get_workflow_instance(child)).status.value
        return outcome


# ---------------------------------------------------------------------- test side
@dataclass
class Outcome:
    """What the resumed worker saw: the main workflow's status (``timeout:<status>``
    when it did not end in time), the child's, and how often each step ran."""

    status: str
    child_status: str | None
    runs: Counter[str] = field(default_factory=Counter)


def _run_worker(
    scenario: str, tmp: Path, phase: str, env: dict[str, str], wait: float
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), scenario, str(tmp / "wfe.db")]
    cmd += [str(tmp / "steps.log"), phase, str(wait)]
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=wait + 30.0, check=False
    )


def run_scenario(
    tmp: Path, scenario: str, crash_at: str, mutant: str | None = None, wait: float = 45.0
) -> Outcome:
    """Run ``scenario`` in a worker killed at ``crash_at`` (asserting exit status 77),
    then in a fresh worker on the same file that waits up to ``wait`` seconds for
    the end; return what it saw."""
    env = {k: v for k, v in os.environ.items() if k not in ("WFE_CRASH_AT", "WFE_TEST_MUTANT")}
    if mutant is not None:
        env["WFE_TEST_MUTANT"] = mutant
    first = _run_worker(scenario, tmp, "first", {**env, "WFE_CRASH_AT": crash_at}, 45.0)
    assert first.returncode == CRASH_EXIT_CODE, (
        f"worker 1 did not die at {crash_at} (exit {first.returncode})\n"
        f"{first.stdout}\n{first.stderr[-3000:]}"
    )
    second = _run_worker(scenario, tmp, "resume", env, wait)
    assert second.returncode == 0, f"worker 2 failed\n{second.stdout}\n{second.stderr[-3000:]}"
    result = json.loads(second.stdout.strip().splitlines()[-1])
    log = tmp / "steps.log"
    lines = log.read_text(encoding="utf-8").split() if log.exists() else []
    return Outcome(result["status"], result.get("child_status"), Counter(lines))


def check_outcome(outcome: Outcome, scenario: str, may_rerun: frozenset[str]) -> None:
    """Assert what a correct engine shows after the crash and restart: the workflow
    (and its child) ended as the scenario says, every step ran once -- twice at most
    for a step in ``may_rerun`` (it ran, but its checkpoint was lost)."""
    if scenario in ("terminate", "child_terminate"):
        assert outcome.status == "terminated", outcome
        assert outcome.runs["b"] == 0, outcome  # never woke up after the terminate
        expected = {"a"}
    else:
        assert outcome.status == "complete", outcome
        expected = {"a", "b"}  # b ran: the event / activity result / child end arrived
    if scenario == "control":
        expected.add("c")
    if scenario in _CHILD:
        child_status = "complete" if scenario == "child" else "terminated"
        assert outcome.child_status == child_status, outcome
        expected.add("c")
    for step in expected:
        ran = outcome.runs[step]
        if step in may_rerun:
            assert 1 <= ran <= 2, f"step {step} ran {ran} times (at-least-once: 1 or 2)"
        else:
            assert ran == 1, f"step {step} ran {ran} times; its completion was checkpointed"


def main(argv: list[str]) -> None:
    """The worker entry point (see the module docstring)."""
    global _LOG
    scenario, db, log, phase, wait = argv
    _LOG = Path(log)
    outcome = asyncio.run(_worker(scenario, db, phase, float(wait)))
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
