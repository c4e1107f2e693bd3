"""Conformance suite for what a store gives back: every instance and pointer field,
typed data, times and order round-trip exactly (``WorkflowRoundTripTests``, part of
:class:`~wfe_conformance.workflows.WorkflowRepositoryTests`).
"""

from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal

from wfe_core.models import (
    ExecutionPointer,
    PointerStatus,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.sample import (
    BASE_TIME,
    PRECISE_AMOUNT_TEXT,
    SampleLine,
    SampleOrder,
    SamplePriority,
    SampleProgress,
    assert_aware_utc,
    assert_same,
    create_sample,
    make_instance,
    make_pointer,
    sample_data,
    snapshot_at,
)

__all__ = ["WorkflowRoundTripTests"]


class WorkflowRoundTripTests(SuiteBase):
    """Every field of instances and pointers comes back as it was written."""

    # --- round trips ------------------------------------------------------------------

    async def test_every_instance_field_round_trips(self, provider: PersistenceProvider) -> None:
        """Every WorkflowInstance field (and every pointer field) comes back equal."""
        instance = await create_sample(provider)
        stored = await provider.get_workflow_instance(instance.id)
        assert_same(stored, snapshot_at(instance, 1), "instance")
        assert isinstance(stored.status, WorkflowStatus)

    async def test_typed_data_round_trips(self, provider: PersistenceProvider) -> None:
        """Workflow data keeps its types and values exactly (Decimal with 18 places too).

        Nested (frozen) dataclasses, Enum, Decimal, UUID, datetime, list, dict, optional fields.
        """
        instance = await create_sample(provider)
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
        instance = await create_sample(provider)
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
        instance = await create_sample(
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
        instance = await create_sample(
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
        assert_same(stored, snapshot_at(instance, 1), "instance")

    async def test_every_status_round_trips(self, provider: PersistenceProvider) -> None:
        """Every WorkflowStatus and PointerStatus value comes back as the same enum member."""
        pointer_statuses = list(PointerStatus)
        for status in WorkflowStatus:
            instance = await create_sample(
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
        instance = await create_sample(provider, execution_pointers=[pointer])
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
        instance = await create_sample(provider, execution_pointers=[nones, empties, falsy])
        got = (await provider.get_workflow_instance(instance.id)).execution_pointers
        for n, want in enumerate((nones, empties, falsy)):
            assert_same(got[n], want, f"pointer[{n}]")
            for name in ("persistence_data", "event_data", "context_item", "outcome"):
                value, wanted = getattr(got[n], name), getattr(want, name)
                assert type(value) is type(wanted), f"pointer[{n}].{name}: {value!r}"

    async def test_pointer_order_preserved(self, provider: PersistenceProvider) -> None:
        """Pointers come back in creation order, whatever their ids."""
        ids = [f"{c}-{new_id()}" for c in "mzaqb"] + [new_id() for _ in range(7)]
        instance = await create_sample(
            provider, execution_pointers=[make_pointer(id=i, step_id=n) for n, i in enumerate(ids)]
        )
        stored = await provider.get_workflow_instance(instance.id)
        assert [p.id for p in stored.execution_pointers] == ids

    async def test_children_and_scope_order_preserved(self, provider: PersistenceProvider) -> None:
        """children keep spawn order and scope keeps innermost-first order."""
        children = [f"z-{new_id()}", f"a-{new_id()}", f"m-{new_id()}", f"a-{new_id()}"]
        scope = [f"y-{new_id()}", f"b-{new_id()}", f"x-{new_id()}"]
        pointer = make_pointer(children=children, scope=scope)
        instance = await create_sample(provider, execution_pointers=[pointer])
        got = (await provider.get_workflow_instance(instance.id)).execution_pointers[0]
        assert got.children == children
        assert got.scope == scope
