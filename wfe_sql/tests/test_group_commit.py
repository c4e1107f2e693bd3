"""GroupCommit's scheduling: which batches share a group, how many groups run at once,
how outcomes, errors and cancellations reach each caller.

The ``run`` hook is a test double of a driver's group transaction: it records the
groups it is handed (each batch named by its first statement) and, when asked, holds a
group "in flight" until the test releases it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from wfe_sql.driver import BatchAborted, Op
from wfe_sql.group_commit import GroupCommit, Outcome, skip_or_abort

pytestmark = pytest.mark.anyio

TIMEOUT = 2.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def batch(name: str) -> list[Op]:
    """A one-step batch named ``name``."""
    return [Op(name)]


class FakeRun:
    """The driver hook: records every group, holds groups while ``gate`` is closed,
    raises for a group holding a batch in ``fail_on`` (a rolled-back transaction) and
    skips batches in ``abort_on`` (their outcome is an abort)."""

    def __init__(
        self,
        *,
        hold: bool = False,
        fail_on: Sequence[str] = (),
        abort_on: Sequence[str] = (),
    ) -> None:
        self.groups: list[list[str]] = []
        self.finished: list[list[str]] = []
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()
        self.fail_on = set(fail_on)
        self.abort_on = set(abort_on)
        self.in_flight = 0
        self.peak = 0
        self.durable: list[bool] = []

    async def __call__(self, batches: list[Sequence[Op]], durable: bool = True) -> list[Outcome]:
        names = [ops[0].sql for ops in batches]
        self.groups.append(names)
        self.durable.append(durable)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        failing = [n for n in names if n in self.fail_on]
        if failing:
            raise RuntimeError(f"group failed on {failing}")
        self.finished.append(names)
        return [BatchAborted(0, 0) if n in self.abort_on else [n] for n in names]


class Commit(GroupCommit):
    """The GroupCommit under test. It also remembers every caller's future, only so
    that a test that fails cannot leave callers waiting for ever (teardown cancels
    whatever is still open)."""

    def __init__(self, run: FakeRun, **limits: int) -> None:
        super().__init__(run, **limits)
        self.futures: list[asyncio.Future[Any]] = []

    def _start_writers(self) -> None:
        self.futures.extend(item[1] for item in self._pending)
        super()._start_writers()


Make = Callable[..., tuple[FakeRun, Commit]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """``make(hold=..., fail_on=..., abort_on=..., max_groups=..., max_batches=...)``:
    a FakeRun and a GroupCommit on it; released and emptied at teardown."""
    made: list[tuple[FakeRun, Commit]] = []

    def build(
        *,
        hold: bool = False,
        fail_on: Sequence[str] = (),
        abort_on: Sequence[str] = (),
        **limits: int,
    ) -> tuple[FakeRun, Commit]:
        run = FakeRun(hold=hold, fail_on=fail_on, abort_on=abort_on)
        made.append((run, Commit(run, **limits)))
        return made[-1]

    yield build
    for run, commit in made:
        run.gate.set()
        for future in commit.futures:
            if not future.done():
                future.cancel()
    for _, commit in made:
        await asyncio.wait_for(commit.drain(), TIMEOUT)


async def until(condition: Callable[[], bool], message: str) -> None:
    """Let the loop run until ``condition`` holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while loop.time() < deadline:
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"timed out waiting for: {message}")


