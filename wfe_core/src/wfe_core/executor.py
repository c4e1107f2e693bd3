"""One pass over a workflow instance: run its runnable pointers, checkpointing after
every step.

Within a pass a pointer made runnable by the step before it runs in the same pass,
and the instance is persisted (revision-checked, with its new subscriptions, as one
atomic write of the pointers that changed) after each step. The pass ends when
nothing is runnable now, the workflow stops being RUNNABLE, or the host asks it to
stop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from wfe_core import clock
from wfe_core.crashpoints import crash_point
from wfe_core.engine import WorkflowEngine
from wfe_core.errors import LeaseLost, StepTimeout
from wfe_core.models import (
    ExecutionPointer,
    LifecycleEventType,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
    utcnow,
)
from wfe_core.pass_state import FAILED_MARK, PassState
from wfe_core.primitives import ACTIVITY_EVENT
from wfe_core.steps import (
    ExecutionResult,
    FunctionStep,
    StepBody,
    StepContext,
    WorkflowDefinition,
    WorkflowStep,
)
from wfe_core.sync_steps import run_sync_step
from wfe_core.telemetry import StepObservation, pass_ids, step_ids

__all__ = ["PassControl", "WorkflowExecutor"]

log = logging.getLogger("wfe.executor")

StepMiddleware = Callable[
    [StepContext[Any], Callable[[], Awaitable[ExecutionResult]]], Awaitable[ExecutionResult]
]


class PassControl:
    """Signals between the host and a running pass.

    ``owner`` is the claim the pass writes its checkpoints with (see
    ``WorkflowRepository.claim_workflow``); ``lease_lost`` is set once that claim is
    gone, after which the pass writes nothing more."""

    __slots__ = ("cancelled", "finished", "lease_lost", "owner", "stop_requested")

    def __init__(self, owner: str | None = None) -> None:
        self.cancelled = asyncio.Event()
        self.finished = asyncio.Event()
        self.stop_requested = False
        self.lease_lost = False
        self.owner = owner

    def lost(self) -> None:
        """The claim is gone: stop after the running steps, cancel them, write nothing."""
        self.lease_lost = True
        self.stop_requested = True
        self.cancelled.set()


def _call_sync(body: StepBody, context: StepContext[Any]) -> Any:
    if isinstance(body, FunctionStep):
        return body.fn(context)
    return body.run(context)


class _Pass(PassState):
    """One pass over one instance: runs its runnable steps and checkpoints after each."""

    def __init__(
        self,
        executor: WorkflowExecutor,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        control: PassControl,
    ) -> None:
        super().__init__(
            instance,
            definition,
            executor.options,
            publish_lifecycle=executor.publish_lifecycle,
        )
        self.ex = executor
        self.host = executor.host
        self.control = control
        self.unsaved = False  # a control step's result waits for the next checkpoint

    async def run(self) -> None:
        inst = self.instance
        if self._expired() and inst.status is WorkflowStatus.RUNNABLE:
            self._expire()  # the execution timeout passed while nothing ran it
            await self._checkpoint()
            return
        watch = None
        if self.deadline is not None and self.ready:
            watch = asyncio.ensure_future(self._watch_deadline(self.deadline))
        try:
            await self._run_ready()
        finally:
            if watch is not None:
                watch.cancel()

    async def _watch_deadline(self, deadline: datetime) -> None:
        """Cancel the running steps (``context.cancelled``) when the execution timeout
        expires during the pass; the pass then terminates the instance."""
        await clock.sleep(max((deadline - utcnow()).total_seconds(), 0.0))
        self.control.cancelled.set()

    async def _run_ready(self) -> None:
        inst = self.instance
        self._process_cancellations()
        if self._dirty():
            await self._checkpoint()
        while self.ready and inst.status is WorkflowStatus.RUNNABLE:
            if self.control.stop_requested:
                break
            p = self.ready.popleft()
            self.now = utcnow()
            if not self._runnable(p):
                continue
            await self._execute(p)
            if self._expired() and inst.status is WorkflowStatus.RUNNABLE:
                self._expire()
            self._process_cancellations()
            if not self.open and inst.status is WorkflowStatus.RUNNABLE:
                self._finish(WorkflowStatus.COMPLETE)
            if self._shares_checkpoint(p):
                self.unsaved = True  # written with the next step's checkpoint
                continue
            await self._checkpoint()
        if self.unsaved or inst.next_execution != self._next_execution():
            await self._checkpoint()  # what is unsaved, and keep the stored wake-up time true

    def _shares_checkpoint(self, p: ExecutionPointer) -> bool:
        """Whether the result of ``p``'s step may wait for the next step's checkpoint:
        a built-in control step (``StepBody.shares_checkpoint``), another pointer
        ready to run now, nothing else to write first (no error, no end of the
        workflow, no stop or lost lease)."""
        if not self.ready or self.errors or self.ended_status is not None:
            return False
        control = self.control
        if control.lease_lost or control.stop_requested:
            return False
        if self.instance.status is not WorkflowStatus.RUNNABLE:
            return False
        return bool(getattr(self.steps[p.step_id].body, "shares_checkpoint", False))

    async def _checkpoint(self) -> None:
        inst = self.instance
        self.unsaved = False
        if self.control.lease_lost:  # fenced out: write nothing more, not even errors
            raise LeaseLost(inst.id, self.control.owner)
        inst.next_execution = self._next_execution()
        subs, self.new_subs = self.new_subs, []
        if self.errors:  # before the instance, so a reader never sees the outcome first
            errors, self.errors = self.errors, []
            await self.ex.persistence.persist_errors(errors)
        if self.ended_status is not None:  # this write ends the workflow: if it is a
            await self.host.guard_child_end(inst)  # child, its parent must hear of it
        crash_point("checkpoint.before_persist")
        await self.ex.persistence.persist_workflow(inst, subs, owner=self.control.owner)
        crash_point("checkpoint.after_persist")
        if self.ended_waiters:
            ended, self.ended_waiters = self.ended_waiters, []
            await self.ex.persistence.terminate_subscriptions(inst.id, ended)
        for sub in subs:
            if sub.event_name != ACTIVITY_EVENT:
                await self.host.catch_up(sub)
        if self.lifecycle:
            events, self.lifecycle = self.lifecycle, []
            for e in events:
                await self.host.publish_lifecycle(e)
        if self.ended_status is not None:
            status, self.ended_status = self.ended_status, None
            await self.host.workflow_ended(inst, status)

    async def _execute(self, p: ExecutionPointer) -> None:
        inst = self.instance
        try:
            step = self.steps[p.step_id]
        except IndexError:
            self._record_error(
                p,
                LookupError(
                    f"step {p.step_id} is not in {inst.workflow_definition_id} v{inst.version}"
                ),
            )
            p.sleep_until = self.now + timedelta(seconds=self.ex.options.error_retry_interval)
            return
        if (
            step.is_container
            and isinstance(p.persistence_data, dict)
            and FAILED_MARK in p.persistence_data
        ):
            self._settle_failed_block(p, step, p.persistence_data[FAILED_MARK])
            return
        if p.start_time is None:
            p.start_time = self.now
            self._event(LifecycleEventType.STEP_STARTED, p)
        if p.status is not PointerStatus.RUNNING:
            p.status = PointerStatus.RUNNING
        observation = StepObservation()
        with step_ids(step, p):
            instrumentation = self.host.instrumentation
            if instrumentation is None:
                await self._run_step(p, step, observation)
            else:
                with instrumentation.step(inst, step, p, observation):
                    await self._run_step(p, step, observation)

    async def _run_step(
        self, p: ExecutionPointer, step: WorkflowStep, observation: StepObservation
    ) -> None:
        """Run the step's body on ``p`` and apply its result or error, noting how it
        ended in ``observation``."""
        inst = self.instance
        # a step with a timeout gets its own cancel signal (the pass's one still fires it)
        cancelled = self.control.cancelled if step.timeout is None else asyncio.Event()
        context: StepContext[Any] = StepContext(inst, step, p, self.host, cancelled)
        try:
            body = step.body()  # a body whose __init__ raises is an ordinary step error
            data = inst.data
            for attr, fn, nargs in step.inputs:
                setattr(body, attr, fn(data) if nargs == 1 else fn(data, context))
            if step.timeout is None:
                result = await self.ex.run_step(step, body, context)
            else:
                result = await self._run_limited(step, body, context, step.timeout)
            if result is None:
                result = ExecutionResult.next()
            elif not isinstance(result, ExecutionResult):
                raise TypeError(
                    f"{step.display_name} returned {type(result).__name__}; return an "
                    "ExecutionResult or None"
                )
            if result.proceed and step.outputs:
                self._apply_outputs(step, body)
        except Exception as exc:  # a step failure: the error policy decides
            if self.control.cancelled.is_set() and inst.status is not WorkflowStatus.RUNNABLE:
                observation.outcome = "cancelled"
                return
            self.now = utcnow()
            if self._expired():
                observation.outcome = "cancelled"
                return  # cancelled by the execution timeout: the pass terminates it
            observation.outcome, observation.error = "failed", exc
            attempts = p.retry_count
            self._handle_error(p, step, exc)
            observation.will_retry = p.retry_count > attempts
            return
        self.now = utcnow()
        observation.outcome = "completed" if result.proceed else "waiting"
        self._apply_result(p, step, result)

    async def _run_limited(
        self, step: WorkflowStep, body: StepBody, context: StepContext[Any], limit: timedelta
    ) -> ExecutionResult | None:
        """Run the body with a watchdog: past ``limit`` the step's ``context.cancelled``
        fires, the body is cancelled (a thread runs on; its result is dropped) and
        :class:`StepTimeout` is raised."""
        runner = asyncio.ensure_future(self.ex.run_step(step, body, context))
        seconds = limit.total_seconds()
        fired: list[bool] = []
        dog = asyncio.ensure_future(
            _watchdog(runner, context.cancelled, self.control.cancelled, seconds, fired)
        )
        try:
            await asyncio.wait((runner,))
        finally:
            if not runner.done():
                runner.cancel()  # this pass itself is being cancelled
            dog.cancel()
        if fired:  # past the limit the step fails, even if the body ended meanwhile
            if not runner.cancelled():
                runner.exception()  # retrieved: a late error is not logged as lost
            raise StepTimeout(step.display_name, seconds)
        return runner.result()


async def _watchdog(
    runner: asyncio.Future[Any],
    step_cancelled: asyncio.Event,
    pass_cancelled: asyncio.Event,
    seconds: float,
    fired: list[bool],
) -> None:
    """Wait ``seconds`` of the engine's clock, passing a cancel of the whole pass on
    to the step meanwhile; then note the timeout in ``fired``, fire the step's
    ``cancelled`` and cancel the body."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(pass_cancelled.wait())
    try:
        done, _ = await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
        if sleeper not in done:
            step_cancelled.set()
            await sleeper
    finally:
        sleeper.cancel()
        waiter.cancel()
    fired.append(True)
    step_cancelled.set()
    await asyncio.sleep(0)  # the body sees context.cancelled before it is cancelled
    runner.cancel()


