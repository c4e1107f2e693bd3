"""Conformance suite for schedules: the :class:`~wfe_core.schedules.ScheduleRepository`
part of a store, and firing by several hosts at once.

The store's fire claim (a compare-and-set on ``next_fire_time``) is what makes a
schedule fire once per due time however many hosts run; the fire-count test runs
three hosts -- each with its own provider object on the store when the provider is
``DURABLE``, and a lock service that grants every lock, so only the store keeps them
apart -- and counts the instances started.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from wfe_core.builder import WorkflowBuilder
from wfe_core.capabilities import Capability
from wfe_core.host import WorkflowHost
from wfe_core.models import new_id, utcnow
from wfe_core.options import HostOptions
from wfe_core.persistence import PersistenceProvider
from wfe_core.queues import InProcessQueueProvider
from wfe_core.schedules import (
    CatchupPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    ScheduleRepository,
    fire_key,
)
from wfe_core.steps import StepContext
from wfe_core.workflow import Workflow

from wfe_conformance.base import SuiteBase
from wfe_conformance.durability import StoreOpener
from wfe_conformance.ownership import GrantingLock
from wfe_conformance.sample import BASE_TIME

__all__ = ["ScheduleStoreTests"]

_CONCURRENT = 10
_HOSTS = 3


def _store(provider: PersistenceProvider) -> ScheduleRepository:
    if not isinstance(provider, ScheduleRepository):
        pytest.fail(
            f"{type(provider).__name__} does not implement wfe_core.schedules."
            "ScheduleRepository (create_schedule, get_schedule, list_schedules, "
            "set_schedule_paused, delete_schedule, get_due_schedules, claim_schedule_fire)"
        )
    return provider


def _schedule(schedule_id: str | None = None, **changes: object) -> Schedule:
    s = Schedule(
        id=schedule_id or f"sched-{new_id()}",
        definition_id="scheduled-definition",
        data={"n": 1, "tags": ["a", "b"]},
        every=timedelta(minutes=5),
        create_time=BASE_TIME,
    )
    s = s.copy(**changes)
    s.next_fire_time = s.first_fire_time()
    return s


def _tick(context: StepContext[dict[str, int]]) -> None:
    """Does nothing: the test counts instances, not steps."""


class ScheduledTick(Workflow[dict[str, int]]):
    """The workflow the fire-count test schedules."""

    id = "wfe-conformance-scheduled-tick"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, int]]) -> None:
        """One step."""
        builder.start_with(_tick)


class ScheduleStoreTests(SuiteBase):
    """Schedules are stored faithfully and each due time is claimed by one caller."""

    async def test_schedule_round_trip(self, provider: PersistenceProvider) -> None:
        """create / get / list return what was stored; times come back as UTC."""
        store = _store(provider)
        cron = _schedule(
            cron="30 2 * * *",
            every=None,
            timezone="Europe/Berlin",
            overlap=OverlapPolicy.ALLOW,
            catchup=CatchupPolicy.SKIP,
            version=3,
            start_at=BASE_TIME,
            end_at=BASE_TIME + timedelta(days=30),
        )
        every = _schedule(data=None)
        await store.create_schedule(cron)
        await store.create_schedule(every)
        for want in (cron, every):
            got = await store.get_schedule(want.id)
            assert got == want
            assert got.next_fire_time is not None
            assert got.next_fire_time.tzinfo is not None
            assert got.next_fire_time.utcoffset() == timedelta(0)
        listed = [s for s in await store.list_schedules() if s.id in (cron.id, every.id)]
        assert [s.id for s in listed] == sorted([cron.id, every.id])

    async def test_taken_id_is_refused(self, provider: PersistenceProvider) -> None:
        """A second schedule with a taken id raises ScheduleAlreadyExists; the first stays."""
        store = _store(provider)
        first = _schedule()
        await store.create_schedule(first)
        with pytest.raises(ScheduleAlreadyExists):
            await store.create_schedule(_schedule(first.id, definition_id="other"))
        assert (await store.get_schedule(first.id)).definition_id == first.definition_id

    async def test_unknown_id_raises(self, provider: PersistenceProvider) -> None:
        """get / pause / delete of an unknown id raise ScheduleNotFound."""
        store = _store(provider)
        with pytest.raises(ScheduleNotFound):
            await store.get_schedule("no-such-schedule")
        with pytest.raises(ScheduleNotFound):
            await store.set_schedule_paused("no-such-schedule", True)
        with pytest.raises(ScheduleNotFound):
            await store.delete_schedule("no-such-schedule")

    async def test_pause_resume_delete(self, provider: PersistenceProvider) -> None:
        """Pause and resume report a change once; delete removes the schedule."""
        store = _store(provider)
        s = _schedule()
        await store.create_schedule(s)
        assert await store.set_schedule_paused(s.id, True)
        assert not await store.set_schedule_paused(s.id, True)
        assert (await store.get_schedule(s.id)).paused
        assert await store.set_schedule_paused(s.id, False)
        assert not await store.set_schedule_paused(s.id, False)
        assert not (await store.get_schedule(s.id)).paused
        await store.delete_schedule(s.id)
        with pytest.raises(ScheduleNotFound):
            await store.get_schedule(s.id)
        assert s.id not in [x.id for x in await store.list_schedules()]

    async def test_due_schedules(self, provider: PersistenceProvider) -> None:
        """Due = unpaused with next_fire_time <= as_at, earliest first; paused ones never."""
        store = _store(provider)
        early = _schedule(start_at=BASE_TIME + timedelta(minutes=1))
        late = _schedule(start_at=BASE_TIME + timedelta(minutes=2))
        paused = _schedule(start_at=BASE_TIME + timedelta(seconds=30), paused=True)
        for s in (late, early, paused):
            await store.create_schedule(s)
        at = BASE_TIME + timedelta(minutes=2)
        ids = [s.id for s in await store.get_due_schedules(at)]
        assert [i for i in ids if i in (early.id, late.id, paused.id)] == [early.id, late.id]
        before = [s.id for s in await store.get_due_schedules(BASE_TIME + timedelta(seconds=61))]
        assert late.id not in before
        assert early.id in before
        assert len(await store.get_due_schedules(at, 1)) == 1

    async def test_concurrent_claims_of_one_due_time_have_one_winner(
        self, provider: PersistenceProvider
    ) -> None:
        """Of concurrent claims of one due time exactly one wins and its values are stored."""
        store = _store(provider)
        s = _schedule()
        await store.create_schedule(s)
        due = s.next_fire_time
        assert due is not None
        following = due + timedelta(minutes=5)
        results: dict[str, bool] = {}

        async def claim(who: str) -> None:
            results[who] = await store.claim_schedule_fire(s.id, due, following, who)

        async with anyio.create_task_group() as tg:
            for n in range(_CONCURRENT):
                tg.start_soon(claim, f"instance-{n}")
        winners = [w for w, ok in results.items() if ok]
        assert len(winners) == 1, results
        got = await store.get_schedule(s.id)
        assert got.next_fire_time == following
        assert got.last_fire_time == due
        assert got.last_instance_id == winners[0]

    async def test_stale_or_paused_claim_changes_nothing(
        self, provider: PersistenceProvider
    ) -> None:
        """A claim of a due time that is not the stored one, of a paused or unknown
        schedule, returns False and changes nothing; a claim may end the schedule."""
        store = _store(provider)
        s = _schedule()
        await store.create_schedule(s)
        due = s.next_fire_time
        assert due is not None
        assert not await store.claim_schedule_fire(s.id, due - timedelta(minutes=5), due, "x")
        assert not await store.claim_schedule_fire("no-such-schedule", due, None, "x")
        await store.set_schedule_paused(s.id, True)
        assert not await store.claim_schedule_fire(s.id, due, None, "x")
        assert await store.get_schedule(s.id) == s.copy(paused=True)
        await store.set_schedule_paused(s.id, False)
        assert await store.claim_schedule_fire(s.id, due, None, None)
        got = await store.get_schedule(s.id)
        assert got.next_fire_time is None
        assert got.last_instance_id is None
        assert s.id not in [x.id for x in await store.get_due_schedules(due + timedelta(days=9))]

    async def test_hosts_fire_each_due_time_once(
        self, provider: PersistenceProvider, request: pytest.FixtureRequest
    ) -> None:
        """Three hosts (own provider objects when DURABLE, locks that grant everything)
        firing an every-second schedule start one instance per due time, no duplicate."""
        _store(provider)
        options = HostOptions(poll_interval=0.1, idle_time=0.05)
        async with contextlib.AsyncExitStack() as stack:
            hosts: list[WorkflowHost] = []
            for _ in range(_HOSTS):
                persistence = provider
                if Capability.DURABLE in provider.capabilities:
                    opener: StoreOpener = request.getfixturevalue("store_opener")
                    persistence = await stack.enter_async_context(opener.open())
                host = WorkflowHost(
                    persistence,
                    lock_provider=GrantingLock(),
                    queue_provider=InProcessQueueProvider(),
                    options=options,
                )
                host.register_workflow(ScheduledTick())
                hosts.append(host)
            schedule = await hosts[0].create_schedule(
                f"every-second-{new_id()}",
                ScheduledTick.id,
                {"n": 0},
                every=timedelta(seconds=1),
                overlap=OverlapPolicy.ALLOW,
            )
            first = schedule.next_fire_time
            assert first is not None
            for host in hosts:
                await stack.enter_async_context(_running(host))
            deadline = time.monotonic() + 20
            while True:
                got = await hosts[0].get_schedule(schedule.id)
                last = got.last_fire_time
                if last is not None and last >= first + timedelta(seconds=3):
                    break
                assert time.monotonic() < deadline, f"only fired up to {last} by now"
                await asyncio.sleep(0.05)
            await hosts[0].pause_schedule(schedule.id)
        instances = await provider.query_workflows(definition_id=ScheduledTick.id, take=1000)
        keys = Counter(i.idempotency_key for i in instances)
        assert all(n == 1 for n in keys.values()), keys
        final = await _store(provider).get_schedule(schedule.id)
        assert final.last_fire_time is not None
        expected: set[str] = set()
        at: datetime | None = first
        while at is not None and at <= final.last_fire_time:
            expected.add(fire_key(schedule.id, at))
            at = schedule.fire_time_after(at)
        assert set(keys) == expected, (sorted(map(str, keys)), sorted(expected))
        assert first.tzinfo is not None
        assert first.astimezone(UTC) == first
        assert utcnow() >= final.last_fire_time


@contextlib.asynccontextmanager
async def _running(host: WorkflowHost) -> AsyncIterator[WorkflowHost]:
    await host.start()
    try:
        yield host
    finally:
        await host.stop()
