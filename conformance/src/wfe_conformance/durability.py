"""Conformance suite for capability ``DURABLE``: ``DurabilityTests``.

A provider that declares :attr:`~wfe_core.capabilities.Capability.DURABLE` promises
that its store outlives the provider object and the process. This suite proves it:
everything written (instances with their pointers, events, subscriptions with their
claims, errors, scheduled commands) is there after ``close`` and a reopen; a second
provider object open at the same time sees the first one's writes and shares its
revisions and claims; another process sees this one's writes and this one sees
another's; and a :class:`~wfe_core.WorkflowHost` in another process runs a workflow
started here, woken by an event published here.

The provider author says how to open the same store again by overriding the
``store_opener`` fixture with a :class:`StoreOpener`: a store URL (opened with
:func:`wfe_core.registry.open_store`, i.e. through the ``wfe.providers`` entry point)
or an importable ``"package.module:callable"`` with JSON-able keyword arguments::

    class TestMyStoreConformance(ProviderConformance):
        @pytest.fixture
        def store_opener(self, tmp_path):
            return StoreOpener(url=f"mystore:///{tmp_path / 'store'}")

        @pytest.fixture
        async def provider(self, store_opener):
            async with store_opener.open() as p:
                yield p

Providers that do not declare ``DURABLE`` skip the suite (the reason names the
capability). This module is also the program the other process runs::

    python -m wfe_conformance.durability ACTION OPENER_JSON ARGS_JSON
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from wfe_core.capabilities import Capability
from wfe_core.errors import ConcurrencyError
from wfe_core.models import (
    ExecutionError,
    ScheduledCommand,
    WorkflowStatus,
    new_id,
)
from wfe_core.persistence import PersistenceProvider
from wfe_core.registry import StoreComponents, open_store
from wfe_core.serialization import register_type

from wfe_conformance.base import SuiteBase, requires
from wfe_conformance.sample import (
    BASE_TIME,
    FAR_FUTURE,
    FAR_PAST,
    make_event,
    make_instance,
    make_subscription,
)
from wfe_core import HostOptions, StepContext, Workflow, WorkflowBuilder, WorkflowHost

__all__ = ["DURABLE_EVENT", "DurabilityTests", "DurableData", "DurableWorkflow", "StoreOpener"]


@dataclass(frozen=True)
class StoreOpener:
    """How to open the store under test again, in this process or in another one.

    Give exactly one of ``url`` (a store URL, opened with
    :func:`wfe_core.registry.open_store` through the ``wfe.providers`` entry point of
    its scheme) and ``factory`` (``"package.module:callable"``, importable in a fresh
    interpreter; called with ``options`` as keyword arguments, it returns a
    :class:`~wfe_core.persistence.PersistenceProvider` or a
    :class:`~wfe_core.registry.StoreComponents`). ``options`` must be JSON-able: they
    travel to the other process as JSON.
    """

    url: str | None = None
    factory: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.factory is None):
            raise ValueError("StoreOpener needs exactly one of url= and factory=")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError(f"factory must be 'package.module:callable', not {self.factory!r}")
        json.dumps(dict(self.options))  # refuse what cannot travel to another process

    def open(self) -> PersistenceProvider:
        """A new provider object on the store (not yet entered: use ``async with``)."""
        if self.url is not None:
            made: object = open_store(self.url, **self.options)
        else:
            assert self.factory is not None
            module_name, _, attr = self.factory.partition(":")
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
            made = target(**self.options)
        if isinstance(made, StoreComponents):
            made = made.persistence
        if not isinstance(made, PersistenceProvider):
            raise TypeError(f"{self!r} opened {type(made).__name__}, not a PersistenceProvider")
        return made

    def to_json(self) -> str:
        """The opener as JSON (for the command line of another process)."""
        return json.dumps({"url": self.url, "factory": self.factory, "options": dict(self.options)})

    @classmethod
    def from_json(cls, text: str) -> StoreOpener:
        """The opener :meth:`to_json` wrote."""
        values = json.loads(text)
        return cls(url=values["url"], factory=values["factory"], options=values["options"])


# --------------------------------------------------------------------------------------
# What the tests write and compare
# --------------------------------------------------------------------------------------


def new_sample_ids() -> dict[str, str]:
    """Fresh ids (and a key and reference) for one :func:`write_sample`."""
    return {
        "workflow": f"wf-{new_id()}",
        "event": f"evt-{new_id()}",
        "subscription": f"sub-{new_id()}",
        "token": f"tok-{new_id()}",
        "key": f"key-{new_id()}",
        "reference": f"ref-{new_id()}",
    }


async def write_sample(provider: PersistenceProvider, ids: Mapping[str, str]) -> None:
    """Write one of everything the store keeps: an instance (created, then persisted
    RUNNABLE with a changed pointer and a new subscription), a claim on that
    subscription, an event, two errors and (with ``SCHEDULED_COMMANDS``) a command."""
    instance = make_instance(id=ids["workflow"], reference=ids["reference"])
    await provider.create_workflow(instance)
    changed = await provider.get_workflow_instance(instance.id)
    changed.status = WorkflowStatus.RUNNABLE
    changed.execution_pointers[1].retry_count += 1
    subscription = make_subscription(
        id=ids["subscription"],
        workflow_id=instance.id,
        execution_pointer_id=changed.execution_pointers[1].id,
        event_key=ids["key"],
    )
    await provider.persist_workflow(changed, [subscription])
    claimed = await provider.set_subscription_token(
        subscription.id, ids["token"], "durability-worker", FAR_FUTURE
    )
    assert claimed, "a fresh subscription could not be claimed"
    await provider.create_event(make_event(id=ids["event"], event_key=ids["key"]))
    await provider.persist_errors(
        [
            ExecutionError(
                workflow_id=instance.id,
                execution_pointer_id=changed.execution_pointers[n].id,
                message=f"failure {n}: Zoë's card",
                error_type="ValueError",
                traceback=f"Traceback (most recent call last):\n  line {n}\n",
                error_time=BASE_TIME + timedelta(seconds=n),
                id=f"err-{n}-{ids['workflow']}",
            )
            for n in (0, 1)
        ]
    )
    if Capability.SCHEDULED_COMMANDS in provider.capabilities:
        await provider.schedule_command(
            ScheduledCommand(ScheduledCommand.PROCESS_WORKFLOW, instance.id, BASE_TIME)
        )


async def describe(provider: PersistenceProvider, ids: Mapping[str, str]) -> dict[str, str]:
    """What the store holds of one :func:`write_sample`, as comparable text (the
    ``repr`` of every model read back, and of the look-ups that find them)."""
    name = "payment.received"
    subscriptions = await provider.get_subscriptions(name, ids["key"], FAR_FUTURE)
    found = await provider.query_workflows(reference=ids["reference"])
    return {
        "instance": repr(await provider.get_workflow_instance(ids["workflow"])),
        "event": repr(await provider.get_event(ids["event"])),
        "subscription": repr(await provider.get_subscription(ids["subscription"])),
        "errors": repr(await provider.get_errors(ids["workflow"])),
        "events by key": repr(await provider.get_events(name, ids["key"], FAR_PAST)),
        "subscriptions by key": repr([s.id for s in subscriptions]),
        "by reference": repr([i.id for i in found]),
        "runnable instances": repr(await provider.get_runnable_instances(FAR_FUTURE)),
        "runnable events": repr(await provider.get_runnable_events(FAR_FUTURE)),
    }


def assert_described(actual: Mapping[str, str], expected: Mapping[str, str], where: str) -> None:
    """Fail naming each part of a :func:`describe` that differs."""
    problems = [
        f"{part}:\n  {where}: {actual.get(part)}\n  expected:   {expected[part]}"
        for part in expected
        if actual.get(part) != expected[part]
    ]
    assert not problems, f"{where} does not see what was written:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------
# The workflow a host in another process runs
# --------------------------------------------------------------------------------------

DURABLE_EVENT = "wfe-durability-go"
"""The event :class:`DurableWorkflow` waits for (keyed by ``DurableData.key``)."""


@dataclass
class DurableData:
    """Data of :class:`DurableWorkflow`: which process ran each step."""

    key: str = ""
    steps: list[str] = field(default_factory=list)
    paid: Any = None


register_type(DurableData)


async def _first(context: StepContext[DurableData]) -> None:
    context.data.steps.append(f"one@{os.getpid()}")


async def _second(context: StepContext[DurableData]) -> None:
    context.data.steps.append(f"two@{os.getpid()}:{context.data.paid}")


class DurableWorkflow(Workflow[DurableData]):
    """one → wait for ``DURABLE_EVENT`` with the data's key → two (records the event)."""

    id = "wfe-conformance-durable"
    version = 1
    data_type = DurableData

    def build(self, builder: WorkflowBuilder[DurableData]) -> None:
        (
            builder.start_with(_first)
            .wait_for(DURABLE_EVENT, key=lambda d: d.key)
            .output(paid=lambda step: step.event_data)
            .then(_second)
        )


