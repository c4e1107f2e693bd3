"""Local hand-off: a running host runs the instances it starts, delivers the events it
publishes and resumes the instances it just delivered to, itself -- without a round
trip through its queue -- while it has a free slot; otherwise (a client host, or every
slot busy) the work goes through the queue as before, and still gets done.

The queue provider records every ``queue_work`` call. The store's poller would queue
due work as a fallback; its poll locks are held by another owner here, so every queue
item in a test comes from the code under test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from wfe_core.locks import InProcessLockProvider, shared_lock_table
from wfe_core.models import QueueType, WorkflowStatus, utcnow
from wfe_core.queues import InProcessQueueProvider

from wfe_core import HostOptions, StepContext, Workflow, WorkflowBuilder, WorkflowHost
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0
EVENT = "handoff-event"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------
# recording providers
# --------------------------------------------------------------------------------------


class RecordingQueue(InProcessQueueProvider):
    """The in-process queue, recording every ``queue_work`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, QueueType]] = []

    async def queue_work(self, id: str, queue: QueueType) -> None:
        self.calls.append((id, queue))
        await super().queue_work(id, queue)

    def queued(self, item: str, queue: QueueType, since: int = 0) -> int:
        """How often ``item`` was queued on ``queue`` (from call number ``since`` on)."""
        return self.calls[since:].count((item, queue))


class RecordingLocks(InProcessLockProvider):
    """The in-process lock provider, recording every successful ``acquire_lock``."""

    def __init__(self, table: Any) -> None:
        super().__init__(table)
        self.acquired: list[str] = []

    async def acquire_lock(self, resource: str, ttl: float) -> bool:
        got = await super().acquire_lock(resource, ttl)
        if got:
            self.acquired.append(resource)
        return got


# --------------------------------------------------------------------------------------
# workflows
# --------------------------------------------------------------------------------------


@dataclass
class Box:
    key: str = ""
    steps: list[str] = field(default_factory=list)
    received: Any = None


async def first(context: StepContext[Box]) -> None:
    context.data.steps.append("first")


async def second(context: StepContext[Box]) -> None:
    context.data.steps.append("second")


async def after(context: StepContext[Box]) -> None:
    context.data.steps.append("after")


class TwoSteps(Workflow[Box]):
    id = "handoff-two-steps"
    version = 1
    data_type = Box

    def build(self, builder: WorkflowBuilder[Box]) -> None:
        builder.start_with(first).then(second)


class Gated(Workflow[Box]):
    """One step that holds its workflow slot until ``gate`` opens (5 s at most)."""

    id = "handoff-gated"
    version = 1
    data_type = Box

    def __init__(self, gate: asyncio.Event, entered: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate
        self.entered = entered

    def build(self, builder: WorkflowBuilder[Box]) -> None:
        gate, entered = self.gate, self.entered

        async def hold(context: StepContext[Box]) -> None:
            entered.set()
            await asyncio.wait_for(gate.wait(), TIMEOUT)
            context.data.steps.append("held")

        builder.start_with(hold)


class WaitForEvent(Workflow[Box]):
    """Wait for EVENT keyed by data.key; its data lands in ``received``; then "after"."""

    id = "handoff-wait"
    version = 1
    data_type = Box

    def build(self, builder: WorkflowBuilder[Box]) -> None:
        (
            builder.start_with(first)
            .wait_for(EVENT, key=lambda d: d.key)
            .output(received=lambda s: s.event_data)
            .then(after)
        )


# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
async def store() -> AsyncIterator[MemoryPersistenceProvider]:
    async with MemoryPersistenceProvider() as provider:
        yield provider


@pytest.fixture
async def no_poller(store: MemoryPersistenceProvider) -> AsyncIterator[None]:
    """Hold the poll locks for the test, so no host's poller queues anything."""
    other = InProcessLockProvider(shared_lock_table(store))
    for name in ("wfe:poll:workflows", "wfe:poll:events", "wfe:poll:commands"):
        assert await other.acquire_lock(name, 600)
    yield
    await other.stop()


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def locks(store: MemoryPersistenceProvider) -> RecordingLocks:
    return RecordingLocks(shared_lock_table(store))


@pytest.fixture
def make_host(
    store: MemoryPersistenceProvider, queue: RecordingQueue, locks: RecordingLocks, no_poller: None
) -> Callable[..., WorkflowHost]:
    def make(*workflows: Workflow[Any], **options: Any) -> WorkflowHost:
        host = WorkflowHost(
            store,
            lock_provider=locks,
            queue_provider=queue,
            options=HostOptions(stop_timeout=TIMEOUT, **options),
        )
        for workflow in workflows or (TwoSteps(),):
            host.register_workflow(workflow)
        return host

    return make


async def until(condition: Callable[[], Awaitable[bool] | bool], message: str) -> None:
    """Wait (bounded) until ``condition`` holds, looking every few milliseconds."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {message}")
        await asyncio.sleep(0.005)


async def waiting_on(store: MemoryPersistenceProvider, workflow_id: str, key: str) -> bool:
    subs = await store.get_subscriptions(EVENT, key, utcnow())
    return any(s.workflow_id == workflow_id for s in subs)


async def parked(host: WorkflowHost, store: MemoryPersistenceProvider, wid: str, key: str) -> None:
    """Wait until ``wid`` subscribed to EVENT/``key`` and its pass is over."""

    async def ready() -> bool:
        return wid not in host.passes.active and await waiting_on(store, wid, key)

    await until(ready, f"workflow {wid} waiting for {EVENT}/{key}")


# --------------------------------------------------------------------------------------
# new instances
# --------------------------------------------------------------------------------------


async def test_a_running_host_runs_the_workflow_it_starts_without_queueing_it(
    make_host: Callable[..., WorkflowHost], queue: RecordingQueue, locks: RecordingLocks
) -> None:
    host = make_host()
    async with host:
        wid = await host.start_workflow("handoff-two-steps", Box("a"))
        done = await host.wait_for_workflow(wid, TIMEOUT)
    assert done.status is WorkflowStatus.COMPLETE
    assert done.data.steps == ["first", "second"]
    assert queue.queued(wid, QueueType.WORKFLOW) == 0, "the new instance went through the queue"
    # the lock taken before the instance existed is the one the pass ran under
    assert locks.acquired.count(f"wfe:workflow:{wid}") == 1


async def test_a_client_host_queues_the_workflow_it_starts(
    make_host: Callable[..., WorkflowHost],
    store: MemoryPersistenceProvider,
    queue: RecordingQueue,
    locks: RecordingLocks,
) -> None:
    host = make_host()  # not started: a client
    wid = await host.start_workflow("handoff-two-steps", Box("b"))
    assert queue.calls == [(wid, QueueType.WORKFLOW)]
    stored = await store.get_workflow_instance(wid)
    assert stored.status is WorkflowStatus.RUNNABLE
    assert stored.data.steps == []
    assert f"wfe:workflow:{wid}" not in locks.acquired  # no lock left behind
    # the queued item is what gets it run once the host runs (the poller is held off)
    async with host:
        done = await host.wait_for_workflow(wid, TIMEOUT)
    assert done.data.steps == ["first", "second"]
    assert queue.queued(wid, QueueType.WORKFLOW) == 1


async def test_a_host_with_every_workflow_slot_busy_queues_the_new_workflow(
    make_host: Callable[..., WorkflowHost], queue: RecordingQueue
) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    host = make_host(TwoSteps(), Gated(gate, entered), max_concurrent_workflows=1)
    async with host:
        blocker = await host.start_workflow("handoff-gated", Box("held"))
        await asyncio.wait_for(entered.wait(), TIMEOUT)  # the only slot is taken
        mark = len(queue.calls)
        wid = await host.start_workflow("handoff-two-steps", Box("c"))
        assert queue.queued(wid, QueueType.WORKFLOW, since=mark) == 1
        # it waits for the slot: it does not run while the blocker holds it
        with pytest.raises(TimeoutError):
            await host.wait_for_workflow(wid, 0.2)
        assert (await host.get_workflow_instance(wid)).data.steps == []
        gate.set()
        done = await host.wait_for_workflow(wid, TIMEOUT)
        held = await host.wait_for_workflow(blocker, TIMEOUT)
    assert done.data.steps == ["first", "second"]
    assert held.data.steps == ["held"]
    assert done.complete_time is not None
    assert held.complete_time is not None
    assert held.complete_time <= done.complete_time


# --------------------------------------------------------------------------------------
# events and resumed instances
# --------------------------------------------------------------------------------------


async def test_publish_event_on_a_running_host_delivers_it_locally(
    make_host: Callable[..., WorkflowHost], store: MemoryPersistenceProvider, queue: RecordingQueue
) -> None:
    host = make_host(WaitForEvent())
    async with host:
        wid = await host.start_workflow("handoff-wait", Box("k-local"))
        await parked(host, store, wid, "k-local")
        event_id = await host.publish_event(EVENT, "k-local", "paid")
        done = await host.wait_for_workflow(wid, TIMEOUT)
    assert queue.queued(event_id, QueueType.EVENT) == 0, "the event went through the queue"
    assert done.data.received == "paid"
    assert done.data.steps == ["first", "after"]
    assert (await store.get_event(event_id)).is_processed


async def test_publish_event_on_a_client_host_queues_it(
    make_host: Callable[..., WorkflowHost], store: MemoryPersistenceProvider, queue: RecordingQueue
) -> None:
    client = make_host(WaitForEvent())  # never started
    event_id = await client.publish_event(EVENT, "k-client", "paid")
    assert queue.calls == [(event_id, QueueType.EVENT)]
    assert not (await store.get_event(event_id)).is_processed


async def test_a_delivery_hands_the_resumed_instance_to_a_local_pass(
    make_host: Callable[..., WorkflowHost],
    store: MemoryPersistenceProvider,
    queue: RecordingQueue,
    locks: RecordingLocks,
) -> None:
    host = make_host(WaitForEvent())
    async with host:
        wid = await host.start_workflow("handoff-wait", Box("k-resume"))
        await parked(host, store, wid, "k-resume")
        mark_queue, mark_locks = len(queue.calls), len(locks.acquired)
        await host.publish_event(EVENT, "k-resume", 42)
        done = await host.wait_for_workflow(wid, TIMEOUT)
    assert done.status is WorkflowStatus.COMPLETE
    assert done.data.received == 42
    assert done.data.steps == ["first", "after"]
    assert queue.queued(wid, QueueType.WORKFLOW, since=mark_queue) == 0
    # one lock for delivery and resumed pass: the pass took over the delivery's lock
    assert locks.acquired[mark_locks:].count(f"wfe:workflow:{wid}") == 1


async def test_a_delivery_while_every_workflow_slot_is_busy_queues_the_resumed_instance(
    make_host: Callable[..., WorkflowHost],
    store: MemoryPersistenceProvider,
    queue: RecordingQueue,
    locks: RecordingLocks,
) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    host = make_host(WaitForEvent(), Gated(gate, entered), max_concurrent_workflows=1)
    async with host:
        wid = await host.start_workflow("handoff-wait", Box("k-busy"))
        await parked(host, store, wid, "k-busy")
        await host.start_workflow("handoff-gated", Box("held"))
        await asyncio.wait_for(entered.wait(), TIMEOUT)  # the only slot is taken
        mark_queue, mark_locks = len(queue.calls), len(locks.acquired)
        await host.publish_event(EVENT, "k-busy", "late")
        await until(
            lambda: queue.queued(wid, QueueType.WORKFLOW, since=mark_queue) == 1,
            "the resumed instance queued",
        )
        assert (await host.get_workflow_instance(wid)).data.steps == ["first"]
        gate.set()
        done = await host.wait_for_workflow(wid, TIMEOUT)
    assert done.data.received == "late"
    assert done.data.steps == ["first", "after"]
    # the delivery released its lock; the pass that ran from the queue took it again
    assert locks.acquired[mark_locks:].count(f"wfe:workflow:{wid}") == 2
