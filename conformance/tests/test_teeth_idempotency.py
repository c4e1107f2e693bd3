"""The idempotency tests have teeth: broken providers fail them.

Each case is a subclass of the in-memory provider that breaks one promise of
``IdempotencyTests``: it ignores idempotency keys or event ids, or enforces them by
checking and then inserting with an ``await`` in between (not atomically), so that
concurrent creates all get through. The suite runs against it in a pytest subprocess,
each case in its own module, and the tests named in the case must fail; the healthy
memory provider must pass the same tests.
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

from wfe_conformance.idempotency import IdempotencyTests
from wfe_core.errors import DuplicateEventId, DuplicateIdempotencyKey, EventNotFound
from wfe_core.models import Event, WorkflowInstance
from wfe_memory import MemoryPersistenceProvider


class BlindIndex(dict):
    \"\"\"A key index that never finds anything (the provider's own check is off).\"\"\"

    def get(self, key: Any, default: Any = None) -> Any:
        return default


class BlindEvents(dict):
    \"\"\"An event table whose ``in`` never finds anything (the provider's own check is
    off: a second event with one id replaces the first).\"\"\"

    def __contains__(self, key: object) -> bool:
        return False
"""

FOOTER = """

class TestProvider(IdempotencyTests):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with Provider() as p:
            yield p
"""

HEALTHY = """
class Provider(MemoryPersistenceProvider):
    pass
"""

KEY_BASICS = (
    "test_duplicate_idempotency_key_is_refused_with_the_existing_id",
    "test_key_is_kept_after_the_instance_completes",
)

CASES = [
    Broken(
        "ignores_keys",
        '''
class Provider(MemoryPersistenceProvider):
    """Stores the key but never checks it."""

    def __init__(self) -> None:
        super().__init__()
        self._by_idempotency_key = BlindIndex()
''',
        (*KEY_BASICS, "test_concurrent_creates_with_one_key_store_exactly_one"),
    ),
    Broken(
        "check_then_insert",
        '''
class Provider(MemoryPersistenceProvider):
    """Looks for the key, awaits something, then inserts: not atomic."""

    def __init__(self) -> None:
        super().__init__()
        self._by_idempotency_key = BlindIndex()

    async def create_workflow(
        self, instance: WorkflowInstance, *, owner: Any = None, lease_until: Any = None
    ) -> str:
        key = instance.idempotency_key
        if key is not None:
            for other in await self.query_workflows(
                definition_id=instance.workflow_definition_id, take=1000
            ):
                if other.idempotency_key == key:
                    raise DuplicateIdempotencyKey(instance.workflow_definition_id, key, other.id)
            await anyio.sleep(0.01)  # a round trip between the check and the insert
        return await super().create_workflow(instance, owner=owner, lease_until=lease_until)
''',
        ("test_concurrent_creates_with_one_key_store_exactly_one",),
    ),
    Broken(
        "key_not_read_back",
        '''
class Provider(MemoryPersistenceProvider):
    """Enforces the key but reads every instance back without it."""

    def _load(self, stored: Any) -> WorkflowInstance:
        instance = super()._load(stored)
        instance.idempotency_key = None
        return instance
''',
        ("test_idempotency_key_round_trips",),
    ),
    Broken(
        "key_not_freed_by_purge",
        '''
class Provider(MemoryPersistenceProvider):
    """Purges instances but keeps their keys taken."""

    async def purge_workflows(self, status: Any, older_than: datetime) -> int:
        kept = dict(self._by_idempotency_key)
        count = await super().purge_workflows(status, older_than)
        self._by_idempotency_key.update(kept)
        return count
''',
        ("test_purge_frees_the_key",),
    ),
    Broken(
        "event_id_overwritten",
        '''
class Provider(MemoryPersistenceProvider):
    """A second event with a stored id replaces the first."""

    def __init__(self) -> None:
        super().__init__()
        self._events = BlindEvents()
''',
        (
            "test_duplicate_event_id_is_refused_and_nothing_written",
            "test_concurrent_event_creates_with_one_id_store_exactly_one",
        ),
    ),
    Broken(
        "event_check_then_insert",
        '''
class Provider(MemoryPersistenceProvider):
    """Looks the event id up, awaits something, then stores (replacing): not atomic."""

    def __init__(self) -> None:
        super().__init__()
        self._events = BlindEvents()

    async def create_event(self, event: Event) -> str:
        if event.id:
            try:
                await self.get_event(event.id)
            except EventNotFound:
                pass
            else:
                raise DuplicateEventId(event.id)
            await anyio.sleep(0.01)  # a round trip between the check and the insert
        return await super().create_event(event)
''',
        ("test_concurrent_event_creates_with_one_id_store_exactly_one",),
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in the suite it runs."""
    from wfe_conformance.idempotency import IdempotencyTests

    known = suite_test_names(IdempotencyTests)
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"
    assert len({case.name for case in CASES}) == len(CASES)


def test_healthy_memory_provider_passes_the_idempotency_tests(
    isolated_pytester: pytest.Pytester,
) -> None:
    """The unmodified memory provider passes every test of the suite."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE")
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    from wfe_conformance.idempotency import IdempotencyTests

    # the suite's tests and the guard every suite class carries
    result.assert_outcomes(passed=len(suite_test_names(IdempotencyTests)) + 1)


def test_broken_idempotency_providers_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken provider fails every test written to catch it (one subprocess runs
    them all, each provider in its own module)."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)
