"""``wait_for_workflow`` on the host that runs the workflow takes the end in process: no
store read while the workflow runs here, and the instance returned is what the last
write stored. A waiter elsewhere (a client, another host) still reads the store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from wfe_core.client import core as client_core

from wfe_core import (
    HostOptions,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowClient,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Box:
    steps: int = 0


def bump(context: StepContext[Box]) -> None:
    context.workflow.data.steps += 1


class Three(Workflow[Box]):
    id = "wait-in-process"

    def build(self, builder: WorkflowBuilder[Box]) -> None:
        builder.start_with(bump).then(bump).then(bump)


class Gate(Workflow[Box]):
    id = "wait-in-process-gate"

    def build(self, builder: WorkflowBuilder[Box]) -> None:
        builder.start_with(bump).wait_for("open", key=lambda d: "k").then(bump)


class CountingStore(MemoryPersistenceProvider):
    """The memory store, counting instance reads."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0

    async def get_workflow_instance(self, workflow_id: str) -> Any:
        self.reads += 1
        return await super().get_workflow_instance(workflow_id)


async def test_the_host_running_it_hands_the_end_over_without_reading_the_store() -> None:
    store = CountingStore()
    # no poll after the first (a poll could queue a running instance for another pass)
    async with WorkflowHost(store, options=HostOptions(poll_interval=3600)) as host:
        host.register_workflow(Three())
        await host.start()
        await host.wait_for_workflow(await host.start_workflow(Three.id, Box()), 30)
        for _ in range(20):
            await _idle(host)  # a pass the first poll queued for the last one is over
            before = store.reads
            wid = await host.start_workflow(Three.id, Box())
            done = await host.wait_for_workflow(wid, 30)
            assert store.reads == before  # neither the pass nor the waiter read it
            assert done.status is WorkflowStatus.COMPLETE
            assert done.data.steps == 3
            stored = await store.get_workflow_instance(wid)
            assert done == stored  # what the last write stored, revision included
            done.data.steps = 99  # the caller's own object: nothing else sees it
            assert (await host.wait_for_workflow(wid, 30)).data.steps == 3


async def _first_step_done(store: CountingStore, wid: str) -> None:
    """Until the stored instance shows its first step done (bounded)."""
    for _ in range(3000):
        if (await store.get_workflow_instance(wid)).data.steps == 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"workflow {wid} never finished its first step")


async def _idle(host: WorkflowHost) -> None:
    """Until no pass runs on ``host`` or was handed to one (bounded)."""
    for _ in range(3000):
        if not host.passes.active and not host.passes.handed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"passes still running: {sorted(host.passes.active)}")


async def test_a_waiter_after_the_end_gets_it_from_this_process_then_from_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = CountingStore()
    async with WorkflowHost(store) as host:
        host.register_workflow(Three())
        await host.start()
        wid = await host.start_workflow(Three.id, Box())
        await _idle(host)  # it ended before anyone waited
        before = store.reads
        first = await host.wait_for_workflow(wid, 30)  # the end kept in this process
        assert first.data.steps == 3
        assert store.reads == before
        first.data.steps = 99  # the first waiter took that object; a second reads the store
        assert (await host.wait_for_workflow(wid, 30)).data.steps == 3
        assert store.reads == before + 1
        other = await host.start_workflow(Three.id, Box())
        await _idle(host)
        monkeypatch.setattr(client_core, "ENDS_KEPT_SECONDS", 0.0)  # the moment is over
        assert (await host.wait_for_workflow(other, 30)).data.steps == 3
        assert store.reads == before + 2


async def test_a_waiting_workflow_resumed_here_ends_through_the_in_process_hand_over() -> None:
    store = CountingStore()
    async with WorkflowHost(store) as host:
        host.register_workflow(Gate())
        await host.start()
        wid = await host.start_workflow(Gate.id, Box())
        waiter = asyncio.create_task(host.wait_for_workflow(wid, 30))
        await _first_step_done(store, wid)
        await host.publish_event("open", "k", None)
        done = await waiter
        assert done.status is WorkflowStatus.COMPLETE
        assert done.data.steps == 2


async def test_a_client_on_the_same_store_reads_the_end_from_the_store() -> None:
    store = CountingStore()
    async with WorkflowHost(store) as host:
        host.register_workflow(Three())
        await host.start()
        async with WorkflowClient(store) as client:
            client.register_workflow(Three())
            wid = await client.start_workflow(Three.id, Box())
            before = store.reads
            done = await client.wait_for_workflow(wid, 30)
            assert done.status is WorkflowStatus.COMPLETE
            assert done.data.steps == 3
            assert store.reads > before


async def test_the_kept_ends_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_core, "ENDS_KEPT", 5)
    async with WorkflowHost(MemoryPersistenceProvider()) as host:
        host.register_workflow(Three())
        await host.start()
        ids = [await host.start_workflow(Three.id, Box()) for _ in range(12)]
        for wid in ids:
            await host.wait_for_workflow(wid, 30)
        assert len(host._ends_here) <= 5


def test_a_copied_instance_shares_no_mutable_state() -> None:
    """The copy a waiter gets (``copy.deepcopy``, with fast paths for the model's own
    fields) equals the original and changing it changes nothing in the original."""
    import copy

    from wfe_core.models import ExecutionPointer, PointerStatus, WorkflowInstance

    first = ExecutionPointer(step_id=0, status=PointerStatus.COMPLETE, children=["c1"])
    first.extension_attributes["k"] = {"nested": [1, 2]}
    first.persistence_data = {"state": [1]}
    second = ExecutionPointer(step_id=1, scope=[first.id], event_data={"paid": [3]})
    original = WorkflowInstance("wf", data=Box(steps=2), execution_pointers=[first, second])
    original.execution_pointers.clear_changes()
    second.retry_count = 1  # changed since loaded: the copy keeps that too

    clone = copy.deepcopy(original)
    assert clone == original
    assert [p.id for p in clone.execution_pointers.changed()] == [second.id]
    assert clone.pointer(first.id) is clone.execution_pointers[0]
    c_first, c_second = clone.execution_pointers
    c_first.children.append("c2")
    c_first.extension_attributes["k"]["nested"].append(3)
    c_first.persistence_data["state"].append(2)
    c_second.scope.append("x")
    c_second.event_data["paid"].append(4)
    clone.data.steps = 9
    assert first.children == ["c1"]
    assert first.extension_attributes == {"k": {"nested": [1, 2]}}
    assert first.persistence_data == {"state": [1]}
    assert second.scope == [first.id]
    assert second.event_data == {"paid": [3]}
    assert original.data.steps == 2


async def test_a_waiter_wakes_when_the_pass_here_leaves_the_workflow_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the workflow runs here the waiter sleeps until signalled; the end of a pass
    that leaves it waiting signals too, so the waiter goes back to reading the store and
    sees an end written elsewhere (here: a client terminating it)."""
    from wfe_core.client import reading

    monkeypatch.setattr(reading, "_HERE_RECHECK", 3600.0)  # no safety-net wake-up
    store = CountingStore()
    async with WorkflowHost(store) as host:
        host.register_workflow(Gate())
        await host.start()
        wid = await host.start_workflow(Gate.id, Box())
        waiter = asyncio.create_task(host.wait_for_workflow(wid, 120))
        await _first_step_done(store, wid)
        await _idle(host)
        async with WorkflowClient(store) as client:
            client.register_workflow(Gate())
            assert await client.terminate_workflow(wid)
        # polling the store again (at most 250 ms apart), not asleep until its timeout
        done = await asyncio.wait_for(waiter, 30)
        assert done.status is WorkflowStatus.TERMINATED
