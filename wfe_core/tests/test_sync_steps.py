"""Where ``def`` steps run (``HostOptions.sync_steps``, :mod:`wfe_core.sync_steps`): a
step that blocks never stalls the other workflows; a quick one runs inline after its
trial runs in a thread; a step that turns slow, or needs an event loop of its own, goes
back to a thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from wfe_core.sync_steps import TRIAL_RUNS

from wfe_core import (
    HostOptions,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_memory import MemoryPersistenceProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Data:
    threads: list[bool] = field(default_factory=list)
    """Per run: True when the step ran on the event loop's thread."""
    value: int = 0


LOOP_THREAD: list[threading.Thread] = []


def _on_loop() -> bool:
    return threading.current_thread() is LOOP_THREAD[0]


def quick(context: StepContext[Data]) -> None:
    context.workflow.data.threads.append(_on_loop())


class Quick(Workflow[Data]):
    id = "sync-quick"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(quick)


SLOW_RUNS: set[int] = set()  # run numbers (from 1) of "sometimes" that block
RUNS = [0]


def sometimes(context: StepContext[Data]) -> None:
    RUNS[0] += 1
    if RUNS[0] in SLOW_RUNS:
        time.sleep(0.05)
    context.workflow.data.threads.append(_on_loop())


class Sometimes(Workflow[Data]):
    id = "sync-sometimes"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(sometimes)


def blocks(context: StepContext[Data]) -> None:
    time.sleep(1.0)
    context.workflow.data.threads.append(_on_loop())


class Blocks(Workflow[Data]):
    id = "sync-blocks"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(blocks).then(blocks).then(blocks)


def own_loop(context: StepContext[Data]) -> None:
    async def answer() -> int:
        return 42

    context.workflow.data.value = asyncio.run(answer())
    context.workflow.data.threads.append(_on_loop())


class OwnLoop(Workflow[Data]):
    id = "sync-own-loop"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(own_loop)


class Limited(Workflow[Data]):
    id = "sync-limited"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(quick).timeout(timedelta(seconds=30))


async def _host(**options: Any) -> WorkflowHost:
    LOOP_THREAD[:] = [threading.current_thread()]
    host = WorkflowHost(MemoryPersistenceProvider(), options=HostOptions(**options))
    for wf in (Quick, Sometimes, Blocks, OwnLoop, Limited):
        host.register_workflow(wf())
    await host.start()
    return host


async def _run(host: WorkflowHost, workflow: type[Workflow[Data]]) -> Data:
    wid = await host.start_workflow(workflow.id, Data())
    done = await host.wait_for_workflow(wid, 60)
    assert done.status is WorkflowStatus.COMPLETE
    data: Data = done.data
    return data


async def test_a_quick_step_runs_inline_after_its_trials_in_a_thread() -> None:
    host = await _host()
    try:
        places = [(await _run(host, Quick)).threads[0] for _ in range(TRIAL_RUNS + 3)]
    finally:
        await host.stop()
    assert places == [False] * TRIAL_RUNS + [True] * 3


async def test_a_step_that_turns_slow_inline_goes_back_to_a_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    RUNS[0] = 0
    SLOW_RUNS.clear()
    SLOW_RUNS.add(TRIAL_RUNS + 2)  # the second inline run blocks
    host = await _host()
    try:
        with caplog.at_level(logging.INFO, logger="wfe.executor"):
            places = [(await _run(host, Sometimes)).threads[0] for _ in range(TRIAL_RUNS + 4)]
    finally:
        await host.stop()
    assert places == [False] * TRIAL_RUNS + [True, True] + [False, False]
    assert any("runs in a worker thread from now on" in r.getMessage() for r in caplog.records)


async def test_a_step_slow_in_a_trial_always_runs_in_a_thread() -> None:
    RUNS[0] = 0
    SLOW_RUNS.clear()
    SLOW_RUNS.add(2)
    host = await _host()
    try:
        places = [(await _run(host, Sometimes)).threads[0] for _ in range(TRIAL_RUNS + 3)]
    finally:
        await host.stop()
    assert places == [False] * (TRIAL_RUNS + 3)


async def test_a_blocking_step_never_stalls_the_other_workflows() -> None:
    """Three one-second sleeps in a row while quick workflows run: the loop never stops
    for as long as one sleep (the bound leaves room for a slow, busy machine)."""
    host = await _host()
    lags: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)

    beat = asyncio.create_task(heartbeat())
    try:
        slow = asyncio.create_task(_run(host, Blocks))
        quick_runs = 0
        while not slow.done():
            await _run(host, Quick)
            quick_runs += 1
        assert (await slow).threads == [False] * 3
    finally:
        stop.set()
        await beat
        await host.stop()
    assert quick_runs > 3, quick_runs
    assert max(lags) < 0.9, max(lags)  # an inline sleep would hold the loop 1 s


# the coroutine the refused inline asyncio.run() was given is never awaited (Python warns)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
async def test_a_step_running_its_own_event_loop_goes_back_to_a_thread_and_succeeds() -> None:
    host = await _host()
    try:
        results = [await _run(host, OwnLoop) for _ in range(TRIAL_RUNS + 2)]
    finally:
        await host.stop()
    assert [r.value for r in results] == [42] * (TRIAL_RUNS + 2)
    assert [r.threads[0] for r in results] == [False] * (TRIAL_RUNS + 2)


@pytest.mark.parametrize(("mode", "on_loop"), [("thread", False), ("inline", True)])
async def test_the_fixed_modes(mode: str, on_loop: bool) -> None:
    host = await _host(sync_steps=mode)
    try:
        places = [(await _run(host, Quick)).threads[0] for _ in range(TRIAL_RUNS + 2)]
    finally:
        await host.stop()
    assert places == [on_loop] * (TRIAL_RUNS + 2)


async def test_a_step_with_a_timeout_always_runs_in_a_thread() -> None:
    host = await _host(sync_steps="inline")
    try:
        places = [(await _run(host, Limited)).threads[0] for _ in range(TRIAL_RUNS + 2)]
    finally:
        await host.stop()
    assert places == [False] * (TRIAL_RUNS + 2)


def test_bad_options_are_refused_with_the_name() -> None:
    with pytest.raises(ValueError, match="sync_steps must be 'auto', 'thread' or 'inline'"):
        HostOptions(sync_steps="fast")
    with pytest.raises(ValueError, match="inline_step_limit"):
        HostOptions(inline_step_limit=-1.0)
