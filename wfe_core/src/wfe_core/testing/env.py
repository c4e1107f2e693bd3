"""The :class:`WorkflowTestEnv`: a :class:`~wfe_core.host.WorkflowHost` under a
:class:`~wfe_core.testing.VirtualClock`, with helpers to start workflows, publish
events, move time, wait for workflows and steps, and check the step history.

"Idle" (what :meth:`WorkflowTestEnv.wait_idle` waits for): nothing is waiting in the
host's queues and no pass or event delivery runs -- or the only tasks still running
have been waiting on the virtual clock (a :func:`wfe_core.clock.sleep`, such as a step
timeout's watchdog) with nothing changing for ``busy_grace`` seconds of real time.
Every wait is bounded (``idle_timeout`` seconds of real time unless told otherwise) and
fails with a :class:`TimeoutError` saying what was still busy.

"Due" (what time skipping jumps to): the earliest of the ``next_execution`` of the
RUNNABLE instances in the store, the time of the unprocessed future-dated events, the
deadline of the clock's sleepers, and whatever sources :meth:`add_due_source` added.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from wfe_core import clock as engine_clock
from wfe_core.client.client import WorkflowHandle
from wfe_core.host.host import WorkflowHost
from wfe_core.models import (
    ExecutionPointer,
    PointerStatus,
    QueueType,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.options import HostOptions
from wfe_core.persistence import PersistenceProvider
from wfe_core.queues import InProcessQueueProvider
from wfe_core.registry import open_store
from wfe_core.testing.clock import VirtualClock
from wfe_core.workflow import Workflow

__all__ = ["TEST_HOST_OPTIONS", "DueSource", "StepRecord", "WorkflowTestEnv"]

T = TypeVar("T")

TEST_HOST_OPTIONS = HostOptions(
    poll_interval=0.05, idle_time=0.01, control_interval=0.05, stop_timeout=2.0
)
"""The host settings of a test environment: the host's own real-time waits (polling,
idle consumers, control checks, stopping) are short so that tests stay fast."""

DueSource = Callable[[], Awaitable[datetime | None]]
"""An extra source of due times for time skipping: returns the next time something
is due (aware), or None."""

_ENDED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
_FAR = timedelta(days=365 * 200)
_NOT_REACHED = (PointerStatus.PENDING, PointerStatus.PENDING_PREDECESSOR)
_POLL_ROUNDS = 4


@dataclass(frozen=True)
class StepRecord:
    """One entry of a workflow's step history (one execution pointer)."""

    name: str
    """The step's name (the builder's ``.name(...)``, else its function or class name)."""
    status: PointerStatus
    """Where the step is (complete, sleeping, waiting for an event, failed, ...)."""
    attempts: int
    """How many times the step ran (0 when it has not started; retries add one each)."""
    step_id: int
    """The step's id in the definition."""
    pointer_id: str
    """The execution pointer's id."""
    start_time: datetime | None = None
    """When the step first ran (virtual time)."""
    end_time: datetime | None = None
    """When the step ended (virtual time)."""


