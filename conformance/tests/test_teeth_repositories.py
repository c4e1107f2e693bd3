"""The repository suites have teeth: deliberately broken providers fail them.

Each case below is a subclass of the in-memory provider that breaks one promise of the
contract through the public protocol only. The suites (workflows, subscriptions,
events) run against it in a pytest subprocess, in the case's own temporary directory,
and the tests named in the case must fail. The healthy memory provider must pass every
test of the three suites.
"""

from __future__ import annotations

import pytest
from teeth_support import Broken, assert_caught, failed_tests, module_name, suite_test_names

SUITES = ("WorkflowRepositoryTests", "SubscriptionRepositoryTests", "EventRepositoryTests")

HEADER = """
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from wfe_conformance.events import EventRepositoryTests
from wfe_conformance.subscriptions import SubscriptionRepositoryTests
from wfe_conformance.workflows import WorkflowRepositoryTests
from wfe_core.errors import (
    ConcurrencyError,
    EventNotFound,
    SubscriptionNotFound,
    TokenMismatch,
)
from wfe_core.models import Event, EventSubscription, WorkflowInstance
from wfe_memory import MemoryPersistenceProvider

US = timedelta(microseconds=1)
END_OF_TIME = datetime.max.replace(tzinfo=UTC)
"""

FOOTER = """

class TestProvider(WorkflowRepositoryTests, SubscriptionRepositoryTests, EventRepositoryTests):
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
        "aliasing",
        '''
class Provider(MemoryPersistenceProvider):
    """Keeps and hands out the very objects it was given (no copies)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[str, Any] = {}

    async def create_workflow(self, instance: WorkflowInstance) -> str:
        wid = await super().create_workflow(instance)
        self.live[wid] = instance
        return wid

    async def persist_workflow(self, instance, subscriptions=()):
        await super().persist_workflow(instance, subscriptions)
        self.live[instance.id] = instance

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        if workflow_id not in self.live:
            self.live[workflow_id] = await super().get_workflow_instance(workflow_id)
        return self.live[workflow_id]

    async def get_workflow_instances(self, workflow_ids):
        found = await super().get_workflow_instances(workflow_ids)
        return [await self.get_workflow_instance(i.id) for i in found]

    async def query_workflows(self, **filters):
        found = await super().query_workflows(**filters)
        return [await self.get_workflow_instance(i.id) for i in found]

    async def create_subscription(self, subscription: EventSubscription) -> str:
        sid = await super().create_subscription(subscription)
        self.live[sid] = subscription
        return sid

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        stored = await super().get_subscription(subscription_id)
        return self.live.setdefault(subscription_id, stored)

    async def get_subscriptions(self, event_name, event_key, as_of):
        found = await super().get_subscriptions(event_name, event_key, as_of)
        return [self.live.setdefault(s.id, s) for s in found]

    async def create_event(self, event: Event) -> str:
        eid = await super().create_event(event)
        self.live[eid] = event
        return eid

    async def get_event(self, event_id: str) -> Event:
        stored = await super().get_event(event_id)
        return self.live.setdefault(event_id, stored)
''',
        (
            "test_returned_instance_is_a_copy",
            "test_instance_changed_after_create_does_not_change_store",
            "test_instance_changed_after_persist_does_not_change_store",
            "test_returned_subscription_is_a_copy",
            "test_returned_event_is_a_copy",
        ),
    ),
    Broken(
        "subscriptions_ignore_as_of",
        '''
class Provider(MemoryPersistenceProvider):
    """get_subscriptions lists subscriptions from the future too."""

    async def get_subscriptions(self, event_name, event_key, as_of):
        await super().get_subscriptions(event_name, event_key, as_of)  # keeps the naive check
        return await super().get_subscriptions(event_name, event_key, END_OF_TIME)
''',
        ("test_get_subscriptions_as_of_is_inclusive",),
    ),
    Broken(
        "persist_drops_subscriptions",
        '''
class Provider(MemoryPersistenceProvider):
    """persist_workflow forgets the subscriptions passed along."""

    async def persist_workflow(self, instance, subscriptions=()):
        await super().persist_workflow(instance, ())
''',
        ("test_persist_creates_subscriptions_with_ids",),
    ),
    Broken(
        "persist_not_atomic",
        '''
class Provider(MemoryPersistenceProvider):
    """persist_workflow creates the subscriptions first, then saves the instance."""

    async def persist_workflow(self, instance, subscriptions=()):
        for sub in subscriptions:
            await self.create_subscription(sub)
        await super().persist_workflow(instance, ())
