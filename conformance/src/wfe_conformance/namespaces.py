"""Conformance suite for namespaces (:mod:`wfe_core.namespaces`): ``NamespaceTests``.

Several namespaces share one database and never see each other's data: instances
(with their ids, idempotency keys, claims and control requests), events (and their
ids), subscriptions, execution errors, scheduled commands, schedules, stored
definitions, locks and queue items. The suite opens the database of the ``provider``
fixture (which is in the default namespace) again in two more namespaces, ``conf_a`` and
``conf_b``, through the ``namespace_opener`` fixture the provider's test class overrides::

    class TestMyStoreConformance(ProviderConformance):
        @pytest.fixture
        def namespace_opener(self, store_url: str) -> NamespaceOpener:
            async def open_namespace(namespace: str) -> StoreComponents:
                return open_store(f"{store_url}?namespace={namespace}")

            return open_namespace

The suite calls ``ensure_store_exists()`` on each persistence provider it opens, starts
the lock and queue providers it uses, and closes everything it opened when the test
ends (``close()``; ``stop()`` for what it started) -- except the ``provider`` fixture's
own object, should the opener return it for the default namespace.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import anyio
import pytest
from wfe_core.capabilities import Capability
from wfe_core.definitions.errors import DefinitionNotFound
from wfe_core.definitions.store import DefinitionRepository, StoredDefinition
from wfe_core.errors import (
    ConcurrencyError,
    DuplicateIdempotencyKey,
    EventNotFound,
    SubscriptionNotFound,
    WorkflowNotFound,
)
from wfe_core.locks import DistributedLockProvider
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    QueueType,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.namespaces import DEFAULT_NAMESPACE
from wfe_core.persistence import CommandHandler, PersistenceProvider
from wfe_core.queues import QueueProvider
from wfe_core.registry import StoreComponents
from wfe_core.schedules import Schedule, ScheduleNotFound, ScheduleRepository

from wfe_conformance.base import SuiteBase, requires
from wfe_conformance.sample import BASE_TIME, FAR_FUTURE, FAR_PAST

__all__ = ["NAMESPACE_A", "NAMESPACE_B", "NamespaceOpener", "NamespaceTests"]

NAMESPACE_A = "conf_a"
"""The first namespace the suite opens besides the default one."""

NAMESPACE_B = "conf_b"
"""The second namespace the suite opens besides the default one."""

_EMPTY_WAIT = 0.2  # seconds a dequeue expected to find nothing of ours waits
_BOUND = 10.0  # bound on a wait for something expected to arrive


class NamespaceOpener(Protocol):
    """Opens the database the ``provider`` fixture is on, in another namespace.

    An async callable ``(namespace) -> StoreComponents``: the persistence provider of
    that namespace (not yet entered) and, when the store brings its own, its lock and
    queue providers in that namespace (not yet started). Each call may return new
    objects or the same ones again.
    """

    def __call__(self, namespace: str, /) -> Awaitable[StoreComponents]:
        """Open ``namespace`` of the database under test."""
        ...


@dataclass
class _Opened:
    """What the suite opened in a test, closed when it ends."""

    opener: NamespaceOpener
    fixture_provider: PersistenceProvider
    persistence: list[PersistenceProvider] = field(default_factory=list)
    started: list[DistributedLockProvider | QueueProvider] = field(default_factory=list)

    async def open(self, namespace: str) -> StoreComponents:
        """Open ``namespace`` (its store made to exist, its lock and queue started)."""
        components = await self.opener(namespace)
        if not isinstance(components, StoreComponents) or components.persistence is None:
            pytest.fail(
                f"namespace_opener({namespace!r}) returned {components!r}: it must return a "
                "wfe_core.registry.StoreComponents whose persistence is the provider of "
                "that namespace"
            )
        persistence = components.persistence
        if all(p is not persistence for p in self.persistence):
            self.persistence.append(persistence)
        await persistence.ensure_store_exists()
        for part in (components.lock_provider, components.queue_provider):
            if part is not None and all(s is not part for s in self.started):
                await part.start()
                self.started.append(part)
        return components

    async def close(self) -> None:
        """Stop and close everything opened (the fixture's provider excepted)."""
        for part in reversed(self.started):
            await part.stop()
        for persistence in reversed(self.persistence):
            if persistence is not self.fixture_provider:
                await persistence.close()


def _store(components: StoreComponents) -> PersistenceProvider:
    assert components.persistence is not None
    return components.persistence


def _instance(definition_id: str, **changes: object) -> WorkflowInstance:
    """A runnable instance due at BASE_TIME with one pointer and a fresh id."""
    instance = WorkflowInstance(
        workflow_definition_id=definition_id,
        id=f"ns-{new_id()}",
        data={"n": 0},
        reference=f"ref-{new_id()}",
        status=WorkflowStatus.RUNNABLE,
        create_time=BASE_TIME,
        next_execution=BASE_TIME,
    )
    for name, value in changes.items():
        setattr(instance, name, value)
    instance.execution_pointers.append(ExecutionPointer(step_id=0, step_name="start"))
    return instance


async def _absent(store: PersistenceProvider, workflow_id: str) -> bool:
    try:
        await store.get_workflow_instance(workflow_id)
    except WorkflowNotFound:
        return True
    return False


async def _finish(store: PersistenceProvider, instance: WorkflowInstance) -> None:
    instance.status = WorkflowStatus.COMPLETE
    instance.complete_time = FAR_PAST
    instance.next_execution = None
    await store.persist_workflow(instance)


def _schedules(store: PersistenceProvider) -> ScheduleRepository | None:
    return store if isinstance(store, ScheduleRepository) else None


class NamespaceTests(SuiteBase):
    """Two namespaces on one database never see each other's data."""

    @pytest.fixture
    def namespace_opener(self) -> NamespaceOpener:
        """Opens the ``provider`` fixture's database in another namespace: override it."""
        raise NotImplementedError(
            "override the `namespace_opener` fixture in your Test* class: return a "
            "wfe_conformance.NamespaceOpener, an async callable `(namespace: str) -> "
            "wfe_core.registry.StoreComponents` that opens the very database the "
            "`provider` fixture is on in that namespace (e.g. its URL with "
            "?namespace=...): the persistence provider and, when your store has them, its "
            "own lock and queue providers; the suite closes what it opens"
        )

    @pytest.fixture
    async def wfe_namespaces(
        self, provider: PersistenceProvider, namespace_opener: NamespaceOpener
    ) -> AsyncIterator[_Opened]:
        """Opens namespaces for a test and closes them when it ends."""
        opened = _Opened(namespace_opener, provider)
        try:
            yield opened
        finally:
            await opened.close()

    async def test_namespace_providers_report_their_namespace(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """The `provider` fixture is in the default namespace; opened ones report theirs."""
        assert getattr(provider, "namespace", DEFAULT_NAMESPACE) == DEFAULT_NAMESPACE
        for namespace in (NAMESPACE_A, NAMESPACE_B, DEFAULT_NAMESPACE):
            opened = _store(await wfe_namespaces.open(namespace))
            got = getattr(opened, "namespace", DEFAULT_NAMESPACE)
            assert got == namespace, f"opened {namespace!r}, the provider reports {got!r}"

    async def test_namespace_opener_reaches_the_same_database(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """A namespace opened twice holds the same data; the default namespace opened
        is the `provider` fixture's data (the opener reaches the very database)."""
        definition = f"ns-{new_id()}"
        first = _store(await wfe_namespaces.open(NAMESPACE_A))
        in_a = _instance(definition, data={"in": "a"})
        await first.create_workflow(in_a)
        again = _store(await wfe_namespaces.open(NAMESPACE_A))
        assert (await again.get_workflow_instance(in_a.id)).data == {"in": "a"}
        in_default = _instance(definition, data={"in": "default"})
        await provider.create_workflow(in_default)
        default = _store(await wfe_namespaces.open(DEFAULT_NAMESPACE))
        assert (await default.get_workflow_instance(in_default.id)).data == {"in": "default"}
        assert await _absent(default, in_a.id)

    async def test_namespace_instances_are_invisible_elsewhere(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """An instance created in A is not found, listed, counted, runnable, claimable
        or controllable in B or the default namespace; in A it is."""
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        definition = f"ns-{new_id()}"
        instance = _instance(definition, idempotency_key=f"key-{new_id()}")
        await a.create_workflow(instance)
        await a.request_control(instance.id, "suspend")
        for other, where in ((b, NAMESPACE_B), (provider, DEFAULT_NAMESPACE)):
            assert await _absent(other, instance.id), f"A's instance found in {where}"
            assert await other.get_workflow_instances([instance.id]) == []
            assert await other.query_workflows(definition_id=definition) == []
            assert await other.query_workflows(reference=instance.reference) == []
            assert await other.count_workflows(definition_id=definition) == 0
            assert instance.id not in await other.get_runnable_instances(FAR_FUTURE)
            assert instance.id not in await other.get_pending_controls(as_at=FAR_FUTURE)
            assert await other.get_pending_controls([instance.id]) == {}
            with pytest.raises(WorkflowNotFound):
                await other.claim_workflow(instance.id, "owner", FAR_FUTURE)
            with pytest.raises(WorkflowNotFound):
                await other.request_control(instance.id, "terminate")
        assert (await a.get_workflow_instance(instance.id)).reference == instance.reference
        assert [w.id for w in await a.query_workflows(definition_id=definition)] == [instance.id]
        assert instance.id in await a.get_runnable_instances(FAR_FUTURE)
        assert await a.get_pending_controls([instance.id]) == {instance.id: "suspend"}

    async def test_namespace_same_ids_and_keys_are_independent(
        self, wfe_namespaces: _Opened
    ) -> None:
        """One workflow id and one (definition, idempotency key) are created in A and in
        B; updating A's leaves B's as it was; in A the key is still unique."""
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        definition = f"ns-{new_id()}"
        workflow_id = f"shared-{new_id()}"
        key = f"key-{new_id()}"
        in_a = _instance(definition, id=workflow_id, idempotency_key=key, data={"in": "a"})
        in_b = _instance(definition, id=workflow_id, idempotency_key=key, data={"in": "b"})
        assert await a.create_workflow(in_a) == workflow_id
        try:
            assert await b.create_workflow(in_b) == workflow_id
        except ConcurrencyError as exc:
            pytest.fail(f"the id and key used in {NAMESPACE_A} were refused in B: {exc}")
        in_a.data = {"in": "a", "updated": True}
        await _finish(a, in_a)
        got_a = await a.get_workflow_instance(workflow_id)
        got_b = await b.get_workflow_instance(workflow_id)
        assert (got_a.data, got_a.status, got_a.revision) == (
            {"in": "a", "updated": True},
            WorkflowStatus.COMPLETE,
            2,
        )
        assert (got_b.data, got_b.status, got_b.revision) == (
            {"in": "b"},
            WorkflowStatus.RUNNABLE,
            1,
        )
        assert got_b.idempotency_key == key
        with pytest.raises(DuplicateIdempotencyKey) as refused:
            await a.create_workflow(_instance(definition, idempotency_key=key))
        assert refused.value.existing_id == workflow_id
        assert await a.count_workflows(definition_id=definition) == 1
        assert await b.count_workflows(definition_id=definition) == 1

    async def test_namespace_events_are_isolated(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """An event published in A is not found, listed or runnable in B or the default
        namespace; the same event id is stored in B too, each processed on its own."""
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        event_id = f"evt-{new_id()}"
        key = f"k-{new_id()}"
        await a.create_event(Event("paid", key, {"in": "a"}, event_time=BASE_TIME, id=event_id))
        for other in (b, provider):
            with pytest.raises(EventNotFound):
                await other.get_event(event_id)
            assert event_id not in await other.get_runnable_events(FAR_FUTURE)
            assert await other.get_events("paid", key, FAR_PAST) == []
            with pytest.raises(EventNotFound):
                await other.mark_event_processed(event_id)
        assert event_id in await a.get_runnable_events(FAR_FUTURE)
        await b.create_event(Event("paid", key, {"in": "b"}, event_time=BASE_TIME, id=event_id))
        assert (await b.get_event(event_id)).event_data == {"in": "b"}
        await b.mark_event_processed(event_id)
        from_a = await a.get_event(event_id)
        assert (from_a.event_data, from_a.is_processed) == ({"in": "a"}, False)
        assert event_id in await a.get_runnable_events(FAR_FUTURE)
        assert event_id not in await b.get_runnable_events(FAR_FUTURE)
        assert await a.get_events("paid", key, FAR_PAST) == [event_id]

    async def test_namespace_subscriptions_are_isolated(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """A subscription created in A is not returned by B's (or the default
        namespace's) topic look-ups, nor found, claimed or terminated there."""
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        key = f"order-{new_id()}"
        workflow_id = f"wf-{new_id()}"
        sub = EventSubscription(
            workflow_id=workflow_id,
            step_id=1,
            execution_pointer_id=f"ptr-{new_id()}",
            event_name="paid",
            event_key=key,
            subscribe_as_of=FAR_PAST,
        )
        sub_id = await a.create_subscription(sub)
        for other in (b, provider):
            assert await other.get_subscriptions("paid", key, FAR_FUTURE) == []
            assert await other.get_first_open_subscription("paid", key, FAR_FUTURE) is None
            with pytest.raises(SubscriptionNotFound):
                await other.get_subscription(sub_id)
            with pytest.raises(SubscriptionNotFound):
                await other.set_subscription_token(sub_id, "tok", "worker", FAR_FUTURE)
            assert await other.terminate_subscriptions(workflow_id) == 0
        assert [s.id for s in await a.get_subscriptions("paid", key, FAR_FUTURE)] == [sub_id]
        first = await a.get_first_open_subscription("paid", key, FAR_FUTURE)
        assert first is not None
        assert first.id == sub_id

    async def test_namespace_execution_errors_are_isolated(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """Errors persisted for a workflow in A are not listed for it in B or default."""
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        workflow_id = f"wf-{new_id()}"
        error = ExecutionError(workflow_id, None, "boom in A", error_time=BASE_TIME)
        await a.persist_errors([error])
        assert await b.get_errors(workflow_id) == []
        assert await provider.get_errors(workflow_id) == []
        assert [e.message for e in await a.get_errors(workflow_id)] == ["boom in A"]

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_namespace_scheduled_commands_are_isolated(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """A command scheduled in A is not handed to B's (or default's) processor; A's
        processor gets it."""
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        data = f"cmd-{new_id()}"
        await a.schedule_command(
            ScheduledCommand(ScheduledCommand.PROCESS_WORKFLOW, data, BASE_TIME)
        )
        handled: dict[str, list[str]] = {"a": [], "b": [], "default": []}

        def recorder(where: str) -> CommandHandler:
            async def handle(command: ScheduledCommand) -> None:
                handled[where].append(command.data)

            return handle

        await b.process_commands(FAR_FUTURE, recorder("b"))
        await provider.process_commands(FAR_FUTURE, recorder("default"))
        assert data not in handled["b"], "B processed a command scheduled in A"
        assert data not in handled["default"], "default processed a command scheduled in A"
        await a.process_commands(FAR_FUTURE, recorder("a"))
        assert handled["a"].count(data) == 1

    @requires(Capability.PURGE)
    async def test_namespace_purge_leaves_other_namespaces(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """Purging in B or in default leaves A's finished instances; purging A removes them."""
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        definition = f"ns-{new_id()}"
        in_a = _instance(definition)
        in_default = _instance(definition)
        await a.create_workflow(in_a)
        await _finish(a, in_a)
        await provider.create_workflow(in_default)
        await _finish(provider, in_default)
        await b.purge_workflows(WorkflowStatus.COMPLETE, BASE_TIME)
        await provider.purge_workflows(WorkflowStatus.COMPLETE, BASE_TIME)
        assert await _absent(provider, in_default.id), "default's purge left its instance"
        assert not await _absent(a, in_a.id), "a purge in another namespace removed A's"
        assert await a.purge_workflows(WorkflowStatus.COMPLETE, BASE_TIME) >= 1
        assert await _absent(a, in_a.id)

    async def test_namespace_schedules_are_isolated(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """A schedule created in A is not listed, found, due or claimable in B; the same
        schedule id can be created in B."""
        if _schedules(provider) is None:
            pytest.skip(f"{type(provider).__name__} is not a ScheduleRepository")
        a = _schedules(_store(await wfe_namespaces.open(NAMESPACE_A)))
        b = _schedules(_store(await wfe_namespaces.open(NAMESPACE_B)))
        assert a is not None, "the provider stores schedules; the one opened in A does not"
        assert b is not None, "the provider stores schedules; the one opened in B does not"
        schedule = Schedule(
            id=f"sched-{new_id()}",
            definition_id="scheduled-definition",
            data={"in": "a"},
            every=timedelta(minutes=5),
            create_time=BASE_TIME,
        )
        schedule.next_fire_time = schedule.first_fire_time()
        due = schedule.next_fire_time
        assert due is not None
        await a.create_schedule(schedule)
        assert schedule.id not in [s.id for s in await b.list_schedules()]
        assert schedule.id not in [s.id for s in await b.get_due_schedules(FAR_FUTURE)]
        with pytest.raises(ScheduleNotFound):
            await b.get_schedule(schedule.id)
        assert not await b.claim_schedule_fire(schedule.id, due, None, None)
        await b.create_schedule(schedule.copy(data={"in": "b"}))
        assert (await b.get_schedule(schedule.id)).data == {"in": "b"}
        assert await b.claim_schedule_fire(schedule.id, due, None, "in-b")
        got = await a.get_schedule(schedule.id)
        assert (got.data, got.next_fire_time, got.last_fire_time) == ({"in": "a"}, due, None)
        assert await a.claim_schedule_fire(schedule.id, due, None, "in-a")

    async def test_namespace_definitions_are_isolated(
        self, provider: PersistenceProvider, wfe_namespaces: _Opened
    ) -> None:
        """A definition stored in A is not listed or found in B; B stores its own text
        under the same id and version."""
        if not isinstance(provider, DefinitionRepository):
            pytest.skip(f"{type(provider).__name__} is not a DefinitionRepository")
        a = _store(await wfe_namespaces.open(NAMESPACE_A))
        b = _store(await wfe_namespaces.open(NAMESPACE_B))
        assert isinstance(a, DefinitionRepository), "the one opened in A stores no definitions"
        assert isinstance(b, DefinitionRepository), "the one opened in B stores no definitions"
        definition_id = f"def-{new_id()}"
        await a.save_definition(StoredDefinition(definition_id, 1, "json", '{"in": "a"}'))
        assert definition_id not in [d.definition_id for d in await b.list_definitions()]
        with pytest.raises(DefinitionNotFound):
            await b.get_definition(definition_id)
        assert await b.save_definition(StoredDefinition(definition_id, 1, "json", '{"in": "b"}'))
        assert (await a.get_definition(definition_id, 1)).text == '{"in": "a"}'
        assert (await b.get_definition(definition_id, 1)).text == '{"in": "b"}'

    async def test_namespace_locks_are_isolated(self, wfe_namespaces: _Opened) -> None:
        """One lock resource is held in A and in B at once; in A it is held (a second
        acquire fails) until released."""
        a = (await wfe_namespaces.open(NAMESPACE_A)).lock_provider
        b = (await wfe_namespaces.open(NAMESPACE_B)).lock_provider
        if a is None or b is None:
            pytest.skip("the store brings no lock provider of its own")
        resource = f"lock-{new_id()}"
        assert await a.acquire_lock(resource, 30.0)
        assert await b.acquire_lock(resource, 30.0), "a lock held in A blocked B"
        assert not await a.acquire_lock(resource, 30.0), "A's lock is not held in A"
        await b.release_lock(resource)
        assert not await a.acquire_lock(resource, 30.0), "releasing in B released A's lock"
        await a.release_lock(resource)
        assert await a.acquire_lock(resource, 30.0)
        await a.release_lock(resource)

    async def test_namespace_queues_are_isolated(self, wfe_namespaces: _Opened) -> None:
        """An id queued in A is not dequeued in B (within a bounded wait); A gives it."""
        a = (await wfe_namespaces.open(NAMESPACE_A)).queue_provider
        b = (await wfe_namespaces.open(NAMESPACE_B)).queue_provider
        if a is None or b is None:
            pytest.skip("the store brings no queue provider of its own")
        item = f"q-{new_id()}"
        await a.queue_work(item, QueueType.WORKFLOW)
        seen_in_b: list[str] = []
        deadline = time.monotonic() + _EMPTY_WAIT * 3
        with anyio.fail_after(_BOUND):
            while time.monotonic() < deadline:
                got = await b.dequeue_work(QueueType.WORKFLOW, _EMPTY_WAIT)
                if got is None:
                    break
                seen_in_b.append(got)
        assert item not in seen_in_b, "B dequeued an id queued in A"
        taken: list[str] = []
        with anyio.fail_after(_BOUND):
            while item not in taken:
                got = await a.dequeue_work(QueueType.WORKFLOW, _EMPTY_WAIT)
                if got is None:
                    await anyio.sleep(0.01)
                else:
                    taken.append(got)
        assert taken.count(item) == 1
