"""The ownership suite has teeth: providers that do not fence fail it.

Each case subclasses the in-memory provider and breaks one promise of the ownership
contract (claims, fenced checkpoints, control requests). ``OwnershipTests`` runs against
it in a pytest subprocess and the tests named in the case must fail; the healthy memory
provider passes them all. Some cases reach into the memory provider's stored claim to
break it, since the public protocol offers no way to write past the fence.
"""

from __future__ import annotations

import pytest
from teeth_support import Broken, assert_caught, failed_tests, module_name

HEADER = """
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from wfe_conformance.ownership import OwnershipTests
from wfe_memory import MemoryPersistenceProvider

FAR = datetime(2999, 1, 1, tzinfo=UTC)
"""

FOOTER = """

class TestProvider(OwnershipTests):
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
        "claimed_listed_as_runnable",
        '''
class Provider(MemoryPersistenceProvider):
    """get_runnable_instances lists instances a host holds a live claim on."""

    async def get_runnable_instances(self, as_at, limit=1000):
        await self._enter()
        due = sorted(
            (s.header.next_execution, s.seq, wid)
            for wid, s in self._instances.items()
            if s.header.status == "runnable"
            and s.header.next_execution is not None
            and s.header.next_execution <= as_at
        )
        return [wid for _, _, wid in due[:limit]]
''',
        ("test_a_claimed_instance_is_not_listed_as_runnable",),
    ),
    Broken(
        "takeovers_unreported",
        '''
class Provider(MemoryPersistenceProvider):
    """Claims work, but a takeover of an expired claim is reported as a plain claim."""

    async def claim_workflow(self, workflow_id, owner, lease_until):
        return bool(await super().claim_workflow(workflow_id, owner, lease_until))
''',
        ("test_expired_claim_can_be_taken",),
    ),
    Broken(
        "claims_always_win",
        '''
class Provider(MemoryPersistenceProvider):
    """Every claim succeeds: the last claimer overwrites the holder (no compare-and-set)."""

    async def claim_workflow(self, workflow_id, owner, lease_until):
        await self.get_workflow_instance(workflow_id)  # WorkflowNotFound as before
        stored = self._instances[workflow_id]
        stored.owner, stored.lease_until = owner, lease_until
        return True
''',
        (
            "test_claim_is_exclusive_until_released",
            "test_concurrent_claims_have_one_winner",
            "test_create_claimed",
            "test_two_hosts_never_run_one_step_at_once_without_locks",
        ),
    ),
    Broken(
        "checkpoints_not_fenced",
        '''
class Provider(MemoryPersistenceProvider):
    """A checkpoint is written whoever holds the claim (the fence is not checked)."""

    async def persist_workflow(self, instance, subscriptions=(), *, owner=None,
                               apply_control=False):
        stored = self._instances.get(instance.id)
        if stored is not None:
            stored.owner, stored.lease_until = owner, (FAR if owner else None)
            stored.control = None if owner else stored.control
        await super().persist_workflow(
            instance, subscriptions, owner=owner, apply_control=apply_control
        )
''',
        (
            "test_owned_persist_needs_the_live_claim",
            "test_owned_persist_refused_after_the_lease_expired",
            "test_unowned_persist_refused_while_claimed",
            "test_control_request_fences_the_holder",
        ),
    ),
    Broken(
        "claims_never_expire",
        '''
class Provider(MemoryPersistenceProvider):
    """A claim is kept for ever, whatever lease the caller asked for."""

    async def claim_workflow(self, workflow_id, owner, lease_until):
        return await super().claim_workflow(workflow_id, owner, FAR)
''',
        ("test_expired_claim_can_be_taken",),
    ),
    Broken(
        "control_requests_dropped",
        '''
class Provider(MemoryPersistenceProvider):
    """Control requests are accepted and forgotten."""

    async def request_control(self, workflow_id, action):
        await self.get_workflow_instance(workflow_id)
        if action not in ("suspend", "resume", "terminate"):
            raise ValueError("control action")
''',
        (
            "test_control_request_fences_the_holder",
            "test_terminate_request_is_not_replaced",
            "test_pending_controls_lists",
            "test_request_left_by_a_stopped_holder_is_applied_by_the_poller",
        ),
    ),
    Broken(
        "terminate_replaced",
        '''
class Provider(MemoryPersistenceProvider):
    """A later request replaces a pending terminate."""

    async def request_control(self, workflow_id, action):
        await super().request_control(workflow_id, action)
        self._instances[workflow_id].control = action
''',
        ("test_terminate_request_is_not_replaced",),
    ),
]


def test_cases_name_real_suite_tests() -> None:
    """Every test a case expects to fail exists in OwnershipTests."""
    from wfe_conformance.ownership import OwnershipTests

    known = {name for name in vars(OwnershipTests) if name.startswith("test_")}
    for case in CASES:
        unknown = set(case.must_fail) - known
        assert not unknown, f"{case.name}: no such suite tests {sorted(unknown)}"


def test_healthy_memory_provider_passes_ownership(isolated_pytester: pytest.Pytester) -> None:
    """The unmodified memory provider passes every ownership test."""
    isolated_pytester.makepyfile(**{module_name("healthy"): HEADER + HEALTHY + FOOTER})
    result = isolated_pytester.runpytest_subprocess("-p", "anyio", "-q", "-rfE")
    output = result.stdout.str()
    assert result.ret == 0, f"healthy provider failed: {failed_tests(output)}\n{output}"
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}, outcomes


def test_providers_that_do_not_fence_are_caught(isolated_pytester: pytest.Pytester) -> None:
    """Each broken provider fails every ownership test written to catch it."""
    assert_caught(isolated_pytester, CASES, HEADER, FOOTER)
