"""Poison data never stops other work (``PoisonDataTests``).

Stored user data that a process cannot decode -- it names a type that process has not
registered, or a type whose class no longer fits the stored fields -- must not make
reads fail, block later events, or keep a workflow retrying for ever. Providers return
such a value as a :class:`~wfe_core.serialization.Undecodable` (which encodes back to
the stored data verbatim); the host sets an undecodable event aside and suspends an
undecodable instance, with the reason stored and reported once.

A conformance test only reaches the store through the provider under test, so
:class:`PoisonPayload` stands in for "a type only the writer knows" until the test
calls :func:`make_decodable` (both in :mod:`wfe_conformance.poison_support`, with the
workflows of these tests, and re-exported here).

The same module checks that a step body whose constructor raises is an ordinary step
error (recorded, error policy followed), not a pass that fails at every poll.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionPointer,
    PointerList,
    WorkflowInstance,
    utcnow,
)
from wfe_core.persistence import PersistenceProvider
from wfe_core.serialization import Undecodable, has_undecodable

from wfe_conformance.poison_support import (
    POISON_EVENT,
    ExplodingDefaultWorkflow,
    ExplodingRetryWorkflow,
    ExplodingTerminateWorkflow,
    PoisonDataWorkflow,
    PoisonPayload,
    PoisonPointerWorkflow,
    PoisonWaitWorkflow,
    make_decodable,
)
from wfe_conformance.sample import FAR_FUTURE, FAR_PAST
from wfe_conformance.scenarios.support import (
    Data,
    HostBuilder,
    HostFactory,
    ScenarioBase,
    capture,
    far_future,
    uid,
    wait_for_subscription,
    wait_until,
)
from wfe_core import (
    HostOptions,
    LifecycleEvent,
    LifecycleEventType,
    Workflow,
    WorkflowHost,
    WorkflowStatus,
)

__all__ = [
    "PoisonDataTests",
    "PoisonPayload",
    "make_decodable",
]

# --------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------


class PoisonDataTests(ScenarioBase):
    """Undecodable data is read as Undecodable, set aside or suspended, never blocking.

    Its hosts come from the fixtures of
    :class:`~wfe_conformance.scenarios.support.ScenarioBase` (``host_builder``,
    ``host_factory``), shared with ``HostScenarioTests``: override them once for both.
    """

    def poison_client(self, host_builder: HostBuilder, *workflows: Workflow[Any]) -> WorkflowHost:
        """A host that is never started: a client process that writes and controls."""
        host = host_builder(HostOptions(**self.host_defaults))
        for workflow in workflows:
            host.register_workflow(workflow)
        return host

    async def poison_until(
        self, predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], message: str
    ) -> None:
        """Wait (bounded) until ``predicate`` holds."""
        await wait_until(predicate, self.timeout, message)

    async def poison_status_is(
        self, provider: PersistenceProvider, wid: str, status: WorkflowStatus
    ) -> None:
        """Wait (bounded) until the stored instance has ``status``."""

        async def check() -> bool:
            return (await provider.get_workflow_instance(wid)).status is status

        await self.poison_until(check, f"workflow {wid} to be {status}")

    async def poison_polls_pass(
        self, provider: PersistenceProvider, monkeypatch: pytest.MonkeyPatch, count: int = 5
    ) -> None:
        """Wait (bounded) until the hosts on ``provider`` polled for due events ``count``
        more times."""
        seen = [0]
        original = provider.get_runnable_events

        async def counting(as_at: Any, limit: int = 1000) -> list[str]:
            seen[0] += 1
            return await original(as_at, limit)

        monkeypatch.setattr(provider, "get_runnable_events", counting)
        try:
            await self.poison_until(lambda: seen[0] >= count, f"{count} polls")
        finally:
            monkeypatch.undo()

    # ----------------------------------------------------------------------------------
    # reads
    # ----------------------------------------------------------------------------------

    async def test_undecodable_instance_data_is_read_and_saved_verbatim(
        self, provider: PersistenceProvider
    ) -> None:
        """Undecodable workflow data and pointer data come back as Undecodable from
        every read; saving the instance keeps the stored data, which decodes once the
        type is known."""
        key = uid()
        pointer = ExecutionPointer(
            step_id=0, persistence_data=PoisonPayload.written_by_another_process(key, 2)
        )
        instance = WorkflowInstance(
            workflow_definition_id=f"def-{key}",
            data={"payload": PoisonPayload.written_by_another_process(key, 1)},
            execution_pointers=PointerList([pointer]),
            reference=key,
        )
        wid = await provider.create_workflow(instance)
        loaded = await provider.get_workflow_instance(wid)
        assert isinstance(loaded.data, Undecodable)
        assert "PoisonPayload" in loaded.data.reason
        (stored_pointer,) = loaded.execution_pointers
        assert isinstance(stored_pointer.persistence_data, Undecodable)
        reason = has_undecodable(loaded)
        assert reason is not None
        assert "PoisonPayload" in reason
        (listed,) = await provider.query_workflows(reference=key)
        assert isinstance(listed.data, Undecodable)
        (many,) = await provider.get_workflow_instances([wid])
        assert isinstance(many.data, Undecodable)
        raw = (loaded.data.raw, stored_pointer.persistence_data.raw)

        loaded.status = WorkflowStatus.TERMINATED
        loaded.description = "saved while undecodable"
        stored_pointer.retry_count = 3
        await provider.persist_workflow(loaded)
        again = await provider.get_workflow_instance(wid)
        assert again.status == WorkflowStatus.TERMINATED
        assert isinstance(again.data, Undecodable)
        assert isinstance(again.execution_pointers[0].persistence_data, Undecodable)
        assert (again.data.raw, again.execution_pointers[0].persistence_data.raw) == raw

        make_decodable(key)
        healed = await provider.get_workflow_instance(wid)
        assert healed.data == {"payload": PoisonPayload(key, 1)}
        assert healed.execution_pointers[0].persistence_data == PoisonPayload(key, 2)
        assert healed.execution_pointers[0].retry_count == 3
        assert has_undecodable(healed) is None

    async def test_undecodable_event_and_subscription_data_are_read(
        self, provider: PersistenceProvider
    ) -> None:
        """Undecodable event data and subscription data come back as Undecodable (every
        other field intact) from get_event and every subscription read."""
        key = uid()
        event = Event(POISON_EVENT, key, PoisonPayload.written_by_another_process(key))
        await provider.create_event(event)
        stored = await provider.get_event(event.id)
        assert isinstance(stored.event_data, Undecodable)
        assert (stored.event_name, stored.event_key, stored.is_processed) == (
            POISON_EVENT,
            key,
            False,
        )
        assert await provider.get_events(POISON_EVENT, key, FAR_PAST) == [event.id]
        assert event.id in await provider.get_runnable_events(FAR_FUTURE)

        sub = EventSubscription(
            workflow_id=f"wf-{key}",
            step_id=1,
            execution_pointer_id=f"ptr-{key}",
            event_name=POISON_EVENT,
            event_key=key,
            subscribe_as_of=FAR_PAST,
            subscription_data=PoisonPayload.written_by_another_process(key),
        )
        await provider.create_subscription(sub)
        assert isinstance((await provider.get_subscription(sub.id)).subscription_data, Undecodable)
        (listed,) = await provider.get_subscriptions(POISON_EVENT, key, far_future())
        assert isinstance(listed.subscription_data, Undecodable)
        first = await provider.get_first_open_subscription(POISON_EVENT, key, far_future())
        assert first is not None
        assert isinstance(first.subscription_data, Undecodable)
        make_decodable(key)
        assert (await provider.get_event(event.id)).event_data == PoisonPayload(key)

    # ----------------------------------------------------------------------------------
    # events
    # ----------------------------------------------------------------------------------

    async def test_undecodable_event_is_set_aside_and_later_events_flow(
        self,
        provider: PersistenceProvider,
        host_factory: HostFactory,
        host_builder: HostBuilder,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An undecodable event is set aside (reason via get_event, one lifecycle event,
        one warning) and the next event for the same name and key is delivered."""
        caplog.set_level(logging.WARNING, logger="wfe")
        lifecycle: list[LifecycleEvent] = []
        worker = await host_factory(PoisonWaitWorkflow(), configure=capture(lifecycle))
        key = uid()
        wid = await worker.start_workflow(PoisonWaitWorkflow.id, Data(key=key))
        await wait_for_subscription(provider, POISON_EVENT, key, self.timeout)

        publisher = self.poison_client(host_builder)
        poison_id = await publisher.publish_event(
            POISON_EVENT, key, PoisonPayload.written_by_another_process(key)
        )
        plain_id = await publisher.publish_event(POISON_EVENT, key, "plain")

        done = await worker.wait_for_workflow(wid, self.timeout)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data.last == "plain"
        poison = await provider.get_event(poison_id)
        assert poison.set_aside is not None
        assert "PoisonPayload" in poison.set_aside
        assert poison.is_processed is True
        assert (await provider.get_event(plain_id)).set_aside is None

        await self.poison_polls_pass(provider, monkeypatch)
        set_aside = [e for e in lifecycle if e.type == LifecycleEventType.EVENT_SET_ASIDE]
        assert len(set_aside) == 1, set_aside
        assert set_aside[0].message is not None
        assert poison_id in set_aside[0].message
        about = [r for r in caplog.records if poison_id in r.getMessage()]
        assert len(about) == 1, [r.getMessage() for r in about]
        assert about[0].levelno == logging.WARNING
        assert about[0].exc_info is None
        assert await provider.get_runnable_events(far_future()) == []

    async def test_set_aside_event_does_not_block_a_later_subscriber(
        self, provider: PersistenceProvider, host_factory: HostFactory, host_builder: HostBuilder
    ) -> None:
        """A set-aside event older than a subscription's as-of time is not reopened by
        its catch-up and does not hold back the next event, which is delivered."""
        key = uid()
        publisher = self.poison_client(host_builder)
        base_time = utcnow() - timedelta(minutes=1)
        poison_id = await publisher.publish_event(
            POISON_EVENT, key, PoisonPayload.written_by_another_process(key)
        )
        worker = await host_factory(PoisonWaitWorkflow())

        async def set_aside() -> bool:
            return (await provider.get_event(poison_id)).set_aside is not None

        await self.poison_until(set_aside, "the stored undecodable event to be set aside")
        wid = await worker.start_workflow(PoisonWaitWorkflow.id, Data(key=key, base_time=base_time))
        await wait_for_subscription(provider, POISON_EVENT, key, self.timeout)
        await publisher.publish_event(POISON_EVENT, key, "after")
        done = await worker.wait_for_workflow(wid, self.timeout)
        assert done.data.last == "after"
        assert (await provider.get_event(poison_id)).is_processed is True

    # ----------------------------------------------------------------------------------
    # instances
    # ----------------------------------------------------------------------------------

    async def test_undecodable_instance_is_suspended_then_resumed_once_decodable(
        self,
        provider: PersistenceProvider,
        host_factory: HostFactory,
        host_builder: HostBuilder,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A worker that cannot decode an instance's data records one error, suspends
        it and leaves it; once the type is known and the workflow resumed it completes."""
        lifecycle: list[LifecycleEvent] = []
        worker = await host_factory(PoisonDataWorkflow(), configure=capture(lifecycle))
        key = uid()
        client = self.poison_client(host_builder, PoisonDataWorkflow())
        wid = await client.start_workflow(
            PoisonDataWorkflow.id,
            {"payload": PoisonPayload.written_by_another_process(key, 7), "steps": []},
        )
        await self.poison_status_is(provider, wid, WorkflowStatus.SUSPENDED)
        await self.poison_polls_pass(provider, monkeypatch)

        (error,) = await worker.get_errors(wid)
        assert "cannot be decoded" in error.message
        assert "PoisonPayload" in error.message
        assert error.execution_pointer_id is None
        mine = [e for e in lifecycle if e.workflow_id == wid]
        assert [e.type for e in mine] == [
            LifecycleEventType.WORKFLOW_ERROR,
            LifecycleEventType.WORKFLOW_SUSPENDED,
        ]
        shown = await worker.get_workflow_instance(wid)
        assert shown.status == WorkflowStatus.SUSPENDED
        assert isinstance(shown.data, Undecodable)
        assert wid in [i.id for i in await provider.query_workflows()]
        suspended = await provider.query_workflows(status=WorkflowStatus.SUSPENDED)
        assert wid in [i.id for i in suspended]

        make_decodable(key)
        assert await worker.resume_workflow(wid) is True
        done = await worker.wait_for_workflow(wid, self.timeout)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data == {"payload": PoisonPayload(key, 7), "steps": ["ran"]}
        assert len(await worker.get_errors(wid)) == 1

    async def test_undecodable_pointer_data_suspends_the_instance(
        self, provider: PersistenceProvider, host_factory: HostFactory
    ) -> None:
        """Undecodable persistence data of a pointer suspends the instance with an error
        naming the pointer; once decodable and resumed, the step sees its data."""
        worker = await host_factory(PoisonPointerWorkflow())
        key = uid()
        wid = await worker.start_workflow(PoisonPointerWorkflow.id, {"key": key, "steps": []})
        await self.poison_status_is(provider, wid, WorkflowStatus.SUSPENDED)
        (error,) = await worker.get_errors(wid)
        stored = await provider.get_workflow_instance(wid)
        (pointer,) = stored.execution_pointers
        assert error.execution_pointer_id == pointer.id
        assert "persistence_data" in error.message
        assert "PoisonPayload" in error.message
        make_decodable(key)
        assert await worker.resume_workflow(wid) is True
        done = await worker.wait_for_workflow(wid, self.timeout)
        assert done.data["steps"] == [f"kept {key} 5"]

    async def test_control_and_reads_work_on_undecodable_instances(
        self, provider: PersistenceProvider, host_factory: HostFactory, host_builder: HostBuilder
    ) -> None:
        """Suspend, resume, terminate, show and list work on an instance whose data
        cannot be decoded, and keep its stored data unchanged."""
        key = uid()
        client = self.poison_client(host_builder, PoisonDataWorkflow())
        data = {"payload": PoisonPayload.written_by_another_process(key), "steps": []}
        wid = await client.start_workflow(PoisonDataWorkflow.id, data, reference=key)
        before = await client.get_workflow_instance(wid)
        assert isinstance(before.data, Undecodable)
        assert await client.suspend_workflow(wid) is True
        await self.poison_status_is(provider, wid, WorkflowStatus.SUSPENDED)
        assert await client.resume_workflow(wid) is True
        await self.poison_status_is(provider, wid, WorkflowStatus.RUNNABLE)
        (listed,) = await provider.query_workflows(reference=key)
        assert listed.status == WorkflowStatus.RUNNABLE

        worker = await host_factory(PoisonDataWorkflow())
        await self.poison_status_is(provider, wid, WorkflowStatus.SUSPENDED)
        assert await worker.terminate_workflow(wid) is True
        await self.poison_status_is(provider, wid, WorkflowStatus.TERMINATED)
        after = await worker.get_workflow_instance(wid)
        assert isinstance(after.data, Undecodable)
        assert after.data.raw == before.data.raw
        make_decodable(key)
        assert (await provider.get_workflow_instance(wid)).data == {
            "payload": PoisonPayload(key),
            "steps": [],
        }

    # ----------------------------------------------------------------------------------
    # step bodies that cannot be constructed
    # ----------------------------------------------------------------------------------

    async def test_unconstructible_step_body_follows_terminate_policy(
        self, host_factory: HostFactory
    ) -> None:
        """A StepBody whose constructor raises is a step error: with on_error(TERMINATE)
        one error is recorded with the message and the workflow is TERMINATED."""
        host, done = await host_factory.run_to_end(ExplodingTerminateWorkflow(), Data())
        assert done.status == WorkflowStatus.TERMINATED
        (error,) = await host.get_errors(done.id)
        assert "ExplodingBody cannot be constructed" in error.message
        assert error.execution_pointer_id == done.execution_pointers[0].id

    async def test_unconstructible_step_body_is_retried_then_fails(
        self, host_factory: HostFactory
    ) -> None:
        """A StepBody whose constructor raises is retried by the retry policy (one error
        per attempt) and fails the workflow when max_retries is exhausted."""
        host, done = await host_factory.run_to_end(ExplodingRetryWorkflow(), Data())
        assert done.status == WorkflowStatus.TERMINATED
        errors = await host.get_errors(done.id)
        assert len(errors) == 3
        assert all("ExplodingBody cannot be constructed" in e.message for e in errors)

    async def test_unconstructible_step_body_default_policy_retries(
        self, provider: PersistenceProvider, host_factory: HostFactory
    ) -> None:
        """Under the default policy a StepBody whose constructor raises is retried with
        an error recorded per attempt; the workflow stays RUNNABLE and can be terminated."""
        host = await host_factory(ExplodingDefaultWorkflow())
        wid = await host.start_workflow(ExplodingDefaultWorkflow.id, Data())

        async def retried() -> bool:
            stored = await provider.get_workflow_instance(wid)
            attempts = stored.execution_pointers[0].retry_count
            return attempts >= 2 and len(await host.get_errors(wid)) >= attempts

        await self.poison_until(retried, "two recorded retries")
        stored = await provider.get_workflow_instance(wid)
        assert stored.status == WorkflowStatus.RUNNABLE
        assert await host.terminate_workflow(wid) is True
