"""The schedule tests have teeth: broken schedule stores fail them.

Each case is a subclass of the in-memory provider that breaks one promise of
``ScheduleStoreTests``: a fire claim that reads, awaits and then writes (not atomic,
so concurrent claims all win), a claim that does not compare the due time, paused
schedules reported due, a taken id overwritten. The suite runs against it in a pytest
subprocess, each case in its own module, and the tests named in the case must fail;
the healthy memory provider must pass the same suite.
"""

from __future__ import annotations

import pytest
from teeth_support import Broken, assert_caught, failed_tests, module_name, suite_test_names

HEADER = """
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import pytest

from wfe_conformance.schedules import ScheduleStoreTests
from wfe_core.schedules import Schedule
from wfe_memory import MemoryPersistenceProvider
"""

FOOTER = """

class TestProvider(ScheduleStoreTests):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with Provider() as p:
            yield p
"""

HEALTHY = """
class Provider(MemoryPersistenceProvider):
    pass
"""

CASES = [
    Broken(
        "claim_read_then_write",
        '''
class Provider(MemoryPersistenceProvider):
    """Reads the schedule, awaits (a round trip), then writes: not atomic."""

    async def claim_schedule_fire(
        self, schedule_id: str, due: datetime, next_fire_time: Any, instance_id: Any
    ) -> bool:
        try:
            current = await self.get_schedule(schedule_id)
        except Exception:
            return False
        if current.paused or current.next_fire_time != due:
            return False
        await anyio.sleep(0.01)
        stored = self._schedules[schedule_id]
        stored.next_fire_time = next_fire_time
        stored.last_fire_time = due
        if instance_id is not None:
            stored.last_instance_id = instance_id
        return True
''',
        ("test_concurrent_claims_of_one_due_time_have_one_winner",),
    ),
    Broken(
        "claim_ignores_due_time",
        '''
class Provider(MemoryPersistenceProvider):
    """Claims whatever the stored due time is (no compare-and-set on it)."""

    async def claim_schedule_fire(
        self, schedule_id: str, due: datetime, next_fire_time: Any, instance_id: Any
    ) -> bool:
        stored = self._schedules.get(schedule_id)
        if stored is None:
            return False
        stored.next_fire_time = next_fire_time
        stored.last_fire_time = due
        return True
''',
        (
            "test_concurrent_claims_of_one_due_time_have_one_winner",
            "test_stale_or_paused_claim_changes_nothing",
        ),
    ),
    Broken(
        "paused_still_due",
        '''
class Provider(MemoryPersistenceProvider):
    """Reports paused schedules as due."""

    async def get_due_schedules(self, as_at: datetime, limit: int = 100) -> list[Schedule]:
        paused = [s for s in self._schedules.values() if s.paused]
        for s in paused:
            s.paused = False
        try:
            return await super().get_due_schedules(as_at, limit)
        finally:
            for s in paused:
                s.paused = True
''',
        ("test_due_schedules",),
    ),
    Broken(
        "taken_id_overwritten",
        '''
class Provider(MemoryPersistenceProvider):
    """A second schedule with a taken id replaces the first."""

    async def create_schedule(self, schedule: Schedule) -> None:
        self._schedules.pop(schedule.id, None)
        await super().create_schedule(schedule)
''',
        ("test_taken_id_is_refused",),
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in the suite it runs."""
    from wfe_conformance.schedules import ScheduleStoreTests

    known = suite_test_names(ScheduleStoreTests)
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"
    assert len({case.name for case in CASES}) == len(CASES)


def test_healthy_memory_provider_passes_the_schedule_tests(
    isolated_pytester: pytest.Pytester,
) -> None:
    """The unmodified memory provider passes every test of the suite."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE")
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    from wfe_conformance.schedules import ScheduleStoreTests

    # the suite's tests and the guard every suite class carries
    result.assert_outcomes(passed=len(suite_test_names(ScheduleStoreTests)) + 1)


def test_broken_schedule_stores_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken schedule store fails every test written to catch it (one subprocess
    runs them all, each provider in its own module)."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)
