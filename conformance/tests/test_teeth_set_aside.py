"""The set-aside and undecodable-data tests have teeth: broken providers fail them.

Each case is a subclass of the in-memory provider that breaks one promise about poison
data: setting an event aside (``EventRepositoryTests``) or reading data that cannot be
decoded (``PoisonDataTests``). The suites run against it in a pytest subprocess, each
case in its own module, and the tests named in the case must fail; the healthy memory
provider must pass the same tests.
"""

from __future__ import annotations

import pytest
from teeth_support import Broken, assert_caught, failed_tests, module_name, suite_test_names

HEADER = """
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from wfe_conformance.events import EventRepositoryTests
from wfe_conformance.poison import PoisonDataTests
from wfe_core.errors import EventNotFound
from wfe_core.models import Event
from wfe_memory import MemoryPersistenceProvider
"""

FOOTER = """

class TestProvider(EventRepositoryTests, PoisonDataTests):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with Provider() as p:
            yield p
"""

INI = """
[pytest]
addopts = -p no:cacheprovider
filterwarnings = error
xfail_strict = true
"""

SET_ASIDE_TESTS = (
    "test_set_aside_event_keeps_reason_and_counts_as_processed",
    "test_set_aside_is_final",
    "test_set_aside_again_returns_false_and_keeps_first_reason",
    "test_set_aside_unknown_event_or_empty_reason_refused",
    "test_create_event_set_aside_round_trips",
)
READ_TESTS = (
    "test_undecodable_instance_data_is_read_and_saved_verbatim",
    "test_undecodable_event_and_subscription_data_are_read",
)


HEALTHY = """
class Provider(MemoryPersistenceProvider):
    pass
"""

CASES = [
    Broken(
        "reason_not_kept",
        '''
class Provider(MemoryPersistenceProvider):
    """Sets events aside by marking them processed, but drops the reason."""

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        if not reason:
            raise ValueError("empty reason")
        if (await self.get_event(event_id)).is_processed:
            return False
        await self.mark_event_processed(event_id)
        return True
''',
        ("test_set_aside_event_keeps_reason_and_counts_as_processed",),
    ),
    Broken(
        "left_runnable",
        '''
class Provider(MemoryPersistenceProvider):
    """Keeps the reason but leaves the event unprocessed (still runnable)."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[str, str] = {}

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        if not reason:
            raise ValueError("empty reason")
        await self.get_event(event_id)
        if event_id in self.reasons:
            return False
        self.reasons[event_id] = reason
        return True

    async def get_event(self, event_id: str) -> Event:
        event = await super().get_event(event_id)
        event.set_aside = self.reasons.get(event_id, event.set_aside)
        return event
''',
        (
            "test_set_aside_event_keeps_reason_and_counts_as_processed",
            "test_set_aside_is_final",
        ),
    ),
    Broken(
        "revived_by_catch_up",
        '''
class Provider(MemoryPersistenceProvider):
    """mark_event_unprocessed reopens a set-aside event and forgets why."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[str, str] = {}

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        if not reason:
            raise ValueError("empty reason")
        await self.get_event(event_id)
        if event_id in self.reasons:
            return False
        self.reasons[event_id] = reason
        await self.mark_event_processed(event_id)
        return True

    async def get_event(self, event_id: str) -> Event:
        event = await super().get_event(event_id)
        event.set_aside = self.reasons.get(event_id, event.set_aside)
        return event

    async def mark_event_unprocessed(self, event_id: str) -> None:
        await super().mark_event_unprocessed(event_id)
        self.reasons.pop(event_id, None)
''',
        ("test_set_aside_is_final",),
    ),
    Broken(
        "always_first",
        '''
class Provider(MemoryPersistenceProvider):
    """Every call claims to have set the event aside and overwrites the reason."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[str, str] = {}

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        if not reason:
            raise ValueError("empty reason")
        await self.get_event(event_id)
        self.reasons[event_id] = reason
        await self.mark_event_processed(event_id)
        return True

    async def get_event(self, event_id: str) -> Event:
        event = await super().get_event(event_id)
        event.set_aside = self.reasons.get(event_id, event.set_aside)
        return event
''',
        ("test_set_aside_again_returns_false_and_keeps_first_reason",),
    ),
    Broken(
        "no_checks",
        '''
class Provider(MemoryPersistenceProvider):
    """Accepts an unknown id and an empty reason."""

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        try:
            return await super().set_aside_event(event_id, reason or "?")
        except EventNotFound:
            return True
''',
        ("test_set_aside_unknown_event_or_empty_reason_refused",),
    ),
    Broken(
        "create_ignores_set_aside",
        '''
class Provider(MemoryPersistenceProvider):
    """Drops set_aside when an event is created."""

    async def create_event(self, event: Event) -> str:
        event.set_aside = None
        return await super().create_event(event)
''',
        ("test_create_event_set_aside_round_trips",),
    ),
    Broken(
        "strict_reads",
        '''
class Provider(MemoryPersistenceProvider):
    """Fails a read when stored data cannot be decoded (the serializer's error)."""

    def _decode(self, stored: Any, what: str) -> Any:
        if type(stored) in (str, int, float, bool, type(None)) or not stored:
            return super()._decode(stored, what)
        return self._serializer.from_primitive(stored, what)
''',
        READ_TESTS,
    ),
    Broken(
        "rewrites_undecodable",
        '''
class Provider(MemoryPersistenceProvider):
    """Saves an undecodable value as its reason text (the stored data is lost)."""

    def _encode(self, value: Any, what: str) -> Any:
        from wfe_core.serialization import Undecodable

        if isinstance(value, Undecodable):
            return {"lost": value.reason}
        return super()._encode(value, what)
''',
        ("test_undecodable_instance_data_is_read_and_saved_verbatim",),
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in the suites it runs."""
    from wfe_conformance.events import EventRepositoryTests
    from wfe_conformance.poison import PoisonDataTests

    known = suite_test_names(EventRepositoryTests, PoisonDataTests)
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"
    assert len({case.name for case in CASES}) == len(CASES)


def test_healthy_memory_provider_passes_the_poison_tests(
    isolated_pytester: pytest.Pytester,
) -> None:
    """The unmodified memory provider passes every test the cases expect to fail."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    tests = sorted({test for case in CASES for test in case.must_fail})
    node_ids = [f"{module_name('healthy')}.py::TestProvider::{test}" for test in tests]
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE", *node_ids)
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    result.assert_outcomes(passed=len(node_ids))


def test_broken_set_aside_providers_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken provider fails every test written to catch it (one subprocess runs
    them all, each provider in its own module)."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)
