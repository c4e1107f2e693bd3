"""What every host scenario module shares: polling helpers, the host factory, the
recorder, the scenario data types, tiny steps and :class:`ScenarioBase` (the fixtures
every scenario mixin uses).

Workflows that need to report what ran take a :class:`Recorder` in their constructor;
their plain-function steps close over it, so each test gets its own record even though
definition ids repeat across tests.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_core import (
    ExecutionResult,
    HostOptions,
    LifecycleEvent,
    LifecycleEventType,
    StepBody,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowInstance,
    WorkflowStatus,
)

__all__ = [
    "EVENT_1",
    "EVENT_2",
    "EVENT_3",
    "SCENARIO_TYPES",
    "ActivityInput",
    "ActivityOutput",
    "AddNumbers",
    "ChildData",
    "Data",
    "DecimalData",
    "HostBuilder",
    "HostFactory",
    "Recorder",
    "RecordingWorkflow",
    "ScenarioBase",
    "capture",
    "far_future",
    "increment",
    "noop",
    "subscriptions_for",
    "types_of",
    "uid",
    "wait_for_subscription",
    "wait_until",
]

# --------------------------------------------------------------------------------------
# Polling helpers
# --------------------------------------------------------------------------------------


async def wait_until(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 5.0,
    message: str = "condition",
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` (sync or async) until it is true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {message}")
        await anyio.sleep(interval)


def far_future() -> datetime:
    """A time after every subscription a test creates (for ``get_subscriptions``)."""
    return datetime.now(UTC) + timedelta(days=3650)


async def subscriptions_for(provider: PersistenceProvider, name: str, key: str) -> list[Any]:
    """Every live subscription for ``name`` / ``key``, whatever its ``subscribe_as_of``."""
    return list(await provider.get_subscriptions(name, key, far_future()))


async def wait_for_subscription(
    provider: PersistenceProvider, name: str, key: str, timeout: float = 5.0, count: int = 1
) -> None:
    """Wait until at least ``count`` live subscriptions for ``name`` / ``key`` exist."""

    async def present() -> bool:
        return len(await subscriptions_for(provider, name, key)) >= count

    await wait_until(present, timeout, f"{count} subscription(s) for {name!r}/{key!r}")


def uid() -> str:
    """A fresh unique key."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------------------

HostBuilder = Callable[[HostOptions], WorkflowHost]
"""Builds an (unstarted) host on the provider under test from the given options."""


class HostFactory:
    """Builds, prepares and starts hosts for one test and stops them all afterwards."""

    def __init__(
        self,
        build: HostBuilder,
        defaults: dict[str, Any],
        stop_timeout: float,
        wait_timeout: float | None = None,
    ) -> None:
        self._build = build
        self._defaults = defaults
        self._stop_timeout = stop_timeout
        self._wait_timeout = stop_timeout if wait_timeout is None else wait_timeout
        self._running: list[WorkflowHost] = []

    async def __call__(
        self,
        *workflows: Workflow[Any],
        configure: Callable[[WorkflowHost], None] | None = None,
        **option_overrides: Any,
    ) -> WorkflowHost:
        """Build a host with the test defaults plus ``option_overrides``, register the
        scenario types and ``workflows``, run ``configure`` on it and start it."""
        options = HostOptions(**{**self._defaults, **option_overrides})
        host = self._build(options)
        host.register_type(*SCENARIO_TYPES)
        for workflow in workflows:
            host.register_workflow(workflow)
        if configure is not None:
            configure(host)
        await host.__aenter__()
        self._running.append(host)
        return host

    async def run_to_end(
        self,
        workflow: Workflow[Any],
        data: Any = None,
        *,
        also: Iterable[Workflow[Any]] = (),
        configure: Callable[[WorkflowHost], None] | None = None,
        **option_overrides: Any,
    ) -> tuple[WorkflowHost, WorkflowInstance]:
        """The start-and-wait of most scenarios: start a host running ``workflow`` (and
        the ``also`` workflows, e.g. its children; ``configure`` and
        ``option_overrides`` as for a call), start one ``workflow`` instance with
        ``data`` and wait, bounded by the wait timeout, until it is COMPLETE or
        TERMINATED. Returns the host (still running) and the ended instance; the caller
        asserts its status."""
        host = await self(workflow, *also, configure=configure, **option_overrides)
        workflow_id = await host.start_workflow(workflow.id, data)
        return host, await host.wait_for_workflow(workflow_id, timeout=self._wait_timeout)

    async def stop(self, host: WorkflowHost) -> None:
        """Stop one host now (it is not stopped again at teardown)."""
        if host in self._running:
            self._running.remove(host)
            await host.__aexit__(None, None, None)

    async def close(self) -> None:
        """Stop every host still running, bounded by the stop timeout."""
        with anyio.move_on_after(self._stop_timeout):
            while self._running:
                await self.stop(self._running[-1])


