"""What :mod:`wfe_conformance.poison` uses: :class:`PoisonPayload` (a value only "the
writer" can rebuild) and the workflows of ``PoisonDataTests``.

A conformance test only reaches the store through the provider under test, whose
serializer learns every type it writes. :class:`PoisonPayload` therefore stands in for
"a type only the writer knows": the store writes it like any dataclass, but rebuilding
it fails (as it does in a process lacking the type) until the test calls
:func:`make_decodable` -- the moment the missing type is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from wfe_conformance.scenarios.support import Data, noop
from wfe_core import (
    ErrorBehavior,
    ExecutionResult,
    StepBody,
    StepContext,
    Workflow,
    WorkflowBuilder,
)

__all__ = [
    "POISON_EVENT",
    "ExplodingBody",
    "ExplodingDefaultWorkflow",
    "ExplodingRetryWorkflow",
    "ExplodingTerminateWorkflow",
    "PoisonDataWorkflow",
    "PoisonPayload",
    "PoisonPointerWorkflow",
    "PoisonWaitWorkflow",
    "make_decodable",
]

_DECODABLE: set[str] = set()

POISON_EVENT = "poison-event"


@dataclass
class PoisonPayload:
    """A value the store writes but cannot rebuild until :func:`make_decodable` is
    called for its ``key``: what a process lacking the type sees."""

    key: str
    amount: int = 0

    def __post_init__(self) -> None:
        if self.key not in _DECODABLE:
            raise ValueError(f"the type PoisonPayload is not available for {self.key!r}")

    @classmethod
    def written_by_another_process(cls, key: str, amount: int = 0) -> PoisonPayload:
        """An instance as the process that knows the type would hand it in."""
        payload = cls.__new__(cls)
        payload.key = key
        payload.amount = amount
        return payload


def make_decodable(key: str) -> None:
    """From now on, :class:`PoisonPayload` values with this ``key`` can be rebuilt (the
    missing type has been registered)."""
    _DECODABLE.add(key)


class PoisonWaitWorkflow(Workflow[Data]):
    """Wait for POISON_EVENT keyed by data.key as of data.base_time (now when None); the
    event data lands in ``last``."""

    id = "poison-wait"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(noop).wait_for(
            POISON_EVENT, key=lambda d: d.key, effective_date=lambda d: d.base_time
        ).output(last=lambda s: s.event_data)


class PoisonDataWorkflow(Workflow[dict[str, Any]]):
    """One step appending "ran" to ``data["steps"]``; its data carries a payload."""

    id = "poison-data"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        builder.start_with(_append_ran)


class PoisonPointerWorkflow(Workflow[dict[str, Any]]):
    """A step that keeps a payload as its persistence data and sleeps, then (with the
    payload rebuilt) records it and proceeds."""

    id = "poison-pointer"
    version = 1
    data_type = dict

    def build(self, builder: WorkflowBuilder[dict[str, Any]]) -> None:
        builder.start_with(_keep_payload)


class ExplodingBody(StepBody):
    """A step body whose constructor raises."""

    def __init__(self) -> None:
        raise RuntimeError("ExplodingBody cannot be constructed")

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        """Never reached."""
        return ExecutionResult.next()


class ExplodingTerminateWorkflow(Workflow[Data]):
    """An unconstructible step with on_error(TERMINATE)."""

    id = "poison-exploding-terminate"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(ExplodingBody).on_error(ErrorBehavior.TERMINATE)


class ExplodingRetryWorkflow(Workflow[Data]):
    """An unconstructible step retried twice, then failing."""

    id = "poison-exploding-retry"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(ExplodingBody).on_error(
            ErrorBehavior.RETRY, retry_interval=timedelta(milliseconds=10), max_retries=2
        )


class ExplodingDefaultWorkflow(Workflow[Data]):
    """An unconstructible step under the default error policy (retry)."""

    id = "poison-exploding-default"
    version = 1
    data_type = Data

    def build(self, builder: WorkflowBuilder[Data]) -> None:
        builder.start_with(ExplodingBody)


async def _append_ran(context: StepContext[Any]) -> None:
    context.data["steps"].append("ran")


async def _keep_payload(context: StepContext[Any]) -> ExecutionResult:
    kept = context.persistence_data
    if kept is None:
        payload = PoisonPayload.written_by_another_process(context.data["key"], 5)
        return ExecutionResult.sleep(timedelta(milliseconds=1), payload)
    context.data["steps"].append(f"kept {kept.key} {kept.amount}")
    return ExecutionResult.next()
