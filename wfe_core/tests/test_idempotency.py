"""Idempotent starts (``start_workflow(..., idempotency_key=...)``) and publishes
(``publish_event(..., event_id=...)``) through the client and the host, on the memory
store and a real SQLite file: a retried request returns what the first one made and
starts, stores and delivers nothing more; a different request reusing the key or id
is refused with an error naming what holds it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from wfe_core.client.core import workflow_lock
from wfe_core.models import LifecycleEvent, LifecycleEventType, QueueType, WorkflowInstance
from wfe_core.persistence import MAX_ID_LENGTH, MAX_KEY_LENGTH

from wfe_core import (
    EventIdConflict,
    HostOptions,
    IdempotencyKeyConflict,
    MiddlewarePhase,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowClient,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Order:
    number: str = ""
    items: dict[str, int] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    received: Any = None


async def note(context: StepContext[Order]) -> None:
    context.data.steps.append("noted")


class Ship(Workflow[Order]):
    id = "idem-ship"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(note)


class ShipV2(Ship):
    version = 2


class AwaitPayment(Workflow[Order]):
    """Notes, then waits for ``paid`` keyed by the order number."""

    id = "idem-await"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        (
            builder.start_with(note)
            .wait_for("paid", key=lambda d: d.number)
            .output(received=lambda s: s.event_data)
            .then(note)
        )


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait (bounded) until ``condition`` holds."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def store() -> AsyncIterator[MemoryPersistenceProvider]:
    async with MemoryPersistenceProvider() as provider:
        yield provider


@pytest.fixture
async def client(store: MemoryPersistenceProvider) -> AsyncIterator[WorkflowClient]:
    made = WorkflowClient(store)
    for workflow in (Ship(), ShipV2(), AwaitPayment()):
        made.register_workflow(workflow)
    async with made:
        yield made


@pytest.fixture
async def host(store: MemoryPersistenceProvider) -> AsyncIterator[WorkflowHost]:
    made = WorkflowHost(store, options=HostOptions(stop_timeout=TIMEOUT))
    for workflow in (Ship(), ShipV2(), AwaitPayment()):
        made.register_workflow(workflow)
    async with made:
        yield made


# --------------------------------------------------------------------------------------
# idempotent start
# --------------------------------------------------------------------------------------


async def test_same_key_same_data_returns_the_existing_instance(client: WorkflowClient) -> None:
    """A retried start returns the first instance's id; no second instance, no second
    WORKFLOW_STARTED lifecycle event."""
    started: list[LifecycleEvent] = []
    client.on_lifecycle_event(
        lambda e: started.append(e) if e.type is LifecycleEventType.WORKFLOW_STARTED else None
    )
    data = Order("A-1", {"apple": 2, "pear": 1})
    first = await client.start_workflow("idem-ship", data, idempotency_key="order-A-1")
    again = await client.start_workflow(
        "idem-ship", Order("A-1", {"pear": 1, "apple": 2}), idempotency_key="order-A-1"
    )
    assert again == first
    assert await client.count_workflows(definition_id="idem-ship") == 1
    assert [e.workflow_id for e in started] == [first]
    assert (await client.get_workflow_instance(first)).idempotency_key == "order-A-1"
    handle = await client.start_instance(ShipV2, data, idempotency_key="order-A-1")
    assert handle.id == first


async def test_same_key_other_data_or_version_is_refused(client: WorkflowClient) -> None:
    """Reusing a key for a different request raises IdempotencyKeyConflict naming the
    instance holding it and the key, and starts nothing."""
    first = await client.start_workflow("idem-ship", Order("A-2"), version=1, idempotency_key="k")
    with pytest.raises(IdempotencyKeyConflict, match="other data") as other_data:
        await client.start_workflow("idem-ship", Order("A-3"), version=1, idempotency_key="k")
    assert other_data.value.existing_id == first
    assert first in str(other_data.value)
    assert "'k'" in str(other_data.value)
    with pytest.raises(IdempotencyKeyConflict, match="version 1, not 2") as other_version:
        await client.start_workflow("idem-ship", Order("A-2"), version=2, idempotency_key="k")
    assert other_version.value.existing_id == first
    assert await client.count_workflows() == 1


async def test_keys_are_scoped_per_definition_and_optional(client: WorkflowClient) -> None:
    """One key under two definitions makes two instances; starts without a key never
    collide."""
    a = await client.start_workflow("idem-ship", Order("X"), idempotency_key="same")
    b = await client.start_workflow("idem-await", Order("X"), idempotency_key="same")
    c = await client.start_workflow("idem-ship", Order("X"))
    d = await client.start_workflow("idem-ship", Order("X"))
    assert len({a, b, c, d}) == 4


async def test_bad_keys_are_refused_before_anything_is_stored(client: WorkflowClient) -> None:
    """A key of the wrong type is a TypeError naming it; an empty or too long key a
    ValueError; nothing is stored."""
    with pytest.raises(TypeError, match="idempotency_key must be a string or None, not int"):
        await client.start_workflow("idem-ship", Order(), idempotency_key=12)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        await client.start_workflow("idem-ship", Order(), idempotency_key="")
    with pytest.raises(ValueError, match=f"the limit is {MAX_KEY_LENGTH} characters"):
        await client.start_workflow(
            "idem-ship", Order(), idempotency_key="k" * (MAX_KEY_LENGTH + 1)
        )
    assert await client.count_workflows() == 0


async def test_concurrent_starts_with_one_key_make_one_instance(client: WorkflowClient) -> None:
    """Ten concurrent starts with one key all return the same id; one instance."""
    ids = await asyncio.gather(
        *(
            client.start_workflow("idem-ship", Order("C-1"), idempotency_key="burst")
            for _ in range(10)
        )
    )
    assert len(set(ids)) == 1
    assert await client.count_workflows() == 1


async def test_the_key_holds_after_the_run_changed_the_data_and_until_purged(
    host: WorkflowHost, store: MemoryPersistenceProvider
) -> None:
    """A retry after the workflow ran (and changed its data) still returns its id; the
    key is kept after completion and freed by purge."""
    wid = await host.start_workflow("idem-ship", Order("P-1"), idempotency_key="p")
    done = await host.wait_for_workflow(wid, TIMEOUT)
    assert done.status is WorkflowStatus.COMPLETE
    assert done.data.steps == ["noted"]
    assert await host.start_workflow("idem-ship", Order("P-1"), idempotency_key="p") == wid
    purged = await store.purge_workflows(
        WorkflowStatus.COMPLETE, datetime.now(UTC) + timedelta(days=1)
    )
    assert purged == 1
    fresh = await host.start_workflow("idem-ship", Order("P-1"), idempotency_key="p")
    assert fresh != wid


async def test_host_local_start_gives_back_slot_and_lock_on_a_duplicate(
    host: WorkflowHost,
) -> None:
    """On a running host a refused duplicate start releases the workflow slot and the
    lock it took for the local fast path (more duplicates than slots still leave every
    slot free, and the lock of the refused instance is free)."""
    seen: list[WorkflowInstance] = []
    host.use_workflow_middleware(MiddlewarePhase.PRE_WORKFLOW, seen.append)
    wid = await host.start_workflow("idem-ship", Order("L-1"), idempotency_key="local")
    await host.wait_for_workflow(wid, TIMEOUT)
    slots = host.dispatcher._slots[QueueType.WORKFLOW]
    await until(lambda: slots._value == host.options.max_concurrent_workflows - 1, "idle slots")
    free = slots._value
    for _ in range(host.options.max_concurrent_workflows + 2):
        again = await host.start_workflow("idem-ship", Order("L-1"), idempotency_key="local")
        assert again == wid
    assert slots._value == free
    refused_id = seen[-1].id
    assert refused_id != wid
    assert await host.lock_provider.acquire_lock(workflow_lock(refused_id), 5)
    other = await host.start_workflow("idem-ship", Order("L-2"))
    assert (await host.wait_for_workflow(other, TIMEOUT)).status is WorkflowStatus.COMPLETE


async def test_idempotent_start_on_sqlite_through_the_sync_client(tmp_path: Path) -> None:
    """The sync client on a real SQLite file: a retried start returns the first id,
    other data is refused, and ``wfe``-style reads show the key."""
    url = f"sqlite:///{tmp_path / 'idem.db'}"

    def run() -> None:
        with WorkflowClient.connect_sync(url) as sync:
            sync.register_workflow(Ship())
            first = sync.start_workflow("idem-ship", Order("S-1"), idempotency_key="s")
            assert sync.start_workflow("idem-ship", Order("S-1"), idempotency_key="s") == first
            handle = sync.start_instance(Ship(), Order("S-1"), idempotency_key="s")
            assert handle.id == first
            with pytest.raises(IdempotencyKeyConflict):
                sync.start_workflow("idem-ship", Order("S-2"), idempotency_key="s")
            [listed] = sync.query_workflows()
            assert listed.idempotency_key == "s"
            assert sync.publish_event("e", "k", 1, event_id="ev") == "ev"
            assert sync.publish_event("e", "k", 1, event_id="ev") == "ev"

    await asyncio.to_thread(run)


# --------------------------------------------------------------------------------------
# idempotent publish
# --------------------------------------------------------------------------------------


async def test_same_event_id_is_stored_and_delivered_once(
    host: WorkflowHost, store: MemoryPersistenceProvider
) -> None:
    """Publishing one event id twice (a retried webhook) stores one event, delivers it
    once and returns the same id both times."""
    wid = await host.start_workflow("idem-await", Order("E-1"))
    await until(
        lambda: _waiting(store, "paid", "E-1"),
        "the workflow to wait for its event",
    )
    first = await host.publish_event("paid", "E-1", {"amount": 5}, event_id="hook-1")
    again = await host.publish_event("paid", "E-1", {"amount": 5}, event_id="hook-1")
    assert first == again == "hook-1"
    done = await host.wait_for_workflow(wid, TIMEOUT)
    assert done.data.received == {"amount": 5}
    assert done.data.steps == ["noted", "noted"]
    stored = await store.get_events("paid", "E-1", datetime(2000, 1, 1, tzinfo=UTC))
    assert stored == ["hook-1"]


async def _waiting(store: MemoryPersistenceProvider, name: str, key: str) -> bool:
    return bool(await store.get_subscriptions(name, key, datetime.now(UTC)))


async def test_concurrent_publishes_with_one_event_id_store_one(
    client: WorkflowClient, store: MemoryPersistenceProvider
) -> None:
    """Ten concurrent publishes of one event id all return it; one event is stored."""
    ids = await asyncio.gather(
        *(client.publish_event("burst", "k", n, event_id="one") for n in range(10))
    )
    assert set(ids) == {"one"}
    assert await store.get_events("burst", "k", datetime(2000, 1, 1, tzinfo=UTC)) == ["one"]


async def test_event_id_with_other_name_or_key_is_refused(client: WorkflowClient) -> None:
    """Reusing an event id for another name or key raises EventIdConflict naming both."""
    await client.publish_event("paid", "A", event_id="id-1")
    with pytest.raises(EventIdConflict, match="'paid' with key 'A'") as raised:
        await client.publish_event("paid", "B", event_id="id-1")
    assert raised.value.event_id == "id-1"
    with pytest.raises(EventIdConflict):
        await client.publish_event("shipped", "A", event_id="id-1")


async def test_bad_event_ids_are_refused(client: WorkflowClient) -> None:
    """A non-string event id is a TypeError; an empty or too long one a ValueError."""
    with pytest.raises(TypeError, match="event_id must be a string or None, not int"):
        await client.publish_event("e", "k", event_id=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        await client.publish_event("e", "k", event_id="")
    with pytest.raises(ValueError, match=f"the limit is {MAX_ID_LENGTH} characters"):
        await client.publish_event("e", "k", event_id="x" * (MAX_ID_LENGTH + 1))


# --------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------


def test_readme_idempotency_example_runs(tmp_path: Path) -> None:
    """The README's "Idempotent starts and publishes" example runs as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Idempotent starts and publishes", 1)[1]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    script = tmp_path / "idempotency_example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "same instance: True" in done.stdout
    assert "conflict: IdempotencyKeyConflict" in done.stdout
    assert "events stored: 1" in done.stdout
