"""Redis stopped and started again under a running host.

The test runs its own redis-server on a free port, so stopping it disturbs no other
test (the shared server on 6379 keeps running), and restarts it on the same port.
While Redis is down the host takes no work, does not crash-loop (its loops stay
alive and log a bounded number of lines), and it resumes by itself afterwards:
nothing published meanwhile is lost.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from wfe_conformance.scenario_support import wait_until
from wfe_core.models import utcnow

from wfe_core import HostOptions, Workflow, WorkflowBuilder, WorkflowHost, WorkflowStatus
from wfe_memory import MemoryPersistenceProvider
from wfe_redis import RedisLockProvider, RedisQueueProvider

pytestmark = pytest.mark.anyio
BOUND = 20.0


class PrivateRedis:
    """A redis-server of this test's own, that can be stopped and started again."""

    def __init__(self) -> None:
        program = shutil.which("redis-server")
        if program is None:
            pytest.fail("redis-server is not installed (the fault test needs it)")
        self.program = program
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.program, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + BOUND
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    pytest.fail("the private redis-server did not start")
                time.sleep(0.01)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(BOUND)
        self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Order:
    key: str = ""
    since: datetime | None = None
    paid: object = None


class WaitingOrder(Workflow[Order]):
    id = "redis-fault-order"
    data_type = Order

    def build(self, builder: WorkflowBuilder[Order]) -> None:
        builder.start_with(lambda context: None).wait_for(
            "paid", key=lambda d: d.key, effective_date=lambda d: d.since
        ).output(paid=lambda step: step.event_data)


async def test_host_pauses_while_redis_is_down_and_resumes_after(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped: no work is taken and no crash loop; Redis back: everything
    published meanwhile completes."""
    prefix = f"wfe-fault:{uuid.uuid4().hex[:8]}:"
    store = MemoryPersistenceProvider()
    host = WorkflowHost(
        store,
        lock_provider=RedisLockProvider(private_redis.url, prefix=prefix),
        queue_provider=RedisQueueProvider(private_redis.url, prefix=prefix),
        options=HostOptions(poll_interval=0.1, idle_time=0.02, lock_ttl=3.0, stop_timeout=5.0),
    )
    host.register_workflow(WaitingOrder())
    keys = [f"k{n}" for n in range(10)]
    since = datetime.now(UTC)
    async with host:
        ids = [await host.start_workflow(WaitingOrder.id, Order(k, since)) for k in keys]

        async def all_waiting() -> bool:
            far = utcnow() + timedelta(days=1)
            return all([await store.get_subscriptions("paid", k, far) for k in keys])

        await wait_until(all_waiting, BOUND, "every order to wait for its payment")

        private_redis.stop()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="wfe"):
            for key in keys:  # stored; the queue hint fails and is only logged
                await host.publish_event("paid", key, f"paid:{key}")
            await anyio.sleep(1.5)  # let the outage last: the host must ride it out
            outage_lines = len([r for r in caplog.records if r.name.startswith("wfe")])
        assert all(not task.done() for task in host._loops), "a host loop died"
        statuses = [(await store.get_workflow_instance(i)).status for i in ids]
        assert statuses == [WorkflowStatus.RUNNABLE] * len(ids), "work was done without Redis"
        assert outage_lines < 60, f"the host logged {outage_lines} lines in 1.5 s: a crash loop"

        private_redis.start()
        for workflow_id, key in zip(ids, keys, strict=True):
            done = await host.wait_for_workflow(workflow_id, timeout=BOUND)
            assert done.status == WorkflowStatus.COMPLETE
            assert done.data.paid == f"paid:{key}"
        assert all(not task.done() for task in host._loops)
