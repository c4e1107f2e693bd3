"""Retry policies: maximum attempts, a capped interval, errors that are never retried,
and a definition's default policy, end to end on the provider under test.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from wfe_conformance.scenarios.support import (
    Data,
    HostFactory,
    Recorder,
    RecordingWorkflow,
    ScenarioBase,
)
from wfe_core import (
    PointerStatus,
    RetryPolicy,
    StepContext,
    WorkflowBuilder,
    WorkflowStatus,
)

__all__ = [
    "DefaultPolicyWorkflow",
    "NonRetryableSagaWorkflow",
    "PolicyWorkflow",
    "RetryPolicyScenarioTests",
]


class NonRetryableSagaWorkflow(RecordingWorkflow):
    """saga(s1, s2 raising KeyError) with a retry policy that does not retry KeyError;
    then tail."""

    id = "scn-non-retryable-saga"

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec = self.rec

        def s2(context: StepContext[Any]) -> None:
            rec.hit("s2")
            raise KeyError("s2")

        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=20),
            maximum_attempts=3,
            non_retryable=(KeyError,),
        )
        (
            builder.start_with(rec.step("pre"))
            .saga(
                lambda s: (
                    s.start_with(rec.step("s1"))
                    .compensate_with(rec.step("undo1"))
                    .then(s2)
                    .compensate_with(rec.step("undo2"))
                )
            )
            .retry_policy(policy)
            .then(rec.step("tail"))
        )


class PolicyWorkflow(RecordingWorkflow):
    """ "flaky" (raising ``error`` on its first ``failures`` runs) retried by
    ``policy``, compensated by "undo" when ``compensate``; then "after"."""

    id = "scn-retry-policy"

    def __init__(
        self,
        rec: Recorder,
        policy: RetryPolicy | None,
        failures: int = 1_000_000,
        error: type[Exception] = ValueError,
        compensate: bool = False,
    ) -> None:
        super().__init__(rec)
        self.policy = policy
        self.failures = failures
        self.error = error
        self.compensate = compensate

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        rec, failures, error = self.rec, self.failures, self.error

        def flaky(context: StepContext[Any]) -> None:
            rec.hit("flaky")
            attempt = rec.count("flaky")
            if attempt <= failures:
                raise error(f"flaky failed on attempt {attempt}")

        step = builder.start_with(flaky).name("flaky")
        if self.policy is not None:
            step = step.retry_policy(self.policy)
        if self.compensate:
            step = step.compensate_with(rec.step("undo"))
        step.then(rec.step("after")).name("after")


class DefaultPolicyWorkflow(PolicyWorkflow):
    """:class:`PolicyWorkflow` without a step policy, under a definition default of two
    attempts."""

    id = "scn-retry-policy-default"
    retry_policy = RetryPolicy(
        initial_interval=timedelta(milliseconds=20), maximum_attempts=2, jitter=0
    )


class RetryPolicyScenarioTests(ScenarioBase):
    """RetryPolicy end to end: attempts, interval cap, non-retryable errors, defaults."""

    async def test_retry_policy_maximum_attempts_and_interval(
        self, host_factory: HostFactory
    ) -> None:
        """maximum_attempts counts every run; waits grow by the coefficient but never
        beyond maximum_interval; then the step FAILS and the workflow terminates."""
        rec = Recorder()
        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=50),
            backoff_coefficient=10,
            maximum_interval=timedelta(milliseconds=150),
            maximum_attempts=4,
            jitter=0,
        )
        host, inst = await host_factory.run_to_end(PolicyWorkflow(rec, policy), Data())
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.counts() == {"flaky": 4}
        failed = [p for p in inst.execution_pointers if p.status == PointerStatus.FAILED]
        assert len(failed) == 1
        assert len(await host.get_errors(inst.id)) == 4
        gaps = [b - a for a, b in itertools.pairwise(rec.times("flaky"))]
        assert gaps[0] >= 0.045, gaps
        assert gaps[1] >= 0.14, gaps  # 500 ms capped at 150 ms
        assert gaps[2] >= 0.14, gaps
        assert gaps[2] < 3.0, gaps  # uncapped it would be 5 s

    async def test_retry_policy_retries_until_success(self, host_factory: HostFactory) -> None:
        """A policy retries a failing step until it succeeds within its attempts."""
        rec = Recorder()
        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=20), maximum_attempts=5, jitter=0.5
        )
        _, inst = await host_factory.run_to_end(PolicyWorkflow(rec, policy, failures=2), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"flaky": 3, "after": 1}

    async def test_retry_policy_non_retryable_error_fails_at_once(
        self, host_factory: HostFactory
    ) -> None:
        """An error of a non_retryable type is not retried: the step fails at its
        first run (FAILED pointer, workflow TERMINATED, the error recorded)."""
        rec = Recorder()
        policy = RetryPolicy(initial_interval=timedelta(milliseconds=20), non_retryable=(KeyError,))
        host, inst = await host_factory.run_to_end(
            PolicyWorkflow(rec, policy, error=KeyError), Data()
        )
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.counts() == {"flaky": 1}
        errors = await host.get_errors(inst.id)
        assert len(errors) == 1
        assert "KeyError" in (errors[0].error_type or "")

    async def test_retry_policy_other_errors_are_still_retried(
        self, host_factory: HostFactory
    ) -> None:
        """Only the listed types are final: any other error is retried."""
        rec = Recorder()
        policy = RetryPolicy(initial_interval=timedelta(milliseconds=20), non_retryable=(KeyError,))
        _, inst = await host_factory.run_to_end(PolicyWorkflow(rec, policy, failures=2), Data())
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.counts() == {"flaky": 3, "after": 1}

    async def test_retry_policy_non_retryable_error_compensates(
        self, host_factory: HostFactory
    ) -> None:
        """A step failed by a non-retryable error is compensated like one whose
        attempts are used up: its compensation runs, then the workflow carries on."""
        rec = Recorder()
        policy = RetryPolicy(initial_interval=timedelta(milliseconds=20), non_retryable=(KeyError,))
        _, inst = await host_factory.run_to_end(
            PolicyWorkflow(rec, policy, error=KeyError, compensate=True), Data()
        )
        assert inst.status == WorkflowStatus.COMPLETE
        assert rec.names == ["flaky", "undo", "after"]

    async def test_definition_default_retry_policy(self, host_factory: HostFactory) -> None:
        """A Workflow's retry_policy applies to its steps that set none of their own."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(DefaultPolicyWorkflow(rec, None), Data())
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.counts() == {"flaky": 2}

    async def test_a_saga_does_not_retry_a_non_retryable_error(
        self, host_factory: HostFactory
    ) -> None:
        """A saga retried by a policy is not run again for an error the policy does not
        retry: it compensates once and fails as when its attempts are used up (here:
        nothing encloses it, so the workflow terminates)."""
        rec = Recorder()
        _, inst = await host_factory.run_to_end(NonRetryableSagaWorkflow(rec), Data())
        assert inst.status == WorkflowStatus.TERMINATED
        assert rec.counts() == {"pre": 1, "s1": 1, "s2": 1, "undo2": 1, "undo1": 1}
        assert rec.names.index("undo2") < rec.names.index("undo1")