def _host_options() -> HostOptions:
    return HostOptions(
        poll_interval=0.05,
        idle_time=0.01,
        error_retry_interval=0.1,
        lock_ttl=10.0,
        stop_timeout=5.0,
    )


# --------------------------------------------------------------------------------------
# The other process
# --------------------------------------------------------------------------------------


async def _child(action: str, opener: StoreOpener, args: dict[str, Any]) -> Any:
    """Run one action on a freshly opened store; return what to print (JSON)."""
    async with opener.open() as store:
        if action == "describe":
            return await describe(store, args["ids"])
        if action == "write":
            await write_sample(store, args["ids"])
            return await describe(store, args["ids"])
        if action == "host":
            await store.get_workflow_instance(args["workflow_id"])  # not there: fail fast
            host = WorkflowHost(store, options=_host_options())
            host.register_workflow(DurableWorkflow())
            async with host:
                done = await host.wait_for_workflow(args["workflow_id"], args["timeout"])
            return {"status": done.status.value, "pid": os.getpid()}
    raise ValueError(f"unknown action {action!r}")


def main(argv: list[str] | None = None) -> None:
    """``python -m wfe_conformance.durability ACTION OPENER_JSON ARGS_JSON``: print the
    action's result as JSON on stdout (exit status 1 and a traceback on failure)."""
    action, opener, args = argv if argv is not None else sys.argv[1:]
    try:
        result = asyncio.run(_child(action, StoreOpener.from_json(opener), json.loads(args)))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    print(json.dumps(result))