''',
        (
            "test_persist_stale_revision_raises_and_changes_nothing",
            "test_persist_unknown_id_raises_workflow_not_found",
        ),
    ),
    Broken(
        "token_cas_not_atomic",
        '''
class Provider(MemoryPersistenceProvider):
    """set_subscription_token reads, yields, then writes: a check-then-act race."""

    async def set_subscription_token(self, subscription_id, token, worker_id, expiry):
        seen = await self.get_subscription(subscription_id)
        if seen.external_token is not None and seen.external_token_expiry > datetime.now(UTC):
            return False
        await asyncio.sleep(0)
        current = await self.get_subscription(subscription_id)
        if current.external_token is not None:
            await self.clear_subscription_token(subscription_id, current.external_token)
        await super().set_subscription_token(subscription_id, token, worker_id, expiry)
        return True
''',
        ("test_set_token_concurrent_claims_exactly_one_wins",),
    ),
    Broken(
        "ignores_revision",
        '''
class Provider(MemoryPersistenceProvider):
    """persist_workflow never raises ConcurrencyError: the last writer wins."""

    async def persist_workflow(self, instance, subscriptions=()):
        while True:
            stored = await self.get_workflow_instance(instance.id)
            instance.revision = stored.revision
            try:
                return await super().persist_workflow(instance, subscriptions)
            except ConcurrencyError:
                continue
''',
        (
            "test_persist_stale_revision_raises_and_changes_nothing",
            "test_concurrent_persists_of_one_revision_exactly_one_wins",
        ),
    ),
    Broken(
        "decimal_through_float",
        '''
