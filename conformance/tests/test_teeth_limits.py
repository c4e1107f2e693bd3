"""``KeyLimitTests`` has teeth: providers that keep other limits than every store's
fail it -- exactly the tests written to catch them.

Each case is a module holding a provider (the memory provider, changed) and the suite,
run through pytester in a pytest subprocess. The unchanged memory provider passes
every test.
"""

from __future__ import annotations

import pytest
from teeth_support import Broken as Case  # a provider with other limits, the tests it must fail
from teeth_support import failed_tests

REFUSALS = (
    "test_event_key_of_401_characters_refused",
    "test_event_with_nul_character_refused",
    "test_event_id_longer_than_200_characters_refused",
    "test_subscription_key_of_401_characters_or_nul_refused",
    "test_persist_with_unstorable_subscription_key_changes_nothing",
    "test_claim_with_worker_id_of_401_characters_refused",
    "test_unstorable_definition_id_reference_or_id_refused",
    "test_command_data_of_401_characters_refused",
)

HEADER = """
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import wfe_memory.provider
from wfe_conformance.limits import KeyLimitTests
from wfe_core.persistence import storable_key
from wfe_memory import MemoryPersistenceProvider
"""

FOOTER = """

class TestProvider(KeyLimitTests):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with Provider() as p:
            yield p
"""


CASES = [
    Case(
        "healthy",
        """
class Provider(MemoryPersistenceProvider):
    pass
""",
        (),
    ),
    Case(
        "no_checks",
        '''
def _unchecked(*args: Any, **kwargs: Any) -> None:
    """Accept anything, as SQLite does."""


for _name in (
    "_check_event_text",
    "_check_instance_text",
    "_check_key",
    "_check_subscription_text",
):
    setattr(wfe_memory.provider, _name, _unchecked)


class Provider(MemoryPersistenceProvider):
    """The memory provider as it was before the limits: it keeps whatever it is given."""
''',
        REFUSALS,
    ),
    Case(
        "bytes_limit",
        '''
def _bytes(value: Any, what: str) -> None:
    if isinstance(value, str) and len(value.encode()) > 400:
        raise ValueError(f"{what} is longer than 400 bytes")


class Provider(MemoryPersistenceProvider):
    """Counts the limit in UTF-8 bytes, not characters."""

    async def create_event(self, event):
        _bytes(event.event_name, "event_name")
        _bytes(event.event_key, "event_key")
        return await super().create_event(event)

    async def create_subscription(self, subscription):
        _bytes(subscription.event_name, "event_name")
        _bytes(subscription.event_key, "event_key")
        return await super().create_subscription(subscription)

    async def create_workflow(self, instance, **claim):
        _bytes(instance.workflow_definition_id, "workflow_definition_id")
        _bytes(instance.reference, "reference")
        return await super().create_workflow(instance, **claim)
''',
        (
            "test_unicode_event_key_of_400_characters_is_kept",
            "test_subscription_key_of_400_characters_is_kept",
            "test_definition_id_and_reference_of_400_characters_are_kept",
        ),
    ),
    Case(
        "lookup_raises",
        '''
def _lookup(*values: Any) -> None:
    if not all(v is None or storable_key(v) for v in values):
        raise ValueError("PostgreSQL cannot compare with this value")


class Provider(MemoryPersistenceProvider):
    """Raises, like an unguarded database driver, when looking up an unstorable key."""

    async def get_events(self, event_name, event_key, as_of):
        _lookup(event_name, event_key)
        return await super().get_events(event_name, event_key, as_of)

    async def get_subscriptions(self, event_name, event_key, as_of):
        _lookup(event_name, event_key)
        return await super().get_subscriptions(event_name, event_key, as_of)

    async def get_first_open_subscription(self, event_name, event_key, as_of):
        _lookup(event_name, event_key)
        return await super().get_first_open_subscription(event_name, event_key, as_of)

    async def query_workflows(self, **filters):
        _lookup(filters.get("definition_id"), filters.get("reference"))
        return await super().query_workflows(**filters)
''',
        ("test_lookups_by_unstorable_keys_find_nothing",),
    ),
]


def _module(case: Case) -> str:
    return f"test_limits_{case.name}"


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in KeyLimitTests."""
    from wfe_conformance.limits import KeyLimitTests

    known = {name for name in vars(KeyLimitTests) if name.startswith("test_")}
    for case in CASES:
        assert set(case.must_fail) <= known, case.name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_providers_with_other_limits_are_caught(
    isolated_pytester: pytest.Pytester, case: Case
) -> None:
    """Each provider fails exactly the limit tests written to catch it and passes the
    others (one subprocess per case: one of them patches the memory provider module)."""
    from wfe_conformance.limits import KeyLimitTests

    isolated_pytester.makepyfile(**{_module(case): HEADER + case.source + FOOTER})
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE")
    output = result.stdout.str()
    failed = failed_tests(output, errors=True).get(_module(case), set())
    assert failed == set(case.must_fail), output
    total = sum(1 for name in vars(KeyLimitTests) if name.startswith("test_"))
    result.assert_outcomes(passed=total + 1 - len(case.must_fail), failed=len(case.must_fail))
