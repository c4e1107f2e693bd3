"""Conformance suite for reading workflow instances back: loads, runnable instances,
queries, counts and paging, and naive datetimes refused (``WorkflowQueryTests``, part
of :class:`~wfe_conformance.workflows.WorkflowRepositoryTests`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from wfe_core.errors import (
    WorkflowNotFound,
)
from wfe_core.models import (
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.sample import (
    BASE_TIME,
    FAR_FUTURE,
    assert_refused_as_naive,
    assert_same,
    create_sample,
    make_instance,
    make_pointer,
    snapshot_at,
)

__all__ = ["WorkflowQueryTests"]


class WorkflowQueryTests(SuiteBase):
    """Loading, listing runnable instances, querying and counting."""

    # --- load -------------------------------------------------------------------------

    async def test_loaded_instance_has_no_pending_changes(
        self, provider: PersistenceProvider
    ) -> None:
        """An instance returned by the store reports no changed pointers."""
        instance = await create_sample(provider)
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
        await create_sample(provider)
        with pytest.raises(WorkflowNotFound):
            await provider.get_workflow_instance(f"unknown-{new_id()}")
        with pytest.raises(WorkflowNotFound):
            await provider.get_workflow_instance("")

    async def test_get_workflow_instances_skips_unknown_and_keeps_order(
        self, provider: PersistenceProvider
    ) -> None:
        """get_workflow_instances returns the known ids in the order asked, skipping unknown."""
        created = [await create_sample(provider, pointers=2) for _ in range(4)]
        ids = [created[2].id, "missing-1", created[0].id, created[3].id, "missing-2"]
        got = await provider.get_workflow_instances(iter(ids))
        assert [i.id for i in got] == [created[2].id, created[0].id, created[3].id]
        assert_same(got[1], snapshot_at(created[0], 1), "instance")
        assert await provider.get_workflow_instances([]) == []
        assert await provider.get_workflow_instances(["missing"]) == []

    # --- runnable ---------------------------------------------------------------------

    async def test_runnable_instances_only_runnable_status(
        self, provider: PersistenceProvider
    ) -> None:
        """get_runnable_instances lists RUNNABLE instances only, however due the others are."""
        due = BASE_TIME - timedelta(hours=1)
        by_status = {
            status: (await create_sample(provider, status=status, next_execution=due)).id
            for status in WorkflowStatus
        }
        assert await provider.get_runnable_instances(BASE_TIME) == [
            by_status[WorkflowStatus.RUNNABLE]
        ]

    async def test_runnable_instances_boundary_inclusive(
        self, provider: PersistenceProvider
    ) -> None:
        """next_execution == as_at is due; one microsecond later is not."""
        on_time = await create_sample(
            provider, status=WorkflowStatus.RUNNABLE, next_execution=BASE_TIME
        )
        later = await create_sample(
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
        await create_sample(provider, status=WorkflowStatus.RUNNABLE, next_execution=None)
        due = await create_sample(
            provider, status=WorkflowStatus.RUNNABLE, next_execution=BASE_TIME
        )
        assert await provider.get_runnable_instances(FAR_FUTURE) == [due.id]

    async def test_runnable_instances_earliest_first_with_limit(
        self, provider: PersistenceProvider
    ) -> None:
        """Runnable ids come earliest next_execution first, and at most `limit` of them."""
        offsets = [5, 1, 4, 2, 3, 0]
        created = {
            off: (
                await create_sample(
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
        instance = await create_sample(
            provider, status=WorkflowStatus.RUNNABLE, next_execution=None
        )
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
            inst = await create_sample(
                provider, status=status, create_time=BASE_TIME + timedelta(n)
            )
            made[status].append(inst.id)
        for status, ids in made.items():
            got = await provider.query_workflows(status=status)
            assert [i.id for i in got] == ids, status
            assert all(i.status is status for i in got)

    async def test_query_by_definition_id(self, provider: PersistenceProvider) -> None:
        """query_workflows(definition_id=) matches exactly and returns complete instances."""
        wanted = "orders_v1"
        mine = [
            await create_sample(provider, workflow_definition_id=wanted, create_time=BASE_TIME),
            await create_sample(
                provider,
                workflow_definition_id=wanted,
                create_time=BASE_TIME + timedelta(seconds=1),
            ),
        ]
        for decoy in ("ordersXv1", "orders_v10", "Orders_v1", "orders"):
            await create_sample(provider, workflow_definition_id=decoy)
        got = await provider.query_workflows(definition_id=wanted)
        assert [i.id for i in got] == [i.id for i in mine]
        for n, instance in enumerate(mine):
            assert_same(got[n], snapshot_at(instance, 1), f"result[{n}]")

    async def test_query_by_reference(self, provider: PersistenceProvider) -> None:
        """query_workflows(reference=...) matches the reference exactly."""
        ref = f"invoice_{new_id()}"
        hit = await create_sample(provider, reference=ref)
        await create_sample(provider, reference=ref + "x")
        await create_sample(provider, reference=ref.upper())
        await create_sample(provider, reference=None)
        assert [i.id for i in await provider.query_workflows(reference=ref)] == [hit.id]

    async def test_query_by_idempotency_key(self, provider: PersistenceProvider) -> None:
        """query_workflows / count_workflows(idempotency_key=...) match the key exactly,
        alone (across definitions) and with ``definition_id`` (one instance at most)."""
        key = f"key-{new_id()}"
        first, second = f"def-{new_id()}", f"def-{new_id()}"
        hit = await create_sample(
            provider, workflow_definition_id=first, idempotency_key=key, create_time=BASE_TIME
        )
        other = await create_sample(
            provider,
            workflow_definition_id=second,
            idempotency_key=key,
            create_time=BASE_TIME + timedelta(seconds=1),
        )
        await create_sample(provider, workflow_definition_id=first, idempotency_key=key + "x")
        await create_sample(provider, workflow_definition_id=first, idempotency_key=key.upper())
        await create_sample(provider, workflow_definition_id=first, idempotency_key=None)
        got = await provider.query_workflows(definition_id=first, idempotency_key=key)
        assert [i.id for i in got] == [hit.id]
        assert got[0].idempotency_key == key
        assert await provider.count_workflows(definition_id=first, idempotency_key=key) == 1
        got = await provider.query_workflows(idempotency_key=key)
        assert [i.id for i in got] == [hit.id, other.id]
        assert await provider.count_workflows(idempotency_key=key) == 2
        got = await provider.query_workflows(idempotency_key=key, newest_first=True)
        assert [i.id for i in got] == [other.id, hit.id]
        missing = f"none-{new_id()}"
        assert await provider.query_workflows(idempotency_key=missing) == []
        assert await provider.count_workflows(definition_id=second, idempotency_key=missing) == 0

    async def test_query_by_creation_time_range(self, provider: PersistenceProvider) -> None:
        """created_from is inclusive and created_to exclusive."""
        times = [BASE_TIME + timedelta(seconds=s) for s in (0, 10, 20, 30)]
        ids = [(await create_sample(provider, create_time=t)).id for t in times]
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
        hit = await create_sample(
            provider,
            workflow_definition_id=definition,
            status=WorkflowStatus.RUNNABLE,
            reference="r1",
            create_time=BASE_TIME,
        )
        await create_sample(provider, workflow_definition_id=definition, reference="r1")
        await create_sample(provider, status=WorkflowStatus.RUNNABLE, reference="r1")
        await create_sample(
            provider,
            workflow_definition_id=definition,
            status=WorkflowStatus.RUNNABLE,
            reference="r2",
        )
        await create_sample(
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
            await create_sample(provider, id=wid, create_time=created, pointers=1)
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
            await create_sample(provider, id=wid, create_time=created, pointers=1)
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
            await create_sample(provider, id=wid, create_time=created, pointers=1)
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
            await create_sample(
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
        instance = await create_sample(provider)
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.complete_time = naive
        await assert_refused_as_naive(provider.persist_workflow(loaded), "persist_workflow")
        loaded = await provider.get_workflow_instance(instance.id)
        loaded.execution_pointers[0].end_time = naive
        await assert_refused_as_naive(provider.persist_workflow(loaded), "persist_workflow")
        assert_same(
            await provider.get_workflow_instance(instance.id), snapshot_at(instance, 1), "stored"
        )