def capture(events: list[LifecycleEvent]) -> Callable[[WorkflowHost], None]:
    """A host configurator that appends every lifecycle event to ``events``."""

    def configure(host: WorkflowHost) -> None:
        host.on_lifecycle_event(events.append)

    return configure


def types_of(events: list[LifecycleEvent], workflow_id: str) -> list[LifecycleEventType]:
    """The types of the lifecycle events about ``workflow_id``, in order."""
    return [e.type for e in events if e.workflow_id == workflow_id]


# --------------------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------------------


class Recorder:
    """What the steps of one test did, in order, with monotonic timestamps."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, float]] = []

    def hit(self, name: str) -> None:
        """Record that ``name`` happened now."""
        self.entries.append((name, time.monotonic()))

    @property
    def names(self) -> list[str]:
        """The recorded names in order."""
        return [name for name, _ in self.entries]

    def count(self, name: str) -> int:
        """How often ``name`` was recorded."""
        return sum(1 for n, _ in self.entries if n == name)

    def counts(self) -> Counter[str]:
        """How often each name was recorded."""
        return Counter(self.names)

    def times(self, name: str) -> list[float]:
        """The timestamps of ``name``, in order."""
        return [t for n, t in self.entries if n == name]

    def index(self, name: str) -> int:
        """Position of the first record of ``name``."""
        return self.names.index(name)

    def last_index(self, name: str) -> int:
        """Position of the last record of ``name``."""
        return len(self.entries) - 1 - self.names[::-1].index(name)

    def only(self, names: Iterable[str]) -> list[str]:
        """The recorded names restricted to ``names``, in order."""
        wanted = set(names)
        return [n for n in self.names if n in wanted]

    def step(self, name: str) -> Callable[[StepContext[Any]], Awaitable[None]]:
        """An async step that records ``name`` and proceeds."""

        async def record(context: StepContext[Any]) -> None:
            self.hit(name)

        record.__name__ = record.__qualname__ = name.replace("-", "_")
        return record

    def failing(self, name: str, failures: int = 1_000_000) -> Callable[[StepContext[Any]], None]:
        """A sync step that records ``name`` and raises on its first ``failures`` runs."""

        def fail(context: StepContext[Any]) -> None:
            self.hit(name)
            attempt = self.count(name)
            if attempt <= failures:
                raise RuntimeError(f"{name} failed on attempt {attempt}")

        fail.__name__ = fail.__qualname__ = name.replace("-", "_")
        return fail

    def failing_when_flag(self, name: str) -> Callable[[StepContext[Any]], None]:
        """A step that records ``name`` and raises when the workflow data's flag is set."""

        def fail(context: StepContext[Any]) -> None:
            self.hit(name)
            if context.data.flag:
                raise RuntimeError(f"{name} failed")

        fail.__name__ = fail.__qualname__ = name.replace("-", "_")
        return fail


# --------------------------------------------------------------------------------------
# Data types, event names and tiny steps
# --------------------------------------------------------------------------------------


@dataclass
class ActivityInput:
    """Typed activity parameters."""

    name: str = ""
    amount: Decimal = Decimal("0")


@dataclass
class ActivityOutput:
    """Typed activity result."""

    code: str = ""
    value: int = 0


@dataclass
class ChildData:
    """Data of the child workflows."""

    value: int = 0
    note: str = ""


