"""Poison data as it happens between processes: a writer that registered a type and a
worker that did not, each with its own serializer (and type registry), sharing one
SQLite file or one PostgreSQL schema.

The worker sets an event of the unknown type aside and delivers the next one; it
suspends an instance whose data names the unknown type, and runs it once the type is
registered and the instance resumed. Nothing is registered in the process-wide default
serializer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from wfe_core.persistence import PersistenceProvider
from wfe_core.serialization import Serializer, TypeRegistry, Undecodable

from wfe_core import (
    HostOptions,
    LifecycleEvent,
    LifecycleEventType,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)

pytestmark = pytest.mark.anyio

OPTIONS = HostOptions(poll_interval=0.05, idle_time=0.01, error_retry_interval=0.05)
TIMEOUT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Shipment:
    """Known to the writer only (until the worker registers it)."""

    parcel: str
    weight: int = 0


@dataclass
class Order:
    """The workflow's data type (known to both; ``shipment`` is typed Any so that
    registering Order does not register Shipment)."""

    key: str = ""
    shipment: Any = None
    last: Any = None
    steps: list[str] = field(default_factory=list)


async def _record(context: StepContext[Any]) -> None:
    context.data.steps.append("ran")


class ShipWorkflow(Workflow[Order]):
    """Wait for "shipped" keyed by data.key, then record a step."""

    id = "poison-ship"
    version = 1
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(_record).wait_for("shipped", key=lambda d: d.key).output(
            last=lambda s: s.event_data
        )


def _serializer(*types: type) -> Serializer:
    serializer = Serializer(TypeRegistry())
    serializer.register(*types)
    return serializer


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[PersistenceProvider, PersistenceProvider, Serializer, Serializer]]:
    """(writer store, worker store, writer serializer, worker serializer) on one database."""
    writer_ser = _serializer(Order, Shipment)
    worker_ser = Serializer(TypeRegistry())  # Order comes with the workflow; Shipment not
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            from wfe_sqlite import SqlitePersistenceProvider

            path = tmp_path / "wfe.db"
            writer: PersistenceProvider = await stack.enter_async_context(
                SqlitePersistenceProvider(path, serializer=writer_ser)
            )
            worker: PersistenceProvider = await stack.enter_async_context(
                SqlitePersistenceProvider(path, serializer=worker_ser)
            )
        else:
            from wfe_conformance.services import postgres_url
            from wfe_postgres.testing import temporary_schema

            from wfe_postgres import PostgresPersistenceProvider

            url = postgres_url()
            schema = await stack.enter_async_context(temporary_schema(url))
            writer = await stack.enter_async_context(
                PostgresPersistenceProvider(
                    url, schema=schema, serializer=writer_ser, min_size=1, max_size=4
                )
            )
            worker = await stack.enter_async_context(
                PostgresPersistenceProvider(
                    url, schema=schema, serializer=worker_ser, min_size=1, max_size=4
                )
            )
        yield writer, worker, writer_ser, worker_ser


async def _until(predicate: Any, message: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await anyio.sleep(0.01)


async def test_unknown_event_type_is_set_aside_and_the_next_event_delivered(
    stores: tuple[PersistenceProvider, PersistenceProvider, Serializer, Serializer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker sets an event of a type it never registered aside (reason stored,
    one lifecycle event, one warning) and delivers the next event for the key."""
    caplog.set_level(logging.WARNING, logger="wfe")
    writer_store, worker_store, writer_ser, worker_ser = stores
    client = WorkflowHost(writer_store, options=OPTIONS, serializer=writer_ser)
    client.register_workflow(ShipWorkflow())
    lifecycle: list[LifecycleEvent] = []
    worker = WorkflowHost(worker_store, options=OPTIONS, serializer=worker_ser)
    worker.register_workflow(ShipWorkflow())
    worker.on_lifecycle_event(lifecycle.append)
    async with worker:
        wid = await worker.start_workflow(ShipWorkflow.id, Order(key="k1"))

        async def subscribed() -> bool:
            return bool(await worker_store.get_subscriptions("shipped", "k1", _far()))

        await _until(subscribed, "the subscription")
        poison_id = await client.publish_event("shipped", "k1", Shipment("box", 3))
        await client.publish_event("shipped", "k1", "plain")
        done = await worker.wait_for_workflow(wid, TIMEOUT)
        assert done.data.last == "plain"
        poison = await worker_store.get_event(poison_id)
        assert poison.set_aside is not None
        assert "Shipment" in poison.set_aside
        assert "not registered" in poison.set_aside
        assert isinstance(poison.event_data, Undecodable)
        # the writer, which knows the type, still reads the event data intact
        assert (await writer_store.get_event(poison_id)).event_data == Shipment("box", 3)
    assert [e.type for e in lifecycle].count(LifecycleEventType.EVENT_SET_ASIDE) == 1
    assert len([r for r in caplog.records if poison_id in r.getMessage()]) == 1


async def test_unknown_data_type_suspends_until_registered_and_resumed(
    stores: tuple[PersistenceProvider, PersistenceProvider, Serializer, Serializer],
) -> None:
    """An instance whose data names a type the worker never registered is suspended
    with an error; terminate works on another; after host.register_type and resume
    it runs to the end with its data intact."""
    writer_store, worker_store, writer_ser, worker_ser = stores
    client = WorkflowHost(writer_store, options=OPTIONS, serializer=writer_ser)
    client.register_workflow(ShipWorkflow())
    worker = WorkflowHost(worker_store, options=OPTIONS, serializer=worker_ser)
    worker.register_workflow(ShipWorkflow())
    resumable = await client.start_workflow(ShipWorkflow.id, Order("k2", Shipment("crate", 9)))
    doomed = await client.start_workflow(ShipWorkflow.id, Order("k3", Shipment("bag", 1)))
    async with worker:

        async def suspended() -> bool:
            found = await worker_store.get_workflow_instances([resumable, doomed])
            return all(i.status == WorkflowStatus.SUSPENDED for i in found)

        await _until(suspended, "both instances to be suspended")
        (error,) = await worker.get_errors(resumable)
        assert "workflow data cannot be decoded" in error.message
        assert "Shipment" in error.message
        listed = await worker_store.query_workflows(status=WorkflowStatus.SUSPENDED)
        assert {i.id for i in listed} == {resumable, doomed}
        assert all(isinstance(i.data, Undecodable) for i in listed)

        assert await worker.terminate_workflow(doomed) is True

        async def terminated() -> bool:
            status = (await worker_store.get_workflow_instance(doomed)).status
            return status == WorkflowStatus.TERMINATED

        await _until(terminated, "the terminated instance")
        assert (await writer_store.get_workflow_instance(doomed)).data == Order(
            "k3", Shipment("bag", 1)
        )

        worker.register_type(Shipment)
        assert await worker.resume_workflow(resumable) is True

        async def waiting() -> bool:
            return bool(await worker_store.get_subscriptions("shipped", "k2", _far()))

        await _until(waiting, "the resumed instance to wait for its event")
        await worker.publish_event("shipped", "k2", Shipment("label", 0))
        done = await worker.wait_for_workflow(resumable, TIMEOUT)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data == Order("k2", Shipment("crate", 9), Shipment("label", 0), ["ran"])


def _far() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=3650)
