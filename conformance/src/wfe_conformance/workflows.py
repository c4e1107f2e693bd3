"""Conformance suite for :class:`~wfe_core.persistence.WorkflowRepository`."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from wfe_core.errors import (
    ConcurrencyError,
    SerializationError,
    SubscriptionNotFound,
    WorkflowNotFound,
)
from wfe_core.models import (
    ExecutionPointer,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.sample import (
    BASE_TIME,
    FAR_FUTURE,
    FAR_PAST,
    PRECISE_AMOUNT_TEXT,
    SampleLine,
    SampleOrder,
    SamplePriority,
    SampleProgress,
    assert_aware_utc,
    assert_refused_as_naive,
    assert_same,
    make_instance,
    make_pointer,
    make_subscription,
    sample_data,
)

__all__ = ["WorkflowRepositoryTests"]


def _expected(instance: WorkflowInstance, revision: int) -> WorkflowInstance:
    """A snapshot of ``instance`` as the store should hold it at ``revision``."""
    snapshot = copy.deepcopy(instance)
    snapshot.revision = revision
    return snapshot


async def _create(provider: PersistenceProvider, **overrides: Any) -> WorkflowInstance:
    """Create a full sample instance and return the caller's object (id written back)."""
    instance = make_instance(**overrides)
    await provider.create_workflow(instance)
    return instance