class WorkflowExecutor:
    """Runs passes for a host (any :class:`~wfe_core.engine.WorkflowEngine`)."""

    def __init__(self, host: WorkflowEngine) -> None:
        self.host = host
        self.persistence = host.persistence
        self.options = host.options
        self.step_middleware: list[StepMiddleware] = []
        self.publish_lifecycle = True

    async def run_pass(
        self, instance: WorkflowInstance, definition: WorkflowDefinition, control: PassControl
    ) -> None:
        """Run everything runnable now; persist after each step (inside
        :func:`~wfe_core.telemetry.pass_ids` and the host's instrumentation, if any)."""
        with pass_ids(instance):
            instrumentation = self.host.instrumentation
            if instrumentation is None:
                await _Pass(self, instance, definition, control).run()
            else:
                with instrumentation.workflow_pass(instance):
                    await _Pass(self, instance, definition, control).run()

    async def run_step(
        self, step: WorkflowStep, body: StepBody, context: StepContext[Any]
    ) -> ExecutionResult | None:
        """Run a step body through the step middleware."""

        async def call() -> ExecutionResult:
            if step.run_in_thread:
                options = self.options
                result = await run_sync_step(
                    step,
                    functools.partial(_call_sync, body, context),
                    options.sync_steps,
                    options.inline_step_limit,
                )
            else:
                result = await body.run(context)
            return result  # type: ignore[no-any-return]

        if not self.step_middleware or step.body.__module__ in _BUILT_IN_STEPS:
            return await call()
        chain: Callable[[], Awaitable[ExecutionResult]] = call
        for mw in reversed(self.step_middleware):
            chain = _bind(mw, context, chain)
        return await chain()


_BUILT_IN_STEPS = ("wfe_core.primitives", "wfe_core.user_tasks")  # no step middleware


def _bind(
    mw: StepMiddleware, context: StepContext[Any], nxt: Callable[[], Awaitable[ExecutionResult]]
) -> Callable[[], Awaitable[ExecutionResult]]:
    async def call() -> ExecutionResult:
        return await mw(context, nxt)

    return call
