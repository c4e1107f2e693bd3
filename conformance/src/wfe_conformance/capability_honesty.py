"""Conformance suite checking that a provider's declared capabilities are the truth.

For every :class:`~wfe_core.capabilities.Capability`: when the provider declares it,
its methods work; when it does not, they raise
:class:`~wfe_core.errors.CapabilityNotSupported` (never pass silently, never a bare
``NotImplementedError``). Also the lifecycle basics every provider shares.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from wfe_core.capabilities import Capability
from wfe_core.errors import CapabilityNotSupported, SubscriptionNotFound, WorkflowNotFound
from wfe_core.models import (
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase, requires

__all__ = ["CapabilityHonestyTests"]

_T0 = datetime(2030, 5, 1, tzinfo=UTC)
_CUTOFF = datetime(2024, 1, 1, tzinfo=UTC)
_OLD = _CUTOFF - timedelta(days=30)
_RECENT = _CUTOFF + timedelta(days=1)

# Every capability must have honesty tests below; a new member of the enum fails
# test_every_capability_is_covered until they are written.
_COVERED = frozenset({Capability.SCHEDULED_COMMANDS, Capability.PURGE, Capability.DURABLE})
# DURABLE has no method to refuse; its declaration is checked below and proved in full by
# DurabilityTests (wfe_conformance.durability).


async def _finished(
    provider: PersistenceProvider,
    status: WorkflowStatus,
    complete_time: datetime | None,
    *,
    with_extras: bool = True,
) -> tuple[str, str | None]:
    """Create an instance in ``status``; optionally give it a subscription and an error.

    Returns (workflow id, subscription id or None).
    """
    pointer = ExecutionPointer(step_id=0, step_name="wait")
    instance = WorkflowInstance(
        workflow_definition_id="wfe-conformance-purge",
        status=status,
        create_time=_OLD - timedelta(days=1),
        complete_time=complete_time,
    )
    instance.execution_pointers.append(pointer)
    workflow_id = await provider.create_workflow(instance)
    if not with_extras:
        return workflow_id, None
    sub_id = await provider.create_subscription(
        EventSubscription(
            workflow_id=workflow_id,
            step_id=0,
            execution_pointer_id=pointer.id,
            event_name="purge-test",
            event_key=workflow_id,
            subscribe_as_of=_OLD,
        )
    )
    await provider.persist_errors(
        [ExecutionError(workflow_id=workflow_id, execution_pointer_id=pointer.id, message="x")]
    )
    return workflow_id, sub_id


async def _assert_gone(provider: PersistenceProvider, workflow_id: str, sub_id: str | None) -> None:
    with pytest.raises(WorkflowNotFound):
        await provider.get_workflow_instance(workflow_id)
    if sub_id is not None:
        with pytest.raises(SubscriptionNotFound):
            await provider.get_subscription(sub_id)
    assert await provider.get_errors(workflow_id) == []


async def _assert_kept(provider: PersistenceProvider, workflow_id: str, sub_id: str | None) -> None:
    assert (await provider.get_workflow_instance(workflow_id)).id == workflow_id
    if sub_id is not None:
        assert (await provider.get_subscription(sub_id)).workflow_id == workflow_id
        assert len(await provider.get_errors(workflow_id)) == 1


class CapabilityHonestyTests(SuiteBase):
    """Declared capabilities work; undeclared ones raise CapabilityNotSupported."""

    async def test_capabilities_is_a_frozenset_of_capability(
        self, provider: PersistenceProvider
    ) -> None:
        """provider.capabilities is a frozenset of Capability members, stable across reads."""
        caps = provider.capabilities
        assert isinstance(caps, frozenset)
        assert all(isinstance(c, Capability) for c in caps)
        assert provider.capabilities == caps

    async def test_every_capability_is_covered(self, provider: PersistenceProvider) -> None:
        """Every Capability member has honesty tests in this suite."""
        assert set(Capability) <= _COVERED, set(Capability) - _COVERED

    async def test_provider_satisfies_the_protocol(self, provider: PersistenceProvider) -> None:
        """The provider has every method of the PersistenceProvider protocol."""
        assert isinstance(provider, PersistenceProvider)

    async def test_schedule_command_matches_declaration(
        self, provider: PersistenceProvider
    ) -> None:
        """schedule_command works when SCHEDULED_COMMANDS is declared and raises
        CapabilityNotSupported naming it when not."""
        cmd = ScheduledCommand(ScheduledCommand.PROCESS_WORKFLOW, new_id(), _T0)
        if Capability.SCHEDULED_COMMANDS in provider.capabilities:
            await provider.schedule_command(cmd)
            seen: list[ScheduledCommand] = []

            async def handler(command: ScheduledCommand) -> None:
                seen.append(command)

            assert await provider.process_commands(_T0, handler) == 1
            assert [c.data for c in seen] == [cmd.data]
        else:
            with pytest.raises(CapabilityNotSupported) as info:
                await provider.schedule_command(cmd)
            assert info.value.capability == Capability.SCHEDULED_COMMANDS

    async def test_process_commands_matches_declaration(
        self, provider: PersistenceProvider
    ) -> None:
        """process_commands works when SCHEDULED_COMMANDS is declared (0 with nothing
        stored) and raises CapabilityNotSupported naming it when not."""
        seen: list[ScheduledCommand] = []

        async def handler(command: ScheduledCommand) -> None:
            seen.append(command)

        if Capability.SCHEDULED_COMMANDS in provider.capabilities:
            assert await provider.process_commands(_T0, handler) == 0
        else:
            with pytest.raises(CapabilityNotSupported) as info:
                await provider.process_commands(_T0, handler)
            assert info.value.capability == Capability.SCHEDULED_COMMANDS
        assert seen == []

    async def test_purge_matches_declaration(self, provider: PersistenceProvider) -> None:
        """purge_workflows works when PURGE is declared and raises CapabilityNotSupported
        naming it (deleting nothing) when not."""
        workflow_id, sub_id = await _finished(provider, WorkflowStatus.COMPLETE, _OLD)
        if Capability.PURGE in provider.capabilities:
            assert await provider.purge_workflows(WorkflowStatus.COMPLETE, _CUTOFF) == 1
            await _assert_gone(provider, workflow_id, sub_id)
        else:
            with pytest.raises(CapabilityNotSupported) as info:
                await provider.purge_workflows(WorkflowStatus.COMPLETE, _CUTOFF)
            assert info.value.capability == Capability.PURGE
            await _assert_kept(provider, workflow_id, sub_id)

    async def test_durable_declaration_comes_with_a_way_to_reopen_the_store(
        self, provider: PersistenceProvider, request: pytest.FixtureRequest
    ) -> None:
        """A provider declaring DURABLE overrides ``store_opener``, and a provider it
        opens on the store sees a workflow written through ``provider``."""
        if Capability.DURABLE not in provider.capabilities:
            return  # nothing is promised
        opener = request.getfixturevalue("store_opener")
        workflow_id, _ = await _finished(provider, WorkflowStatus.RUNNABLE, None, with_extras=False)
        async with opener.open() as other:
            assert (await other.get_workflow_instance(workflow_id)).id == workflow_id

    @requires(Capability.PURGE)
    async def test_purge_deletes_only_old_instances_in_the_status(
        self, provider: PersistenceProvider
    ) -> None:
        """purge deletes instances in the status finished before the cutoff, with their
        subscriptions and errors, returns the count, and keeps every other instance."""
        old_a = await _finished(provider, WorkflowStatus.COMPLETE, _OLD)
        old_b = await _finished(provider, WorkflowStatus.COMPLETE, _OLD - timedelta(days=300))
        recent = await _finished(provider, WorkflowStatus.COMPLETE, _RECENT)
        terminated_old = await _finished(provider, WorkflowStatus.TERMINATED, _OLD)
        runnable = await _finished(provider, WorkflowStatus.RUNNABLE, None)
        suspended = await _finished(provider, WorkflowStatus.SUSPENDED, None)
        assert await provider.purge_workflows(WorkflowStatus.COMPLETE, _CUTOFF) == 2
        for gone in (old_a, old_b):
            await _assert_gone(provider, *gone)
        for kept in (recent, terminated_old, runnable, suspended):
            await _assert_kept(provider, *kept)

    @requires(Capability.PURGE)
    async def test_purge_terminated_instances(self, provider: PersistenceProvider) -> None:
        """purge of TERMINATED deletes old terminated instances and leaves complete ones."""
        terminated = await _finished(provider, WorkflowStatus.TERMINATED, _OLD)
        complete = await _finished(provider, WorkflowStatus.COMPLETE, _OLD)
        assert await provider.purge_workflows(WorkflowStatus.TERMINATED, _CUTOFF) == 1
        await _assert_gone(provider, *terminated)
        await _assert_kept(provider, *complete)

    @requires(Capability.PURGE)
    async def test_purge_cutoff_is_exclusive(self, provider: PersistenceProvider) -> None:
        """An instance completed exactly at older_than is not purged (strictly before)."""
        at_cutoff = await _finished(provider, WorkflowStatus.COMPLETE, _CUTOFF)
        assert await provider.purge_workflows(WorkflowStatus.COMPLETE, _CUTOFF) == 0
        await _assert_kept(provider, *at_cutoff)
        later = _CUTOFF + timedelta(microseconds=1)
        assert await provider.purge_workflows(WorkflowStatus.COMPLETE, later) == 1
        await _assert_gone(provider, *at_cutoff)

    @requires(Capability.PURGE)
    async def test_purge_with_nothing_to_delete_returns_zero(
        self, provider: PersistenceProvider
    ) -> None:
        """purge on a store with no matching instance returns 0."""
        assert await provider.purge_workflows(WorkflowStatus.COMPLETE, _CUTOFF) == 0
        recent = await _finished(provider, WorkflowStatus.COMPLETE, _RECENT)
        assert await provider.purge_workflows(WorkflowStatus.COMPLETE, _CUTOFF) == 0
        await _assert_kept(provider, *recent)

    @requires(Capability.PURGE)
    async def test_purge_of_unfinished_status_is_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """purge with RUNNABLE or SUSPENDED raises ValueError and deletes nothing."""
        runnable = await _finished(provider, WorkflowStatus.RUNNABLE, _OLD)
        suspended = await _finished(provider, WorkflowStatus.SUSPENDED, _OLD)
        for status in (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED):
            with pytest.raises(ValueError):  # noqa: PT011
                await provider.purge_workflows(status, _T0)
        await _assert_kept(provider, *runnable)
        await _assert_kept(provider, *suspended)

    async def test_ensure_store_exists_is_idempotent(self, provider: PersistenceProvider) -> None:
        """Calling ensure_store_exists twice more keeps the store and its data working."""
        workflow_id, _ = await _finished(provider, WorkflowStatus.RUNNABLE, None, with_extras=False)
        await provider.ensure_store_exists()
        await provider.ensure_store_exists()
        assert (await provider.get_workflow_instance(workflow_id)).id == workflow_id
        again, _ = await _finished(provider, WorkflowStatus.RUNNABLE, None, with_extras=False)
        assert (await provider.get_workflow_instance(again)).id == again

    async def test_ensure_store_exists_is_safe_concurrently(
        self, provider: PersistenceProvider
    ) -> None:
        """Three concurrent ensure_store_exists calls succeed and the store still works."""
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(provider.ensure_store_exists)
        workflow_id, _ = await _finished(provider, WorkflowStatus.RUNNABLE, None, with_extras=False)
        assert (await provider.get_workflow_instance(workflow_id)).id == workflow_id

    async def test_async_with_returns_the_provider_and_close_is_idempotent(
        self, provider: PersistenceProvider
    ) -> None:
        """``async with provider as p`` gives the provider itself; close may be repeated."""
        async with provider as entered:
            assert entered is provider
            workflow_id, _ = await _finished(
                provider, WorkflowStatus.RUNNABLE, None, with_extras=False
            )
            assert (await entered.get_workflow_instance(workflow_id)).id == workflow_id
        await provider.close()
        await provider.close()
