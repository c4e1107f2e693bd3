"""Errors and retries: the default retry, max_retries, backoff, SUSPEND and TERMINATE
policies, and step errors from values no store keeps (a wait key over the limit, a NUL
in an error message, an event name or key refused on publish).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from wfe_core.persistence import MAX_KEY_LENGTH, PersistenceProvider

from wfe_conformance.scenarios.support import (
    EVENT_1,
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
    far_future,
    noop,
    uid,
)
from wfe_core import (
    ErrorBehavior,
    PointerStatus,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "BadWaitKeyWorkflow",
    "ErrorScenarioTests",
    "FlakyWorkflow",
    "NulErrorWorkflow",
]


class FlakyWorkflow(RecordingWorkflow):
    """ "flaky" fails its first ``failures`` runs (with the given on_error, if any);
    then "after"."""

    id = "scn-flaky"

    def __init__(
        self,
        rec: Recorder,
        failures: int,
        behavior: ErrorBehavior | None = None,
        **on_error: Any,
    ) -> None:
        super().__init__(rec)
        self.failures = failures
        self.behavior = behavior
        self.on_error_kwargs = on_error

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec
        failures = self.failures

        def flaky(context: StepContext[Any]) -> None:
            rec.hit("flaky")
            attempt = rec.count("flaky")
            if attempt <= failures:
                raise ValueError(f"kaboom on attempt {attempt}")

        step = builder.start_with(flaky).name("flaky")
        if self.behavior is not None:
            step = step.on_error(self.behavior, **self.on_error_kwargs)
        step.then(rec.step("after")).name("after")


async def _set_flag(context: StepContext[Data]) -> None:
    context.data.flag = True


class BadWaitKeyWorkflow(Workflow[Data]):
    """start → wait for ``EVENT_1`` with the data's key (on_error TERMINATE) → set flag."""

    id = "scn-bad-wait-key"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        (
            builder.start_with(noop)
            .wait_for(EVENT_1, key=lambda d: d.key)
            .on_error(ErrorBehavior.TERMINATE)
            .then(_set_flag)
        )


def _raise_nul(context: Any) -> None:
    raise RuntimeError("bad\x00byte")


class NulErrorWorkflow(Workflow[Data]):
    """One step raising an error whose message holds a NUL (on_error TERMINATE)."""

    id = "scn-nul-error"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(_raise_nul).on_error(ErrorBehavior.TERMINATE)


