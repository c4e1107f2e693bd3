"""The wfe conformance suite: one pytest suite every persistence, lock and queue
provider passes — ours and yours.

Subclass :class:`ProviderConformance` in a ``Test*`` class and override the
``provider`` fixture (and ``lock_provider`` / ``second_lock_provider`` /
``queue_provider`` when your package has its own)::

    class TestMyStoreConformance(ProviderConformance):
        @pytest.fixture
        async def provider(self):
            async with MyStore.connect(...) as p:
                yield p

A provider declaring ``Capability.DURABLE`` also overrides ``store_opener`` (a
:class:`StoreOpener` for the same store, used from this process and others); every
provider overrides ``namespace_opener`` (a :class:`NamespaceOpener`: the same database
in another namespace, for :class:`NamespaceTests`);
:class:`MultiHostTests` is an opt-in suite of real worker processes on one store
(override ``store_url``). Run ``pytest -rs`` to see which optional capabilities were
skipped and why.
"""

from __future__ import annotations

import pytest

_ASSERT_REWRITTEN = (
    "wfe_conformance.base",
    "wfe_conformance.capability_honesty",
    "wfe_conformance.commands",
    "wfe_conformance.concurrency",
    "wfe_conformance.definitions",
    "wfe_conformance.durability",
    "wfe_conformance.events",
    "wfe_conformance.execution_errors",
    "wfe_conformance.idempotency",
    "wfe_conformance.limits",
    "wfe_conformance.lock_tests",
    "wfe_conformance.multihost",
    "wfe_conformance.namespaces",
    "wfe_conformance.ownership",
    "wfe_conformance.poison",
    "wfe_conformance.poison_support",
    "wfe_conformance.queue_tests",
    "wfe_conformance.sample",
    "wfe_conformance.scenario_support",
    "wfe_conformance.scenarios",
    "wfe_conformance.scenarios.activities",
    "wfe_conformance.scenarios.basics",
    "wfe_conformance.scenarios.compensation",
    "wfe_conformance.scenarios.control",
    "wfe_conformance.scenarios.control_flow",
    "wfe_conformance.scenarios.errors",
    "wfe_conformance.scenarios.events",
    "wfe_conformance.scenarios.lifecycle",
    "wfe_conformance.scenarios.middleware",
    "wfe_conformance.scenarios.retry_policy",
    "wfe_conformance.scenarios.sagas",
    "wfe_conformance.scenarios.stored_definitions",
    "wfe_conformance.scenarios.scheduling",
    "wfe_conformance.scenarios.sub_workflows",
    "wfe_conformance.scenarios.support",
    "wfe_conformance.scenarios.timeouts",
    "wfe_conformance.scenarios.user_tasks",
    "wfe_conformance.scenarios.waits",
    "wfe_conformance.schedules",
    "wfe_conformance.services",
    "wfe_conformance.subscriptions",
    "wfe_conformance.workflow_queries",
    "wfe_conformance.workflow_round_trips",
    "wfe_conformance.workflow_writes",
    "wfe_conformance.workflows",
)
"""Every module of the suite: pytest rewrites their asserts (a test in
``conformance/tests`` checks that no module is missing)."""

pytest.register_assert_rewrite(*_ASSERT_REWRITTEN)

from wfe_conformance.base import SuiteBase, requires
from wfe_conformance.capability_honesty import CapabilityHonestyTests
from wfe_conformance.commands import ScheduledCommandTests
from wfe_conformance.concurrency import ConcurrencyTests
from wfe_conformance.definitions import DefinitionStoreTests
from wfe_conformance.durability import DurabilityTests, StoreOpener
from wfe_conformance.events import EventRepositoryTests
from wfe_conformance.execution_errors import ErrorRepositoryTests
from wfe_conformance.idempotency import IdempotencyTests
from wfe_conformance.limits import KeyLimitTests
from wfe_conformance.lock_tests import LockProviderTests
from wfe_conformance.multihost import MultiHostTests
from wfe_conformance.namespaces import NamespaceOpener, NamespaceTests
from wfe_conformance.ownership import OwnershipTests
from wfe_conformance.poison import PoisonDataTests
from wfe_conformance.queue_tests import QueueProviderTests
from wfe_conformance.scenarios import HostScenarioTests
from wfe_conformance.schedules import ScheduleStoreTests
from wfe_conformance.subscriptions import SubscriptionRepositoryTests
from wfe_conformance.workflows import WorkflowRepositoryTests

__all__ = [
    "CapabilityHonestyTests",
    "ConcurrencyTests",
    "DefinitionStoreTests",
    "DurabilityTests",
    "ErrorRepositoryTests",
    "EventRepositoryTests",
    "HostScenarioTests",
    "IdempotencyTests",
    "KeyLimitTests",
    "LockProviderTests",
    "MultiHostTests",
    "NamespaceOpener",
    "NamespaceTests",
    "OwnershipTests",
    "PersistenceConformance",
    "PoisonDataTests",
    "ProviderConformance",
    "QueueProviderTests",
    "ScheduleStoreTests",
    "ScheduledCommandTests",
    "StoreOpener",
    "SubscriptionRepositoryTests",
    "SuiteBase",
    "WorkflowRepositoryTests",
    "requires",
]


class PersistenceConformance(
    WorkflowRepositoryTests,
    SubscriptionRepositoryTests,
    EventRepositoryTests,
    ScheduledCommandTests,
    ErrorRepositoryTests,
    ConcurrencyTests,
    CapabilityHonestyTests,
    KeyLimitTests,
    DurabilityTests,
    IdempotencyTests,
):
    """Every persistence-repository suite (no lock, queue or host tests)."""


class ProviderConformance(
    PersistenceConformance,
    LockProviderTests,
    QueueProviderTests,
    HostScenarioTests,
    PoisonDataTests,
    OwnershipTests,
    ScheduleStoreTests,
    DefinitionStoreTests,
    NamespaceTests,
):
    """Everything a provider package must pass: repositories, lock, queue, namespaces
    and (with the engine) every host scenario."""
