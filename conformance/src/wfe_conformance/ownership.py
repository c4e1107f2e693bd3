"""Conformance suite for ownership fencing and durable control requests.

The store itself decides who may run an instance: a host claims it
(``claim_workflow``: an owner and a lease expiry, taken by compare-and-set) and writes
every checkpoint with ``owner=``; the store refuses checkpoints of an owner without a
live claim, unowned writes while a claim is live, and the holder's checkpoints while a
suspend / resume / terminate request is pending. The host-level tests run two hosts on
the provider with a lock service that grants every lock (as a flushed Redis would), so
only the store's fencing can keep them apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from wfe_core.errors import ConcurrencyError, ControlPending, LeaseLost, WorkflowNotFound
from wfe_core.models import (
    ExecutionPointer,
    QueueType,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
    utcnow,
)
from wfe_core.persistence import Claim, PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.scenarios.support import wait_until
from wfe_core import HostOptions, StepContext, Workflow, WorkflowBuilder, WorkflowHost

__all__ = ["GrantingLock", "LongStepWorkflow", "OwnershipTests", "StepProbe"]

_DEF = "wfe-conformance-ownership"
_TIMEOUT = 30.0  # generous bound for waits on a loaded machine


def _instance() -> WorkflowInstance:
    instance = WorkflowInstance(workflow_definition_id=_DEF, data={"n": 1}, reference=new_id())
    instance.execution_pointers.append(ExecutionPointer(step_id=0, step_name="start"))
    return instance


def _later(seconds: float = 60.0) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


class GrantingLock:
    """A lock service that grants every lock to everyone (a Redis that lost its keys):
    with it, only the store's fencing keeps two hosts apart."""

    async def acquire_lock(self, resource: str, ttl: float) -> bool:
        """Always granted."""
        return True

    async def renew_lock(self, resource: str, ttl: float) -> bool:
        """Always renewed."""
        return True

    async def release_lock(self, resource: str) -> None:
        """Nothing to release."""

    async def start(self) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""


