"""Shared pieces of the definitions-as-data tests: a step, data types, a registry and
a fast host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from wfe_core.definitions import DefinitionRegistry

from wfe_core import ExecutionResult, HostOptions, StepBody, StepContext, WorkflowHost
from wfe_memory import MemoryPersistenceProvider

FAST = HostOptions(poll_interval=0.05, idle_time=0.01, error_retry_interval=0.05, stop_timeout=5.0)
TIMEOUT = 15.0


@dataclass
class Board:
    """Counters and flags, with a nested board and a dict for nested outputs."""

    a: int = 0
    b: int = 0
    c: int = 0
    flag: bool = False
    items: list[int] = field(default_factory=list)
    seen: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    log: list[str] = field(default_factory=list)


class Add(StepBody):
    """Adds ``amount`` (default 1) to ``value``."""

    value: int = 0
    amount: int = 1

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        self.value += self.amount
        return ExecutionResult.next()


class Note(StepBody):
    """Appends ``text`` to ``data.log`` (data is a Board)."""

    text: str = ""

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        context.data.log.append(self.text)
        return ExecutionResult.next()


class Flaky(StepBody):
    """Fails while ``data.a`` < ``fails``, counting attempts in ``data.a``."""

    fails: int = 1

    async def run(self, context: StepContext[Any]) -> ExecutionResult:
        context.data.a += 1
        if context.data.a <= self.fails:
            raise RuntimeError("flaky")
        return ExecutionResult.next()


def collect(context: StepContext[Any]) -> None:
    """A function step: records the foreach item."""
    context.data.seen.append(context.item)


def registry() -> DefinitionRegistry:
    """Add, Note, Flaky, collect and Board."""
    return (
        DefinitionRegistry()
        .step("Add", Add)
        .step("Note", Note)
        .step("Flaky", Flaky)
        .step("Collect", collect)
        .data("Board", Board)
    )


def doc(steps: list[dict[str, Any]], **top: Any) -> str:
    """A JSON document with these steps (id ``t``, version 1, data Board)."""
    return json.dumps({"Id": "t", "Version": 1, "DataType": "Board", **top, "Steps": steps})


@asynccontextmanager
async def fast_host(store: MemoryPersistenceProvider | None = None) -> AsyncIterator[WorkflowHost]:
    """A started host on a memory store with :func:`registry`."""
    async with MemoryPersistenceProvider() if store is None else store as provider:
        host = WorkflowHost(provider, options=FAST)
        host.definition_registry = registry()
        async with host:
            yield host