class WorkflowTestEnv:
    """A host for tests, whose time is virtual: ``await env.advance(timedelta(days=3))``
    runs three days of timers in milliseconds.

    ``url`` picks the store (``memory://`` by default; any store URL, e.g.
    ``sqlite:///path/wfe.db``, with ``provider_options`` for its factory), or pass a
    provider object as ``persistence`` (then the caller closes it). The host uses an
    in-process lock and queue (one host per environment) and ``options``
    (:data:`TEST_HOST_OPTIONS` by default). ``start`` is the virtual start time
    (aware; the real now by default); ``ticking`` as for :class:`VirtualClock`.
    Use it as ``async with WorkflowTestEnv() as env:``: the virtual clock is the
    engine's clock inside the block (process-wide), and the host runs.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        persistence: PersistenceProvider | None = None,
        workflows: Iterable[Workflow[Any]] = (),
        start: datetime | None = None,
        ticking: bool = True,
        clock: VirtualClock | None = None,
        options: HostOptions | None = None,
        idle_timeout: float = 10.0,
        busy_grace: float = 0.25,
        **provider_options: Any,
    ) -> None:
        if persistence is None and (not isinstance(url, str) or "://" not in url):
            raise ValueError(
                f"WorkflowTestEnv takes a store URL such as 'memory://' or "
                f"'sqlite:///tmp/wfe.db', not {url!r}"
            )
        if clock is not None and start is not None:
            raise ValueError("give WorkflowTestEnv either a clock or a start time, not both")
        for name, value in (("idle_timeout", idle_timeout), ("busy_grace", busy_grace)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"WorkflowTestEnv {name} must be a positive number of seconds")
        self.url = url
        self.clock: VirtualClock = clock or VirtualClock(start, ticking=ticking)
        """The virtual clock (the engine's clock inside ``async with``)."""
        self.idle_timeout = float(idle_timeout)
        """Default bound, in real seconds, of every wait of the environment."""
        self.busy_grace = float(busy_grace)
        """Real seconds a task must wait on the virtual clock, with nothing else
        changing, before the environment treats it as idle."""
        self._persistence = persistence
        self._provider_options = provider_options
        self._options = options or TEST_HOST_OPTIONS
        self._workflows = list(workflows)
        self._queue = InProcessQueueProvider()
        self._host: WorkflowHost | None = None
        self._owns_store = persistence is None
        self._clock_scope: contextlib.ExitStack | None = None
        self._due_sources: list[DueSource] = []

    # ------------------------------------------------------------------ set-up
    @property
    def host(self) -> WorkflowHost:
        """The running host (a :class:`~wfe_core.client.WorkflowClient` too)."""
        if self._host is None:
            raise RuntimeError(
                "the WorkflowTestEnv is not running; use it as `async with WorkflowTestEnv() "
                "as env:` (or the `wfe_env` pytest fixture)"
            )
        return self._host

    async def __aenter__(self) -> Self:
        if self._host is not None:
            raise RuntimeError("this WorkflowTestEnv is running already")
        persistence = self._persistence
        if persistence is None:
            store = open_store(self.url, **self._provider_options)
            if store.persistence is None:
                raise ValueError(f"{self.url.split(':', 1)[0]}:// is not a store URL")
            persistence = store.persistence
        scope = contextlib.ExitStack()
        scope.enter_context(engine_clock.use_clock(self.clock))
        host = WorkflowHost(persistence, queue_provider=self._queue, options=self._options)
        try:
            for workflow in self._workflows:
                host.register_workflow(workflow)
            await host.start()
        except BaseException:
            scope.close()
            if self._owns_store:
                await persistence.close()
            raise
        self._host, self._clock_scope = host, scope
        if host.schedules.next_time not in self._due_sources:
            self.add_due_source(host.schedules.next_time)  # skip time to schedules' fires
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        host, scope = self._host, self._clock_scope
        self._host = self._clock_scope = None
        try:
            if host is not None:
                await host.stop()
                if self._owns_store:
                    await host.persistence.close()
        finally:
            if scope is not None:
                scope.close()

    def register(self, *workflows: Workflow[Any]) -> None:
        """Register workflows on the host (one already registered is left as it is)."""
        host = self.host
        for workflow in workflows:
            if host.registry.find(workflow.id, workflow.version) is None:
                host.register_workflow(workflow)

    def add_due_source(self, source: DueSource) -> None:
        """Also skip time to what ``source()`` says is due next (see the module)."""
        self._due_sources.append(source)

    def now(self) -> datetime:
        """The virtual time."""
        return self.clock.now()

    # ------------------------------------------------------------------ driving
    @overload
    async def start(
        self,
        workflow: type[Workflow[T]] | Workflow[T],
        data: T | None = None,
        *,
        reference: str | None = None,
        **options: Any,
    ) -> WorkflowHandle[T]: ...

    @overload
    async def start(
        self,
        workflow: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        **options: Any,
    ) -> WorkflowHandle[Any]: ...

    async def start(
        self,
        workflow: type[Workflow[Any]] | Workflow[Any] | str,
        data: Any = None,
        **options: Any,
    ) -> WorkflowHandle[Any]:
        """Start an instance (see ``WorkflowClient.start_instance``; a ``Workflow`` is
        registered on first use) and return its typed handle."""
        return await self.host.start_instance(workflow, data, **options)

    async def publish_event(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
        **options: Any,
    ) -> str:
        """Publish an event at the virtual time (see ``WorkflowClient.publish_event``);
        it is delivered in the background: wait for what it leads to."""
        return await self.host.publish_event(name, key, data, effective_date, **options)

    async def advance(self, delta: timedelta, *, timeout: float | None = None) -> datetime:
        """Move the virtual time forward by ``delta`` and run everything that becomes
        due on the way, in time order (a daily timer fires three times in three days),
        then wait until the host is idle. Returns the new virtual time."""
        if not isinstance(delta, timedelta):
            raise TypeError(f"advance takes a timedelta, not {type(delta).__name__}")
        if delta < timedelta(0):
            raise ValueError(f"time only moves forward; advance({delta!r}) would go back")
        deadline = self._deadline(timeout)
        await self._settle(deadline)
        target = self.clock.now() + delta
        await self._skip(deadline, until=target)
        if target > self.clock.now():
            await self._move_to(target, deadline)
        return self.clock.now()

    async def run_until_idle(
        self, *, timeout: float | None = None, horizon: timedelta | None = None
    ) -> datetime:
        """Skip time from one due time to the next until nothing is due any more (or
        the next due time is beyond ``horizon`` from now); return the virtual time."""
        deadline = self._deadline(timeout)
        until = None if horizon is None else self.clock.now() + horizon
        await self._skip(deadline, until=until)
        return self.clock.now()

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait (without moving time) until the host is idle (see the module)."""
        await self._settle(self._deadline(timeout))

    async def wait_for_workflow(
        self,
        workflow: str | WorkflowHandle[Any],
        timeout: float | None = None,
        *,
        skip_time: bool = True,
    ) -> WorkflowInstance:
        """Wait until the instance is COMPLETE or TERMINATED and return it, skipping
        the virtual time to the next due time whenever the host is idle
        (``skip_time=False``: never). TimeoutError after ``timeout`` real seconds."""
        workflow_id = workflow.id if isinstance(workflow, WorkflowHandle) else workflow
        found: list[WorkflowInstance] = []

        async def ended() -> bool:
            instance = await self.host.get_workflow_instance(workflow_id)
            found[:] = [instance]
            return instance.status in _ENDED

        await self._wait(ended, self._deadline(timeout), skip_time, workflow_id, "end")
        return found[0]

    async def wait_for_step(
        self,
        workflow: str | WorkflowHandle[Any],
        step_name: str,
        *,
        status: PointerStatus | Iterable[PointerStatus] | None = None,
        timeout: float | None = None,
        skip_time: bool = True,
    ) -> StepRecord:
        """Wait until a step named ``step_name`` is in ``status`` (one or several;
        by default: reached -- any status but pending) and return its history entry;
        time is skipped as in :meth:`wait_for_workflow`."""
        workflow_id = workflow.id if isinstance(workflow, WorkflowHandle) else workflow
        if isinstance(status, PointerStatus):
            wanted: set[PointerStatus] | None = {status}
        elif status is None:
            wanted = None
        else:
            wanted = {PointerStatus(s) for s in status}
        found: list[StepRecord] = []

        async def reached() -> bool:
            for record in await self.step_history(workflow_id):
                if record.name != step_name:
                    continue
                if (wanted is None and record.status not in _NOT_REACHED) or (
                    wanted is not None and record.status in wanted
                ):
                    found[:] = [record]
                    return True
            return False

        what = f"step {step_name!r} " + (
            "to be reached" if wanted is None else f"in {sorted(s.value for s in wanted)}"
        )
        await self._wait(reached, self._deadline(timeout), skip_time, workflow_id, what)
        return found[0]

    # ------------------------------------------------------------------ history
    async def step_history(self, workflow: str | WorkflowHandle[Any]) -> list[StepRecord]:
        """The instance's steps in the order they were reached: name, status, attempts."""
        workflow_id = workflow.id if isinstance(workflow, WorkflowHandle) else workflow
        instance = await self.host.get_workflow_instance(workflow_id)
        definition = self.host.registry.find(instance.workflow_definition_id, instance.version)
        return [_record(p, definition) for p in instance.execution_pointers]

    async def assert_steps(
        self,
        workflow: str | WorkflowHandle[Any],
        expected: Sequence[str | tuple[str, PointerStatus | str] | tuple[str, Any, int]],
    ) -> list[StepRecord]:
        """Assert the step history: one item per step, in order -- a name, a
        ``(name, status)`` or a ``(name, status, attempts)``. Raises AssertionError
        showing both lists when they differ; returns the history."""
        wanted = [_shape(None, item) for item in expected]
        history = await self.step_history(workflow)
        actual = [_shape(record, item) for record, item in zip(history, expected, strict=False)]
        if len(history) != len(expected) or actual != wanted:
            lines = "\n".join(
                f"  {r.name!r} {r.status.value} attempts={r.attempts}" for r in history
            )
            raise AssertionError(
                f"step history of {getattr(workflow, 'id', workflow)} differs:\n"
                f"expected {wanted}\nactual:\n{lines}"
            )
        return history

    # ------------------------------------------------------------------ due times
    async def next_due_time(self) -> datetime | None:
        """The earliest time after now something is due (see the module), or None."""
        persistence = self.host.persistence
        now = self.clock.now()
        far = now + _FAR
        times: list[datetime] = []
        due_now = len(await persistence.get_runnable_instances(now, 100_000))
        later = (await persistence.get_runnable_instances(far, due_now + 5))[due_now:]
        if later:
            for instance in await persistence.get_workflow_instances(later):
                nxt = instance.next_execution
                if nxt is not None and nxt > now and instance.status is WorkflowStatus.RUNNABLE:
                    times.append(nxt)
        events_now = len(await persistence.get_runnable_events(now, 100_000))
        for event_id in (await persistence.get_runnable_events(far, events_now + 5))[events_now:]:
            event = await persistence.get_event(event_id)
            if event.event_time > now and not event.is_processed:
                times.append(event.event_time)
        wake = self.clock.next_wake
        if wake is not None and now < wake < far:
            times.append(wake)
        for source in self._due_sources:
            when = await source()
            if when is not None and when > now:
                times.append(when)
        return min(times, default=None)

    # ------------------------------------------------------------------ internals
    def _deadline(self, timeout: float | None) -> float:
        seconds = self.idle_timeout if timeout is None else timeout
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        return time.monotonic() + seconds

    def _busy(self) -> tuple[str | None, bool]:
        """What keeps the host busy (None: idle), and whether anything is queued."""
        host = self.host
        parts = []
        queued = False
        for queue in (QueueType.WORKFLOW, QueueType.EVENT):
            size = self._queue.qsize(queue)
            if size:
                queued = True
                parts.append(f"{size} queued {queue.value} item(s)")
        tasks = len(host.dispatcher.items)
        if tasks:
            active = ", ".join(sorted(host.passes.active)) or "none"
            parts.append(f"{tasks} running task(s) (passes over: {active})")
        return ("; ".join(parts) or None), queued

    async def _settle(self, deadline: float) -> None:
        """Wait until the host is idle (see the module), bounded by ``deadline``."""
        seen: object = None
        since = 0.0
        while True:
            busy, queued = self._busy()
            if busy is None:
                await asyncio.sleep(0)  # a task woken just now may still add work
                if self._busy()[0] is None:
                    return
                continue
            now = time.monotonic()
            if not queued and self.clock.sleepers:
                mark = (self.clock.changes, frozenset(map(id, self.host.dispatcher.items)))
                if mark != seen:
                    seen, since = mark, now
                elif now - since >= self.busy_grace:
                    return  # everything left waits for virtual time
            else:
                seen = None
            if now >= deadline:
                raise TimeoutError(
                    f"the test host did not become idle in time: {busy} (virtual time "
                    f"{self.clock.now().isoformat()}); a step that never ends keeps it busy"
                )
            await asyncio.sleep(0.002)

    async def _due_left(self) -> bool:
        """True while work is due now that no pass runs yet."""
        persistence = self.host.persistence
        now = self.clock.now()
        active = self.host.passes.active
        ids = await persistence.get_runnable_instances(now, 100)
        if any(i not in active for i in ids):
            return True
        return bool(await persistence.get_runnable_events(now, 1))

    async def _run_due(self, deadline: float) -> None:
        """Have the host run what is due now: poll once, wait until idle; again while
        due work was missed (a poll racing the host's own poller), a few rounds."""
        for _ in range(_POLL_ROUNDS):
            await self.host.poller.poll_once()
            await self._settle(deadline)
            if not await self._due_left() or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.02)

    async def _move_to(self, target: datetime, deadline: float) -> None:
        """Move the clock to ``target`` and run what is due then. The claims of passes
        still running are extended first, so the jump does not expire their leases."""
        host = self.host
        lease = target + timedelta(seconds=host.options.lock_ttl)
        for workflow_id in list(host.passes.active):
            with contextlib.suppress(Exception):  # the lease keeper renews it anyway
                await host.persistence.claim_workflow(workflow_id, host.owner_id, lease)
        self.clock.advance_to(target)
        await self._run_due(deadline)

    async def _skip(
        self,
        deadline: float,
        *,
        until: datetime | None = None,
        done: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Jump from due time to due time (not beyond ``until``) until ``done()`` or
        nothing is due; return whether ``done()`` came true."""
        while True:
            await self._settle(deadline)
            if done is not None and await done():
                return True
            nxt = await self.next_due_time()
            if nxt is None or (until is not None and nxt > until):
                return False
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    "time skipping did not finish in time: work keeps becoming due (a "
                    f"workflow that recurs for ever?); virtual time {self.clock.now()}"
                )
            await self._move_to(nxt, deadline)

    async def _wait(
        self,
        done: Callable[[], Awaitable[bool]],
        deadline: float,
        skip_time: bool,
        workflow_id: str,
        what: str,
    ) -> None:
        while True:
            if await done():
                return
            if skip_time:
                if await self._skip(deadline, done=done):
                    return
            else:
                with contextlib.suppress(TimeoutError):
                    await self._settle(deadline)
                if await done():
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(await self._stuck(workflow_id, what))
            await asyncio.sleep(0.01)  # nothing due: something outside must act

    async def _stuck(self, workflow_id: str, what: str) -> str:
        instance = await self.host.get_workflow_instance(workflow_id)
        history = await self.step_history(workflow_id)
        waiting = [
            f"{r.name!r} {r.status.value}"
            + (f" ({p.event_name}/{p.event_key})" if p.event_name else "")
            for r, p in zip(history, instance.execution_pointers, strict=False)
            if r.status not in (PointerStatus.COMPLETE, PointerStatus.CANCELLED)
        ]
        return (
            f"workflow {workflow_id}: gave up waiting for {what} (status "
            f"{instance.status.value}, virtual time {self.clock.now().isoformat()}); nothing "
            f"is due any more; open steps: {', '.join(waiting) or 'none'}"
        )


def _record(pointer: ExecutionPointer, definition: Any) -> StepRecord:
    name = pointer.step_name
    if name is None and definition is not None and pointer.step_id < len(definition.steps):
        name = definition.steps[pointer.step_id].label
    return StepRecord(
        name=name or f"step {pointer.step_id}",
        status=pointer.status,
        attempts=pointer.retry_count + (1 if pointer.start_time is not None else 0),
        step_id=pointer.step_id,
        pointer_id=pointer.id,
        start_time=pointer.start_time,
        end_time=pointer.end_time,
    )


def _shape(record: StepRecord | None, item: Any) -> Any:
    """``item``'s shape filled from ``record`` (or ``item`` itself, normalised)."""
    if isinstance(item, str):
        return item if record is None else record.name
    if not isinstance(item, tuple) or not 2 <= len(item) <= 3 or not isinstance(item[0], str):
        raise TypeError(
            f"assert_steps items are a name, (name, status) or (name, status, attempts), "
            f"not {item!r}"
        )
    if record is None:
        return (item[0], PointerStatus(item[1]), *item[2:])
    return (record.name, record.status, record.attempts)[: len(item)]