class StepProbe:
    """Counts how many copies of the long step run at once, and what ran."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.entered: list[str] = []
        self.after: list[str] = []
        self.cancelled_seen: list[float] = []
        self.release = asyncio.Event()


class LongStepWorkflow(Workflow[dict[str, Any]]):
    """``long`` runs until released or cancelled (bounded), then ``after``."""

    id = "conf-ownership-long"
    data_type = dict

    def __init__(self, probe: StepProbe) -> None:
        self.probe = probe

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        probe = self.probe

        async def long(context: StepContext[Any]) -> None:
            probe.inside += 1
            probe.most = max(probe.most, probe.inside)
            probe.entered.append(context.workflow.id)
            try:
                release = asyncio.ensure_future(probe.release.wait())
                cancelled = asyncio.ensure_future(context.cancelled.wait())
                await asyncio.wait(
                    {release, cancelled}, timeout=_TIMEOUT, return_when="FIRST_COMPLETED"
                )
                release.cancel()
                cancelled.cancel()
                if context.cancelled.is_set():
                    probe.cancelled_seen.append(time.monotonic())
            finally:
                probe.inside -= 1

        async def after(context: StepContext[Any]) -> None:
            probe.after.append(context.workflow.id)

        builder.start_with(long).name("long").then(after).name("after")


class OwnershipTests(SuiteBase):
    """Claims, fenced checkpoints and durable control requests."""

    host_options: dict[str, Any] = {
        "poll_interval": 0.05,
        "idle_time": 0.01,
        "error_retry_interval": 0.05,
        "lock_ttl": 3.0,
        "stop_timeout": 5.0,
        "control_interval": 0.1,
    }
    """HostOptions of the host-level tests here."""

    # -- claims ------------------------------------------------------------------------

    async def test_claim_is_exclusive_until_released(self, provider: PersistenceProvider) -> None:
        """A claim excludes other owners; the holder renews it; release frees it."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", _later()) == Claim.CLAIMED
        assert await provider.claim_workflow(wid, "b", _later()) == Claim.REFUSED
        assert await provider.claim_workflow(wid, "a", _later(120)) == Claim.CLAIMED
        await provider.release_workflow(wid, "a")
        # a released claim is free, not taken over
        assert await provider.claim_workflow(wid, "b", _later()) == Claim.CLAIMED

    async def test_claim_of_unknown_workflow_raises(self, provider: PersistenceProvider) -> None:
        """Claiming an unknown id raises WorkflowNotFound."""
        with pytest.raises(WorkflowNotFound):
            await provider.claim_workflow("no-such-workflow", "a", _later())

    async def test_expired_claim_can_be_taken(self, provider: PersistenceProvider) -> None:
        """Once its lease has expired, another owner may take the claim, and the claim
        says so (``Claim.TAKEN_OVER``: the host counts and logs a lease takeover); the
        new holder's renewal is a plain ``CLAIMED``."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", utcnow() + timedelta(milliseconds=300))
        assert not await provider.claim_workflow(wid, "b", _later())
        got: list[bool | Claim] = []

        async def taken() -> bool:
            got.append(await provider.claim_workflow(wid, "b", _later()))
            return bool(got[-1])

        await wait_until(taken, _TIMEOUT, "the expired claim to be taken")
        assert got[-1] == Claim.TAKEN_OVER, f"a takeover reported as {got[-1]!r}"
        assert await provider.claim_workflow(wid, "b", _later()) == Claim.CLAIMED
        assert not await provider.claim_workflow(wid, "a", _later())

    async def test_a_claimed_instance_is_not_listed_as_runnable(
        self, provider: PersistenceProvider
    ) -> None:
        """``get_runnable_instances`` leaves out an instance while a claim on it is live
        (its holder is running it: other hosts' pollers must not queue it again and
        again) and lists it once the claim is released, or at a time it has expired."""
        instance = _instance()
        instance.next_execution = utcnow() - timedelta(seconds=1)
        wid = await provider.create_workflow(instance)
        assert wid in await provider.get_runnable_instances(utcnow())
        assert await provider.claim_workflow(wid, "a", _later())
        assert wid not in await provider.get_runnable_instances(utcnow())
        await provider.release_workflow(wid, "a")
        assert wid in await provider.get_runnable_instances(utcnow())
        lease = _later(300)
        assert await provider.claim_workflow(wid, "b", lease)
        assert wid not in await provider.get_runnable_instances(utcnow())
        assert wid in await provider.get_runnable_instances(lease + timedelta(seconds=1))

    async def test_release_by_another_owner_is_a_no_op(self, provider: PersistenceProvider) -> None:
        """Releasing a claim one does not hold never frees the holder's claim."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", _later())
        await provider.release_workflow(wid, "b")
        await provider.release_workflow("no-such-workflow", "a")
        assert not await provider.claim_workflow(wid, "b", _later())

    async def test_concurrent_claims_have_one_winner(self, provider: PersistenceProvider) -> None:
        """Of many owners claiming one instance at once, exactly one wins."""
        wid = await provider.create_workflow(_instance())
        results: dict[str, bool] = {}

        async def claim(owner: str) -> None:
            results[owner] = bool(await provider.claim_workflow(wid, owner, _later()))

        with anyio.fail_after(_TIMEOUT):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(claim, f"owner-{n}")
        assert sum(results.values()) == 1, results

    async def test_create_claimed(self, provider: PersistenceProvider) -> None:
        """An instance created with an owner is claimed by it from the start."""
        wid = await provider.create_workflow(_instance(), owner="a", lease_until=_later())
        assert not await provider.claim_workflow(wid, "b", _later())
        assert await provider.claim_workflow(wid, "a", _later())

    async def test_claims_do_not_change_the_revision(self, provider: PersistenceProvider) -> None:
        """Claims, releases and control requests leave the revision alone."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", _later())
        await provider.request_control(wid, "suspend")
        await provider.release_workflow(wid, "a")
        assert (await provider.get_workflow_instance(wid)).revision == 1

    # -- fenced checkpoints ------------------------------------------------------------

    async def test_owned_persist_needs_the_live_claim(self, provider: PersistenceProvider) -> None:
        """A checkpoint by a non-holder is refused with LeaseLost and writes nothing;
        the holder's goes through."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", _later())
        stale = await provider.get_workflow_instance(wid)
        stale.data = {"n": 99}
        with pytest.raises(LeaseLost):
            await provider.persist_workflow(stale, owner="b")
        stored = await provider.get_workflow_instance(wid)
        assert (stored.revision, stored.data) == (1, {"n": 1})
        stored.data = {"n": 2}
        await provider.persist_workflow(stored, owner="a")
        assert (await provider.get_workflow_instance(wid)).data == {"n": 2}

    async def test_owned_persist_refused_after_the_lease_expired(
        self, provider: PersistenceProvider
    ) -> None:
        """A holder whose lease has expired can write nothing (LeaseLost)."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", utcnow() + timedelta(milliseconds=200))
        loaded = await provider.get_workflow_instance(wid)
        deadline = utcnow() + timedelta(milliseconds=250)
        await wait_until(lambda: utcnow() > deadline, _TIMEOUT, "the lease to expire")
        loaded.data = {"n": 5}
        with pytest.raises(LeaseLost):
            await provider.persist_workflow(loaded, owner="a")
        assert (await provider.get_workflow_instance(wid)).data == {"n": 1}

    async def test_unowned_persist_refused_while_claimed(
        self, provider: PersistenceProvider
    ) -> None:
        """A write without an owner is refused while anyone holds a live claim, and
        allowed once it is released."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", _later())
        loaded = await provider.get_workflow_instance(wid)
        loaded.data = {"n": 7}
        with pytest.raises(LeaseLost):
            await provider.persist_workflow(loaded)
        assert (await provider.get_workflow_instance(wid)).revision == 1
        await provider.release_workflow(wid, "a")
        await provider.persist_workflow(loaded)
        assert (await provider.get_workflow_instance(wid)).data == {"n": 7}

    async def test_owned_write_that_ends_the_instance_drops_the_claim(
        self, provider: PersistenceProvider
    ) -> None:
        """A holder's write leaving the instance COMPLETE releases the claim with it;
        one leaving it RUNNABLE keeps it."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", _later())
        loaded = await provider.get_workflow_instance(wid)
        loaded.data = {"n": 8}
        await provider.persist_workflow(loaded, owner="a")
        assert not await provider.claim_workflow(wid, "b", _later())
        loaded.status = WorkflowStatus.COMPLETE
        loaded.complete_time = utcnow()
        await provider.persist_workflow(loaded, owner="a")
        assert await provider.claim_workflow(wid, "b", _later())

    async def test_lease_lost_is_a_concurrency_error(self) -> None:
        """LeaseLost and ControlPending are ConcurrencyErrors (old callers reload)."""
        assert issubclass(LeaseLost, ConcurrencyError)
        assert issubclass(ControlPending, ConcurrencyError)

    # -- control requests ----------------------------------------------------------------

    async def test_control_request_fences_the_holder(self, provider: PersistenceProvider) -> None:
        """A pending request refuses the holder's ordinary checkpoint (ControlPending,
        nothing written); a checkpoint that applies it goes through and clears it."""
        wid = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(wid, "a", _later())
        loaded = await provider.get_workflow_instance(wid)
        await provider.request_control(wid, "terminate")
        loaded.data = {"n": 3}
        with pytest.raises(ControlPending) as refused:
            await provider.persist_workflow(loaded, owner="a")
        assert refused.value.action == "terminate"
        stored = await provider.get_workflow_instance(wid)
        assert (stored.revision, stored.control_request) == (1, "terminate")
        loaded.status = WorkflowStatus.TERMINATED
        await provider.persist_workflow(loaded, owner="a", apply_control=True)
        stored = await provider.get_workflow_instance(wid)
        assert (stored.status, stored.control_request) == (WorkflowStatus.TERMINATED, None)
        assert await provider.get_pending_controls([wid]) == {}

    async def test_terminate_request_is_not_replaced(self, provider: PersistenceProvider) -> None:
        """A pending terminate stays pending when a suspend or resume comes after it."""
        wid = await provider.create_workflow(_instance())
        await provider.request_control(wid, "suspend")
        assert (await provider.get_workflow_instance(wid)).control_request == "suspend"
        await provider.request_control(wid, "terminate")
        await provider.request_control(wid, "resume")
        assert (await provider.get_workflow_instance(wid)).control_request == "terminate"

    async def test_control_request_argument_errors(self, provider: PersistenceProvider) -> None:
        """An unknown action is a ValueError; an unknown id WorkflowNotFound."""
        wid = await provider.create_workflow(_instance())
        with pytest.raises(ValueError, match="control action"):
            await provider.request_control(wid, "pause")
        with pytest.raises(WorkflowNotFound):
            await provider.request_control("no-such-workflow", "terminate")

    async def test_pending_controls_lists(self, provider: PersistenceProvider) -> None:
        """Requests are listed by id; without ids only those of unclaimed instances."""
        held = await provider.create_workflow(_instance())
        free = await provider.create_workflow(_instance())
        quiet = await provider.create_workflow(_instance())
        assert await provider.claim_workflow(held, "a", _later())
        await provider.request_control(held, "suspend")
        await provider.request_control(free, "terminate")
        assert await provider.get_pending_controls([held, free, quiet, "unknown"]) == {
            held: "suspend",
            free: "terminate",
        }
        assert await provider.get_pending_controls() == {free: "terminate"}
        assert await provider.get_pending_controls(as_at=_later(120)) == {
            held: "suspend",
            free: "terminate",
        }

    async def test_unowned_persist_keeps_a_pending_request(
        self, provider: PersistenceProvider
    ) -> None:
        """A write without an owner neither needs nor clears a pending request."""
        wid = await provider.create_workflow(_instance())
        await provider.request_control(wid, "suspend")
        loaded = await provider.get_workflow_instance(wid)
        loaded.data = {"n": 4}
        await provider.persist_workflow(loaded)
        assert (await provider.get_workflow_instance(wid)).control_request == "suspend"

    # -- hosts ---------------------------------------------------------------------------

    @pytest.fixture
    async def granting_hosts(
        self, provider: PersistenceProvider
    ) -> AsyncIterator[list[WorkflowHost]]:
        """Hosts made by the test on ``provider``, each with a lock service that grants
        everything; stopped at teardown."""
        hosts: list[WorkflowHost] = []
        try:
            yield hosts
        finally:
            for host in reversed(hosts):
                with anyio.move_on_after(_TIMEOUT):
                    await host.stop()

    async def _host(
        self,
        provider: PersistenceProvider,
        hosts: list[WorkflowHost],
        probe: StepProbe,
        **options: Any,
    ) -> WorkflowHost:
        host = WorkflowHost(
            provider,
            lock_provider=GrantingLock(),
            options=HostOptions(**{**self.host_options, **options}),
        )
        host.register_workflow(LongStepWorkflow(probe))
        await host.start()
        hosts.append(host)
        return host

    async def test_two_hosts_never_run_one_step_at_once_without_locks(
        self, provider: PersistenceProvider, granting_hosts: list[WorkflowHost]
    ) -> None:
        """With a lock service that grants everything, a second host handed the
        instance never starts the step the first is running: the store's claim fences
        it; the step runs once and the workflow completes."""
        probe = StepProbe()
        a = await self._host(provider, granting_hosts, probe)
        b = await self._host(provider, granting_hosts, probe)
        wid = await a.start_workflow(LongStepWorkflow.id, {})
        await wait_until(lambda: bool(probe.entered), _TIMEOUT, "the long step to start")
        before = time.monotonic()
        # b's poll leaves out an instance claimed by a live holder, so hand it to b over
        # and over, as a stale queue entry or a store without that filter would
        queue = b.queue_provider

        async def handed_a_while() -> bool:
            await queue.queue_work(wid, QueueType.WORKFLOW)
            return time.monotonic() - before > 1.0

        await wait_until(handed_a_while, _TIMEOUT, "b to be handed it a while")
        probe.release.set()
        done = await b.wait_for_workflow(wid, timeout=_TIMEOUT)
        assert done.status is WorkflowStatus.COMPLETE
        assert probe.most == 1
        assert probe.entered == [wid]
        assert probe.after == [wid]

    async def test_host_whose_claim_is_taken_stops_and_writes_nothing(
        self, provider: PersistenceProvider, granting_hosts: list[WorkflowHost]
    ) -> None:
        """When another owner holds the claim (the first host's lease was lost), the
        first host's running step sees context.cancelled at its next renewal, its
        checkpoint is refused and the next step never runs there."""
        probe = StepProbe()
        a = await self._host(provider, granting_hosts, probe, lock_ttl=1.5)
        wid = await a.start_workflow(LongStepWorkflow.id, {})
        await wait_until(lambda: bool(probe.entered), _TIMEOUT, "the long step to start")
        revision = (await provider.get_workflow_instance(wid)).revision
        # the claim passes to someone else, as after a lease that ran out
        await provider.release_workflow(wid, a.owner_id)
        assert await provider.claim_workflow(wid, "intruder", _later(600))
        await wait_until(lambda: bool(probe.cancelled_seen), _TIMEOUT, "the step to see cancelled")
        await wait_until(lambda: probe.inside == 0, _TIMEOUT, "the step to end")
        await a.stop()
        stored = await provider.get_workflow_instance(wid)
        assert stored.revision == revision
        assert probe.after == []

    async def test_terminate_from_another_host_reaches_the_running_step(
        self, provider: PersistenceProvider, granting_hosts: list[WorkflowHost]
    ) -> None:
        """terminate_workflow on a host that does not run the instance returns True at
        once; the running step sees context.cancelled, the next step never runs and the
        instance ends TERMINATED."""
        probe = StepProbe()
        runner = await self._host(provider, granting_hosts, probe)
        other = await self._host(provider, granting_hosts, probe)
        wid = await runner.start_workflow(LongStepWorkflow.id, {})
        await wait_until(lambda: bool(probe.entered), _TIMEOUT, "the long step to start")
        asked = time.monotonic()
        with anyio.fail_after(_TIMEOUT):
            assert await other.terminate_workflow(wid) is True
        await wait_until(lambda: bool(probe.cancelled_seen), _TIMEOUT, "the step to see cancelled")
        done = await runner.wait_for_workflow(wid, timeout=_TIMEOUT)
        assert done.status is WorkflowStatus.TERMINATED
        assert probe.after == []
        assert probe.cancelled_seen[0] - asked < _TIMEOUT
        assert (await provider.get_workflow_instance(wid)).control_request is None

    async def test_suspend_from_another_host_keeps_the_finished_step(
        self, provider: PersistenceProvider, granting_hosts: list[WorkflowHost]
    ) -> None:
        """suspend_workflow from another host lets the running step finish, keeps its
        result, stops before the next step; resume from that host completes it with
        every step run once."""
        probe = StepProbe()
        runner = await self._host(provider, granting_hosts, probe)
        other = await self._host(provider, granting_hosts, probe)
        wid = await runner.start_workflow(LongStepWorkflow.id, {})
        await wait_until(lambda: bool(probe.entered), _TIMEOUT, "the long step to start")
        assert await other.suspend_workflow(wid) is True

        async def requested() -> bool:
            return (await provider.get_workflow_instance(wid)).control_request == "suspend"

        await wait_until(requested, _TIMEOUT, "the suspend request to be stored")
        probe.release.set()

        async def suspended() -> bool:
            return (await provider.get_workflow_instance(wid)).status is WorkflowStatus.SUSPENDED

        await wait_until(suspended, _TIMEOUT, "the workflow to be suspended")
        assert probe.after == []
        assert await other.resume_workflow(wid) is True
        done = await runner.wait_for_workflow(wid, timeout=_TIMEOUT)
        assert done.status is WorkflowStatus.COMPLETE
        assert probe.entered == [wid]
        assert probe.after == [wid]

    async def test_request_left_by_a_stopped_holder_is_applied_by_the_poller(
        self, provider: PersistenceProvider, granting_hosts: list[WorkflowHost]
    ) -> None:
        """A request recorded for an instance nobody holds any more is applied by the
        next host that polls."""
        probe = StepProbe()
        wid = await provider.create_workflow(_suspendable())
        await provider.request_control(wid, "terminate")
        host = await self._host(provider, granting_hosts, probe)

        async def terminated() -> bool:
            return (await provider.get_workflow_instance(wid)).status is WorkflowStatus.TERMINATED

        await wait_until(terminated, _TIMEOUT, "the pending terminate to be applied")
        assert (await host.get_workflow_instance(wid)).control_request is None


def _suspendable() -> WorkflowInstance:
    """A runnable instance of LongStepWorkflow waiting far in the future (nothing runs)."""
    instance = WorkflowInstance(
        workflow_definition_id=LongStepWorkflow.id,
        data={},
        next_execution=datetime(2999, 1, 1, tzinfo=UTC),
    )
    instance.execution_pointers.append(
        ExecutionPointer(step_id=0, step_name="long", sleep_until=datetime(2999, 1, 1, tzinfo=UTC))
    )
    return instance