@dataclass
class Data:
    """The general scenario data."""

    key: str = ""
    counter: int = 0
    a: int = 0
    b: int = 0
    total: int = 0
    op: str = ""
    flag: bool = False
    text: str = ""
    last: str | None = None
    timed_out: bool = False
    received: list[str] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    base_time: datetime | None = None
    activity_result: ActivityOutput | None = None
    child_result: ChildData | None = None


@dataclass
class DecimalData:
    """Data that must keep 18-place decimals exact through the store."""

    a: Decimal = Decimal("0")
    b: Decimal = Decimal("0")
    total: Decimal = Decimal("0")
    when: datetime | None = None


SCENARIO_TYPES: tuple[type, ...] = (Data, DecimalData, ActivityInput, ActivityOutput, ChildData)
"""Every type the scenarios hand to the host (registered on every host)."""

EVENT_1 = "scn-event-1"
EVENT_2 = "scn-event-2"
EVENT_3 = "scn-event-3"


class AddNumbers(StepBody):
    """total = a + b (inputs a, b; output total)."""

    a: int = 0
    b: int = 0
    total: int = 0

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.total = self.a + self.b
        return ExecutionResult.next()


async def noop(context: StepContext[Any]) -> None:
    """A step that does nothing."""


async def increment(context: StepContext[Any]) -> None:
    """counter += 1."""
    context.data.counter += 1


class RecordingWorkflow(Workflow[Data]):
    """Base of the workflows whose steps report to a :class:`Recorder`."""

    id = "scn-recording-base"
    version = 1
    data_type = Data

    def __init__(self, rec: Recorder) -> None:
        super().__init__()
        self.rec = rec

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# The base of every scenario mixin
# --------------------------------------------------------------------------------------


class ScenarioBase(SuiteBase):
    """The fixtures and bounded waits of every host scenario mixin (no tests of its own).

    Each test builds its hosts with the ``host_factory`` fixture (fast poll and retry
    intervals) and waits on conditions with bounded timeouts, never on fixed sleeps. A
    provider whose hosts need their own lock or queue provider overrides
    ``host_builder``.
    """

    timeout: float = 10.0
    """Upper bound (seconds) for every wait on a workflow or condition."""

    host_defaults: dict[str, Any] = {
        "poll_interval": 0.05,
        "idle_time": 0.01,
        "error_retry_interval": 0.05,
        "lock_ttl": 5.0,
        "stop_timeout": 5.0,
    }
    """HostOptions for every scenario host (a test may override some)."""

    @pytest.fixture
    def host_builder(self, provider: PersistenceProvider) -> HostBuilder:
        """Builds an unstarted host on ``provider``; override to wire the store's own
        lock / queue providers. Hosts built by one test must cooperate on one store."""

        def build(options: HostOptions) -> WorkflowHost:
            return WorkflowHost(provider, options=options)

        return build

    @pytest.fixture
    async def host_factory(self, host_builder: HostBuilder) -> AsyncIterator[HostFactory]:
        """``await host_factory(*workflows, configure=None, **option_overrides)`` builds,
        prepares and starts a host, ``await host_factory.run_to_end(workflow, data)``
        also runs one instance to its end; every host still running is stopped at
        teardown (bounded)."""
        factory = HostFactory(host_builder, dict(self.host_defaults), self.timeout, self.timeout)
        try:
            yield factory
        finally:
            await factory.close()

    async def finished(self, host: WorkflowHost, workflow_id: str) -> WorkflowInstance:
        """Wait (bounded) until the workflow is COMPLETE or TERMINATED."""
        return await host.wait_for_workflow(workflow_id, timeout=self.timeout)

    async def until(
        self, predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], message: str
    ) -> None:
        """Wait (bounded) until ``predicate`` holds."""
        await wait_until(predicate, self.timeout, message)

    async def status_is(self, host: WorkflowHost, wid: str, status: WorkflowStatus) -> None:
        """Wait (bounded) until the workflow has ``status``."""

        async def check() -> bool:
            return (await host.get_workflow_instance(wid)).status == status

        await self.until(check, f"workflow {wid} to be {status}")
