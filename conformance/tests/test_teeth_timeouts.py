"""The execution-timeout scenarios have teeth: broken providers fail them.

An execution timeout needs two things of a store: the deadline stored with the
instance (on its first pointer) comes back, and an instance waiting for an event is
found by ``get_runnable_instances`` once its ``next_execution`` (capped at the
deadline) is due. Each case breaks one of them in a subclass of the in-memory provider;
the scenario tests named in the case must fail, the healthy memory provider passes them.
"""

from __future__ import annotations

import pytest
from teeth_support import Broken, assert_caught, failed_tests, module_name, suite_test_names

HEADER = """
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from wfe_conformance.scenarios import TimeoutScenarioTests
from wfe_core.event_names import EXECUTION_DEADLINE_ATTRIBUTE
from wfe_core.models import PointerStatus, WorkflowInstance
from wfe_memory import MemoryPersistenceProvider
"""

FOOTER = """

class TestProvider(TimeoutScenarioTests):
    timeout = 4.0

    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with Provider() as p:
            yield p
"""

EXPIRY_TESTS = (
    "test_execution_timeout_terminates_a_waiting_workflow",
    "test_execution_timeout_survives_a_host_restart",
)

HEALTHY = """
class Provider(MemoryPersistenceProvider):
    pass
"""

CASES = [
    Broken(
        "deadline_dropped",
        '''
class Provider(MemoryPersistenceProvider):
    """Stores new instances without their pointers' extension attributes."""

    async def create_workflow(self, instance: WorkflowInstance, **kwargs: Any) -> str:
        for p in instance.execution_pointers:
            p.extension_attributes.pop(EXECUTION_DEADLINE_ATTRIBUTE, None)
        return await super().create_workflow(instance, **kwargs)
''',
        EXPIRY_TESTS,
    ),
    Broken(
        "waiting_never_due",
        '''
class Provider(MemoryPersistenceProvider):
    """Never reports an instance that waits for an event as runnable."""

    async def get_runnable_instances(self, as_at: datetime, limit: int = 1000) -> list[str]:
        ids = await super().get_runnable_instances(as_at, limit)
        keep = []
        for wid in ids:
            inst = await self.get_workflow_instance(wid)
            if not any(
                p.status is PointerStatus.WAITING_FOR_EVENT for p in inst.execution_pointers
            ):
                keep.append(wid)
        return keep
''',
        EXPIRY_TESTS,
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in the suite it runs."""
    from wfe_conformance.scenarios import TimeoutScenarioTests

    known = suite_test_names(TimeoutScenarioTests)
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"
    assert len({case.name for case in CASES}) == len(CASES)


def test_healthy_memory_provider_passes_the_expiry_tests(
    isolated_pytester: pytest.Pytester,
) -> None:
    """The unmodified memory provider passes every test the cases expect to fail."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    node_ids = [f"{module_name('healthy')}.py::TestProvider::{test}" for test in EXPIRY_TESTS]
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE", *node_ids)
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    result.assert_outcomes(passed=len(node_ids))


def test_broken_expiry_providers_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken provider fails every test written to catch it."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)
