"""Crash-point scenarios shared by ``test_crash_points`` and ``test_crash_point_teeth``.

Run as a script this module is one worker process on a SQLite file::

    python crash_scenarios.py <scenario> <db file> <log file> <first|resume>

``first`` starts the scenario's workflow and drives it (publishes its event, submits
its activity, terminates it); with ``WFE_CRASH_AT`` set it is killed at that point
(exit status 77). ``resume`` is the next worker on the same file: it finds the
instance, gives it whatever stimulus it never got, waits for the end and prints the
outcome as one JSON line. Every step appends its name to the log file, so re-runs
are counted across processes. ``WFE_TEST_MUTANT`` (``swap`` or ``drop``) replaces
``WorkflowHost._deliver`` with a broken copy (see :func:`_mutant_deliver`).

Imported, :func:`run_scenario` runs the two workers and returns the outcome.
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
from wfe_core.crashpoints import CRASH_EXIT_CODE, crash_point
from wfe_core.definition import StepContext
from wfe_core.errors import SubscriptionNotFound
from wfe_core.host import _workflow_lock
from wfe_core.models import Event, EventSubscription, WorkflowStatus, utcnow
from wfe_core.primitives import ACTIVITY_EVENT
from wfe_core.queues import QueueType

from wfe_core import HostOptions, Workflow, WorkflowHost

SCENARIOS = ("event", "activity", "child", "terminate")
"""event: a -> wait_for(go) -> b; activity: a -> activity(work) -> b; child:
a -> sub_workflow(child: c) -> b; terminate: a -> wait_for(never) -> b, terminated."""

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


_MAIN = {
    "event": EventFlow.id,
    "activity": ActivityFlow.id,
    "child": ParentFlow.id,
    "terminate": TerminateFlow.id,
}


# ---------------------------------------------------------------------- mutants
async def _mutant_deliver(self: WorkflowHost, event: Event, sub: EventSubscription) -> bool:
    """A broken ``_deliver``: the subscription is terminated *before* the delivered
    event is saved (``swap``), or the event is never saved at all (``drop``)."""
    mutant = os.environ["WFE_TEST_MUTANT"]
    wid = sub.workflow_id
    lock_name = _workflow_lock(wid)
    if not await self._acquire(lock_name):
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
            if mutant == "swap" and p is not None and not p.event_published:
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


async def _stimulus(host: WorkflowHost, scenario: str, wid: str) -> None:
    """Give the workflow what it waits for, unless it got it already."""
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
    elif scenario == "terminate":
        if (await host.get_workflow_instance(wid)).status is WorkflowStatus.TERMINATED:
            return

        async def subscribed_never() -> bool:
            return bool(await host.persistence.get_subscriptions("never", EVENT_KEY, utcnow()))

        await _until("the subscription", subscribed_never)
        await host.terminate_workflow(wid)


async def _worker(scenario: str, db: str, phase: str, timeout: float) -> dict[str, Any]:
    if os.environ.get("WFE_TEST_MUTANT"):
        WorkflowHost._deliver = _mutant_deliver  # type: ignore[method-assign]
    options = HostOptions(
        lock_ttl=2.0,
        poll_interval=0.1,
        activity_token_ttl=2.0,
        error_retry_interval=0.2,
        stop_timeout=2.0,
    )
    host = WorkflowHost.from_url(f"sqlite:///{db}", options=options)
    for wf in (EventFlow(), ActivityFlow(), ChildFlow(), ParentFlow(), TerminateFlow()):
        host.register_workflow(wf)
    async with host:
        definition = _MAIN[scenario]
        wid = await _find(host, definition) if phase == "resume" else None
        if wid is None:
            wid = await host.start_workflow(definition, {})
        await _stimulus(host, scenario, wid)
        outcome: dict[str, Any] = {"id": wid}
        try:
            instance = await host.wait_for_workflow(wid, timeout)
            outcome["status"] = instance.status.value
        except TimeoutError:
            outcome["status"] = "timeout:" + (await host.get_workflow_instance(wid)).status.value
        child = await _find(host, ChildFlow.id)
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


def main(argv: list[str]) -> None:
    """The worker entry point (see the module docstring)."""
    global _LOG
    scenario, db, log, phase, wait = argv
    _LOG = Path(log)
    outcome = asyncio.run(_worker(scenario, db, phase, float(wait)))
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