class WorkflowRepositoryTests(SuiteBase):
    """Workflow instances and execution pointers: create, persist, load, list, query."""

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
        assert_same(stored, _expected(first, 1), "stored")

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

    # --- round trips ------------------------------------------------------------------

    async def test_every_instance_field_round_trips(self, provider: PersistenceProvider) -> None:
        """Every WorkflowInstance field (and every pointer field) comes back equal."""
        instance = await _create(provider)
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored, _expected(instance, 1), "instance")
        assert isinstance(stored.status, WorkflowStatus)

    async def test_typed_data_round_trips(self, provider: PersistenceProvider) -> None:
        """Workflow data keeps its types and values exactly (Decimal with 18 places too).

        Nested (frozen) dataclasses, Enum, Decimal, UUID, datetime, list, dict, optional fields.
        """
        instance = await _create(provider)
        data = (await provider.get_workflow_instance(instance.id)).data
        assert isinstance(data, SampleOrder)
        assert data == sample_data()
        assert isinstance(data.priority, SamplePriority)
        assert isinstance(data.lines[0], SampleLine)
        assert isinstance(data.total, Decimal)
        assert str(data.total) == PRECISE_AMOUNT_TEXT
        assert [str(line.unit_price) for line in data.lines] == [
            str(line.unit_price) for line in sample_data().lines
        ]
        assert data.delivered_at is None
        assert data.note == "fragile"
        assert_aware_utc(data.placed_at, "data.placed_at")
        assert data.placed_at == BASE_TIME

    async def test_plain_and_empty_data_round_trip(self, provider: PersistenceProvider) -> None:
        """None, {} , [] , 0, "" and a dict of primitives come back as given, not mixed up."""
        values: list[object] = [
            None,
            {},
            [],
            0,
            "",
            False,
            {"a": [1, 2.5, "x", None, True], "b": {"c": {}}},
        ]
        ids = []
        for value in values:
            ids.append(await provider.create_workflow(make_instance(data=value)))
        for wid, value in zip(ids, values, strict=True):
            got = (await provider.get_workflow_instance(wid)).data
            assert (got, type(got)) == (value, type(value)), f"{value!r} came back as {got!r}"

    async def test_datetimes_come_back_aware_utc(self, provider: PersistenceProvider) -> None:
        """Every time field of an instance and its pointers comes back aware, UTC and equal."""
        instance = await _create(provider)
        stored = await provider.get_workflow_instance(instance.id)
        for name in ("create_time", "next_execution", "complete_time"):
            assert_aware_utc(getattr(stored, name), name)
            assert getattr(stored, name) == getattr(instance, name)
        for n, pointer in enumerate(stored.execution_pointers):
            for name in ("sleep_until", "start_time", "end_time"):
                assert_aware_utc(getattr(pointer, name), f"pointer[{n}].{name}")
                assert getattr(pointer, name) == getattr(instance.execution_pointers[n], name)

    async def test_non_utc_times_are_stored_as_the_same_instant(
        self, provider: PersistenceProvider
    ) -> None:
        """An aware non-UTC time is stored as the same instant and comes back at UTC."""
        plus_five = timezone(timedelta(hours=5, minutes=30))
        local = BASE_TIME.astimezone(plus_five)
        instance = await _create(
            provider,
            status=WorkflowStatus.RUNNABLE,
            next_execution=local,
            create_time=local,
        )
        stored = await provider.get_workflow_instance(instance.id)
        assert stored.next_execution == BASE_TIME
        assert stored.create_time == BASE_TIME
        assert_aware_utc(stored.next_execution, "next_execution")
        assert_aware_utc(stored.create_time, "create_time")
        assert await provider.get_runnable_instances(BASE_TIME) == [instance.id]

    async def test_optional_fields_none_round_trip(self, provider: PersistenceProvider) -> None:
        """description, reference, next_execution and complete_time may be None."""
        instance = await _create(
            provider,
            description=None,
            reference=None,
            next_execution=None,
            complete_time=None,
            data=None,
        )
        stored = await provider.get_workflow_instance(instance.id)
        assert stored.description is None
        assert stored.reference is None
        assert stored.next_execution is None
        assert stored.complete_time is None
        assert stored.data is None
        assert_same(stored, _expected(instance, 1), "instance")

    async def test_every_status_round_trips(self, provider: PersistenceProvider) -> None:
        """Every WorkflowStatus and PointerStatus value comes back as the same enum member."""
        pointer_statuses = list(PointerStatus)
        for status in WorkflowStatus:
            instance = await _create(
                provider,
                status=status,
                execution_pointers=[make_pointer(status=s) for s in pointer_statuses],
            )
            stored = await provider.get_workflow_instance(instance.id)
            assert stored.status is status
            assert [p.status for p in stored.execution_pointers] == pointer_statuses
            assert all(isinstance(p.status, PointerStatus) for p in stored.execution_pointers)

    async def test_every_pointer_field_round_trips(self, provider: PersistenceProvider) -> None:
        """Every ExecutionPointer field, each set to a non-default value, comes back equal.

        persistence_data, event_data and context_item keep their types; extension_attributes
        keep nested values.
        """
        pointer = make_pointer()
        instance = await _create(provider, execution_pointers=[pointer])
        stored = (await provider.get_workflow_instance(instance.id)).execution_pointers
        assert len(stored) == 1
        got = stored[0]
        assert_same(got, pointer, "pointer")
        assert isinstance(got.persistence_data, SampleProgress)
        assert str(got.persistence_data.cursor) == "0.123456789012345678"
        assert isinstance(got.event_data, SampleProgress)
        assert got.context_item["item"] is SamplePriority.URGENT
        assert str(got.context_item["price"]) == PRECISE_AMOUNT_TEXT
        assert got.extension_attributes["attempts"][2] == {
            "nested": {"deep": [None, True, 1.5, "x"]}
        }
        assert got.extension_attributes["owner"]["since"] == BASE_TIME
        assert got.outcome == "approved"
        assert got.retry_count == 4
        assert got.active is False
        assert got.event_published is True

    async def test_pointer_none_and_empty_values_stay_distinct(
        self, provider: PersistenceProvider
    ) -> None:
        """A pointer's None fields stay None and its empty/falsy values stay empty, not None."""
        nones = ExecutionPointer(id=new_id())
        empties = make_pointer(
            step_name="",
            sleep_until=None,
            persistence_data={},
            event_name="",
            event_key="",
            event_data=[],
            children=[],
            context_item=0,
            predecessor_id=None,
            outcome="",
            scope=[],
            extension_attributes={},
            retry_count=0,
        )
        falsy = make_pointer(persistence_data=0, event_data="", context_item=False, outcome=0)
        instance = await _create(provider, execution_pointers=[nones, empties, falsy])
        got = (await provider.get_workflow_instance(instance.id)).execution_pointers
        for n, want in enumerate((nones, empties, falsy)):
            assert_same(got[n], want, f"pointer[{n}]")
            for name in ("persistence_data", "event_data", "context_item", "outcome"):
                value, wanted = getattr(got[n], name), getattr(want, name)
                assert type(value) is type(wanted), f"pointer[{n}].{name}: {value!r}"

    async def test_pointer_order_preserved(self, provider: PersistenceProvider) -> None:
        """Pointers come back in creation order, whatever their ids."""
        ids = [f"{c}-{new_id()}" for c in "mzaqb"] + [new_id() for _ in range(7)]
        instance = await _create(
            provider, execution_pointers=[make_pointer(id=i, step_id=n) for n, i in enumerate(ids)]
        )
        stored = await provider.get_workflow_instance(instance.id)
        assert [p.id for p in stored.execution_pointers] == ids

    async def test_children_and_scope_order_preserved(self, provider: PersistenceProvider) -> None:
        """children keep spawn order and scope keeps innermost-first order."""
        children = [f"z-{new_id()}", f"a-{new_id()}", f"m-{new_id()}", f"a-{new_id()}"]
        scope = [f"y-{new_id()}", f"b-{new_id()}", f"x-{new_id()}"]
        pointer = make_pointer(children=children, scope=scope)
        instance = await _create(provider, execution_pointers=[pointer])
        got = (await provider.get_workflow_instance(instance.id)).execution_pointers[0]
        assert got.children == children
        assert got.scope == scope

    # --- persist ----------------------------------------------------------------------

    async def test_persist_updates_header_and_data(self, provider: PersistenceProvider) -> None:
        """persist_workflow saves every header field and the data."""
        instance = await _create(provider)
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
        assert_same(stored, _expected(loaded, 2), "instance")

    async def test_persist_saves_changed_and_new_pointers(
        self, provider: PersistenceProvider
    ) -> None:
        """persist_workflow saves changed pointers, appends new ones and keeps the rest."""
        instance = await _create(provider, pointers=3)
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
        assert_same(stored, _expected(loaded, 2), "instance")
        assert [p.id for p in stored.execution_pointers] == [
            *(p.id for p in instance.execution_pointers),
            *(p.id for p in added),
        ]

    async def test_persist_saves_pointer_changed_in_place_after_mark_changed(
        self, provider: PersistenceProvider
    ) -> None:
        """A pointer whose containers were mutated in place is saved after mark_changed()."""
        instance = await _create(provider, pointers=2)
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
        instance = await _create(provider, pointers=4)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "header only"
        await provider.persist_workflow(loaded)
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored.execution_pointers, instance.execution_pointers, "pointers")

    async def test_pointer_removed_from_list_is_not_deleted(
        self, provider: PersistenceProvider
    ) -> None:
        """Pointers are append-only: dropping one from the list does not delete it."""
        instance = await _create(provider, pointers=3)
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
        instance = await _create(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        assert loaded.revision == 1
        for expected in (2, 3, 4):
            loaded.description = f"rev {expected}"
            await provider.persist_workflow(loaded)
            assert loaded.revision == expected
            assert (await provider.get_workflow_instance(instance.id)).revision == expected

    async def test_persist_marks_instance_persisted(self, provider: PersistenceProvider) -> None:
        """After a successful persist the instance has no pending pointer changes."""
        instance = await _create(provider)
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
        instance = await _create(provider, pointers=2)
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
        assert_same(stored, _expected(winner, 2), "instance")
        for sub in subscriptions:
            with pytest.raises(SubscriptionNotFound):
                await provider.get_subscription(sub.id)
            assert await provider.get_subscriptions(sub.event_name, sub.event_key, FAR_FUTURE) == []

    async def test_concurrent_persists_of_one_revision_exactly_one_wins(
        self, provider: PersistenceProvider
    ) -> None:
        """Of ten concurrent persists from the same revision exactly one succeeds."""
        instance = await _create(provider)
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
        instance = await _create(provider, status=WorkflowStatus.RUNNABLE)
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
        instance = await _create(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "should not be saved"
        good = make_subscription(id=new_id(), workflow_id=instance.id)
        bad = make_subscription(id=new_id(), workflow_id=instance.id, subscription_data=object())
        with pytest.raises(SerializationError):
            await provider.persist_workflow(loaded, [good, bad])
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored, _expected(instance, 1), "instance")
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

        instance = await _create(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "should not be saved"
        loaded.execution_pointers[0].persistence_data = {"lock": asyncio.Lock()}
        with pytest.raises(SerializationError):
            await provider.persist_workflow(loaded)
        assert loaded.revision == 1
        assert_same(
            await provider.get_workflow_instance(instance.id), _expected(instance, 1), "instance"
        )

    # --- copies -----------------------------------------------------------------------

    async def test_returned_instance_is_a_copy(self, provider: PersistenceProvider) -> None:
        """Mutating a loaded instance, its data or its pointers does not change the store."""
        instance = await _create(provider)
        expected = _expected(instance, 1)
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
        expected = _expected(instance, 1)
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
        instance = await _create(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.description = "persisted"
        loaded.execution_pointers[0].retry_count = 5
        await provider.persist_workflow(loaded)
        expected = _expected(loaded, 2)
        loaded.description = "after persist"
        assert isinstance(loaded.data, SampleOrder)
        loaded.data.lines.clear()
        loaded.execution_pointers[0].children.clear()
        loaded.execution_pointers[1].extension_attributes["flag"] = True
        assert_same(await provider.get_workflow_instance(instance.id), expected, "stored")

    # --- load -------------------------------------------------------------------------

    async def test_loaded_instance_has_no_pending_changes(
        self, provider: PersistenceProvider
    ) -> None:
        """An instance returned by the store reports no changed pointers."""
        instance = await _create(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        assert loaded.changed_pointers() == []
        (listed,) = await provider.get_workflow_instances([instance.id])
        assert listed.changed_pointers() == []
        (queried,) = await provider.query_workflows(reference=instance.reference)
        assert queried.changed_pointers() == []
        loaded.execution_pointers[1].active = True
        assert loaded.changed_pointers() == [loaded.execution_pointers[1]]

    async def test_get_unknown_workflow_raises_workflow_not_found(
        self, provider: PersistenceProvider
    ) -> None:
        """get_workflow_instance of an unknown id raises WorkflowNotFound."""
        await _create(provider)
        with pytest.raises(WorkflowNotFound):
            await provider.get_workflow_instance(f"unknown-{new_id()}")
        with pytest.raises(WorkflowNotFound):
            await provider.get_workflow_instance("")

    async def test_get_workflow_instances_skips_unknown_and_keeps_order(
        self, provider: PersistenceProvider
    ) -> None:
        """get_workflow_instances returns the known ids in the order asked, skipping unknown."""
        created = [await _create(provider, pointers=2) for _ in range(4)]
        ids = [created[2].id, "missing-1", created[0].id, created[3].id, "missing-2"]
        got = await provider.get_workflow_instances(iter(ids))
        assert [i.id for i in got] == [created[2].id, created[0].id, created[3].id]
        assert_same(got[1], _expected(created[0], 1), "instance")
        assert await provider.get_workflow_instances([]) == []
        assert await provider.get_workflow_instances(["missing"]) == []

    # --- runnable ---------------------------------------------------------------------

    async def test_runnable_instances_only_runnable_status(
        self, provider: PersistenceProvider
    ) -> None:
        """get_runnable_instances lists RUNNABLE instances only, however due the others are."""
        due = BASE_TIME - timedelta(hours=1)
        by_status = {
            status: (await _create(provider, status=status, next_execution=due)).id
            for status in WorkflowStatus
        }
        assert await provider.get_runnable_instances(BASE_TIME) == [
            by_status[WorkflowStatus.RUNNABLE]
        ]

    async def test_runnable_instances_boundary_inclusive(
        self, provider: PersistenceProvider
    ) -> None:
        """next_execution == as_at is due; one microsecond later is not."""
        on_time = await _create(provider, status=WorkflowStatus.RUNNABLE, next_execution=BASE_TIME)
        later = await _create(
            provider,
            status=WorkflowStatus.RUNNABLE,
            next_execution=BASE_TIME + timedelta(microseconds=1),
        )
        assert await provider.get_runnable_instances(BASE_TIME) == [on_time.id]
        assert await provider.get_runnable_instances(BASE_TIME - timedelta(microseconds=1)) == []
        assert await provider.get_runnable_instances(BASE_TIME + timedelta(microseconds=1)) == [
            on_time.id,
            later.id,
        ]

    async def test_runnable_instances_exclude_no_next_execution(
        self, provider: PersistenceProvider
    ) -> None:
        """A RUNNABLE instance with next_execution None is never listed as runnable."""
        await _create(provider, status=WorkflowStatus.RUNNABLE, next_execution=None)
        due = await _create(provider, status=WorkflowStatus.RUNNABLE, next_execution=BASE_TIME)
        assert await provider.get_runnable_instances(FAR_FUTURE) == [due.id]

    async def test_runnable_instances_earliest_first_with_limit(
        self, provider: PersistenceProvider
    ) -> None:
        """Runnable ids come earliest next_execution first, and at most `limit` of them."""
        offsets = [5, 1, 4, 2, 3, 0]
        created = {
            off: (
                await _create(
                    provider,
                    status=WorkflowStatus.RUNNABLE,
                    next_execution=BASE_TIME - timedelta(minutes=10 - off),
                )
            ).id
            for off in offsets
        }
        in_order = [created[off] for off in sorted(offsets)]
        assert await provider.get_runnable_instances(BASE_TIME) == in_order
        assert await provider.get_runnable_instances(BASE_TIME, limit=2) == in_order[:2]
        assert await provider.get_runnable_instances(BASE_TIME, 1) == in_order[:1]

    async def test_runnable_instances_follow_persisted_changes(
        self, provider: PersistenceProvider
    ) -> None:
        """Persisting a new status or next_execution changes what get_runnable_instances lists."""
        instance = await _create(provider, status=WorkflowStatus.RUNNABLE, next_execution=None)
        assert await provider.get_runnable_instances(FAR_FUTURE) == []
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.next_execution = BASE_TIME
        await provider.persist_workflow(loaded)
        assert await provider.get_runnable_instances(BASE_TIME) == [instance.id]
        loaded.status = WorkflowStatus.COMPLETE
        await provider.persist_workflow(loaded)
        assert await provider.get_runnable_instances(FAR_FUTURE) == []

    # --- query ------------------------------------------------------------------------

    async def test_query_by_status(self, provider: PersistenceProvider) -> None:
        """query_workflows(status=...) returns exactly the instances in that status."""
        made: dict[WorkflowStatus, list[str]] = {s: [] for s in WorkflowStatus}
        for n in range(8):
            status = list(WorkflowStatus)[n % 4]
            inst = await _create(provider, status=status, create_time=BASE_TIME + timedelta(n))
            made[status].append(inst.id)
        for status, ids in made.items():
            got = await provider.query_workflows(status=status)
            assert [i.id for i in got] == ids, status
            assert all(i.status is status for i in got)

    async def test_query_by_definition_id(self, provider: PersistenceProvider) -> None:
        """query_workflows(definition_id=) matches exactly and returns complete instances."""
        wanted = "orders_v1"
        mine = [
            await _create(provider, workflow_definition_id=wanted, create_time=BASE_TIME),
            await _create(
                provider,
                workflow_definition_id=wanted,
                create_time=BASE_TIME + timedelta(seconds=1),
            ),
        ]
        for decoy in ("ordersXv1", "orders_v10", "Orders_v1", "orders"):
            await _create(provider, workflow_definition_id=decoy)
        got = await provider.query_workflows(definition_id=wanted)
        assert [i.id for i in got] == [i.id for i in mine]
        for n, instance in enumerate(mine):
            assert_same(got[n], _expected(instance, 1), f"result[{n}]")

    async def test_query_by_reference(self, provider: PersistenceProvider) -> None:
        """query_workflows(reference=...) matches the reference exactly."""
        ref = f"invoice_{new_id()}"
        hit = await _create(provider, reference=ref)
        await _create(provider, reference=ref + "x")
        await _create(provider, reference=ref.upper())
        await _create(provider, reference=None)
        assert [i.id for i in await provider.query_workflows(reference=ref)] == [hit.id]

    async def test_query_by_creation_time_range(self, provider: PersistenceProvider) -> None:
        """created_from is inclusive and created_to exclusive."""
        times = [BASE_TIME + timedelta(seconds=s) for s in (0, 10, 20, 30)]
        ids = [(await _create(provider, create_time=t)).id for t in times]
        got = await provider.query_workflows(created_from=times[1], created_to=times[3])
        assert [i.id for i in got] == ids[1:3]
        got = await provider.query_workflows(created_from=times[2])
        assert [i.id for i in got] == ids[2:]
        got = await provider.query_workflows(created_to=times[1])
        assert [i.id for i in got] == ids[:1]
        assert await provider.query_workflows(created_from=times[1], created_to=times[1]) == []

    async def test_query_combines_filters(self, provider: PersistenceProvider) -> None:
        """Every filter given must match (they combine with AND)."""
        definition = f"def-{new_id()}"
        hit = await _create(
            provider,
            workflow_definition_id=definition,
            status=WorkflowStatus.RUNNABLE,
            reference="r1",
            create_time=BASE_TIME,
        )
        await _create(provider, workflow_definition_id=definition, reference="r1")
        await _create(provider, status=WorkflowStatus.RUNNABLE, reference="r1")
        await _create(
            provider,
            workflow_definition_id=definition,
            status=WorkflowStatus.RUNNABLE,
            reference="r2",
        )
        await _create(
            provider,
            workflow_definition_id=definition,
            status=WorkflowStatus.RUNNABLE,
            reference="r1",
            create_time=BASE_TIME + timedelta(hours=1),
        )
        got = await provider.query_workflows(
            status=WorkflowStatus.RUNNABLE,
            definition_id=definition,
            reference="r1",
            created_from=BASE_TIME,
            created_to=BASE_TIME + timedelta(minutes=1),
        )
        assert [i.id for i in got] == [hit.id]

    async def test_query_paging_is_stable(self, provider: PersistenceProvider) -> None:
        """query_workflows orders by create_time then id; skip/take pages without gaps."""
        tie = BASE_TIME + timedelta(seconds=3)
        specs = [
            (f"c-{new_id()}", BASE_TIME + timedelta(seconds=5)),
            (f"b-{new_id()}", tie),
            (f"e-{new_id()}", BASE_TIME),
            (f"a-{new_id()}", tie),
            (f"d-{new_id()}", BASE_TIME + timedelta(seconds=1)),
            (f"f-{new_id()}", BASE_TIME + timedelta(seconds=9)),
            (f"g-{new_id()}", tie),
        ]
        for wid, created in specs:
            await _create(provider, id=wid, create_time=created, pointers=1)
        expected = [wid for wid, _ in sorted(specs, key=lambda s: (s[1], s[0]))]
        assert [i.id for i in await provider.query_workflows()] == expected
        pages = [
            [i.id for i in await provider.query_workflows(skip=skip, take=3)]
            for skip in (0, 3, 6, 9)
        ]
        assert pages == [expected[0:3], expected[3:6], expected[6:], []]
        assert [i.id for i in await provider.query_workflows(skip=2, take=2)] == expected[2:4]
        assert await provider.query_workflows(take=0) == []

    async def test_query_newest_first_orders_ties_by_id_descending(
        self, provider: PersistenceProvider
    ) -> None:
        """newest_first lists newest create_time first, ties by id descending; the
        default order is unchanged (oldest first)."""
        tie = BASE_TIME + timedelta(seconds=3)
        specs = [
            (f"b-{new_id()}", tie),
            (f"e-{new_id()}", BASE_TIME),
            (f"a-{new_id()}", tie),
            (f"f-{new_id()}", BASE_TIME + timedelta(seconds=9)),
            (f"c-{new_id()}", tie),
        ]
        for wid, created in specs:
            await _create(provider, id=wid, create_time=created, pointers=1)
        oldest = [wid for wid, _ in sorted(specs, key=lambda s: (s[1], s[0]))]
        newest = [wid for wid, _ in sorted(specs, key=lambda s: (s[1], s[0]), reverse=True)]
        assert [i.id for i in await provider.query_workflows(newest_first=True)] == newest
        assert [i.id for i in await provider.query_workflows(newest_first=False)] == oldest
        assert [i.id for i in await provider.query_workflows()] == oldest
        got = await provider.query_workflows(
            created_to=BASE_TIME + timedelta(seconds=9), newest_first=True
        )
        assert [i.id for i in got] == newest[1:]

    async def test_query_newest_first_paging(self, provider: PersistenceProvider) -> None:
        """skip/take page the newest-first order without gaps or repeats."""
        tie = BASE_TIME + timedelta(seconds=2)
        specs = [
            (f"{letter}-{new_id()}", tie if letter in "bdf" else BASE_TIME + timedelta(n))
            for n, letter in enumerate("abcdefg")
        ]
        for wid, created in specs:
            await _create(provider, id=wid, create_time=created, pointers=1)
        newest = [wid for wid, _ in sorted(specs, key=lambda s: (s[1], s[0]), reverse=True)]
        pages = [
            [i.id for i in await provider.query_workflows(skip=skip, take=3, newest_first=True)]
            for skip in (0, 3, 6, 9)
        ]
        assert pages == [newest[0:3], newest[3:6], newest[6:], []]
        got = await provider.query_workflows(skip=2, take=2, newest_first=True)
        assert [i.id for i in got] == newest[2:4]
        assert await provider.query_workflows(take=0, newest_first=True) == []

    async def test_count_workflows_matches_each_filter(self, provider: PersistenceProvider) -> None:
        """count_workflows takes the filters of query_workflows, alone and combined, and
        counts what an unpaged query returns."""
        assert await provider.count_workflows() == 0
        definitions = [f"def-{new_id()}", f"def-{new_id()}"]
        for n in range(12):
            await _create(
                provider,
                status=list(WorkflowStatus)[n % 4],
                workflow_definition_id=definitions[n % 2],
                reference=f"ref-{n % 3}",
                create_time=BASE_TIME + timedelta(seconds=n),
                pointers=1,
            )
        middle = (BASE_TIME + timedelta(seconds=3), BASE_TIME + timedelta(seconds=9))
        cases: list[tuple[dict[str, Any], int]] = [
            ({}, 12),
            ({"status": WorkflowStatus.RUNNABLE}, 3),
            ({"definition_id": definitions[1]}, 6),
            ({"definition_id": "no-such-definition"}, 0),
            ({"reference": "ref-2"}, 4),
            ({"created_from": middle[0]}, 9),
            ({"created_to": middle[1]}, 9),
            ({"created_from": middle[0], "created_to": middle[1]}, 6),
            ({"status": WorkflowStatus.COMPLETE, "definition_id": definitions[0]}, 3),
            ({"definition_id": definitions[0], "reference": "ref-0"}, 2),
            (
                {
                    "status": WorkflowStatus.RUNNABLE,
                    "definition_id": definitions[0],
                    "reference": "ref-0",
                    "created_from": middle[0],
                    "created_to": middle[1],
                },
                0,
            ),
            (
                {
                    "definition_id": definitions[0],
                    "reference": "ref-0",
                    "created_from": middle[0],
                    "created_to": middle[1],
                },
                1,
            ),
        ]
        for filters, wanted in cases:
            unpaged = await provider.query_workflows(**filters, take=100)
            assert len(unpaged) == wanted, filters
            assert await provider.count_workflows(**filters) == wanted, filters
        assert await provider.count_workflows(definition_id="x" * 401) == 0
        assert await provider.count_workflows(reference="x" * 401) == 0
        naive = datetime(2024, 1, 1, 12, 0)
        await assert_refused_as_naive(
            provider.count_workflows(created_from=naive), "count_workflows(created_from)"
        )
        await assert_refused_as_naive(
            provider.count_workflows(created_to=naive), "count_workflows(created_to)"
        )

    # --- naive datetimes --------------------------------------------------------------

    async def test_workflow_naive_datetime_arguments_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """Naive datetimes passed to the workflow queries raise ValueError."""
        naive = datetime(2024, 1, 1, 12, 0)
        await assert_refused_as_naive(
            provider.get_runnable_instances(naive), "get_runnable_instances"
        )
        await assert_refused_as_naive(
            provider.query_workflows(created_from=naive), "query_workflows(created_from)"
        )
        await assert_refused_as_naive(
            provider.query_workflows(created_to=naive), "query_workflows(created_to)"
        )

    async def test_workflow_naive_datetime_fields_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """Naive datetimes in an instance or its pointers raise ValueError and write nothing."""
        naive = datetime(2024, 1, 1, 12, 0)
        for bad in (
            make_instance(id=new_id(), create_time=naive),
            make_instance(id=new_id(), next_execution=naive),
            make_instance(id=new_id(), execution_pointers=[make_pointer(sleep_until=naive)]),
        ):
            await assert_refused_as_naive(provider.create_workflow(bad), "create_workflow")
            with pytest.raises(WorkflowNotFound):
                await provider.get_workflow_instance(bad.id)
        instance = await _create(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.complete_time = naive
        await assert_refused_as_naive(provider.persist_workflow(loaded), "persist_workflow")
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.execution_pointers[0].end_time = naive
        await assert_refused_as_naive(provider.persist_workflow(loaded), "persist_workflow")
        assert_same(
            await provider.get_workflow_instance(instance.id), _expected(instance, 1), "stored"
        )
