"""The definition-store tests have teeth: broken definition stores fail them.

Each case is a subclass of the in-memory provider that breaks one promise of
``DefinitionStoreTests``: another text overwrites a stored version, a repeat save is
stored again, the newest version is the last one saved, versions list as text
(``10`` before ``2``), a save that checks, awaits and then writes (not atomic). The
suite runs against it in a pytest subprocess, each case in its own module, and the
tests named in the case must fail; the healthy memory provider must pass the same suite.
"""

from __future__ import annotations

import pytest
from teeth_support import Broken, assert_caught, failed_tests, module_name, suite_test_names

HEADER = """
from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from wfe_conformance.definitions import DefinitionStoreTests
from wfe_core.definitions.errors import DefinitionNotFound, DefinitionVersionConflict
from wfe_core.definitions.store import DefinitionSummary, StoredDefinition
from wfe_memory import MemoryPersistenceProvider
"""

FOOTER = """

class TestProvider(DefinitionStoreTests):
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
        "overwrites_a_version",
        '''
class Provider(MemoryPersistenceProvider):
    """Another text for a stored version replaces it."""

    async def save_definition(self, definition: StoredDefinition) -> bool:
        self._definitions.pop((definition.definition_id, definition.version), None)
        return await super().save_definition(definition)
''',
        ("test_other_text_for_a_stored_version_is_refused",),
    ),
    Broken(
        "repeat_is_stored_again",
        '''
class Provider(MemoryPersistenceProvider):
    """The same text again is stored again (a new time) and reported new."""

    async def save_definition(self, definition: StoredDefinition) -> bool:
        key = (definition.definition_id, definition.version)
        known = self._definitions.get(key)
        if known is not None and known.text == definition.text:
            self._definitions.pop(key)
        return await super().save_definition(definition)
''',
        ("test_same_text_again_is_a_no_op",),
    ),
    Broken(
        "newest_is_last_saved",
        '''
class Provider(MemoryPersistenceProvider):
    """Without a version, returns the version saved last, not the highest."""

    async def get_definition(self, definition_id: str, version: int | None = None):
        if version is None:
            found = [d for (i, _v), d in self._definitions.items() if i == definition_id]
            if not found:
                raise DefinitionNotFound(definition_id)
            return found[-1]
        return await super().get_definition(definition_id, version)
''',
        ("test_newest_version_is_the_default",),
    ),
    Broken(
        "versions_listed_as_text",
        '''
class Provider(MemoryPersistenceProvider):
    """Lists versions in text order (10 before 2)."""

    async def list_definitions(self, definition_id: str | None = None):
        listed = await super().list_definitions(definition_id)
        return sorted(listed, key=lambda s: (s.definition_id, str(s.version)))
''',
        ("test_listing_is_by_id_then_version",),
    ),
    Broken(
        "save_check_then_write",
        '''
class Provider(MemoryPersistenceProvider):
    """Checks for the version, awaits (a round trip), then writes: not atomic."""

    async def save_definition(self, definition: StoredDefinition) -> bool:
        definition.validate()
        key = (definition.definition_id, definition.version)
        known = self._definitions.get(key)
        await anyio.sleep(0.01)
        if known is not None:
            if known.text == definition.text:
                return False
            raise DefinitionVersionConflict(*key)
        self._definitions[key] = definition
        return True
''',
        ("test_concurrent_saves_of_one_version_store_one",),
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in the suite it runs."""
    from wfe_conformance.definitions import DefinitionStoreTests

    known = suite_test_names(DefinitionStoreTests)
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"
    assert len({case.name for case in CASES}) == len(CASES)


def test_healthy_memory_provider_passes_the_definition_tests(
    isolated_pytester: pytest.Pytester,
) -> None:
    """The unmodified memory provider passes every test of the suite."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE")
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    from wfe_conformance.definitions import DefinitionStoreTests

    # the suite's tests and the guard every suite class carries
    result.assert_outcomes(passed=len(suite_test_names(DefinitionStoreTests)) + 1)


def test_broken_definition_stores_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken definition store fails every test written to catch it (one
    subprocess runs them all, each provider in its own module)."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)
