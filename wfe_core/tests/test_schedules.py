"""Schedules (issue 12 item 3): the model (cron in a time zone, intervals, validation),
the client API, and firing under the virtual clock (overlap, catch-up, crash between
start and claim)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from wfe_core.host.schedules import ScheduleFirer
from wfe_core.models import WorkflowStatus
from wfe_core.schedules import (
    CatchupPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    fire_key,
)
from wfe_core.testing import WorkflowTestEnv

from wfe_core import StepContext, Workflow, WorkflowBuilder
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _noop(context: StepContext[dict[str, int]]) -> None:
    """Does nothing."""


class Report(Workflow[dict[str, int]]):
    """One step: ends at once."""

    id = "sched-report"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, int]]) -> None:
        builder.start_with(_noop)


class Waiting(Workflow[dict[str, int]]):
    """Waits for an event nobody publishes: stays running."""

    id = "sched-waiting"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, int]]) -> None:
        builder.start_with(_noop).wait_for("never", key=lambda d: "x")


# ------------------------------------------------------------------ model


def test_cron_is_evaluated_in_the_time_zone_across_dst() -> None:
    """09:00 Berlin is 08:00 UTC in winter and 07:00 UTC in summer."""
    s = Schedule(
        id="s",
        definition_id="d",
        cron="0 9 * * *",
        timezone="Europe/Berlin",
        create_time=datetime(2030, 3, 29, 12, tzinfo=UTC),
    )
    s.next_fire_time = s.first_fire_time()
    times = s.next_fire_times(3)
    assert [t.hour for t in times] == [8, 7, 7]  # summer time from 31 March
    w = s.copy(create_time=datetime(2030, 3, 29, 6, tzinfo=UTC))
    w.next_fire_time = w.first_fire_time()
    assert [t.hour for t in w.next_fire_times(4)] == [8, 8, 7, 7]
    assert all(t.tzinfo is UTC for t in times)


def test_every_counts_from_start_at_and_stops_at_end_at() -> None:
    """An interval fires at start_at, then every interval, never after end_at."""
    s = Schedule(
        id="s",
        definition_id="d",
        every=timedelta(hours=1),
        start_at=T0 + timedelta(minutes=30),
        end_at=T0 + timedelta(hours=2, minutes=30),
        create_time=T0,
    )
    s.next_fire_time = s.first_fire_time()
    assert s.next_fire_times(10) == [T0 + timedelta(minutes=30 + 60 * k) for k in range(3)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 \\* \\* \\* \\*'"),
        ({"cron": "not a cron"}, "invalid cron expression 'not a cron'"),
        ({"every": timedelta(0)}, "every must be a positive interval"),
        ({"every": timedelta(seconds=-5)}, "every must be a positive interval"),
        ({"every": timedelta(seconds=5), "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": timedelta(seconds=5), "cron": "* * * * *"}, "exactly one of cron"),
        ({}, "exactly one of cron"),
    ],
)
async def test_bad_input_is_named_and_nothing_is_stored(
    changes: dict[str, object], message: str
) -> None:
    """Invalid cron, unknown zone, non-positive interval, both or neither: ValueError."""
    async with WorkflowTestEnv(start=T0, workflows=[Report()]) as env:
        with pytest.raises(ValueError, match=message):
            await env.host.create_schedule("bad", Report.id, **changes)  # type: ignore[arg-type]
        assert await env.host.list_schedules() == []


async def test_client_api_round_trip() -> None:
    """create / get / list / pause / resume / delete / next_fire_times, and clear errors
    for a taken id, an unknown id and an unknown policy."""
    async with WorkflowTestEnv(start=T0) as env:
        host = env.host
        s = await host.create_schedule("nightly", Report, {"n": 1}, cron="0 2 * * *")
        assert s.definition_id == Report.id
        assert s.version == 1
        assert (await host.get_schedule("nightly")) == s
        assert [x.id for x in await host.list_schedules()] == ["nightly"]
        assert await host.next_fire_times("nightly", 2) == [
            datetime(2030, 1, 2, 2, tzinfo=UTC),
            datetime(2030, 1, 3, 2, tzinfo=UTC),
        ]
        with pytest.raises(ScheduleAlreadyExists, match="'nightly' exists already"):
            await host.create_schedule("nightly", Report, cron="0 3 * * *")
        assert await host.pause_schedule("nightly")
        assert (await host.get_schedule("nightly")).paused
        assert await host.resume_schedule("nightly")
        await host.delete_schedule("nightly")
        for call in (host.get_schedule, host.pause_schedule, host.delete_schedule):
            with pytest.raises(ScheduleNotFound, match="no schedule with id 'nightly'"):
                await call("nightly")
        with pytest.raises(ValueError, match="overlap must be one of 'skip', 'allow'"):
            await host.create_schedule("x", Report, every=timedelta(1), overlap="sometimes")


# ------------------------------------------------------------------ firing


async def test_virtual_clock_fires_each_due_time_once() -> None:
    """Advancing the virtual clock a day fires an hourly schedule 24 times."""
    async with WorkflowTestEnv(start=T0, workflows=[Report()]) as env:
        await env.host.create_schedule("hourly", Report, {"n": 1}, every=timedelta(hours=1))
        await env.advance(timedelta(days=1))
        instances = await env.host.persistence.query_workflows(definition_id=Report.id, take=100)
        keys = sorted(str(i.idempotency_key) for i in instances)
        assert keys == sorted(fire_key("hourly", T0 + timedelta(hours=h)) for h in range(1, 25))
        assert all(i.data == {"n": 1} for i in instances)


async def test_overlap_skip_starts_nothing_while_the_last_run_runs() -> None:
    """overlap=skip: a run that never ends blocks the later fires; allow starts each."""
    async with WorkflowTestEnv(start=T0, workflows=[Waiting()]) as env:
        await env.host.create_schedule("skip", Waiting, every=timedelta(hours=1))
        await env.host.create_schedule(
            "allow", Waiting, every=timedelta(hours=1), overlap=OverlapPolicy.ALLOW
        )
        await env.advance(timedelta(hours=3))
        runs = await env.host.persistence.query_workflows(definition_id=Waiting.id, take=100)
        by = {"skip": 0, "allow": 0}
        for run in runs:
            by[str(run.idempotency_key).split(":")[1]] += 1
        assert by == {"skip": 1, "allow": 3}
        assert all(r.status is WorkflowStatus.RUNNABLE for r in runs)


async def test_catch_up_fires_one_run_or_skips() -> None:
    """Due times missed while paused: catchup=one fires one run, catchup=skip none."""
    async with WorkflowTestEnv(start=T0, workflows=[Report()]) as env:
        host = env.host
        await host.create_schedule("one", Report, every=timedelta(hours=1), paused=True)
        await host.create_schedule(
            "skip", Report, every=timedelta(hours=1), paused=True, catchup=CatchupPolicy.SKIP
        )
        await env.advance(timedelta(hours=5, minutes=30))
        assert await host.persistence.query_workflows(definition_id=Report.id) == []
        await host.resume_schedule("one")
        await host.resume_schedule("skip")
        await env.host.poller.poll_once()
        await env.wait_idle()
        runs = await host.persistence.query_workflows(definition_id=Report.id)
        assert [str(r.idempotency_key) for r in runs] == [fire_key("one", T0 + timedelta(hours=1))]
        for sid in ("one", "skip"):
            assert (await host.get_schedule(sid)).next_fire_time == T0 + timedelta(hours=6)


async def test_a_crash_between_start_and_claim_starts_once() -> None:
    """Started but not claimed (a crash in between): the next fire starts nothing new."""
    async with WorkflowTestEnv(start=T0, workflows=[Report()]) as env:
        host = env.host
        s = await host.create_schedule("c", Report, every=timedelta(hours=1))
        due = s.next_fire_time
        assert due is not None
        first = await host.start_workflow(Report.id, None, idempotency_key=fire_key("c", due))
        env.clock.advance_to(due)
        firer = ScheduleFirer(host)
        assert await firer.fire_due(due) == 1
        runs = await host.persistence.query_workflows(definition_id=Report.id)
        assert [r.id for r in runs] == [first]
        assert (await host.get_schedule("c")).last_instance_id == first


async def test_a_store_without_schedules_is_refused_clearly() -> None:
    """A provider that is not a ScheduleRepository: SchedulesNotSupported naming it."""

    class Plain(MemoryPersistenceProvider):
        create_schedule = None  # type: ignore[assignment]

    async with WorkflowTestEnv(persistence=Plain()) as env:
        with pytest.raises(NotImplementedError, match="Plain does not store schedules"):
            await env.host.list_schedules()


def test_readme_schedules_example_runs(tmp_path: Path) -> None:
    """The README's "Schedules" example runs as written: five weekday reports."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Schedules", 1)[1]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    script = tmp_path / "schedules_example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("report for ops") == 5, done.stdout
    assert "next: ['2030-01-07T08:00:00+00:00', '2030-01-08T08:00:00+00:00']" in done.stdout
    assert "schedules: ['reports']" in done.stdout


def test_sync_client_manages_schedules(tmp_path: Path) -> None:
    """The blocking client creates, lists, pauses, resumes and deletes schedules."""
    from wfe_core import WorkflowClient

    with WorkflowClient.connect_sync(f"sqlite:///{tmp_path / 'wfe.db'}") as client:
        made = client.create_schedule("s", "some-definition", {"n": 1}, every=timedelta(hours=1))
        assert client.get_schedule("s") == made
        assert [s.id for s in client.list_schedules()] == ["s"]
        assert client.pause_schedule("s")
        assert client.resume_schedule("s")
        client.delete_schedule("s")
        assert client.list_schedules() == []
