"""Where a plain ``def`` step runs: in a worker thread, or inline on the event loop.

A ``def`` step (a sync function or a :class:`~wfe_core.steps.StepBody` whose ``run`` is
not a coroutine function) must never stall the event loop that runs every other
workflow of the host. A worker thread guarantees that, at a price: the hop to the
thread and back costs more than most short steps themselves. ``HostOptions.sync_steps``
chooses:

* ``"auto"`` (the default): each step of a definition runs in a worker thread for its
  first :data:`TRIAL_RUNS` runs in this process, timed inside the thread. If every one
  of them took less than ``HostOptions.inline_step_limit`` (1 ms by default), the step
  runs inline on the event loop from then on -- no hop. Every inline run is timed as
  well: one that takes longer than the limit sends the step back to a worker thread for
  good (logged at INFO with the time it took). A step that blocks -- sleeps, waits on a
  socket, reads a big file -- is therefore seen in its trial runs and always runs in a
  thread; a step that is fast in its trials and blocks later holds the loop that one
  time, then runs in a thread. A step that calls ``asyncio.run`` (or runs another
  event loop) fails inline with ``RuntimeError``; it is sent back to a thread and run
  there again at once (as a retry would).
* ``"thread"``: every ``def`` step runs in a worker thread (``asyncio.to_thread``);
  choose it when a step may block without warning.
* ``"inline"``: every ``def`` step runs on the event loop (for steps known to be quick;
  a step that blocks stalls every workflow of the host while it runs).

A step with a ``.timeout(...)`` always runs in a thread, so that the timeout can give up
on it. Inline or not, a step runs with the same context variables (log ids, trace
span) and sees the same ``context``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from wfe_core.steps import WorkflowStep

__all__ = ["SYNC_STEP_MODES", "TRIAL_RUNS", "SyncStepMode", "run_sync_step"]

log = logging.getLogger("wfe.executor")

SyncStepMode = Literal["auto", "thread", "inline"]
"""The choices of ``HostOptions.sync_steps``."""
SYNC_STEP_MODES: tuple[str, ...] = ("auto", "thread", "inline")
TRIAL_RUNS = 3
"""Runs in a worker thread, each under the limit, before a step runs inline (``auto``)."""

_THREADED = -1  # WorkflowStep.inline_trials of a step that always runs in a thread


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


async def run_sync_step(step: WorkflowStep, fn: Callable[[], Any], mode: str, limit: float) -> Any:
    """Run ``fn`` (the body of ``step``, a ``def`` step) as ``mode`` says (see the
    module) and return what it returned."""
    if mode == "inline" and step.timeout is None:
        return fn()
    trials = step.inline_trials
    if mode == "thread" or step.timeout is not None or trials == _THREADED:
        return await asyncio.to_thread(fn)
    if trials < TRIAL_RUNS:
        result, took = await asyncio.to_thread(_timed, fn)
        if step.inline_trials != _THREADED:
            step.inline_trials = trials + 1 if took < limit else _THREADED
        return result
    started = time.perf_counter()
    try:
        result = fn()
    except RuntimeError as exc:
        if "event loop" not in str(exc):
            raise
        _to_thread(step, "it needs an event loop of its own")
        return await asyncio.to_thread(fn)
    took = time.perf_counter() - started
    if took >= limit:
        _to_thread(step, f"a run took {took * 1000:.1f} ms on the event loop")
    return result


def _to_thread(step: WorkflowStep, why: str) -> None:
    step.inline_trials = _THREADED
    log.info(
        "%s runs in a worker thread from now on: %s (HostOptions.inline_step_limit)",
        step.display_name,
        why,
        extra={"step": step.label},
    )
