"""Losing Redis's lock keys never lets two hosts run one instance.

Two hosts on one SQLite file (two provider objects, as two processes would have) with
Redis locks and queues. While the first host runs a long step, every key of the test's
prefix is deleted -- what a Redis restart without persistence or a ``FLUSHALL`` does to
the locks. The second host then gets the workflow's lock from Redis, but the store's
claim still belongs to the first host, so it never starts the step: the step runs once
and the workflow completes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from wfe_conformance.ownership import LongStepWorkflow, StepProbe
from wfe_conformance.scenario_support import wait_until

from wfe_core import HostOptions, WorkflowHost, WorkflowStatus
from wfe_redis import RedisLockProvider, RedisQueueProvider
from wfe_sqlite import SqlitePersistenceProvider

pytestmark = pytest.mark.anyio
BOUND = 30.0


async def _flush(url: str, prefix: str) -> int:
    """Delete every key of ``prefix`` (this test's FLUSHALL); return how many."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


async def _start_two(
    db: Path, url: str, prefix: str, probe: StepProbe, made: list[WorkflowHost], stop: float
) -> None:
    """Start two hosts on one SQLite file (a provider object each, as two processes
    would have) with Redis locks and queues under ``prefix``; append them to ``made``."""
    options = HostOptions(poll_interval=0.05, idle_time=0.01, lock_ttl=3.0, stop_timeout=stop)
    for _ in range(2):
        host = WorkflowHost(
            SqlitePersistenceProvider(db),
            lock_provider=RedisLockProvider(url, prefix=prefix),
            queue_provider=RedisQueueProvider(url, prefix=prefix),
            options=options,
        )
        host.register_workflow(LongStepWorkflow(probe))
        await host.start()
        made.append(host)


async def _stop_all(made: list[WorkflowHost]) -> None:
    for host in made:
        await host.stop()
        await host.persistence.close()


@pytest.fixture
async def hosts(
    tmp_path: Path, url: str, prefix: str
) -> AsyncIterator[tuple[WorkflowHost, WorkflowHost, StepProbe]]:
    probe = StepProbe()
    made: list[WorkflowHost] = []
    try:
        await _start_two(tmp_path / "wfe.db", url, prefix, probe, made, stop=5.0)
        yield made[0], made[1], probe
    finally:
        await _stop_all(made)


async def test_flushed_locks_do_not_let_a_second_host_run_the_step(
    hosts: tuple[WorkflowHost, WorkflowHost, StepProbe], url: str, prefix: str
) -> None:
    """After the lock keys vanish mid-step, the second host polls and takes the lock
    but not the store's claim: the running step is never started twice."""
    first, second, probe = hosts
    wid = await first.start_workflow(LongStepWorkflow.id, {})
    await wait_until(lambda: bool(probe.entered), BOUND, "the long step to start")
    assert await _flush(url, prefix) > 0  # the running workflow's lock was among them
    flushed = time.monotonic()
    # the second host polls every 50 ms: give it many chances over two seconds, and
    # flush again meanwhile in case the first host's renewal put the lock back
    await wait_until(lambda: time.monotonic() - flushed > 1.0, BOUND, "a second")
    await _flush(url, prefix)
    await wait_until(lambda: time.monotonic() - flushed > 2.0, BOUND, "two seconds")
    assert probe.most == 1, "a second host started the running step"
    assert probe.entered == [wid]
    probe.release.set()
    done = await second.wait_for_workflow(wid, timeout=BOUND)
    assert done.status is WorkflowStatus.COMPLETE
    assert probe.most == 1
    assert probe.entered == [wid]
    assert probe.after == [wid]


async def test_without_the_store_claim_the_flush_lets_the_step_run_twice(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    url: str,
    prefix: str,
) -> None:
    """Teeth: with the host's store claim turned into a no-op (a mutant that trusts the
    lock alone), the same flush lets the second host start the running step."""

    async def no_claim(self: WorkflowHost, workflow_id: str) -> bool:
        return True

    monkeypatch.setattr(WorkflowHost, "_claim", no_claim)
    probe = StepProbe()
    made: list[WorkflowHost] = []
    try:
        await _start_two(tmp_path / "wfe.db", url, prefix, probe, made, stop=1.0)
        await made[0].start_workflow(LongStepWorkflow.id, {})
        await wait_until(lambda: bool(probe.entered), BOUND, "the long step to start")
        await _flush(url, prefix)
        await wait_until(lambda: probe.most >= 2, BOUND, "the mutant to run the step twice")
    finally:
        probe.release.set()
        await _stop_all(made)
