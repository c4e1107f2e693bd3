"""Conformance suite for scheduled commands (capability ``SCHEDULED_COMMANDS``).

Pins down: a command is handed over only once due (``execute_time <= as_of``), is
stored once per ``(command_name, data)`` keeping the earlier ``execute_time``, goes to
exactly one handler across concurrent processors, is deleted only after its handler
returned and kept when the handler raised.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel
from wfe_core.capabilities import Capability
from wfe_core.models import ScheduledCommand, new_id
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase, requires

__all__ = ["ScheduledCommandTests"]

_T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
_WF = ScheduledCommand.PROCESS_WORKFLOW
_EV = ScheduledCommand.PROCESS_EVENT


class _Recorder:
    """A command handler that records what it was handed and can be told to fail."""

    def __init__(self, failing: frozenset[str] = frozenset(), yield_first: bool = False) -> None:
        self.seen: list[ScheduledCommand] = []
        self.failing = failing
        self.yield_first = yield_first

    async def __call__(self, command: ScheduledCommand) -> None:
        if self.yield_first:
            await anyio.lowlevel.checkpoint()
        self.seen.append(command)
        if command.data in self.failing:
            raise RuntimeError(f"handler failed on purpose for {command.data}")

    def keys(self) -> list[tuple[str, str]]:
        return [(c.command_name, c.data) for c in self.seen]


def _cmd(data: str, at: datetime = _T0, name: str = _WF) -> ScheduledCommand:
    return ScheduledCommand(command_name=name, data=data, execute_time=at)


class ScheduledCommandTests(SuiteBase):
    """``schedule_command`` / ``process_commands`` semantics."""

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_due_command_is_handed_over_then_deleted(
        self, provider: PersistenceProvider
    ) -> None:
        """A due command reaches the handler once and is gone on the next pass."""
        data = new_id()
        await provider.schedule_command(_cmd(data))
        first = _Recorder()
        assert await provider.process_commands(_T0 + timedelta(seconds=1), first) == 1
        assert first.keys() == [(_WF, data)]
        second = _Recorder()
        assert await provider.process_commands(_T0 + timedelta(days=1), second) == 0
        assert second.seen == []

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_handed_command_carries_its_fields(self, provider: PersistenceProvider) -> None:
        """The handler gets the command's name, data and aware execute_time unchanged."""
        data = f"{new_id()} / ünïcode ✓"
        at = _T0.replace(microsecond=123456)
        await provider.schedule_command(_cmd(data, at, _EV))
        rec = _Recorder()
        await provider.process_commands(at, rec)
        assert len(rec.seen) == 1
        got = rec.seen[0]
        assert got.command_name == _EV
        assert got.data == data
        assert got.execute_time == at
        assert got.execute_time.tzinfo is not None

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_command_is_never_handed_over_early(self, provider: PersistenceProvider) -> None:
        """A command with execute_time after as_of is not handed over and stays stored."""
        data = new_id()
        await provider.schedule_command(_cmd(data, _T0))
        early = _Recorder()
        assert await provider.process_commands(_T0 - timedelta(microseconds=1), early) == 0
        assert early.seen == []
        later = _Recorder()
        assert await provider.process_commands(_T0 + timedelta(minutes=1), later) == 1
        assert later.keys() == [(_WF, data)]

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_command_is_due_at_exactly_its_execute_time(
        self, provider: PersistenceProvider
    ) -> None:
        """execute_time == as_of counts as due."""
        data = new_id()
        await provider.schedule_command(_cmd(data, _T0))
        rec = _Recorder()
        assert await provider.process_commands(_T0, rec) == 1
        assert rec.keys() == [(_WF, data)]

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_only_due_commands_are_handed_over(self, provider: PersistenceProvider) -> None:
        """Of several commands only those due are handled; the rest wait for a later pass."""
        due = [new_id() for _ in range(3)]
        later = [new_id() for _ in range(2)]
        for i, d in enumerate(due):
            await provider.schedule_command(_cmd(d, _T0 - timedelta(minutes=i)))
        for i, d in enumerate(later):
            await provider.schedule_command(_cmd(d, _T0 + timedelta(minutes=i + 1)))
        rec = _Recorder()
        assert await provider.process_commands(_T0, rec) == 3
        assert sorted(c.data for c in rec.seen) == sorted(due)
        rec2 = _Recorder()
        assert await provider.process_commands(_T0 + timedelta(hours=1), rec2) == 2
        assert sorted(c.data for c in rec2.seen) == sorted(later)

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_process_commands_returns_count_handled(
        self, provider: PersistenceProvider
    ) -> None:
        """process_commands returns how many commands were handled successfully."""
        for _ in range(7):
            await provider.schedule_command(_cmd(new_id()))
        assert await provider.process_commands(_T0, _Recorder()) == 7

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_nothing_scheduled_returns_zero(self, provider: PersistenceProvider) -> None:
        """With no commands stored, process_commands returns 0 and calls nothing."""
        rec = _Recorder()
        assert await provider.process_commands(_T0 + timedelta(days=3650), rec) == 0
        assert rec.seen == []

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_scheduling_twice_stores_one_command(self, provider: PersistenceProvider) -> None:
        """Scheduling the same (command_name, data) twice yields one handler call."""
        data = new_id()
        await provider.schedule_command(_cmd(data))
        await provider.schedule_command(_cmd(data))
        rec = _Recorder()
        assert await provider.process_commands(_T0, rec) == 1
        assert rec.keys() == [(_WF, data)]

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_rescheduling_earlier_moves_the_command_earlier(
        self, provider: PersistenceProvider
    ) -> None:
        """Scheduled late then early: the earlier execute_time is kept (due early)."""
        data = new_id()
        early, late = _T0, _T0 + timedelta(hours=1)
        await provider.schedule_command(_cmd(data, late))
        await provider.schedule_command(_cmd(data, early))
        rec = _Recorder()
        assert await provider.process_commands(early, rec) == 1
        assert rec.keys() == [(_WF, data)]
        assert rec.seen[0].execute_time == early
        assert await provider.process_commands(late + timedelta(days=1), _Recorder()) == 0

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_rescheduling_later_keeps_the_earlier_time(
        self, provider: PersistenceProvider
    ) -> None:
        """Scheduled early then late: the earlier execute_time is kept (still due early)."""
        data = new_id()
        early, late = _T0, _T0 + timedelta(hours=1)
        await provider.schedule_command(_cmd(data, early))
        await provider.schedule_command(_cmd(data, late))
        rec = _Recorder()
        assert await provider.process_commands(early, rec) == 1
        assert rec.seen[0].execute_time == early
        assert await provider.process_commands(late + timedelta(days=1), _Recorder()) == 0

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_same_data_under_different_names_are_distinct(
        self, provider: PersistenceProvider
    ) -> None:
        """Commands with equal data but different command_name are two commands."""
        data = new_id()
        await provider.schedule_command(_cmd(data, name=_WF))
        await provider.schedule_command(_cmd(data, name=_EV))
        rec = _Recorder()
        assert await provider.process_commands(_T0, rec) == 2
        assert sorted(rec.keys()) == sorted([(_WF, data), (_EV, data)])

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_same_name_with_different_data_are_distinct(
        self, provider: PersistenceProvider
    ) -> None:
        """Commands with the same command_name but different data are two commands."""
        a, b = new_id(), new_id()
        await provider.schedule_command(_cmd(a))
        await provider.schedule_command(_cmd(b))
        rec = _Recorder()
        assert await provider.process_commands(_T0, rec) == 2
        assert sorted(c.data for c in rec.seen) == sorted([a, b])

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_command_is_kept_when_handler_raises(self, provider: PersistenceProvider) -> None:
        """A command whose handler raised stays stored and is handed over on the next pass."""
        data = new_id()
        await provider.schedule_command(_cmd(data))
        failing = _Recorder(failing=frozenset({data}))
        assert await provider.process_commands(_T0, failing) == 0
        assert failing.keys() == [(_WF, data)]
        retry = _Recorder()
        assert await provider.process_commands(_T0, retry) == 1
        assert retry.keys() == [(_WF, data)]
        assert await provider.process_commands(_T0, _Recorder()) == 0

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_failing_handler_does_not_stop_the_others(
        self, provider: PersistenceProvider
    ) -> None:
        """When one handler raises, the other due commands are still handled and deleted."""
        bad = new_id()
        good = [new_id() for _ in range(4)]
        for i, d in enumerate([good[0], good[1], bad, good[2], good[3]]):
            await provider.schedule_command(_cmd(d, _T0 - timedelta(seconds=5 - i)))
        rec = _Recorder(failing=frozenset({bad}))
        assert await provider.process_commands(_T0, rec) == 4
        assert sorted(c.data for c in rec.seen) == sorted([*good, bad])
        again = _Recorder()
        assert await provider.process_commands(_T0, again) == 1
        assert again.keys() == [(_WF, bad)]

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_command_can_be_scheduled_again_after_it_ran(
        self, provider: PersistenceProvider
    ) -> None:
        """Once handled (and deleted) a command with the same key can be scheduled anew."""
        data = new_id()
        await provider.schedule_command(_cmd(data, _T0))
        assert await provider.process_commands(_T0, _Recorder()) == 1
        await provider.schedule_command(_cmd(data, _T0 + timedelta(hours=1)))
        rec = _Recorder()
        assert await provider.process_commands(_T0 + timedelta(hours=1), rec) == 1
        assert rec.seen[0].execute_time == _T0 + timedelta(hours=1)

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_concurrent_processors_hand_each_command_to_one_handler(
        self, provider: PersistenceProvider
    ) -> None:
        """Four concurrent process_commands over 50 due commands handle each exactly once."""
        datas = [new_id() for _ in range(50)]
        for d in datas:
            await provider.schedule_command(_cmd(d))
        handled: Counter[str] = Counter()
        counts: list[int] = []

        async def handler(command: ScheduledCommand) -> None:
            await anyio.lowlevel.checkpoint()
            handled[command.data] += 1
            await anyio.lowlevel.checkpoint()

        async def processor() -> None:
            counts.append(await provider.process_commands(_T0, handler))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(processor)
        assert set(handled) == set(datas)
        duplicated = {d: n for d, n in handled.items() if n != 1}
        assert duplicated == {}, f"commands handed to more than one handler: {duplicated}"
        assert sum(counts) == 50
        assert await provider.process_commands(_T0, _Recorder()) == 0

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_handed_command_is_a_copy(self, provider: PersistenceProvider) -> None:
        """Changing the command object after scheduling or in the handler changes nothing."""
        data = new_id()
        cmd = _cmd(data, _T0)
        await provider.schedule_command(cmd)
        cmd.execute_time = _T0 + timedelta(days=1)
        cmd.data = "changed"

        async def mutating(command: ScheduledCommand) -> None:
            command.data = "mutated"
            raise RuntimeError("keep it")

        assert await provider.process_commands(_T0, mutating) == 0
        rec = _Recorder()
        assert await provider.process_commands(_T0, rec) == 1
        assert rec.keys() == [(_WF, data)]
