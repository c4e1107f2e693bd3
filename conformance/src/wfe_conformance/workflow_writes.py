"""Conformance suite for writing workflow instances: create, persist (revisions,
pointers, subscriptions, refused writes) and the copies a store hands out
(``WorkflowWriteTests``, part of :class:`~wfe_conformance.workflows.WorkflowRepositoryTests`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from wfe_core.errors import (
    ConcurrencyError,
    SerializationError,
    SubscriptionNotFound,
    WorkflowNotFound,
)
from wfe_core.models import (
    PointerStatus,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.sample import (
    BASE_TIME,
    FAR_FUTURE,
    FAR_PAST,
    SampleLine,
    SampleOrder,
    SamplePriority,
    SampleProgress,
    assert_same,
    create_sample,
    make_instance,
    make_pointer,
    make_subscription,
    sample_data,
    snapshot_at,
)

__all__ = ["WorkflowWriteTests"]


class WorkflowWriteTests(SuiteBase):
    """Creating and persisting instances and pointers; stored state is never shared."""

    # --- canary -----------------------------------------------------------------------

    async def test_store_starts_empty(self, provider: PersistenceProvider) -> None:
        """A fresh provider holds no instances, events or subscriptions."""
        assert await provider.get_runnable_instances(FAR_FUTURE) == []
        assert await provider.get_runnable_events(FAR_FUTURE) == []
        assert await provider.query_workflows() == []
        assert await provider.get_subscriptions("probe", "probe", FAR_FUTURE) == []
        assert await provider.get_first_open_subscription("probe", "probe", FAR_FUTURE) is None
        assert await provider.get_events("probe", "probe", FAR_PAST) == []

    # --- create -----------------------------------------------------------------------

    async def test_create_workflow_assigns_id_when_empty(
        self, provider: PersistenceProvider
    ) -> None:
        """create_workflow with an empty id assigns a new one, returns it and writes it back."""
        first = make_instance(id="")
        second = make_instance(id="")
        first_id = await provider.create_workflow(first)
        second_id = await provider.create_workflow(second)
        assert isinstance(first_id, str)
        assert first_id
        assert first.id == first_id
        assert second.id == second_id
        assert first_id != second_id
        assert (await provider.get_workflow_instance(first_id)).id == first_id

    async def test_create_workflow_keeps_given_id(self, provider: PersistenceProvider) -> None:
        """create_workflow keeps an id the caller gave."""
        given = f"my-own-id-{new_id()}"
        instance = make_instance(id=given)
        assert await provider.create_workflow(instance) == given
        assert instance.id == given
        assert (await provider.get_workflow_instance(given)).id == given

    async def test_create_workflow_duplicate_id_raises_concurrency_error(
        self, provider: PersistenceProvider
    ) -> None:
        """Creating an id that already exists raises ConcurrencyError and keeps the first."""
        wid = new_id()
        first = make_instance(id=wid, description="first")
        await provider.create_workflow(first)
        with pytest.raises(ConcurrencyError):
            await provider.create_workflow(make_instance(id=wid, description="second"))
        stored = await provider.get_workflow_instance(wid)
        assert_same(stored, snapshot_at(first, 1), "stored")

    async def test_create_workflow_sets_revision_one(self, provider: PersistenceProvider) -> None:
        """create_workflow stores revision 1 and writes it back to the object."""
        instance = make_instance(revision=41)
        await provider.create_workflow(instance)
        assert (await provider.get_workflow_instance(instance.id)).revision == 1
        assert instance.revision == 1

    async def test_concurrent_create_workflow_ids_distinct(
        self, provider: PersistenceProvider
    ) -> None:
        """Thirty concurrent create_workflow calls yield thirty distinct, loadable ids."""
        instances = [make_instance(pointers=1) for _ in range(30)]
        ids = await asyncio.gather(*(provider.create_workflow(i) for i in instances))
        assert len(set(ids)) == 30
        loaded = await provider.get_workflow_instances(ids)
        assert [i.id for i in loaded] == list(ids)

    # --- persist ----------------------------------------------------------------------

    async def test_persist_updates_header_and_data(self, provider: PersistenceProvider) -> None:
        """persist_workflow saves every header field and the data."""
        instance = await create_sample(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.workflow_definition_id = f"other-{new_id()}"
        loaded.version = 9
        loaded.description = "changed"
        loaded.reference = None
        loaded.status = WorkflowStatus.COMPLETE
        loaded.next_execution = None
        loaded.complete_time = BASE_TIME + timedelta(days=3, microseconds=1)
        loaded.create_time = BASE_TIME - timedelta(days=2)
        loaded.data = SampleOrder(
            order_id=sample_data().order_id,
            customer=sample_data().customer,
            priority=SamplePriority.LOW,
            total=Decimal("0.000000000000000002"),
            placed_at=BASE_TIME,
        )
        await provider.persist_workflow(loaded)
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored, snapshot_at(loaded, 2), "instance")

    async def test_persist_saves_changed_and_new_pointers(
        self, provider: PersistenceProvider
    ) -> None:
        """persist_workflow saves changed pointers, appends new ones and keeps the rest."""
        instance = await create_sample(provider, pointers=3)
        loaded = await provider.get_workflow_instance(instance.id)
        first = loaded.execution_pointers[1]
        first.status = PointerStatus.COMPLETE
        first.end_time = BASE_TIME + timedelta(minutes=9)
        first.persistence_data = SampleProgress(attempt=5, cursor=Decimal("1.5"))
        first.outcome = {"route": SamplePriority.LOW}
        added = [make_pointer(step_id=20), make_pointer(step_id=21)]
        loaded.execution_pointers.extend(added)
        await provider.persist_workflow(loaded)
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored, snapshot_at(loaded, 2), "instance")
        assert [p.id for p in stored.execution_pointers] == [
            *(p.id for p in instance.execution_pointers),
            *(p.id for p in added),
        ]

    async def test_persist_saves_pointer_changed_in_place_after_mark_changed(
        self, provider: PersistenceProvider
    ) -> None:
        """A pointer whose containers were mutated in place is saved after mark_changed()."""
        instance = await create_sample(provider, pointers=2)
        loaded = await provider.get_workflow_instance(instance.id)
        pointer = loaded.execution_pointers[0]
        pointer.children.append("late-child")
        pointer.scope.insert(0, "new-innermost")
        pointer.extension_attributes["owner"]["team"] = "shipping"
        assert isinstance(pointer.persistence_data, SampleProgress)
        pointer.persistence_data.seen.append(sample_data().order_id)
        pointer.mark_changed()
        await provider.persist_workflow(loaded)
        stored = (await provider.get_workflow_instance(instance.id)).execution_pointers[0]
        assert stored.children[-1] == "late-child"
        assert stored.scope[0] == "new-innermost"
        assert stored.extension_attributes["owner"]["team"] == "shipping"
        assert_same(stored, pointer, "pointer")

    async def test_persist_without_changes_keeps_pointers(
        self, provider: PersistenceProvider
    ) -> None:
        """Persisting with no changed pointers keeps every stored pointer."""
        instance = await create_sample(provider, pointers=4)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "header only"
        await provider.persist_workflow(loaded)
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored.execution_pointers, instance.execution_pointers, "pointers")

    async def test_pointer_removed_from_list_is_not_deleted(
        self, provider: PersistenceProvider
    ) -> None:
        """Pointers are append-only: dropping one from the list does not delete it."""
        instance = await create_sample(provider, pointers=3)
        loaded = await provider.get_workflow_instance(instance.id)
        del loaded.execution_pointers[1]
        loaded.execution_pointers[0].retry_count = 99
        await provider.persist_workflow(loaded)
        stored = await provider.get_workflow_instance(instance.id)
        assert [p.id for p in stored.execution_pointers] == [
            p.id for p in instance.execution_pointers
        ]
        assert stored.execution_pointers[0].retry_count == 99

    async def test_persist_bumps_revision_on_store_and_object(
        self, provider: PersistenceProvider
    ) -> None:
        """Each successful persist adds one to the stored revision and to instance.revision."""
        instance = await create_sample(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        assert loaded.revision == 1
        for expected in (2, 3, 4):
            loaded.description = f"rev {expected}"
            await provider.persist_workflow(loaded)
            assert loaded.revision == expected
            assert (await provider.get_workflow_instance(instance.id)).revision == expected

    async def test_persist_marks_instance_persisted(self, provider: PersistenceProvider) -> None:
        """After a successful persist the instance has no pending pointer changes."""
        instance = await create_sample(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.execution_pointers[0].retry_count = 1
        loaded.execution_pointers.append(make_pointer())
        assert len(loaded.changed_pointers()) == 2
        await provider.persist_workflow(loaded)
        assert loaded.changed_pointers() == []

    async def test_persist_stale_revision_raises_and_changes_nothing(
        self, provider: PersistenceProvider
    ) -> None:
        """A stale persist raises ConcurrencyError and writes nothing, subscriptions included."""
        instance = await create_sample(provider, pointers=2)
        winner = await provider.get_workflow_instance(instance.id)
        loser = await provider.get_workflow_instance(instance.id)
        winner.description = "winner"
        await provider.persist_workflow(winner)

        loser.description = "loser"
        loser.status = WorkflowStatus.TERMINATED
        loser.data = None
        loser.execution_pointers[0].status = PointerStatus.FAILED
        loser.execution_pointers.append(make_pointer())
        subscriptions = [
            make_subscription(id=new_id(), workflow_id=instance.id, event_key=f"k-{n}")
            for n in range(3)
        ]
        with pytest.raises(ConcurrencyError):
            await provider.persist_workflow(loser, subscriptions)
        assert loser.revision == 1
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored, snapshot_at(winner, 2), "instance")
        for sub in subscriptions:
            with pytest.raises(SubscriptionNotFound):
                await provider.get_subscription(sub.id)
            assert await provider.get_subscriptions(sub.event_name, sub.event_key, FAR_FUTURE) == []

    async def test_concurrent_persists_of_one_revision_exactly_one_wins(
        self, provider: PersistenceProvider
    ) -> None:
        """Of ten concurrent persists from the same revision exactly one succeeds."""
        instance = await create_sample(provider)
        copies = [await provider.get_workflow_instance(instance.id) for _ in range(10)]
        for n, c in enumerate(copies):
            c.description = f"writer {n}"
        results = await asyncio.gather(
            *(provider.persist_workflow(c) for c in copies), return_exceptions=True
        )
        winners = [n for n, r in enumerate(results) if r is None]
        assert len(winners) == 1, results
        assert all(isinstance(r, ConcurrencyError) for r in results if r is not None), results
        stored = await provider.get_workflow_instance(instance.id)
        assert stored.revision == 2
        assert stored.description == f"writer {winners[0]}"

    async def test_persist_unknown_id_raises_workflow_not_found(
        self, provider: PersistenceProvider
    ) -> None:
        """persist_workflow of an id that was never created raises WorkflowNotFound."""
        ghost = make_instance(id=f"ghost-{new_id()}", revision=1)
        subscription = make_subscription(id=new_id(), workflow_id=ghost.id)
        with pytest.raises(WorkflowNotFound):
            await provider.persist_workflow(ghost, [subscription])
        with pytest.raises(WorkflowNotFound):
            await provider.get_workflow_instance(ghost.id)
        with pytest.raises(SubscriptionNotFound):
            await provider.get_subscription(subscription.id)

    async def test_persist_creates_subscriptions_with_ids(
        self, provider: PersistenceProvider
    ) -> None:
        """persist_workflow creates every subscription passed along and writes ids back."""
        instance = await create_sample(provider, status=WorkflowStatus.RUNNABLE)
        loaded = await provider.get_workflow_instance(instance.id)
        pointer = loaded.execution_pointers[0]
        pointer.status = PointerStatus.WAITING_FOR_EVENT
        key = f"key-{new_id()}"
        subscriptions = [
            make_subscription(
                workflow_id=instance.id,
                execution_pointer_id=pointer.id,
                event_name="persisted",
                event_key=key,
                subscribe_as_of=BASE_TIME + timedelta(seconds=n),
            )
            for n in range(3)
        ]
        await provider.persist_workflow(loaded, subscriptions)
        assert all(s.id for s in subscriptions)
        assert len({s.id for s in subscriptions}) == 3
        for sub in subscriptions:
            assert_same(await provider.get_subscription(sub.id), sub, "subscription")
        listed = await provider.get_subscriptions("persisted", key, FAR_FUTURE)
        assert [s.id for s in listed] == [s.id for s in subscriptions]

    async def test_persist_with_unserializable_subscription_changes_nothing(
        self, provider: PersistenceProvider
    ) -> None:
        """An unserializable subscription fails the whole persist: nothing is written."""
        instance = await create_sample(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "should not be saved"
        good = make_subscription(id=new_id(), workflow_id=instance.id)
        bad = make_subscription(id=new_id(), workflow_id=instance.id, subscription_data=object())
        with pytest.raises(SerializationError):
            await provider.persist_workflow(loaded, [good, bad])
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored, snapshot_at(instance, 1), "instance")
        for sub in (good, bad):
            with pytest.raises(SubscriptionNotFound):
                await provider.get_subscription(sub.id)

    async def test_unserializable_data_is_refused_and_not_written(
        self, provider: PersistenceProvider
    ) -> None:
        """Unserializable data is refused (SerializationError naming the field), unwritten.

        Checked on create_workflow and on persist_workflow.
        """
        wid = f"bad-{new_id()}"
        with pytest.raises(SerializationError) as created:
            await provider.create_workflow(
                make_instance(id=wid, data={"fine": 1, "unstorable": object()})
            )
        assert "unstorable" in str(created.value)
        with pytest.raises(WorkflowNotFound):
            await provider.get_workflow_instance(wid)

        instance = await create_sample(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "should not be saved"
        loaded.execution_pointers[0].persistence_data = {"lock": asyncio.Lock()}
        with pytest.raises(SerializationError):
            await provider.persist_workflow(loaded)
        assert loaded.revision == 1
        assert_same(
            await provider.get_workflow_instance(instance.id), snapshot_at(instance, 1), "instance"
        )

    # --- copies -----------------------------------------------------------------------

    async def test_returned_instance_is_a_copy(self, provider: PersistenceProvider) -> None:
        """Mutating a loaded instance, its data or its pointers does not change the store."""
        instance = await create_sample(provider)
        expected = snapshot_at(instance, 1)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "mutated"
        loaded.revision = 77
        assert isinstance(loaded.data, SampleOrder)
        loaded.data.lines.append(SampleLine(sku="X", quantity=1, unit_price=Decimal(1)))
        loaded.data.tags["channel"] = "mutated"
        loaded.execution_pointers[0].children.append("mutated")
        loaded.execution_pointers[1].extension_attributes["owner"]["team"] = "mutated"
        loaded.execution_pointers[1].status = PointerStatus.CANCELLED
        loaded.execution_pointers.append(make_pointer())
        assert_same(await provider.get_workflow_instance(instance.id), expected, "reloaded")
        for listed in (
            await provider.get_workflow_instances([instance.id]),
            await provider.query_workflows(definition_id=instance.workflow_definition_id),
        ):
            listed[0].description = "mutated via list"
            listed[0].execution_pointers[0].children.clear()
            assert_same(await provider.get_workflow_instance(instance.id), expected, "reloaded")

    async def test_instance_changed_after_create_does_not_change_store(
        self, provider: PersistenceProvider
    ) -> None:
        """Mutating the object handed to create_workflow afterwards does not change the store."""
        instance = make_instance()
        await provider.create_workflow(instance)
        expected = snapshot_at(instance, 1)
        instance.description = "after create"
        assert isinstance(instance.data, SampleOrder)
        instance.data.counters["retries"] = 1000
        instance.execution_pointers[0].scope.append("after create")
        instance.execution_pointers[0].outcome = "after create"
        assert_same(await provider.get_workflow_instance(instance.id), expected, "stored")

    async def test_instance_changed_after_persist_does_not_change_store(
        self, provider: PersistenceProvider
    ) -> None:
        """Mutating the object handed to persist_workflow afterwards does not change the store."""
        instance = await create_sample(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "persisted"
        loaded.execution_pointers[0].retry_count = 5
        await provider.persist_workflow(loaded)
        expected = snapshot_at(loaded, 2)
        loaded.description = "after persist"
        assert isinstance(loaded.data, SampleOrder)
        loaded.data.lines.clear()
        loaded.execution_pointers[0].children.clear()
        loaded.execution_pointers[1].extension_attributes["flag"] = True
        assert_same(await provider.get_workflow_instance(instance.id), expected, "stored")
