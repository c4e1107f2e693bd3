"""The pass runner: passes over one instance at a time under its lock and claim, with
the lease kept while a pass runs, control requests applied, and the next pass
scheduled (here at once, or by a timer, or through the queue)."""

from __future__ import annotations

import asyncio
import logging
import time

from wfe_core.client.client import WorkflowClient
from wfe_core.client.control import signal_control
from wfe_core.client.core import workflow_lock
from wfe_core.errors import ConcurrencyError, ControlPending, LeaseLost, WorkflowNotFound
from wfe_core.executor import PassControl, WorkflowExecutor
from wfe_core.host.dispatch import WorkDispatcher, log_outage
from wfe_core.host.lease import LeaseKeeper
from wfe_core.models import QueueType, WorkflowInstance, WorkflowStatus, utcnow
from wfe_core.options import MiddlewarePhase
from wfe_core.poison import suspend_if_undecodable

__all__ = ["PassRunner"]

log = logging.getLogger("wfe.host")

_ENDED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)


class PassRunner:
    """Runs passes for a host; knows which instances this host is running."""

    def __init__(
        self, client: WorkflowClient, executor: WorkflowExecutor, dispatcher: WorkDispatcher
    ) -> None:
        self.client = client
        self.executor = executor
        self.dispatcher = dispatcher
        self.active: dict[str, PassControl] = {}
        """The instances this host runs a pass over now, and their pass controls."""
        self.again: set[str] = set()
        """Instances to run another pass over as soon as the current one ends."""
        self.handed: dict[str, float] = {}
        """Instances handed to a local pass (:meth:`run_here`) whose task has not
        started yet, with the time they were handed (``time.monotonic()``)."""

    async def process_workflow(
        self, workflow_id: str, held: WorkflowInstance | None = None
    ) -> None:
        """Run passes of one workflow until it needs none now. ``held``: the instance as
        this host just wrote it, its workflow lock held by this host and handed over
        (the first pass neither takes the lock nor loads the instance)."""
        client = self.client
        self.handed.pop(workflow_id, None)
        if held is None and workflow_id in client._held:
            return  # suspend/resume/terminate in progress; it queues the id again
        if workflow_id in self.active:
            self.again.add(workflow_id)
            if held is not None:  # callers check first; never strand the handed lock
                await client.workflow_locks.release_lock(workflow_lock(workflow_id))
            return
        control = PassControl()
        self.active[workflow_id] = control
        try:
            while True:
                self.again.discard(workflow_id)
                await self.run_pass(workflow_id, control, held)
                held = None
                if (
                    workflow_id not in self.again
                    or not self.dispatcher.running
                    or control.stop_requested
                ):
                    break
        finally:
            self.active.pop(workflow_id, None)
            self.again.discard(workflow_id)
            control.finished.set()
            # a wait_for_workflow here sleeps while the workflow runs here: wake it to
            # look at the store now that no pass here will signal its end
            client._signal_ended(workflow_id)

    def run_here(self, instance: WorkflowInstance) -> None:
        """Run passes of ``instance`` here, in a task holding a workflow slot already
        taken (``dispatcher.local_slot``); its workflow lock is held by this host and
        the task takes it over (the first pass uses ``instance`` as it is: this host
        just wrote it)."""

        async def handler(workflow_id: str) -> None:
            await self.process_workflow(workflow_id, instance)

        self.handed[instance.id] = time.monotonic()
        self.dispatcher.spawn(QueueType.WORKFLOW, instance.id, handler)

    def runs(self, workflow_id: str) -> bool:
        """Whether a pass over ``workflow_id`` runs here, or was just handed to one
        (a handed task that has not started within a second is not counted: a
        waiter then reads the store rather than trust a task that may never run)."""
        if workflow_id in self.active:
            return True
        handed = self.handed.get(workflow_id)
        if handed is None:
            return False
        if time.monotonic() - handed < 1.0:
            return True
        self.handed.pop(workflow_id, None)
        return False

    async def run_pass(
        self, workflow_id: str, control: PassControl, held: WorkflowInstance | None = None
    ) -> None:
        """One pass over ``workflow_id`` (see the module)."""
        client = self.client
        lock_provider = client.workflow_locks
        options = client.options
        lock_name = workflow_lock(workflow_id)
        claimed_at = time.monotonic()
        if held is None:
            if not await lock_provider.acquire_lock(lock_name, options.lock_ttl):
                return
            try:
                claimed = await client._claim(workflow_id)
            except BaseException:
                await lock_provider.release_lock(lock_name)
                raise
            if not claimed:  # another host runs it (its lock was lost, its claim was not)
                await lock_provider.release_lock(lock_name)
                log.debug(
                    "workflow %s is claimed by another host",
                    workflow_id,
                    extra={"workflow_id": workflow_id},
                )
                return
        control.owner = client.owner_id
        control.lease_lost = False
        lease = LeaseKeeper(
            workflow_id,
            control,
            claimed_at,
            ttl=options.lock_ttl,
            claim=client._claim,
            renew_lock=lambda: lock_provider.renew_lock(lock_name, options.lock_ttl),
        )
        instance: WorkflowInstance | None = held
        released = False  # the pass's last write ended the instance and dropped the claim
        try:
            try:
                if instance is None:
                    instance = await client.persistence.get_workflow_instance(workflow_id)
            except WorkflowNotFound:
                return
            if instance.control_request is not None:
                await client._apply_control(instance, instance.control_request)
                instance = None
                return
            if instance.status in _ENDED:
                await client.publish_ended(instance, instance.status)  # lost in a crash?
                return
            if instance.status is not WorkflowStatus.RUNNABLE:
                return
            definition = client.registry.find(instance.workflow_definition_id, instance.version)
            if definition is None:  # a definition stored by another process since we opened?
                definition = await client.reload_definition(
                    instance.workflow_definition_id, instance.version
                )
            if definition is None:
                log.debug(
                    "workflow %s: %s v%s is not registered on this host",
                    workflow_id,
                    instance.workflow_definition_id,
                    instance.version,
                    extra={
                        "workflow_id": workflow_id,
                        "definition": instance.workflow_definition_id,
                    },
                )
                instance = None
                return
            if await suspend_if_undecodable(client, instance):  # poison data: set aside
                return
            try:
                running = instance
                await client._wrap_pass(
                    running, lambda: self.executor.run_pass(running, definition, control)
                )
            except ControlPending as pending:
                # A suspend / resume / terminate request from elsewhere: apply it to the
                # instance as this pass left it (its last step's result included).
                await client._apply_control(instance, pending.action or "")
                instance = None
                return
            except LeaseLost:
                log.warning(
                    "workflow %s: this host's claim was lost during a pass; it stops here "
                    "and writes nothing more",
                    workflow_id,
                    extra={
                        "workflow_id": workflow_id,
                        "definition": instance.workflow_definition_id,
                    },
                )
                instance = None
                return
            except ConcurrencyError:
                log.info(
                    "workflow %s was changed elsewhere during a pass; reloading",
                    workflow_id,
                    extra={
                        "workflow_id": workflow_id,
                        "definition": instance.workflow_definition_id,
                    },
                )
                instance = None
                self.again.add(workflow_id)
                return
            if control.stop_requested and not control.lease_lost:
                # stopped for a control request: apply it now rather than at the next poll
                requests = await client.persistence.get_pending_controls([workflow_id])
                if workflow_id in requests:
                    await client._apply_control(instance, requests[workflow_id])
            released = instance.status in _ENDED
            await client._run_workflow_middleware(MiddlewarePhase.EXECUTE_WORKFLOW, instance)
        finally:
            await lease.stop()
            if not released:
                await client._release_claim(workflow_id)  # owner-checked: never frees another's
            await lock_provider.release_lock(lock_name)
        if (
            instance is not None
            and instance.status is WorkflowStatus.RUNNABLE
            and instance.next_execution is not None
        ):
            if instance.next_execution <= utcnow():
                if workflow_id in client._held:
                    pass  # the control call decides what happens next
                elif control.stop_requested or not self.dispatcher.running:
                    await client._hint(workflow_id, QueueType.WORKFLOW)
                else:
                    self.again.add(workflow_id)
            else:
                self.dispatcher.wake_at(QueueType.WORKFLOW, workflow_id, instance.next_execution)

    async def watch_controls(self) -> None:
        """Every ``control_interval`` seconds, look in the store for control requests
        recorded (by any process) for the instances this host is running."""
        failures = 0
        dispatcher = self.dispatcher
        while dispatcher.running:
            await dispatcher.sleep(self.client.options.control_interval)
            active = list(self.active)
            if not active:
                continue
            try:
                pending = await self.client.persistence.get_pending_controls(active)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log_outage("looking for control requests", exc, failures, 1.0)
                continue
            failures = 0
            for workflow_id, action in pending.items():
                control = self.active.get(workflow_id)
                if control is not None:
                    signal_control(control, action)
