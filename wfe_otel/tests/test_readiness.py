"""``/readyz``'s checks: a host that is not running, a background task of a running
host that has ended, and a store that no longer answers each make it not ready."""

from __future__ import annotations

import asyncio

import pytest
from wfe_otel.server import readiness

from wfe_core import WorkflowHost
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_stopped_background_task_makes_the_host_not_ready() -> None:
    host = WorkflowHost(MemoryPersistenceProvider())
    assert host.stopped_tasks() == []
    assert await readiness(host) == ["the host is not running (not started yet, or stopping)"]
    await host.start()
    try:
        assert host.stopped_tasks() == []
        assert await readiness(host) == []
        poller = next(t for t in asyncio.all_tasks() if t.get_name() == "wfe-poller")
        poller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poller
        assert host.stopped_tasks() == ["wfe-poller"]
        assert await readiness(host) == ["the host's background task wfe-poller has stopped"]
    finally:
        await host.stop()
    assert host.stopped_tasks() == []


async def test_a_closed_store_makes_the_host_not_ready() -> None:
    store = MemoryPersistenceProvider()
    host = WorkflowHost(store)
    await host.start()
    try:
        await store.close()
        reasons = await readiness(host)
        assert len(reasons) == 1
        assert reasons[0].startswith("the store is unreachable: ProviderUnavailable")
    finally:
        await host.stop()
