"""Conformance suite for concurrent use of one provider.

Many tasks share one provider instance, as the host's workers do: creates get distinct
ids, writers of different instances do not disturb each other, two writers of the same
loaded revision race with exactly one winner, compare-and-set operations have exactly
one winner, and readers never see half of a persist.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
from wfe_core.capabilities import Capability
from wfe_core.errors import ConcurrencyError
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    ScheduledCommand,
    WorkflowInstance,
    new_id,
    utcnow,
)
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase, requires

__all__ = ["ConcurrencyTests"]

_DEF = "wfe-conformance-concurrency"
_T0 = datetime(2030, 3, 1, tzinfo=UTC)
_Job = Callable[[], Coroutine[Any, Any, None]]
_LIMIT = 10.0  # seconds any one concurrent burst may take


def _instance(n: int = 0) -> WorkflowInstance:
    instance = WorkflowInstance(workflow_definition_id=_DEF, data={"n": n}, reference=new_id())
    instance.execution_pointers.append(ExecutionPointer(step_id=0, step_name="start"))
    return instance


async def _run_all(factories: list[_Job]) -> None:
    """Start every coroutine factory at once in one task group and wait for all."""
    with anyio.fail_after(_LIMIT):
        async with anyio.create_task_group() as tg:
            for factory in factories:
                tg.start_soon(factory)


def _subscription(workflow_id: str, pointer_id: str, name: str, key: str) -> EventSubscription:
    return EventSubscription(
        workflow_id=workflow_id,
        step_id=0,
        execution_pointer_id=pointer_id,
        event_name=name,
        event_key=key,
        subscribe_as_of=_T0,
    )


class ConcurrencyTests(SuiteBase):
    """Concurrent callers on one provider."""

    async def test_concurrent_creates_get_distinct_ids(self, provider: PersistenceProvider) -> None:
        """32 concurrent create_workflow calls return 32 distinct ids, all readable."""
        instances = [_instance(i) for i in range(32)]
        ids: list[str] = []

        def create(instance: WorkflowInstance) -> _Job:
            async def go() -> None:
                ids.append(await provider.create_workflow(instance))

            return go

        await _run_all([create(i) for i in instances])
        assert len(ids) == 32
        assert len(set(ids)) == 32
        loaded = await provider.get_workflow_instances(ids)
        assert [w.id for w in loaded] == ids
        assert sorted(w.data["n"] for w in loaded) == list(range(32))
        for instance in instances:
            got = await provider.get_workflow_instance(instance.id)
            assert got.data == instance.data
            assert got.revision == 1

    async def test_concurrent_creates_of_one_id_have_one_winner(
        self, provider: PersistenceProvider
    ) -> None:
        """Ten concurrent creates with the same given id: one succeeds, the rest raise
        ConcurrencyError, and the stored instance is the winner's."""
        shared_id = new_id()
        outcomes: list[int | str] = []

        def create(n: int) -> _Job:
            async def go() -> None:
                instance = _instance(n)
                instance.id = shared_id
                try:
                    await provider.create_workflow(instance)
                except ConcurrencyError:
                    outcomes.append("conflict")
                else:
                    outcomes.append(n)

            return go

        await _run_all([create(n) for n in range(10)])
        winners = [o for o in outcomes if o != "conflict"]
        assert len(winners) == 1, outcomes
        assert outcomes.count("conflict") == 9
        stored = await provider.get_workflow_instance(shared_id)
        assert stored.data == {"n": winners[0]}

    async def test_concurrent_writers_of_different_instances(
        self, provider: PersistenceProvider
    ) -> None:
        """32 tasks each loading and persisting their own instance all succeed intact."""
        ids = [await provider.create_workflow(_instance(i)) for i in range(32)]

        def write(workflow_id: str) -> _Job:
            async def go() -> None:
                instance = await provider.get_workflow_instance(workflow_id)
                await anyio.lowlevel.checkpoint()
                instance.data = {"n": instance.data["n"], "written_by": workflow_id}
                instance.description = f"desc {workflow_id}"
                instance.execution_pointers.append(ExecutionPointer(step_id=1, step_name="next"))
                await provider.persist_workflow(instance)

            return go

        await _run_all([write(i) for i in ids])
        for workflow_id in ids:
            got = await provider.get_workflow_instance(workflow_id)
            assert got.revision == 2
            assert got.data["written_by"] == workflow_id
            assert got.description == f"desc {workflow_id}"
            assert [p.step_id for p in got.execution_pointers] == [0, 1]

    async def test_two_persists_of_one_revision_have_one_winner(
        self, provider: PersistenceProvider
    ) -> None:
        """Two concurrent persists of the same loaded revision: exactly one succeeds, the
        other raises ConcurrencyError, and the store holds the winner's write."""
        workflow_id = await provider.create_workflow(_instance())
        copies = [await provider.get_workflow_instance(workflow_id) for _ in range(2)]
        results: dict[str, str] = {}

        def write(label: str, instance: WorkflowInstance) -> _Job:
            async def go() -> None:
                instance.description = label
                instance.data = {"n": 0, "writer": label}
                instance.execution_pointers.append(ExecutionPointer(step_id=7, step_name=label))
                try:
                    await provider.persist_workflow(instance)
                except ConcurrencyError:
                    results[label] = "conflict"
                else:
                    results[label] = "ok"

            return go

        await _run_all([write("A", copies[0]), write("B", copies[1])])
        assert sorted(results.values()) == ["conflict", "ok"], results
        winner = next(label for label, r in results.items() if r == "ok")
        loser = next(label for label, r in results.items() if r == "conflict")
        stored = await provider.get_workflow_instance(workflow_id)
        assert stored.revision == 2
        assert stored.description == winner
        assert stored.data == {"n": 0, "writer": winner}
        assert [p.step_name for p in stored.execution_pointers] == ["start", winner]
        by_label = dict(zip(["A", "B"], copies, strict=True))
        assert by_label[winner].revision == 2
        assert by_label[loser].revision == 1

    async def test_losing_persist_creates_none_of_its_subscriptions(
        self, provider: PersistenceProvider
    ) -> None:
        """Of two racing persists, only the winner's subscriptions are created."""
        workflow_id = await provider.create_workflow(_instance())
        copies = [await provider.get_workflow_instance(workflow_id) for _ in range(2)]
        event_name = f"evt-{new_id()}"
        results: dict[str, str] = {}

        def write(label: str, instance: WorkflowInstance) -> _Job:
            async def go() -> None:
                pointer_id = instance.execution_pointers[0].id
                subs = [_subscription(workflow_id, pointer_id, event_name, label)]
                instance.description = label
                try:
                    await provider.persist_workflow(instance, subs)
                except ConcurrencyError:
                    results[label] = "conflict"
                else:
                    results[label] = "ok"

            return go

        await _run_all([write("A", copies[0]), write("B", copies[1])])
        assert sorted(results.values()) == ["conflict", "ok"], results
        for label, outcome in results.items():
            found = await provider.get_subscriptions(event_name, label, _T0 + timedelta(days=1))
            assert len(found) == (1 if outcome == "ok" else 0), (label, outcome)

    async def test_many_persists_of_one_revision_have_one_winner(
        self, provider: PersistenceProvider
    ) -> None:
        """Ten concurrent persists of one loaded revision: exactly one succeeds."""
        workflow_id = await provider.create_workflow(_instance())
        copies = [await provider.get_workflow_instance(workflow_id) for _ in range(10)]
        ok: list[int] = []
        conflicts: list[int] = []

        def write(n: int, instance: WorkflowInstance) -> _Job:
            async def go() -> None:
                instance.data = {"n": n}
                try:
                    await provider.persist_workflow(instance)
                except ConcurrencyError:
                    conflicts.append(n)
                else:
                    ok.append(n)

            return go

        await _run_all([write(n, c) for n, c in enumerate(copies)])
        assert len(ok) == 1, ok
        assert len(conflicts) == 9
        stored = await provider.get_workflow_instance(workflow_id)
        assert stored.revision == 2
        assert stored.data == {"n": ok[0]}

    async def test_readers_never_see_half_a_persist(self, provider: PersistenceProvider) -> None:
        """Readers running alongside a writer always see header, data and pointers of
        one and the same revision."""
        workflow_id = await provider.create_workflow(_instance(0))
        writes = 15
        done = anyio.Event()
        torn: list[str] = []

        async def writer() -> None:
            instance = await provider.get_workflow_instance(workflow_id)
            for _ in range(writes):
                rev = instance.revision
                instance.data = {"n": rev}
                instance.description = f"rev {rev}"
                instance.execution_pointers.append(ExecutionPointer(step_id=rev))
                await provider.persist_workflow(instance)
                await anyio.lowlevel.checkpoint()
            done.set()

        async def reader() -> None:
            while not done.is_set():
                got = await provider.get_workflow_instance(workflow_id)
                expected_n = got.revision - 1
                if (
                    got.data["n"] != expected_n
                    or len(got.execution_pointers) != got.revision
                    or (got.revision > 1 and got.description != f"rev {expected_n}")
                ):
                    torn.append(
                        f"revision {got.revision}: data {got.data}, description "
                        f"{got.description!r}, {len(got.execution_pointers)} pointers"
                    )
                await anyio.lowlevel.checkpoint()

        await _run_all([writer, reader, reader, reader])
        assert torn == []
        final = await provider.get_workflow_instance(workflow_id)
        assert final.revision == writes + 1
        assert len(final.execution_pointers) == writes + 1

    async def test_concurrent_token_claims_have_one_winner(
        self, provider: PersistenceProvider
    ) -> None:
        """20 concurrent set_subscription_token calls: exactly one returns True and its
        token and worker are the ones stored."""
        instance = _instance()
        workflow_id = await provider.create_workflow(instance)
        sub_id = await provider.create_subscription(
            _subscription(workflow_id, instance.execution_pointers[0].id, "activity", new_id())
        )
        expiry = utcnow() + timedelta(minutes=5)
        wins: list[int] = []

        def claim(n: int) -> _Job:
            async def go() -> None:
                if await provider.set_subscription_token(
                    sub_id, f"token-{n}", f"worker-{n}", expiry
                ):
                    wins.append(n)

            return go

        await _run_all([claim(n) for n in range(20)])
        assert len(wins) == 1, wins
        stored = await provider.get_subscription(sub_id)
        assert stored.external_token == f"token-{wins[0]}"
        assert stored.external_worker_id == f"worker-{wins[0]}"

    async def test_concurrent_reclaims_of_an_expired_token_have_one_winner(
        self, provider: PersistenceProvider
    ) -> None:
        """20 concurrent claims of a subscription whose token expired: exactly one wins."""
        instance = _instance()
        workflow_id = await provider.create_workflow(instance)
        sub_id = await provider.create_subscription(
            _subscription(workflow_id, instance.execution_pointers[0].id, "activity", new_id())
        )
        past = utcnow() - timedelta(minutes=1)
        assert await provider.set_subscription_token(sub_id, "stale", "old-worker", past)
        expiry = utcnow() + timedelta(minutes=5)
        wins: list[int] = []

        def claim(n: int) -> _Job:
            async def go() -> None:
                if await provider.set_subscription_token(
                    sub_id, f"token-{n}", f"worker-{n}", expiry
                ):
                    wins.append(n)

            return go

        await _run_all([claim(n) for n in range(20)])
        assert len(wins) == 1, wins
        assert (await provider.get_subscription(sub_id)).external_token == f"token-{wins[0]}"

    async def test_concurrent_subscription_creates_get_distinct_ids(
        self, provider: PersistenceProvider
    ) -> None:
        """30 concurrent create_subscription calls return 30 distinct ids, all found."""
        instance = _instance()
        workflow_id = await provider.create_workflow(instance)
        key = new_id()
        ids: list[str] = []

        def create() -> _Job:
            async def go() -> None:
                sub = _subscription(workflow_id, instance.execution_pointers[0].id, "evt", key)
                ids.append(await provider.create_subscription(sub))

            return go

        await _run_all([create() for _ in range(30)])
        assert len(set(ids)) == 30
        found = await provider.get_subscriptions("evt", key, _T0)
        assert sorted(s.id for s in found) == sorted(ids)

    async def test_concurrent_event_creates_and_marks(self, provider: PersistenceProvider) -> None:
        """30 concurrent create_event calls get distinct ids and are runnable; marking
        them processed concurrently leaves none runnable."""
        name, key = f"evt-{new_id()}", new_id()
        ids: list[str] = []

        def create(n: int) -> _Job:
            async def go() -> None:
                event = Event(event_name=name, event_key=key, event_data={"n": n}, event_time=_T0)
                ids.append(await provider.create_event(event))

            return go

        await _run_all([create(n) for n in range(30)])
        assert len(set(ids)) == 30
        runnable = set(await provider.get_runnable_events(_T0 + timedelta(seconds=1), 10_000))
        assert set(ids) <= runnable
        assert sorted(await provider.get_events(name, key, _T0)) == sorted(ids)

        def mark(event_id: str) -> _Job:
            async def go() -> None:
                await provider.mark_event_processed(event_id)

            return go

        await _run_all([mark(i) for i in ids])
        runnable = set(await provider.get_runnable_events(_T0 + timedelta(seconds=1), 10_000))
        assert not set(ids) & runnable
        for event_id in ids:
            assert (await provider.get_event(event_id)).is_processed

    async def test_concurrent_marks_of_different_events_do_not_interfere(
        self, provider: PersistenceProvider
    ) -> None:
        """Concurrently marking some events processed and others unprocessed leaves each
        with its own flag."""
        name, key = f"evt-{new_id()}", new_id()
        ids = [
            await provider.create_event(Event(event_name=name, event_key=key, event_time=_T0))
            for _ in range(20)
        ]
        for event_id in ids[10:]:
            await provider.mark_event_processed(event_id)

        def flip(event_id: str, processed: bool) -> _Job:
            async def go() -> None:
                if processed:
                    await provider.mark_event_processed(event_id)
                else:
                    await provider.mark_event_unprocessed(event_id)

            return go

        await _run_all([flip(i, True) for i in ids[:10]] + [flip(i, False) for i in ids[10:]])
        for event_id in ids[:10]:
            assert (await provider.get_event(event_id)).is_processed
        for event_id in ids[10:]:
            assert not (await provider.get_event(event_id)).is_processed

    async def test_concurrent_error_batches_all_append(self, provider: PersistenceProvider) -> None:
        """20 concurrent persist_errors batches of 3 for one workflow store all 60."""
        workflow_id = await provider.create_workflow(_instance())

        def persist(batch: int) -> _Job:
            async def go() -> None:
                await provider.persist_errors(
                    ExecutionError(
                        workflow_id=workflow_id,
                        execution_pointer_id=None,
                        message=f"{batch}-{i}",
                        error_time=_T0 + timedelta(seconds=batch * 3 + i),
                    )
                    for i in range(3)
                )

            return go

        await _run_all([persist(b) for b in range(20)])
        got = await provider.get_errors(workflow_id)
        assert [e.message for e in got] == [f"{b}-{i}" for b in range(20) for i in range(3)]

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_concurrent_schedules_of_one_command_store_one(
        self, provider: PersistenceProvider
    ) -> None:
        """20 concurrent schedule_command calls of one (name, data) store one command,
        due at the earliest execute_time given."""
        data = new_id()
        times = [_T0 + timedelta(minutes=(n * 7) % 20) for n in range(20)]

        def schedule(at: datetime) -> _Job:
            async def go() -> None:
                await provider.schedule_command(
                    ScheduledCommand(ScheduledCommand.PROCESS_EVENT, data, at)
                )

            return go

        await _run_all([schedule(t) for t in times])
        handled: Counter[str] = Counter()
        seen_times: list[datetime] = []

        async def handler(command: ScheduledCommand) -> None:
            handled[command.data] += 1
            seen_times.append(command.execute_time)

        assert await provider.process_commands(_T0 + timedelta(days=1), handler) == 1
        assert handled == Counter({data: 1})
        assert seen_times == [min(times)]