def lossy(value: Any) -> Any:
    """What storing numbers as JSON floats does to them."""
    if isinstance(value, Decimal):
        return Decimal(str(float(value)))
    if isinstance(value, list):
        return [lossy(v) for v in value]
    if isinstance(value, dict):
        return {k: lossy(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: lossy(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


class Provider(MemoryPersistenceProvider):
    """Loses Decimal digits in workflow, pointer, event and subscription data."""

    async def get_workflow_instance(self, workflow_id):
        instance = await super().get_workflow_instance(workflow_id)
        instance.data = lossy(instance.data)
        for p in instance.execution_pointers:
            p.persistence_data = lossy(p.persistence_data)
            p.context_item = lossy(p.context_item)
        instance.mark_persisted()
        return instance

    async def get_event(self, event_id):
        event = await super().get_event(event_id)
        event.event_data = lossy(event.event_data)
        return event

    async def get_subscription(self, subscription_id):
        sub = await super().get_subscription(subscription_id)
        sub.subscription_data = lossy(sub.subscription_data)
        return sub
''',
        (
            "test_every_instance_field_round_trips",
            "test_typed_data_round_trips",
            "test_every_pointer_field_round_trips",
            "test_every_subscription_field_round_trips",
            "test_every_event_field_round_trips",
        ),
    ),
    Broken(
        "runnable_ignores_status",
        '''
class Provider(MemoryPersistenceProvider):
    """get_runnable_instances lists due instances whatever their status."""

    async def get_runnable_instances(self, as_at, limit=1000):
        await super().get_runnable_instances(as_at, limit)  # keeps the naive check
        due = [
            (i.next_execution, i.id)
            for i in await self.query_workflows(take=1_000_000)
            if i.next_execution is not None and i.next_execution <= as_at
        ]
        return [wid for _, wid in sorted(due)[:limit]]
''',
        (
            "test_runnable_instances_only_runnable_status",
            "test_runnable_instances_follow_persisted_changes",
        ),
    ),
    Broken(
        "due_boundaries_exclusive",
        '''
class Provider(MemoryPersistenceProvider):
    """Compares due times with < instead of <=."""

    async def get_runnable_instances(self, as_at, limit=1000):
        return await super().get_runnable_instances(as_at - US, limit)

    async def get_runnable_events(self, as_at, limit=1000):
        return await super().get_runnable_events(as_at - US, limit)

    async def get_subscriptions(self, event_name, event_key, as_of):
        return await super().get_subscriptions(event_name, event_key, as_of - US)

    async def get_first_open_subscription(self, event_name, event_key, as_of):
        return await super().get_first_open_subscription(event_name, event_key, as_of - US)

    async def get_events(self, event_name, event_key, as_of):
        return await super().get_events(event_name, event_key, as_of + US)
''',
        (
            "test_runnable_instances_boundary_inclusive",
            "test_runnable_events_due_boundary_inclusive",
            "test_get_subscriptions_as_of_is_inclusive",
            "test_first_open_honours_as_of",
            "test_get_events_as_of_inclusive",
        ),
    ),
    Broken(
        "token_never_expires",
        '''
class Provider(MemoryPersistenceProvider):
    """Treats any held token as live, however old its expiry."""

    async def set_subscription_token(self, subscription_id, token, worker_id, expiry):
        current = await self.get_subscription(subscription_id)
        if current.external_token is not None:
            return False
        return await super().set_subscription_token(subscription_id, token, worker_id, expiry)

    async def get_first_open_subscription(self, event_name, event_key, as_of):
        for sub in await self.get_subscriptions(event_name, event_key, as_of):
            if sub.external_token is None:
                return sub
        return None
''',
        (
            "test_set_token_takes_over_expired_claim",
            "test_first_open_includes_expired_token",
            # test_set_token_claim_expires_with_time fails too, after its 5 s bound
        ),
    ),
    Broken(
        "clear_token_unchecked",
        '''
class Provider(MemoryPersistenceProvider):
    """clear_subscription_token releases whatever claim is held, with any token."""

    async def clear_subscription_token(self, subscription_id, token):
        current = await self.get_subscription(subscription_id)
        if current.external_token is not None:
            await super().clear_subscription_token(subscription_id, current.external_token)
''',
        (
            "test_clear_wrong_token_raises_and_keeps_claim",
            "test_clear_when_no_token_held_raises",
        ),
    ),
    Broken(
        "claimed_subscriptions_hidden",
        '''
class Provider(MemoryPersistenceProvider):
    """get_subscriptions leaves out claimed subscriptions (WFE's PostgreSQL provider)."""

    async def get_subscriptions(self, event_name, event_key, as_of):
        found = await super().get_subscriptions(event_name, event_key, as_of)
        return [s for s in found if s.external_token is None]
''',
        ("test_get_subscriptions_includes_claimed",),
    ),
    Broken(
        "silent_unknown_ids",
        '''
class Provider(MemoryPersistenceProvider):
    """Terminating or marking an unknown id silently does nothing."""

    async def terminate_subscription(self, subscription_id):
        try:
            await super().terminate_subscription(subscription_id)
        except SubscriptionNotFound:
            pass

    async def mark_event_processed(self, event_id):
        try:
            await super().mark_event_processed(event_id)
        except EventNotFound:
            pass
''',
        (
            "test_terminate_unknown_subscription_raises",
            "test_mark_unknown_event_raises_event_not_found",
        ),
    ),
    Broken(
        "empty_pointer_list_means_all",
        '''
class Provider(MemoryPersistenceProvider):
    """terminate_subscriptions treats an empty pointer list like None (deletes all)."""

    async def terminate_subscriptions(self, workflow_id, pointer_ids=None):
        ids = None if pointer_ids is None else list(pointer_ids)
        return await super().terminate_subscriptions(workflow_id, ids or None)
''',
        ("test_terminate_subscriptions_of_pointers",),
    ),
    Broken(
        "get_events_unprocessed_only",
        '''
class Provider(MemoryPersistenceProvider):
    """get_events leaves out processed events."""

    async def get_events(self, event_name, event_key, as_of):
        ids = await super().get_events(event_name, event_key, as_of)
        return [i for i in ids if not (await self.get_event(i)).is_processed]
''',
        ("test_get_events_includes_processed_oldest_first",),
    ),
    Broken(
        "pointers_out_of_order",
        '''
class Provider(MemoryPersistenceProvider):
    """Loads pointers newest first instead of in creation order (deterministic: an
    order by random id would pass by chance once in a while)."""

    async def get_workflow_instance(self, workflow_id):
        instance = await super().get_workflow_instance(workflow_id)
        instance.execution_pointers = list(reversed(instance.execution_pointers))
        instance.mark_persisted()
        return instance
''',
        ("test_pointer_order_preserved", "test_persist_saves_changed_and_new_pointers"),
    ),
    Broken(
        "query_created_to_inclusive",
        '''
class Provider(MemoryPersistenceProvider):
    """query_workflows treats created_to as inclusive."""

    async def query_workflows(self, *, created_to=None, **filters):
        if created_to is not None:
            created_to = created_to + US
        return await super().query_workflows(created_to=created_to, **filters)
''',
        ("test_query_by_creation_time_range",),
    ),
    Broken(
        "query_newest_first_ignored",
        '''
class Provider(MemoryPersistenceProvider):
    """query_workflows ignores newest_first (always oldest first)."""

    async def query_workflows(self, *, newest_first=False, **filters):
        return await super().query_workflows(**filters)
''',
        ("test_query_newest_first_orders_ties_by_id_descending", "test_query_newest_first_paging"),
    ),
    Broken(
        "count_ignores_reference",
        '''
class Provider(MemoryPersistenceProvider):
    """count_workflows ignores the reference filter."""

    async def count_workflows(self, *, reference=None, **filters):
        return await super().count_workflows(**filters)
''',
        ("test_count_workflows_matches_each_filter",),
    ),
    Broken(
        "naive_times_accepted",
        '''
def assume_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Provider(MemoryPersistenceProvider):
    """Quietly takes naive datetimes to be UTC instead of refusing them."""

    async def get_runnable_instances(self, as_at, limit=1000):
        return await super().get_runnable_instances(assume_utc(as_at), limit)

    async def get_subscriptions(self, event_name, event_key, as_of):
        return await super().get_subscriptions(event_name, event_key, assume_utc(as_of))

    async def get_events(self, event_name, event_key, as_of):
        return await super().get_events(event_name, event_key, assume_utc(as_of))
''',
        (
            "test_workflow_naive_datetime_arguments_refused",
            "test_subscription_naive_datetimes_refused",
            "test_event_naive_datetimes_refused",
        ),
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in the repository suites."""
    from wfe_conformance.events import EventRepositoryTests
    from wfe_conformance.subscriptions import SubscriptionRepositoryTests
    from wfe_conformance.workflows import WorkflowRepositoryTests

    known = suite_test_names(
        WorkflowRepositoryTests, SubscriptionRepositoryTests, EventRepositoryTests
    )
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"
    assert len({case.name for case in CASES}) == len(CASES)


def test_suite_test_names_are_unique() -> None:
    """No suite test shares its name with a test of another suite: in a class
    combining them (ProviderConformance), one of the two would silently never run.
    Every module counts, those of subpackages (the scenario mixins) too."""
    import importlib
    import pkgutil

    import wfe_conformance

    owners: dict[str, list[str]] = {}
    for module_info in pkgutil.walk_packages(wfe_conformance.__path__, "wfe_conformance."):
        module = importlib.import_module(module_info.name)
        for cls in vars(module).values():
            if (
                isinstance(cls, type)
                and cls.__module__ == module.__name__
                and cls.__name__.endswith("Tests")
            ):
                for name in vars(cls):
                    if name.startswith("test_"):
                        owners.setdefault(name, []).append(cls.__name__)
    clashes = {name: classes for name, classes in owners.items() if len(classes) > 1}
    assert not clashes, f"test names defined in more than one suite: {clashes}"
    for suite in SUITES:
        assert suite_test_names(getattr(wfe_conformance, suite)), suite


def test_healthy_memory_provider_passes(isolated_pytester: pytest.Pytester) -> None:
    """The unmodified memory provider passes every test of the three suites."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE")
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}, outcomes
    assert outcomes["passed"] >= 90, outcomes


def test_broken_providers_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken provider fails every suite test written to catch it (one subprocess
    runs them all, each provider in its own module)."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)


def test_builders_fill_every_model_field() -> None:
    """The sample builders set every model field to a non-default value (bar documented
    exceptions), so a field a provider drops fails a round trip; new fields must be added."""
    from dataclasses import MISSING, fields

    from wfe_conformance.sample import make_event, make_instance, make_pointer, make_subscription

    exempt = {
        "WorkflowInstance": {"id", "revision", "control_request"},
        "EventSubscription": {"id", "external_token", "external_worker_id"},
        "Event": {"id", "is_processed", "set_aside"},
    }
    for built in (make_pointer(), make_instance(), make_subscription(), make_event()):
        kind = type(built).__name__
        for f in fields(built):
            if f.name in exempt.get(kind, set()) or f.name == "external_token_expiry":
                continue
            value = getattr(built, f.name)
            if f.default is not MISSING:
                assert value != f.default, f"{kind}.{f.name} left at its default {value!r}"
            elif f.default_factory is not MISSING and f.name != "id":
                assert value != f.default_factory(), f"{kind}.{f.name} left empty"
