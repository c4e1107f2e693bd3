"""Conformance suite for idempotency in the store: the idempotency key of
``create_workflow`` (unique per workflow definition id, atomically, until purged) and
the event id of ``create_event`` (unique, atomically).

These are what make ``start_workflow(..., idempotency_key=...)`` and
``publish_event(..., event_id=...)`` start and deliver once across any number of hosts:
the store, not the caller, decides which of concurrent creates wins.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from wfe_core.capabilities import Capability
from wfe_core.errors import (
    ConcurrencyError,
    DuplicateEventId,
    DuplicateIdempotencyKey,
    WorkflowNotFound,
)
from wfe_core.models import (
    Event,
    ExecutionPointer,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import MAX_KEY_LENGTH, PersistenceProvider

from wfe_conformance.base import SuiteBase, requires
from wfe_conformance.sample import BASE_TIME, FAR_PAST

__all__ = ["IdempotencyTests"]

_CONCURRENT = 10
_LIMIT = 10.0  # seconds a concurrent burst may take


def _instance(definition_id: str, key: str | None, n: int = 0) -> WorkflowInstance:
    instance = WorkflowInstance(
        workflow_definition_id=definition_id,
        id=new_id(),
        data={"n": n},
        create_time=BASE_TIME,
        next_execution=BASE_TIME,
        idempotency_key=key,
    )
    instance.execution_pointers.append(ExecutionPointer(step_id=0, step_name="start"))
    return instance


def _definition() -> str:
    return f"idem-{new_id()}"


async def _absent(provider: PersistenceProvider, workflow_id: str) -> bool:
    try:
        await provider.get_workflow_instance(workflow_id)
    except WorkflowNotFound:
        return True
    return False


class IdempotencyTests(SuiteBase):
    """Idempotency keys of instances and ids of events are unique, atomically."""

    # ---------------------------------------------------------------- idempotency keys

    async def test_duplicate_idempotency_key_is_refused_with_the_existing_id(
        self, provider: PersistenceProvider
    ) -> None:
        """A second instance of one definition with a taken key is refused with
        DuplicateIdempotencyKey (a ConcurrencyError) naming the holder; nothing written."""
        definition = _definition()
        first = _instance(definition, "order-1")
        await provider.create_workflow(first)
        second = _instance(definition, "order-1", n=2)
        with pytest.raises(DuplicateIdempotencyKey) as refused:
            await provider.create_workflow(second)
        assert isinstance(refused.value, ConcurrencyError)
        assert refused.value.existing_id == first.id
        assert refused.value.idempotency_key == "order-1"
        assert await _absent(provider, second.id), "the refused instance was stored"
        assert await provider.count_workflows(definition_id=definition) == 1
        assert (await provider.get_workflow_instance(first.id)).data == {"n": 0}

    async def test_same_key_under_another_definition_is_allowed(
        self, provider: PersistenceProvider
    ) -> None:
        """Keys are scoped per workflow definition id."""
        a = _instance(_definition(), "shared")
        b = _instance(_definition(), "shared")
        await provider.create_workflow(a)
        await provider.create_workflow(b)
        found = await provider.get_workflow_instances([a.id, b.id])
        assert [w.idempotency_key for w in found] == ["shared", "shared"]

    async def test_instances_without_a_key_never_conflict(
        self, provider: PersistenceProvider
    ) -> None:
        """Any number of instances of one definition without a key (None) are stored."""
        definition = _definition()
        for n in range(3):
            await provider.create_workflow(_instance(definition, None, n))
        await provider.create_workflow(_instance(definition, "k"))
        await provider.create_workflow(_instance(definition, None, 9))
        assert await provider.count_workflows(definition_id=definition) == 5

    async def test_key_is_kept_after_the_instance_completes(
        self, provider: PersistenceProvider
    ) -> None:
        """A finished instance still holds its key, and persist_workflow never changes
        it (even when the caller's object carries another)."""
        definition = _definition()
        first = _instance(definition, "done")
        await provider.create_workflow(first)
        first.status = WorkflowStatus.COMPLETE
        first.complete_time = BASE_TIME + timedelta(seconds=1)
        first.next_execution = None
        first.idempotency_key = "changed"
        await provider.persist_workflow(first)
        stored = await provider.get_workflow_instance(first.id)
        assert stored.idempotency_key == "done"
        assert stored.status is WorkflowStatus.COMPLETE
        with pytest.raises(DuplicateIdempotencyKey) as refused:
            await provider.create_workflow(_instance(definition, "done"))
        assert refused.value.existing_id == first.id
        await provider.create_workflow(_instance(definition, "changed"))

    @requires(Capability.PURGE)
    async def test_purge_frees_the_key(self, provider: PersistenceProvider) -> None:
        """Once its instance is purged a key can be used again."""
        definition = _definition()
        first = _instance(definition, "recycled")
        await provider.create_workflow(first)
        first.status = WorkflowStatus.COMPLETE
        first.complete_time = FAR_PAST
        first.next_execution = None
        await provider.persist_workflow(first)
        assert await provider.purge_workflows(WorkflowStatus.COMPLETE, BASE_TIME) >= 1
        again = _instance(definition, "recycled")
        await provider.create_workflow(again)
        assert (await provider.get_workflow_instance(again.id)).idempotency_key == "recycled"

    async def test_concurrent_creates_with_one_key_store_exactly_one(
        self, provider: PersistenceProvider
    ) -> None:
        """Of 10 concurrent creates with one definition and key exactly one is stored;
        the others are refused naming it."""
        definition = _definition()
        instances = [_instance(definition, "race", n) for n in range(_CONCURRENT)]
        won: list[str] = []
        refused: list[str] = []

        async def create(instance: WorkflowInstance) -> None:
            try:
                won.append(await provider.create_workflow(instance))
            except DuplicateIdempotencyKey as exc:
                refused.append(exc.existing_id)

        with anyio.fail_after(_LIMIT):
            async with anyio.create_task_group() as tg:
                for instance in instances:
                    tg.start_soon(create, instance)
        assert len(won) == 1, f"{len(won)} of {_CONCURRENT} concurrent creates with one key won"
        assert refused == won * (_CONCURRENT - 1)
        assert await provider.count_workflows(definition_id=definition) == 1

    async def test_idempotency_key_round_trips(self, provider: PersistenceProvider) -> None:
        """The key is returned by get_workflow_instance, get_workflow_instances and
        query_workflows; an instance without one reads None."""
        definition = _definition()
        keyed = _instance(definition, "k-" + "x" * 50)
        plain = _instance(definition, None)
        await provider.create_workflow(keyed)
        await provider.create_workflow(plain)
        assert (
            await provider.get_workflow_instance(keyed.id)
        ).idempotency_key == keyed.idempotency_key
        assert (await provider.get_workflow_instance(plain.id)).idempotency_key is None
        many = await provider.get_workflow_instances([keyed.id, plain.id])
        assert [w.idempotency_key for w in many] == [keyed.idempotency_key, None]
        queried = await provider.query_workflows(definition_id=definition)
        assert {w.id: w.idempotency_key for w in queried} == {
            keyed.id: keyed.idempotency_key,
            plain.id: None,
        }

    async def test_bad_idempotency_keys_are_refused(self, provider: PersistenceProvider) -> None:
        """A key that is not a string is a TypeError; an empty one or one longer than
        MAX_KEY_LENGTH a ValueError; nothing is written."""
        definition = _definition()
        bad: list[tuple[object, type[Exception]]] = [
            (7, TypeError),
            ("", ValueError),
            ("k" * (MAX_KEY_LENGTH + 1), ValueError),
        ]
        for key, error in bad:
            instance = _instance(definition, None)
            instance.idempotency_key = key  # type: ignore[assignment]
            with pytest.raises(error):
                await provider.create_workflow(instance)
        assert await provider.count_workflows(definition_id=definition) == 0
        longest = _instance(definition, "k" * MAX_KEY_LENGTH)
        await provider.create_workflow(longest)
        stored = await provider.get_workflow_instance(longest.id)
        assert stored.idempotency_key == "k" * MAX_KEY_LENGTH

    # ---------------------------------------------------------------- event ids

    async def test_duplicate_event_id_is_refused_and_nothing_written(
        self, provider: PersistenceProvider
    ) -> None:
        """create_event with a stored id raises DuplicateEventId (a ValueError) and
        leaves the stored event as it was."""
        event_id = f"hook-{new_id()}"
        await provider.create_event(Event("paid", "A", {"n": 1}, event_time=BASE_TIME, id=event_id))
        with pytest.raises(DuplicateEventId) as refused:
            await provider.create_event(
                Event("paid", "B", {"n": 2}, event_time=BASE_TIME, id=event_id)
            )
        assert isinstance(refused.value, ValueError)
        assert refused.value.event_id == event_id
        stored = await provider.get_event(event_id)
        assert (stored.event_key, stored.event_data) == ("A", {"n": 1})
        assert await provider.get_events("paid", "B", FAR_PAST) == []

    async def test_concurrent_event_creates_with_one_id_store_exactly_one(
        self, provider: PersistenceProvider
    ) -> None:
        """Of 10 concurrent create_event calls with one id exactly one is stored; the
        others raise DuplicateEventId."""
        event_id = f"race-{new_id()}"
        key = f"k-{new_id()}"
        won: list[int] = []
        refused: list[int] = []

        async def create(n: int) -> None:
            try:
                await provider.create_event(
                    Event("raced", key, {"n": n}, event_time=BASE_TIME, id=event_id)
                )
                won.append(n)
            except DuplicateEventId:
                refused.append(n)

        with anyio.fail_after(_LIMIT):
            async with anyio.create_task_group() as tg:
                for n in range(_CONCURRENT):
                    tg.start_soon(create, n)
        assert len(won) == 1, f"{len(won)} of {_CONCURRENT} concurrent creates with one id won"
        assert len(refused) == _CONCURRENT - 1
        assert await provider.get_events("raced", key, FAR_PAST) == [event_id]
        assert (await provider.get_event(event_id)).event_data == {"n": won[0]}