def _child_env() -> dict[str, str]:
    """The environment of the other process: this one's, with its ``sys.path`` (so a
    ``factory`` importable here is importable there)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _command(action: str, opener: StoreOpener, args: Mapping[str, Any]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wfe_conformance.durability",
        action,
        opener.to_json(),
        json.dumps(dict(args)),
    ]


# --------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------


class DurabilityTests(SuiteBase):
    """A DURABLE store outlives the provider object and the process."""

    timeout: float = 60.0
    """Upper bound (seconds) for each wait, including another process's start."""

    async def in_other_process(
        self, action: str, opener: StoreOpener, **args: Any
    ) -> dict[str, Any]:
        """Run ``action`` in a new interpreter on a store opened by ``opener``; return
        the JSON it printed. Fails with the other process's traceback."""
        with anyio.fail_after(self.timeout):
            done = await anyio.run_process(
                _command(action, opener, args), check=False, env=_child_env()
            )
        errors = done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"the other process failed ({action}):\n{errors}"
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    @requires(Capability.DURABLE)
    async def test_everything_survives_close_and_reopen(
        self, provider: PersistenceProvider, store_opener: StoreOpener
    ) -> None:
        """Instances, pointers, events, subscriptions and claims, errors and commands
        written before close are all there, equal, in a provider opened afterwards."""
        ids = new_sample_ids()
        await write_sample(provider, ids)
        expected = await describe(provider, ids)
        await provider.close()
        async with store_opener.open() as reopened:
            assert_described(await describe(reopened, ids), expected, "the reopened store")
            seen: list[ScheduledCommand] = []

            async def handler(command: ScheduledCommand) -> None:
                seen.append(command)

            if Capability.SCHEDULED_COMMANDS in reopened.capabilities:
                assert await reopened.process_commands(FAR_FUTURE, handler) == 1
                assert [(c.command_name, c.data) for c in seen] == [
                    (ScheduledCommand.PROCESS_WORKFLOW, ids["workflow"])
                ]

    @requires(Capability.DURABLE)
    async def test_second_provider_sees_writes_while_both_are_open(
        self, provider: PersistenceProvider, store_opener: StoreOpener
    ) -> None:
        """A second provider object on the store sees the first one's writes and the
        first sees the second's; revisions and subscription claims are shared."""
        async with store_opener.open() as second:
            first_ids, second_ids = new_sample_ids(), new_sample_ids()
            await write_sample(provider, first_ids)
            assert_described(
                await describe(second, first_ids),
                await describe(provider, first_ids),
                "the second provider",
            )
            await write_sample(second, second_ids)
            assert_described(
                await describe(provider, second_ids),
                await describe(second, second_ids),
                "the first provider",
            )
            # one revision counter: a write through one makes the other's copy stale
            mine = await provider.get_workflow_instance(first_ids["workflow"])
            theirs = await second.get_workflow_instance(first_ids["workflow"])
            await provider.persist_workflow(mine)
            with pytest.raises(ConcurrencyError):
                await second.persist_workflow(theirs)
            # one claim: a subscription claimed through one is taken for the other
            sub = make_subscription(workflow_id=first_ids["workflow"])
            await second.create_subscription(sub)
            assert await provider.set_subscription_token(sub.id, "a", "w1", FAR_FUTURE)
            assert not await second.set_subscription_token(sub.id, "b", "w2", FAR_FUTURE)
            assert (await second.get_subscription(sub.id)).external_token == "a"

    @requires(Capability.DURABLE)
    async def test_another_process_sees_writes_of_this_one(
        self, provider: PersistenceProvider, store_opener: StoreOpener
    ) -> None:
        """A store opened in another process sees everything written here."""
        ids = new_sample_ids()
        await write_sample(provider, ids)
        expected = await describe(provider, ids)
        seen = await self.in_other_process("describe", store_opener, ids=ids)
        assert_described(seen, expected, "the other process")

    @requires(Capability.DURABLE)
    async def test_this_process_sees_writes_of_another(
        self, provider: PersistenceProvider, store_opener: StoreOpener
    ) -> None:
        """An open provider here sees everything another process wrote meanwhile."""
        ids = new_sample_ids()
        await provider.query_workflows(take=1)  # open and in use before the other writes
        written = await self.in_other_process("write", store_opener, ids=ids)
        assert_described(await describe(provider, ids), written, "this process")

    @requires(Capability.DURABLE)
    async def test_host_in_another_process_runs_a_workflow_started_here(
        self, provider: PersistenceProvider, store_opener: StoreOpener, tmp_path: Path
    ) -> None:
        """A WorkflowHost in another process runs a workflow started here (through an
        unstarted host) and resumes it on an event published here."""
        client = WorkflowHost(provider, options=_host_options())
        client.register_workflow(DurableWorkflow())
        key = f"key-{new_id()}"
        workflow_id = await client.start_workflow(DurableWorkflow.id, DurableData(key=key))
        out, err = tmp_path / "host.out", tmp_path / "host.err"
        command = _command(
            "host", store_opener, {"workflow_id": workflow_id, "timeout": self.timeout}
        )
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = await anyio.open_process(
                command, stdout=stdout, stderr=stderr, env=_child_env()
            )
        try:
            with anyio.fail_after(self.timeout):
                while not await provider.get_subscriptions(DURABLE_EVENT, key, FAR_FUTURE):
                    assert process.returncode is None, (
                        "the host process ended before it waited for the event:\n"
                        + err.read_text(errors="replace")
                    )
                    await anyio.sleep(0.02)
                await client.publish_event(DURABLE_EVENT, key, "paid")
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(5):
                    await process.wait()
            await process.aclose()
        errors = err.read_text(errors="replace")
        assert process.returncode == 0, f"the host process failed:\n{errors}"
        reported = json.loads(out.read_text().strip().splitlines()[-1])
        assert reported["status"] == WorkflowStatus.COMPLETE.value, reported
        stored = await provider.get_workflow_instance(workflow_id)
        assert stored.status == WorkflowStatus.COMPLETE
        assert isinstance(stored.data, DurableData)
        pid = reported["pid"]
        assert pid != os.getpid()
        assert stored.data.steps == [f"one@{pid}", f"two@{pid}:paid"], stored.data.steps


if __name__ == "__main__":
    # run the copy imported under its real name, so the data types registered here are
    # the same in both processes
    from wfe_conformance.durability import main as _main

    _main()
