"""Suspend, resume and terminate, from any process.

Applied here and now when nobody holds the instance (this process claims it, applies
the change and releases it). When a pass holds it -- in this process or any other --
the request is recorded in the store (durable) and the call returns at once: the
holder sees it within ``HostOptions.control_interval`` (a running step's
``context.cancelled`` fires on terminate), its next checkpoint is refused until it
applies the request, and a request left when the holder stopped is applied by the
next host that polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from wfe_core.client.core import ClientCore, workflow_lock
from wfe_core.crashpoints import crash_point
from wfe_core.event_names import EXECUTION_DEADLINE_ATTRIBUTE
from wfe_core.executor import PassControl
from wfe_core.models import (
    LifecycleEventType,
    PointerStatus,
    QueueType,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.retry import Backoff

__all__ = [
    "ControllingClient",
    "check_execution_timeout",
    "control_applies",
    "set_execution_deadline",
    "signal_control",
]

log = logging.getLogger("wfe.host")


def control_applies(status: WorkflowStatus, action: str) -> bool:
    """Whether ``action`` (suspend / resume / terminate) changes an instance in
    ``status``."""
    if action == "suspend":
        return status is WorkflowStatus.RUNNABLE
    if action == "resume":
        return status is WorkflowStatus.SUSPENDED
    if action == "terminate":
        return status not in (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
    raise ValueError(f"unknown control action {action!r}")


def check_execution_timeout(execution_timeout: object) -> timedelta | None:
    """``execution_timeout`` checked: None, or a positive ``timedelta``."""
    if execution_timeout is None:
        return None
    if not isinstance(execution_timeout, timedelta):
        raise TypeError(
            "execution_timeout must be a timedelta (e.g. timedelta(hours=1)) or None, "
            f"not {type(execution_timeout).__name__}"
        )
    if execution_timeout <= timedelta(0):
        raise ValueError(f"execution_timeout must be positive, not {execution_timeout}")
    return execution_timeout


def set_execution_deadline(instance: WorkflowInstance, execution_timeout: object) -> None:
    """Give a new instance its execution deadline (``create_time`` + the timeout): the
    instance is TERMINATED when it passes. No timeout: nothing is stored."""
    limit = check_execution_timeout(execution_timeout)
    if limit is None:
        return
    start = instance.create_time or utcnow()
    first = instance.execution_pointers[0]
    first.extension_attributes[EXECUTION_DEADLINE_ATTRIBUTE] = (start + limit).isoformat()
    first.mark_changed()


def signal_control(control: PassControl, action: str) -> None:
    """Tell a running pass about a control request: it stops after the running steps;
    on terminate the running steps see ``context.cancelled`` too."""
    if action in ("terminate", "suspend"):
        control.stop_requested = True
        if action == "terminate":
            control.cancelled.set()


class ControllingClient(ClientCore):
    """:class:`ClientCore` plus suspend / resume / terminate (see the module)."""

    async def suspend_workflow(self, workflow_id: str) -> bool:
        """Suspend a RUNNABLE instance; True when it was suspended, False when
        its status does not allow it; WorkflowNotFound for an unknown id."""
        return await self._control(workflow_id, "suspend")

    async def resume_workflow(self, workflow_id: str) -> bool:
        """Resume a SUSPENDED instance; True when it was resumed, False when
        its status does not allow it; WorkflowNotFound for an unknown id."""
        return await self._control(workflow_id, "resume")

    async def terminate_workflow(self, workflow_id: str) -> bool:
        """Terminate an unfinished instance (a running step sees ``context.cancelled``);
        True when it was terminated (or the request is recorded for the process running
        it), False when it had already ended; WorkflowNotFound for an unknown id."""
        return await self._control(workflow_id, "terminate")

    def _pass_here(self, workflow_id: str) -> PassControl | None:
        """The pass over ``workflow_id`` running in this process (a host), if any."""
        return None

    async def _control(self, workflow_id: str, action: str) -> bool:
        """Apply or record ``action`` (see the module); False when the status does not
        allow it (terminating an ended workflow, resuming one that is not suspended)."""
        current = await self.persistence.get_workflow_instance(workflow_id)
        if not control_applies(current.status, action):
            return False
        requested = False  # a request of ours is recorded in the store
        running = self._pass_here(workflow_id)
        if running is not None:
            # This host runs it: its pass applies the request. Wait (bounded) for that
            # pass to end, so the change has taken effect when the call returns.
            await self.persistence.request_control(workflow_id, action)
            requested = True
            signal_control(running, action)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.finished.wait(), self.options.lock_ttl)
            if self._pass_here(workflow_id) is not None:
                return True  # still stepping: the request stays recorded for its pass
            if (await self.persistence.get_workflow_instance(workflow_id)).control_request is None:
                return True  # applied by the pass
        self._held.add(workflow_id)
        try:
            lock_name = workflow_lock(workflow_id)
            wait = Backoff(0.005, maximum=0.1, jitter=0.2)
            deadline = time.monotonic() + 0.5
            while True:
                if await self.workflow_locks.acquire_lock(lock_name, self.options.lock_ttl):
                    try:
                        if await self._claim(workflow_id):
                            try:
                                instance = await self.persistence.get_workflow_instance(workflow_id)
                                pending = instance.control_request
                                if requested and pending is None:
                                    return True  # the holder applied our request
                                if pending is not None and pending != action:
                                    # an earlier request (a terminate) goes first
                                    await self._apply_control(instance, pending)
                                    return action == "terminate"
                                return await self._apply_control(instance, action)
                            finally:
                                await self._release_claim(workflow_id)
                    finally:
                        await self.workflow_locks.release_lock(lock_name)
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(next(wait))
            # Another host (or process) holds it: record the request for the holder.
            await self.persistence.request_control(workflow_id, action)
            log.info(
                "workflow %s is held elsewhere; the %s request is recorded for its holder",
                workflow_id,
                action,
                extra={"workflow_id": workflow_id},
            )
            return True
        finally:
            self._held.discard(workflow_id)
            if self._running and action != "resume":
                with contextlib.suppress(Exception):
                    instance = await self.persistence.get_workflow_instance(workflow_id)
                    if instance.status is WorkflowStatus.RUNNABLE:
                        await self._hint(workflow_id, QueueType.WORKFLOW)

    async def _apply_control(self, instance: WorkflowInstance, action: str) -> bool:
        """Apply ``action`` to an instance this process has claimed, clearing any
        pending request in the same write; True when the status allowed it."""
        workflow_id = instance.id
        now = utcnow()
        applies = control_applies(instance.status, action)
        kind: LifecycleEventType | None = None
        if not applies:
            pass  # only the pending request is cleared
        elif action == "suspend":
            instance.status = WorkflowStatus.SUSPENDED
            kind = LifecycleEventType.WORKFLOW_SUSPENDED
        elif action == "resume":
            instance.status = WorkflowStatus.RUNNABLE
            instance.next_execution = now
            kind = LifecycleEventType.WORKFLOW_RESUMED
        else:
            instance.status = WorkflowStatus.TERMINATED
            instance.complete_time = now
            instance.next_execution = None
            for p in instance.execution_pointers:
                if p.end_time is None:
                    p.active = False
                    p.status = PointerStatus.CANCELLED
                    p.end_time = now
                    p.sleep_until = None
            kind = LifecycleEventType.WORKFLOW_TERMINATED
            await self.guard_child_end(instance)
        await self.persistence.persist_workflow(instance, owner=self.owner_id, apply_control=True)
        crash_point("control.after_persist")
        instance.control_request = None
        if kind is None:
            return False
        log.info(
            "workflow %s: %s applied",
            workflow_id,
            action,
            extra={"workflow_id": workflow_id, "definition": instance.workflow_definition_id},
        )
        await self.publish_lifecycle(self.lifecycle_event(kind, instance))
        if action == "terminate":
            await self.persistence.terminate_subscriptions(workflow_id)
            crash_point("control.after_subscriptions")
            await self.workflow_ended(instance, WorkflowStatus.TERMINATED)
        elif action == "resume":
            await self._hint(workflow_id, QueueType.WORKFLOW)
        return True
