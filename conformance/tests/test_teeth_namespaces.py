"""The namespace tests have teeth: broken providers fail them.

Each case is a subclass of the in-memory provider whose ``in_namespace`` breaks one
promise of ``NamespaceTests``: a sibling that shares all the data of the namespace it
was opened from, or only its events, subscriptions, errors, commands, schedules,
stored definitions or idempotency keys; a purge that reaches every namespace; an
opener that gives a fresh, unrelated store each time or reports the wrong namespace;
or lock and queue providers shared by every namespace. The suite runs against it in a
pytest subprocess, each case in its own module, and the tests named in the case must
fail; the healthy memory provider (with in-process lock and queue providers per
namespace) must pass them all.
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

from wfe_conformance.namespaces import NamespaceOpener, NamespaceTests
from wfe_core.locks import InProcessLockProvider, LockTable
from wfe_core.models import WorkflowStatus
from wfe_core.queues import InProcessQueueProvider
from wfe_core.registry import StoreComponents
from wfe_memory import MemoryPersistenceProvider

LOCKS_PER_NAMESPACE = True
QUEUES_PER_NAMESPACE = True

EVENTS = ("_events", "_events_by_topic", "_unprocessed")
SUBSCRIPTIONS = ("_subscriptions", "_subs_by_topic", "_subs_by_workflow")
EVERYTHING = (
    "_instances",
    "_by_idempotency_key",
    *SUBSCRIPTIONS,
    *EVENTS,
    "_commands",
    "_in_flight",
    "_errors",
    "_schedules",
    "_seq",
)


def share(sibling: Any, root: Any, names: tuple[str, ...]) -> Any:
    \"\"\"Make ``sibling`` use ``root``'s tables ``names`` (the namespace is ignored).\"\"\"
    for name in names:
        setattr(sibling, name, getattr(root, name))
    return sibling
"""

FOOTER = """

class TestProvider(NamespaceTests):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with Provider() as p:
            yield p

    @pytest.fixture
    def namespace_opener(self, provider: MemoryPersistenceProvider) -> NamespaceOpener:
        tables: dict[str, LockTable] = {}
        queues: dict[str, InProcessQueueProvider] = {}

        async def open_namespace(namespace: str) -> StoreComponents:
            lock_key = namespace if LOCKS_PER_NAMESPACE else "shared"
            queue_key = namespace if QUEUES_PER_NAMESPACE else "shared"
            table = tables.setdefault(lock_key, LockTable())
            queue = queues.setdefault(queue_key, InProcessQueueProvider())
            return StoreComponents(
                persistence=provider.in_namespace(namespace),
                lock_provider=InProcessLockProvider(table),
                queue_provider=queue,
            )

        return open_namespace
"""

HEALTHY = """
class Provider(MemoryPersistenceProvider):
    pass
"""


def _sharing(names: str, doc: str) -> str:
    return f'''
class Provider(MemoryPersistenceProvider):
    """{doc}"""

    def _new_sibling(self, namespace: str) -> MemoryPersistenceProvider:
        return share(super()._new_sibling(namespace), self, {names})
'''


CASES = [
    Broken(
        "shares_everything",
        _sharing("EVERYTHING", "Siblings use the opening provider's data: no isolation."),
        (
            "test_namespace_opener_reaches_the_same_database",
            "test_namespace_instances_are_invisible_elsewhere",
            "test_namespace_same_ids_and_keys_are_independent",
            "test_namespace_events_are_isolated",
            "test_namespace_subscriptions_are_isolated",
            "test_namespace_execution_errors_are_isolated",
            "test_namespace_scheduled_commands_are_isolated",
            "test_namespace_purge_leaves_other_namespaces",
            "test_namespace_schedules_are_isolated",
        ),
    ),
    Broken(
        "shares_events",
        _sharing("EVENTS", "Instances are isolated, events are not."),
        ("test_namespace_events_are_isolated",),
    ),
    Broken(
        "shares_subscriptions",
        _sharing("SUBSCRIPTIONS", "Instances are isolated, subscriptions are not."),
        ("test_namespace_subscriptions_are_isolated",),
    ),
    Broken(
        "shares_idempotency_keys",
        _sharing("('_by_idempotency_key',)", "Idempotency keys are global."),
        ("test_namespace_same_ids_and_keys_are_independent",),
    ),
    Broken(
        "shares_errors",
        _sharing("('_errors',)", "The error log is global."),
        ("test_namespace_execution_errors_are_isolated",),
    ),
    Broken(
        "shares_commands",
        _sharing("('_commands', '_in_flight')", "Scheduled commands are global."),
        ("test_namespace_scheduled_commands_are_isolated",),
    ),
    Broken(
        "shares_schedules",
        _sharing("('_schedules',)", "Schedules are global."),
        ("test_namespace_schedules_are_isolated",),
    ),
    Broken(
        "shares_definitions",
        _sharing("('_definitions',)", "Stored definitions are global."),
        ("test_namespace_definitions_are_isolated",),
    ),
    Broken(
        "purges_every_namespace",
        '''
class Provider(MemoryPersistenceProvider):
    """A purge in one namespace purges all of them."""

    async def purge_workflows(self, status: WorkflowStatus, older_than: datetime) -> int:
        count = 0
        for sibling in list(self._siblings.values()):
            count += await MemoryPersistenceProvider.purge_workflows(sibling, status, older_than)
        return count
''',
        ("test_namespace_purge_leaves_other_namespaces",),
    ),
    Broken(
        "fresh_store_each_open",
        '''
class Provider(MemoryPersistenceProvider):
    """Each opening is a new, empty store: isolated, but not the same database."""

    def in_namespace(self, namespace: str) -> MemoryPersistenceProvider:
        return self._new_sibling(namespace)
''',
        ("test_namespace_opener_reaches_the_same_database",),
    ),
    Broken(
        "reports_the_default_namespace",
        '''
class Provider(MemoryPersistenceProvider):
    """Isolates the data but every sibling reports the namespace it was opened from."""

    def _new_sibling(self, namespace: str) -> MemoryPersistenceProvider:
        sibling = super()._new_sibling(namespace)
        sibling.namespace = self.namespace
        return sibling
''',
        ("test_namespace_providers_report_their_namespace",),
    ),
    Broken(
        "shares_locks",
        """
LOCKS_PER_NAMESPACE = False


class Provider(MemoryPersistenceProvider):
    pass
""",
        ("test_namespace_locks_are_isolated",),
    ),
    Broken(
        "shares_queues",
        """
QUEUES_PER_NAMESPACE = False


class Provider(MemoryPersistenceProvider):
    pass
""",
        ("test_namespace_queues_are_isolated",),
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in the suite it runs, and every suite
    test is expected to catch at least one case."""
    from wfe_conformance.namespaces import NamespaceTests

    known = suite_test_names(NamespaceTests)
    caught: set[str] = set()
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"
        caught |= set(case.must_fail)
    assert len({case.name for case in CASES}) == len(CASES)
    assert caught == known, f"suite tests no case exercises: {sorted(known - caught)}"


def test_healthy_memory_provider_passes_the_namespace_tests(
    isolated_pytester: pytest.Pytester,
) -> None:
    """The unmodified memory provider passes every test of the suite (none skipped:
    the opener brings lock and queue providers per namespace)."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfEs")
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    from wfe_conformance.namespaces import NamespaceTests

    # the suite's tests and the guard every suite class carries
    result.assert_outcomes(passed=len(suite_test_names(NamespaceTests)) + 1)


def test_broken_namespace_providers_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken provider fails every test written to catch it (one subprocess runs
    them all, each provider in its own module)."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)