class ErrorScenarioTests(ScenarioBase):
    """Step errors, error policies and retries end to end."""

    async def test_default_error_behaviour_retries(self, host_factory: HostFactory) -> None:
        """Without on_error a failing step is retried until it succeeds."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(FlakyWorkflow(rec, failures=2), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"flaky": 3, "after": 1}
        assert len(await host.get_errors(inst.id)) == 2

    async def test_max_retries_exhausted_fails_step_and_terminates(
        self, host_factory: HostFactory
    ) -> None:
        """After max_retries the pointer FAILS, the workflow is TERMINATED and every
        failure is recorded with its type and traceback."""
        rec = Recorder()
        workflow = FlakyWorkflow(
            rec,
            failures=1_000,
            behavior=ErrorBehavior.RETRY,
            retry_interval=timedelta(milliseconds=20),
            max_retries=2,
        )
        host, inst = await host_factory.run_to_end(workflow, Data())
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.counts() == {"flaky": 3}
        failed = [p for p in inst.execution_pointers if p.status == PointerStatus.FAILED]
        assert len(failed) == 1
        errors = await host.get_errors(inst.id)
        assert len(errors) == 3
        for error in errors:
            assert error.workflow_id == inst.id
            assert error.execution_pointer_id == failed[0].id
            assert error.error_type is not None
            assert "ValueError" in error.error_type
            assert error.traceback is not None
            assert "kaboom" in error.traceback
            assert "kaboom" in error.message

    async def test_retry_backoff_grows_intervals(self, host_factory: HostFactory) -> None:
        """With backoff the retry intervals grow (about x backoff each time)."""
        rec = Recorder()
        workflow = FlakyWorkflow(
            rec,
            failures=3,
            behavior=ErrorBehavior.RETRY,
            retry_interval=timedelta(milliseconds=100),
            max_retries=5,
            backoff=2.0,
        )
        _, inst = await host_factory.run_to_end(workflow, Data())
        assert inst.status == WorkflowStatus.COMPLETE
        times = rec.times("flaky")
        assert len(times) == 4
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] >= 0.09, gaps
        assert gaps[1] >= 0.18, gaps
        assert gaps[2] >= 0.36, gaps
        assert gaps[2] > gaps[0] * 1.5, gaps  # nominally x4; generous for loaded machines

    async def test_suspend_on_error_then_resume_continues(self, host_factory: HostFactory) -> None:
        """on_error(SUSPEND) suspends the workflow; resume runs the step again."""
        rec = Recorder()
        host = await host_factory(FlakyWorkflow(rec, failures=1, behavior=ErrorBehavior.SUSPEND))
        wid = await host.start_workflow(FlakyWorkflow.id, Data())
        await self.status_is(host, wid, WorkflowStatus.SUSPENDED)
        assert rec.counts() == {"flaky": 1}
        assert await host.resume_workflow(wid) is True
        inst = await self.finished(host, wid)
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"flaky": 2, "after": 1}

    async def test_terminate_on_error(self, host_factory: HostFactory) -> None:
        """on_error(TERMINATE) terminates the workflow at the first failure."""
        rec = Recorder()
        host, inst = await host_factory.run_to_end(
            FlakyWorkflow(rec, failures=1, behavior=ErrorBehavior.TERMINATE), Data()
        )
        assert inst.status == WorkflowStatus.TERMINATED
        assert inst.complete_time is not None
        assert rec.counts() == {"flaky": 1}
        assert len(await host.get_errors(inst.id)) == 1

    async def test_wait_for_with_unstorable_key_is_a_step_error(
        self, host_factory: HostFactory
    ) -> None:
        """A wait_for whose key no store can keep (401 characters, or a NUL) fails as an
        ordinary step error: the error is recorded and on_error(TERMINATE) applies."""
        host = await host_factory(BadWaitKeyWorkflow())
        for key in ("k" * (MAX_KEY_LENGTH + 1), f"nul\x00{uid()}"):
            wid = await host.start_workflow(BadWaitKeyWorkflow.id, Data(key=key))
            inst = await self.finished(host, wid)
            assert inst.status == WorkflowStatus.TERMINATED, inst.status
            assert inst.data.flag is False
            errors = await host.get_errors(wid)
            assert len(errors) == 1, errors
            assert "event key" in errors[0].message, errors[0].message
            waiting = [p for p in inst.execution_pointers if p.step_id == 1]
            assert [p.status for p in waiting] == [PointerStatus.FAILED]
            assert waiting[0].event_key is None

    async def test_step_error_message_with_nul_is_recorded(self, host_factory: HostFactory) -> None:
        """A step that raises an exception whose message holds a NUL (which no store
        keeps as it is) gets its error recorded, escaped, and its policy followed."""
        host, inst = await host_factory.run_to_end(NulErrorWorkflow(), Data())
        assert inst.status == WorkflowStatus.TERMINATED, inst.status
        errors = await host.get_errors(inst.id)
        assert len(errors) == 1, errors
        assert errors[0].message == "bad\\x00byte", errors[0].message
        assert "\x00" not in (errors[0].traceback or "")

    async def test_publish_event_with_unstorable_key_is_refused(
        self, host_factory: HostFactory, provider: PersistenceProvider
    ) -> None:
        """publish_event with a name or key over 400 characters or holding a NUL raises
        ValueError naming it, and stores nothing; 400 characters are published."""
        host = await host_factory()
        for name, key in (
            (EVENT_1, "k" * (MAX_KEY_LENGTH + 1)),
            ("n" * (MAX_KEY_LENGTH + 1), "k"),
            (EVENT_1, "a\x00b"),
        ):
            with pytest.raises(ValueError, match=r"event (name|key)"):
                await host.publish_event(name, key, "data")
        assert await provider.get_runnable_events(far_future()) == []
        key = uid() + "k" * (MAX_KEY_LENGTH - 32)
        event_id = await host.publish_event(EVENT_1, key, "data")
        assert (await provider.get_event(event_id)).event_key == key