async def settle(rounds: int = 20) -> None:
    """Let every ready task run a few times (no wall-clock wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def submit(commit: GroupCommit, name: str, **options: bool) -> asyncio.Task[list[Any]]:
    return asyncio.create_task(commit.submit(batch(name), **options))


def submit_all(commit: GroupCommit, *names: str) -> list[asyncio.Task[list[Any]]]:
    """Submit one batch per name, all in the same turn of the loop."""
    return [submit(commit, name) for name in names]


async def finish(*tasks: asyncio.Task[Any]) -> None:
    """Wait (bounded, cancelling nothing) until every task is done."""
    _, pending = await asyncio.wait(tasks, timeout=TIMEOUT)
    assert not pending, f"{len(pending)} of {len(tasks)} callers are still waiting"


async def results(*tasks: asyncio.Task[Any]) -> list[Any]:
    """Every task's result, once all are done (a task's error is raised)."""
    await finish(*tasks)
    return [task.result() for task in tasks]


# --------------------------------------------------------------------------------------
# grouping
# --------------------------------------------------------------------------------------


async def test_a_lone_batch_is_written_at_once(make: Make) -> None:
    run, commit = make()
    assert await results(submit(commit, "a")) == [["a"]]
    assert run.groups == [["a"]]
    assert (commit.groups, commit.batches) == (1, 1)


async def test_batches_submitted_together_share_one_group_in_order(make: Make) -> None:
    run, commit = make()
    names = ["a", "b", "c", "d", "e"]
    # each caller gets its own batch's result
    assert await results(*submit_all(commit, *names)) == [[n] for n in names]
    assert run.groups == [names]
    assert (commit.groups, commit.batches) == (1, 5)


async def test_batches_arriving_while_a_group_is_in_flight_form_the_next_group(
    make: Make,
) -> None:
    run, commit = make(hold=True)
    first = submit(commit, "a")
    await until(lambda: run.groups == [["a"]], "the first group in flight")
    later = submit_all(commit, "b", "c", "d")
    await settle()
    assert run.groups == [["a"]], "a second group started while the first was in flight"
    assert not any(t.done() for t in [first, *later])
    run.gate.set()
    assert await results(first, *later) == [["a"], ["b"], ["c"], ["d"]]
    assert [len(g) for g in run.groups] == [1, 3]
    assert run.groups == [["a"], ["b", "c", "d"]]
    assert (commit.groups, commit.batches) == (2, 4)


async def test_max_batches_caps_a_group(make: Make) -> None:
    run, commit = make(max_batches=2)
    names = ["a", "b", "c", "d", "e"]
    assert await results(*submit_all(commit, *names)) == [[n] for n in names]
    assert run.groups == [["a", "b"], ["c", "d"], ["e"]]
    assert (commit.groups, commit.batches) == (3, 5)


@pytest.mark.parametrize("max_groups", [1, 2, 3])
async def test_max_groups_caps_concurrent_groups(make: Make, max_groups: int) -> None:
    run, commit = make(hold=True, max_groups=max_groups, max_batches=1)
    names = [f"b{i}" for i in range(7)]
    tasks = submit_all(commit, *names)
    await until(lambda: run.in_flight == max_groups, f"{max_groups} groups in flight")
    await settle()
    assert run.in_flight == max_groups
    assert len(run.groups) == max_groups
    run.gate.set()
    assert await results(*tasks) == [[n] for n in names]
    assert run.peak == max_groups
    assert sorted(n for g in run.groups for n in g) == names
    assert all(len(g) == 1 for g in run.groups)
    assert (commit.groups, commit.batches) == (7, 7)


# --------------------------------------------------------------------------------------
# outcomes and errors
# --------------------------------------------------------------------------------------


async def test_an_aborted_batch_is_raised_to_its_caller_only(make: Make) -> None:
    run, commit = make(abort_on=["b"])
    a, b, c = submit_all(commit, "a", "b", "c")
    await finish(a, b, c)
    assert a.result() == ["a"]
    assert c.result() == ["c"]
    with pytest.raises(BatchAborted) as raised:  # raised, not returned
        b.result()
    assert (raised.value.index, raised.value.rowcount) == (0, 0)
    assert run.groups == [["a", "b", "c"]]  # skipped inside the group, not re-run
    assert (commit.groups, commit.batches) == (1, 3)


async def test_a_failing_group_is_rerun_batch_by_batch_so_only_the_culprit_fails(
    make: Make,
) -> None:
    run, commit = make(fail_on=["b"])
    a, b, c = submit_all(commit, "a", "b", "c")
    await finish(a, b, c)
    assert a.result() == ["a"]
    assert c.result() == ["c"]
    with pytest.raises(RuntimeError) as raised:
        b.result()
    assert str(raised.value) == "group failed on ['b']"  # the error of b's own, lone run
    assert run.groups == [["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert run.finished == [["a"], ["c"]]  # each good batch written exactly once
    assert (commit.groups, commit.batches) == (2, 2)


async def test_a_failing_lone_batch_gets_the_error_without_a_rerun(make: Make) -> None:
    run, commit = make(fail_on=["x"])
    with pytest.raises(RuntimeError, match="group failed on"):
        await results(submit(commit, "x"))
    assert run.groups == [["x"]]
    assert (commit.groups, commit.batches) == (0, 0)
    # the queue keeps working after a failure
    assert await results(submit(commit, "y")) == [["y"]]
    assert run.groups == [["x"], ["y"]]


async def test_batches_queued_behind_a_failing_group_are_written(make: Make) -> None:
    run, commit = make(hold=True, fail_on=["bad"])
    bad = submit(commit, "bad")
    await until(lambda: run.groups == [["bad"]], "the failing group in flight")
    good = submit_all(commit, "g1", "g2")
    await settle()
    run.gate.set()
    with pytest.raises(RuntimeError):
        await results(bad)
    assert await results(*good) == [["g1"], ["g2"]]
    assert run.groups == [["bad"], ["g1", "g2"]]


async def test_a_group_is_synced_when_any_of_its_batches_is_durable(make: Make) -> None:
    run, commit = make()
    hints = [submit(commit, "hint-1", durable=False), submit(commit, "hint-2", durable=False)]
    assert await results(*hints) == [["hint-1"], ["hint-2"]]
    mixed = [submit(commit, "hint-3", durable=False), submit(commit, "checkpoint")]
    assert await results(*mixed) == [["hint-3"], ["checkpoint"]]
    assert await results(submit(commit, "default")) == [["default"]]
    assert run.groups == [["hint-1", "hint-2"], ["hint-3", "checkpoint"], ["default"]]
    assert run.durable == [False, True, True]
    assert (commit.groups, commit.batches, commit.synced) == (3, 5, 2)


# --------------------------------------------------------------------------------------
# cancellation
# --------------------------------------------------------------------------------------


async def test_a_caller_cancelled_before_hand_over_withdraws_its_batch(make: Make) -> None:
    run, commit = make(hold=True)
    first = submit(commit, "a")
    await until(lambda: run.groups == [["a"]], "the first group in flight")
    withdrawn, kept = submit_all(commit, "b", "c")
    await settle()
    withdrawn.cancel()
    await finish(withdrawn)  # at once: it does not wait for the group in flight
    assert withdrawn.cancelled()
    run.gate.set()
    assert await results(first, kept) == [["a"], ["c"]]
    assert run.groups == [["a"], ["c"]]  # the run function never saw "b"
    assert (commit.groups, commit.batches) == (2, 2)


async def test_a_caller_cancelled_after_hand_over_waits_for_its_batch(make: Make) -> None:
    run, commit = make(hold=True)
    task = submit(commit, "a")
    seen_when_done: list[list[list[str]]] = []
    task.add_done_callback(lambda _t: seen_when_done.append(list(run.finished)))
    await until(lambda: run.groups == [["a"]], "the batch handed over")
    task.cancel()
    await settle()
    task.cancel()  # a second cancellation does not cut the wait short either
    await settle()
    assert not task.done(), "the caller returned while its batch was still being written"
    assert run.finished == []
    run.gate.set()
    await finish(task)
    assert task.cancelled()
    assert seen_when_done == [[["a"]]]  # the batch was written before the caller ended
    assert (commit.groups, commit.batches) == (1, 1)


async def test_a_cancelled_caller_of_a_failing_batch_sees_the_cancellation(make: Make) -> None:
    run, commit = make(hold=True, fail_on=["a"])
    task = submit(commit, "a")
    await until(lambda: run.groups == [["a"]], "the batch handed over")
    task.cancel()
    await settle()
    assert not task.done()
    run.gate.set()
    await finish(task)
    assert task.cancelled()  # the cancellation propagates, not the store's error
    assert run.groups == [["a"]]


# --------------------------------------------------------------------------------------
# drain, arguments, skip_or_abort
# --------------------------------------------------------------------------------------


async def test_drain_waits_for_in_flight_groups(make: Make) -> None:
    run, commit = make(hold=True)
    first = submit(commit, "a")
    await until(lambda: run.groups == [["a"]], "the first group in flight")
    queued = submit(commit, "b")
    drain = asyncio.create_task(commit.drain())
    await settle()
    assert not drain.done(), "drain returned while a group was in flight"
    run.gate.set()
    await finish(drain)
    assert run.finished == [["a"], ["b"]]  # the batch queued behind it too
    assert first.done()
    assert queued.done()
    assert (first.result(), queued.result()) == (["a"], ["b"])


async def test_drain_with_nothing_queued_returns_at_once(make: Make) -> None:
    run, commit = make()
    await asyncio.wait_for(commit.drain(), TIMEOUT)
    assert run.groups == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_groups": 0}, "max_groups"),
        ({"max_groups": -1}, "max_groups"),
        ({"max_batches": 0}, "max_batches"),
        ({"max_batches": -5}, "max_batches"),
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be at least 1"):
        GroupCommit(FakeRun(), **kwargs)


def test_limits_are_kept() -> None:
    commit = GroupCommit(FakeRun(), max_groups=3, max_batches=7)
    assert (commit.max_groups, commit.max_batches) == (3, 7)
    assert (commit.groups, commit.batches) == (0, 0)


def test_skip_or_abort_returns_the_abort_of_a_first_step_that_matched_nothing() -> None:
    aborted = skip_or_abort(0, 0)
    assert isinstance(aborted, BatchAborted)
    assert (aborted.index, aborted.rowcount) == (0, 0)


@pytest.mark.parametrize(("index", "count"), [(1, 0), (0, 1), (0, 2), (3, 5)])
def test_skip_or_abort_raises_otherwise(index: int, count: int) -> None:
    with pytest.raises(BatchAborted) as raised:
        skip_or_abort(index, count)
    assert (raised.value.index, raised.value.rowcount) == (index, count)


# --------------------------------------------------------------------------------------
# pipelining and store-wide failures
# --------------------------------------------------------------------------------------


async def test_a_second_group_starts_while_the_first_is_in_flight(make: Make) -> None:
    """With max_groups=2 the next group is handed over while the first is written (so a
    driver's writer never idles between groups); a third waits for one of them."""
    run, commit = make(hold=True, max_groups=2)
    first = submit(commit, "a")
    await until(lambda: run.groups == [["a"]], "the first group in flight")
    second = submit_all(commit, "b", "c")
    await until(lambda: len(run.groups) == 2, "a second group while the first is in flight")
    assert run.groups == [["a"], ["b", "c"]]
    assert run.peak == 2
    third = submit_all(commit, "d", "e")
    await settle()
    assert len(run.groups) == 2, "more than max_groups groups in flight"
    run.gate.set()
    assert await results(first, *second, *third) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert run.groups == [["a"], ["b", "c"], ["d", "e"]]


async def test_a_store_wide_failure_fails_the_group_at_once_without_retries(
    make: Make,
) -> None:
    """ProviderUnavailable (locked, unreachable, disk full) is the store's own failure:
    every batch of the group gets it, and no batch is written alone again (that would
    repeat the failure, and its timeout, once per batch)."""
    from wfe_core.errors import ProviderUnavailable

    calls: list[list[str]] = []

    async def down(batches: list[Sequence[Op]], durable: bool = True) -> list[Outcome]:
        calls.append([ops[0].sql for ops in batches])
        raise ProviderUnavailable("the store is locked")

    commit = GroupCommit(down)
    tasks = submit_all(commit, "a", "b", "c")
    await finish(*tasks)
    for task in tasks:
        assert isinstance(task.exception(), ProviderUnavailable)
    assert calls == [["a", "b", "c"]]
    assert (commit.groups, commit.batches) == (0, 0)
