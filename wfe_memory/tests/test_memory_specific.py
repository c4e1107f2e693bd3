"""Behaviour of MemoryPersistenceProvider beyond the shared conformance suite."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from wfe_core.capabilities import Capability
from wfe_core.errors import (
    CapabilityNotSupported,
    ConcurrencyError,
    ProviderUnavailable,
    SerializationError,
    TokenMismatch,
    WorkflowNotFound,
)
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    ScheduledCommand,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.persistence import PersistenceProvider

from wfe_memory import MemoryPersistenceProvider, provider_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _instance(n_pointers: int = 1, **kw: Any) -> WorkflowInstance:
    inst = WorkflowInstance("def", **kw)
    for i in range(n_pointers):
        inst.execution_pointers.append(ExecutionPointer(step_id=i))
    return inst


def _sub(workflow_id: str = "wf", pointer_id: str = "p", **kw: Any) -> EventSubscription:
    kw.setdefault("subscribe_as_of", utcnow() - timedelta(seconds=1))
    return EventSubscription(workflow_id, 0, pointer_id, "evt", "key", **kw)


class CountingProvider(MemoryPersistenceProvider):
    """Counts pointer copies made on the way into the store."""

    def __init__(self) -> None:
        super().__init__()
        self.pointer_copies = 0

    def _store_pointer(self, pointer: ExecutionPointer, what: str) -> ExecutionPointer:
        self.pointer_copies += 1
        return super()._store_pointer(pointer, what)


async def test_is_a_persistence_provider() -> None:
    p = MemoryPersistenceProvider()
    assert isinstance(p, PersistenceProvider)
    assert p.capabilities == {Capability.SCHEDULED_COMMANDS, Capability.PURGE}


async def test_async_with_and_closed_provider_raises() -> None:
    async with MemoryPersistenceProvider() as p:
        wf = await p.create_workflow(_instance())
        assert (await p.get_workflow_instance(wf)).id == wf
    with pytest.raises(ProviderUnavailable, match="provider is closed"):
        await p.get_workflow_instance(wf)
    with pytest.raises(ProviderUnavailable):
        await p.create_event(Event("e", "k"))
    with pytest.raises(ProviderUnavailable):
        await p.ensure_store_exists()
    await p.close()  # idempotent


async def test_persist_copies_only_changed_pointers() -> None:
    p = CountingProvider()
    inst = _instance(1000)
    await p.create_workflow(inst)
    assert p.pointer_copies == 1000
    assert inst.changed_pointers() == []
    p.pointer_copies = 0
    inst.execution_pointers[500].retry_count = 3
    inst.execution_pointers.append(ExecutionPointer(step_id=9))
    await p.persist_workflow(inst)
    assert p.pointer_copies == 2
    loaded = await p.get_workflow_instance(inst.id)
    assert loaded.execution_pointers[500].retry_count == 3
    assert len(loaded.execution_pointers) == 1001
    assert loaded.execution_pointers[-1].step_id == 9
    assert loaded.changed_pointers() == []
    p.pointer_copies = 0
    await p.persist_workflow(loaded)  # nothing changed: header only
    assert p.pointer_copies == 0


async def test_removed_pointer_is_not_deleted() -> None:
    p = MemoryPersistenceProvider()
    inst = _instance(2)
    await p.create_workflow(inst)
    del inst.execution_pointers[0]
    await p.persist_workflow(inst)
    assert len((await p.get_workflow_instance(inst.id)).execution_pointers) == 2


async def test_no_aliasing_in_or_out() -> None:
    p = MemoryPersistenceProvider()
    inst = _instance(1, data={"items": [1, 2]})
    await p.create_workflow(inst)
    inst.data["items"].append(3)
    inst.execution_pointers[0].children.append("x")
    loaded = await p.get_workflow_instance(inst.id)
    assert loaded.data == {"items": [1, 2]}
    assert loaded.execution_pointers[0].children == []
    loaded.data["items"].clear()
    loaded.execution_pointers[0].scope.append("s")
    again = await p.get_workflow_instance(inst.id)
    assert again.data == {"items": [1, 2]}
    assert again.execution_pointers[0].scope == []
    assert again is not loaded

    sub = _sub(inst.id, subscription_data={"a": [1]})
    await p.create_subscription(sub)
    sub.subscription_data["a"].append(2)
    got = await p.get_subscription(sub.id)
    assert got.subscription_data == {"a": [1]}
    got.external_token = "stolen"
    assert (await p.get_subscription(sub.id)).external_token is None

    ev = Event("e", "k", event_data=[1])
    await p.create_event(ev)
    ev.event_data.append(2)
    ev.is_processed = True
    stored = await p.get_event(ev.id)
    assert stored.event_data == [1]
    assert not stored.is_processed


async def test_loaded_instance_has_no_pending_changes_and_revision() -> None:
    p = MemoryPersistenceProvider()
    inst = _instance(3)
    await p.create_workflow(inst)
    assert inst.revision == 1
    loaded = await p.get_workflow_instance(inst.id)
    assert loaded.changed_pointers() == []
    assert loaded.revision == 1
    [many] = await p.get_workflow_instances([inst.id])
    assert many.changed_pointers() == []


async def test_stale_persist_changes_nothing() -> None:
    p = MemoryPersistenceProvider()
    inst = _instance(1)
    await p.create_workflow(inst)
    a = await p.get_workflow_instance(inst.id)
    b = await p.get_workflow_instance(inst.id)
    a.description = "a"
    await p.persist_workflow(a)
    assert a.revision == 2
    b.description = "b"
    b.execution_pointers[0].retry_count = 7
    sub = _sub(inst.id)
    with pytest.raises(ConcurrencyError):
        await p.persist_workflow(b, [sub])
    assert sub.id == ""
    assert b.revision == 1
    assert b.changed_pointers() != []
    stored = await p.get_workflow_instance(inst.id)
    assert stored.description == "a"
    assert stored.execution_pointers[0].retry_count == 0
    assert await p.get_subscriptions("evt", "key", utcnow()) == []


async def test_create_existing_id_and_unknown_persist() -> None:
    p = MemoryPersistenceProvider()
    await p.create_workflow(_instance(id="x"))
    with pytest.raises(ConcurrencyError):
        await p.create_workflow(_instance(id="x"))
    with pytest.raises(WorkflowNotFound):
        await p.persist_workflow(_instance(id="nope"))


async def test_unstorable_data_is_refused_and_nothing_written() -> None:
    p = MemoryPersistenceProvider()
    inst = _instance(1, data={"ok": 1})
    await p.create_workflow(inst)
    inst.data = {"lock": threading.Lock()}
    with pytest.raises(SerializationError, match=r"data\[\"lock\"\]"):
        await p.persist_workflow(inst)
    assert (await p.get_workflow_instance(inst.id)).data == {"ok": 1}
    assert inst.revision == 1


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda p, t: p.get_runnable_instances(t), "as_at"),
        (lambda p, t: p.get_runnable_events(t), "as_at"),
        (lambda p, t: p.get_events("e", "k", t), "as_of"),
        (lambda p, t: p.get_subscriptions("e", "k", t), "as_of"),
        (lambda p, t: p.get_first_open_subscription("e", "k", t), "as_of"),
        (lambda p, t: p.purge_workflows(WorkflowStatus.COMPLETE, t), "older_than"),
        (lambda p, t: p.query_workflows(created_from=t), "created_from"),
        (lambda p, t: p.query_workflows(created_to=t), "created_to"),
        (lambda p, t: p.set_subscription_token("s", "t", "w", t), "expiry"),
        (lambda p, t: p.process_commands(t, _noop), "as_of"),
        (lambda p, t: p.schedule_command(ScheduledCommand("c", "d", t)), "execute_time"),
        (lambda p, t: p.create_event(Event("e", "k", event_time=t)), "event_time"),
        (lambda p, t: p.create_workflow(WorkflowInstance("d", next_execution=t)), "next_execution"),
        (lambda p, t: p.create_subscription(_sub(subscribe_as_of=t)), "subscribe_as_of"),
        (
            lambda p, t: p.persist_errors([ExecutionError("w", None, "m", error_time=t)]),
            "error_time",
        ),
    ],
)
async def test_naive_datetimes_are_refused(call: Any, name: str) -> None:
    p = MemoryPersistenceProvider()
    with pytest.raises(ValueError, match=name):
        await call(p, datetime(2024, 1, 1))


async def _noop(_: ScheduledCommand) -> None:
    return None


async def test_negative_paging_is_refused() -> None:
    p = MemoryPersistenceProvider()
    now = utcnow()
    with pytest.raises(ValueError, match="limit"):
        await p.get_runnable_instances(now, -1)
    with pytest.raises(ValueError, match="limit"):
        await p.get_runnable_events(now, -1)
    with pytest.raises(ValueError, match="skip"):
        await p.query_workflows(skip=-1)
    with pytest.raises(ValueError, match="take"):
        await p.query_workflows(take=-1)
    assert await p.get_runnable_instances(now, 0) == []


async def test_token_cas_one_winner_and_clear() -> None:
    p = MemoryPersistenceProvider()
    sub_id = await p.create_subscription(_sub())
    far = utcnow() + timedelta(hours=1)
    results = await asyncio.gather(
        *(p.set_subscription_token(sub_id, f"t{i}", f"w{i}", far) for i in range(50))
    )
    assert results.count(True) == 1
    winner = f"t{results.index(True)}"
    with pytest.raises(TokenMismatch):
        await p.clear_subscription_token(sub_id, "other")
    assert (await p.get_subscription(sub_id)).external_token == winner
    await p.clear_subscription_token(sub_id, winner)
    assert await p.set_subscription_token(sub_id, "again", "w", far)


async def test_expired_token_can_be_reclaimed() -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    p = MemoryPersistenceProvider(clock=lambda: now[0])
    sub_id = await p.create_subscription(_sub(subscribe_as_of=now[0] - timedelta(1)))
    assert await p.set_subscription_token(sub_id, "a", "w", now[0] + timedelta(seconds=10))
    assert await p.get_first_open_subscription("evt", "key", now[0]) is None
    assert not await p.set_subscription_token(sub_id, "b", "w", now[0] + timedelta(seconds=10))
    now[0] += timedelta(seconds=10)  # expiry at or before now counts as no claim
    open_sub = await p.get_first_open_subscription("evt", "key", now[0])
    assert open_sub is not None
    assert open_sub.id == sub_id
    assert await p.set_subscription_token(sub_id, "b", "w", now[0] + timedelta(seconds=10))


async def test_concurrent_processors_each_command_once() -> None:
    p = MemoryPersistenceProvider()
    now = utcnow()
    for i in range(20):
        await p.schedule_command(ScheduledCommand("process_workflow", str(i), now))
    seen: list[str] = []

    async def handler(cmd: ScheduledCommand) -> None:
        seen.append(cmd.data)
        await anyio.sleep(0.001)

    counts = await asyncio.gather(*(p.process_commands(now, handler) for _ in range(5)))
    assert sum(counts) == 20
    assert sorted(seen, key=int) == [str(i) for i in range(20)]
    assert await p.process_commands(now, handler) == 0


async def test_failed_command_is_kept_with_earlier_time() -> None:
    p = MemoryPersistenceProvider()
    t0 = utcnow() - timedelta(seconds=5)
    await p.schedule_command(ScheduledCommand("process_event", "e1", t0))

    async def failing(cmd: ScheduledCommand) -> None:
        # rescheduled (later) while in flight: the put-back keeps the earlier time
        await p.schedule_command(ScheduledCommand("process_event", "e1", t0 + timedelta(1)))
        raise RuntimeError("boom")

    assert await p.process_commands(utcnow(), failing) == 0
    got: list[ScheduledCommand] = []

    async def ok(cmd: ScheduledCommand) -> None:
        got.append(cmd)

    assert await p.process_commands(utcnow(), ok) == 1
    assert got == [ScheduledCommand("process_event", "e1", t0)]
    assert await p.process_commands(utcnow() + timedelta(days=2), ok) == 0


async def test_command_rescheduled_during_success_runs_again() -> None:
    p = MemoryPersistenceProvider()
    now = utcnow()
    await p.schedule_command(ScheduledCommand("process_workflow", "w", now))
    calls = 0

    async def handler(cmd: ScheduledCommand) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await p.schedule_command(ScheduledCommand("process_workflow", "w", now))

    assert await p.process_commands(now, handler) == 1
    assert await p.process_commands(now, handler) == 1
    assert calls == 2


async def test_cancelled_handler_puts_command_back() -> None:
    p = MemoryPersistenceProvider()
    now = utcnow()
    await p.schedule_command(ScheduledCommand("process_workflow", "w", now))
    started = anyio.Event()

    async def hang(cmd: ScheduledCommand) -> None:
        started.set()
        await anyio.sleep(60)

    async with anyio.create_task_group() as tg:
        tg.start_soon(p.process_commands, now, hang)
        with anyio.fail_after(5):
            await started.wait()
        tg.cancel_scope.cancel()
    got: list[str] = []

    async def ok(cmd: ScheduledCommand) -> None:
        got.append(cmd.data)

    assert await p.process_commands(now, ok) == 1
    assert got == ["w"]


async def test_capability_subset_raises_not_supported() -> None:
    p = MemoryPersistenceProvider(capabilities=())
    assert p.capabilities == frozenset()
    with pytest.raises(CapabilityNotSupported, match="SCHEDULED_COMMANDS"):
        await p.schedule_command(ScheduledCommand("c", "d", utcnow()))
    with pytest.raises(CapabilityNotSupported, match="PURGE"):
        await p.purge_workflows(WorkflowStatus.COMPLETE, utcnow())
    with pytest.raises(ValueError, match="unknown capability"):
        MemoryPersistenceProvider(capabilities=["bogus"])  # type: ignore[list-item]


async def test_purge_deletes_instance_subscriptions_and_errors() -> None:
    p = MemoryPersistenceProvider()
    old = utcnow() - timedelta(days=2)
    done = _instance(1, status=WorkflowStatus.COMPLETE, complete_time=old)
    live = _instance(1)
    await p.create_workflow(done)
    await p.create_workflow(live)
    await p.create_subscription(_sub(done.id))
    await p.create_subscription(_sub(live.id, "q"))
    await p.persist_errors([ExecutionError(done.id, None, "m")])
    with pytest.raises(ValueError, match="COMPLETE or TERMINATED"):
        await p.purge_workflows(WorkflowStatus.RUNNABLE, utcnow())
    assert await p.purge_workflows(WorkflowStatus.TERMINATED, utcnow()) == 0
    assert await p.purge_workflows(WorkflowStatus.COMPLETE, utcnow()) == 1
    with pytest.raises(WorkflowNotFound):
        await p.get_workflow_instance(done.id)
    assert await p.get_errors(done.id) == []
    subs = await p.get_subscriptions("evt", "key", utcnow())
    assert [s.workflow_id for s in subs] == [live.id]


async def test_ordering_ties_follow_insertion() -> None:
    p = MemoryPersistenceProvider()
    t = utcnow() - timedelta(seconds=1)
    ids = [await p.create_workflow(_instance(next_execution=t)) for _ in range(5)]
    assert await p.get_runnable_instances(utcnow()) == ids
    assert await p.get_runnable_instances(utcnow(), 2) == ids[:2]
    evs = [await p.create_event(Event("e", "k", event_time=t)) for _ in range(5)]
    assert await p.get_runnable_events(utcnow()) == evs
    await p.mark_event_processed(evs[0])
    await p.mark_event_unprocessed(evs[0])
    assert await p.get_runnable_events(utcnow()) == evs
    assert await p.get_events("e", "k", t) == evs


async def test_unstorable_pointer_data_is_refused_naming_the_pointer() -> None:
    p = MemoryPersistenceProvider()
    inst = _instance(2)
    await p.create_workflow(inst)
    bad = inst.execution_pointers[1]
    bad.persistence_data = {"fn": lambda: None}
    inst.description = "not saved"
    with pytest.raises(SerializationError) as e:
        await p.persist_workflow(inst)
    assert bad.id in str(e.value)
    assert "persistence_data" in str(e.value)
    stored = await p.get_workflow_instance(inst.id)
    assert stored.description is None
    assert stored.execution_pointers[1].persistence_data is None


async def test_times_are_stored_in_utc_and_data_keeps_its_offset() -> None:
    p = MemoryPersistenceProvider()
    plus2 = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 12, 0, tzinfo=plus2)
    inst = _instance(1, next_execution=local, create_time=local, data={"when": local})
    inst.execution_pointers[0].sleep_until = local
    await p.create_workflow(inst)
    loaded = await p.get_workflow_instance(inst.id)
    for value in (
        loaded.next_execution,
        loaded.create_time,
        loaded.execution_pointers[0].sleep_until,
    ):
        assert value == local
        assert value is not None
        assert value.utcoffset() == timedelta(0)
    assert loaded.data["when"].utcoffset() == timedelta(hours=2)  # user data is untouched
    ev = await p.create_event(Event("e", "k", event_time=local))
    assert (await p.get_event(ev)).event_time.tzinfo is UTC
    assert await p.get_runnable_instances(local) == [inst.id]


async def test_provider_from_url() -> None:
    p = provider_from_url("memory://")
    assert isinstance(p, MemoryPersistenceProvider)
    named = provider_from_url("memory://tests", capabilities=[Capability.PURGE])
    assert named.name == "tests"
    assert named.capabilities == {Capability.PURGE}
    assert provider_from_url("memory:").name == ""
    with pytest.raises(ValueError, match="memory://"):
        provider_from_url("sqlite:///x.db")
