"""Conformance suite for the text every store keeps: ``KeyLimitTests``.

Every store keeps the same values, whatever its database would let through: event
names and keys, workflow definition ids and references of at most
:data:`~wfe_core.persistence.MAX_KEY_LENGTH` (400) characters -- counted as Python's
``len()`` counts them, so 400 characters of four-byte UTF-8 fit too -- ids a caller
gives of at most :data:`~wfe_core.persistence.MAX_ID_LENGTH` (200), and never a NUL
character. A value outside the limits is refused with ``ValueError`` naming the field
and the limit, before anything is written; a look-up by such a value finds nothing.

The engine side (a ``wait_for`` whose key is refused fails as an ordinary step error;
``publish_event`` refuses before storing) is in
:class:`~wfe_conformance.scenarios.HostScenarioTests`, with its workflows in
:mod:`wfe_conformance.scenarios.errors` (re-exported here).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from wfe_core.capabilities import Capability
from wfe_core.errors import EventNotFound, SubscriptionNotFound
from wfe_core.models import ScheduledCommand, WorkflowStatus, new_id
from wfe_core.persistence import MAX_ID_LENGTH, MAX_KEY_LENGTH, PersistenceProvider

from wfe_conformance.base import SuiteBase, requires
from wfe_conformance.sample import (
    BASE_TIME,
    FAR_FUTURE,
    FAR_PAST,
    assert_same,
    make_event,
    make_instance,
    make_subscription,
)
from wfe_conformance.scenarios.errors import BadWaitKeyWorkflow, NulErrorWorkflow

__all__ = ["BadWaitKeyWorkflow", "KeyLimitTests", "NulErrorWorkflow", "long_key", "unicode_key"]


def long_key(length: int, stem: str = "k") -> str:
    """A unique ASCII key of exactly ``length`` characters."""
    head = f"{stem}-{new_id()}-"
    return (head + "x" * length)[:length]


def unicode_key(length: int = MAX_KEY_LENGTH) -> str:
    """A unique key of exactly ``length`` characters, most of them two-, three- and
    four-byte in UTF-8 (so it is far longer than ``length`` bytes)."""
    head = new_id()
    body = "é€🚀字" * length
    return (head + body)[:length]


def _nul_key() -> str:
    return f"before\x00after-{new_id()}"


def _refused(raised: pytest.ExceptionInfo[ValueError], field: str, limit: int | None) -> None:
    """The ValueError names the field (and the limit, for a length)."""
    message = str(raised.value)
    assert field in message, f"the error does not name {field!r}: {message}"
    if limit is not None:
        assert str(limit) in message, f"the error does not name the limit {limit}: {message}"


async def _no_events(provider: PersistenceProvider) -> None:
    assert await provider.get_runnable_events(FAR_FUTURE) == [], "an event was stored"


async def _no_instances(provider: PersistenceProvider) -> None:
    assert await provider.query_workflows(take=10) == [], "an instance was stored"


class KeyLimitTests(SuiteBase):
    """The same length and character limits on names, keys and ids in every store."""

    # --- events -----------------------------------------------------------------------

    async def test_event_name_and_key_of_400_characters_are_kept(
        self, provider: PersistenceProvider
    ) -> None:
        """An event whose name and key are 400 characters each is stored and found."""
        name, key = long_key(MAX_KEY_LENGTH, "n"), long_key(MAX_KEY_LENGTH)
        event = make_event(event_name=name, event_key=key)
        event_id = await provider.create_event(event)
        assert_same(await provider.get_event(event_id), event, "event")
        assert await provider.get_events(name, key, FAR_PAST) == [event_id]

    async def test_unicode_event_key_of_400_characters_is_kept(
        self, provider: PersistenceProvider
    ) -> None:
        """The limit counts characters, not bytes: 400 multi-byte characters are kept."""
        name, key = unicode_key(), unicode_key()
        event = make_event(event_name=name, event_key=key)
        event_id = await provider.create_event(event)
        stored = await provider.get_event(event_id)
        assert (stored.event_name, stored.event_key) == (name, key)
        assert await provider.get_events(name, key, FAR_PAST) == [event_id]

    async def test_event_key_of_401_characters_refused(self, provider: PersistenceProvider) -> None:
        """A 401-character event key or name raises ValueError naming it and the limit;
        nothing is stored."""
        given = f"evt-{new_id()}"
        with pytest.raises(ValueError) as raised:  # noqa: PT011
            await provider.create_event(
                make_event(id=given, event_key=long_key(MAX_KEY_LENGTH + 1))
            )
        _refused(raised, "event_key", MAX_KEY_LENGTH)
        with pytest.raises(ValueError) as raised:  # noqa: PT011
            await provider.create_event(
                make_event(id=given, event_name=long_key(MAX_KEY_LENGTH + 1, "n"))
            )
        _refused(raised, "event_name", MAX_KEY_LENGTH)
        with pytest.raises(ValueError) as raised:  # noqa: PT011
            await provider.create_event(make_event(event_key=unicode_key(MAX_KEY_LENGTH + 1)))
        _refused(raised, "event_key", MAX_KEY_LENGTH)
        with pytest.raises(EventNotFound):
            await provider.get_event(given)
        await _no_events(provider)

    async def test_event_with_nul_character_refused(self, provider: PersistenceProvider) -> None:
        """A NUL character in an event key or name raises ValueError; nothing is stored."""
        given = f"evt-{new_id()}"
        with pytest.raises(ValueError) as raised:  # noqa: PT011
            await provider.create_event(make_event(id=given, event_key=_nul_key()))
        _refused(raised, "event_key", None)
        with pytest.raises(ValueError) as raised:  # noqa: PT011
            await provider.create_event(make_event(id=given, event_name=_nul_key()))
        _refused(raised, "event_name", None)
        with pytest.raises(EventNotFound):
            await provider.get_event(given)
        await _no_events(provider)

    async def test_event_id_longer_than_200_characters_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """A given event id of 200 characters is kept; 201 raises ValueError, storing nothing."""
        kept = long_key(MAX_ID_LENGTH, "evt")
        assert await provider.create_event(make_event(id=kept)) == kept
        assert (await provider.get_event(kept)).id == kept
        with pytest.raises(ValueError) as raised:  # noqa: PT011
            await provider.create_event(make_event(id=long_key(MAX_ID_LENGTH + 1, "evt")))
        _refused(raised, "id", MAX_ID_LENGTH)
        assert await provider.get_runnable_events(FAR_FUTURE) == [kept]

    # --- subscriptions ----------------------------------------------------------------

    async def test_subscription_key_of_400_characters_is_kept(
        self, provider: PersistenceProvider
    ) -> None:
        """Subscriptions on 400-character names and keys (ASCII or not) are stored and
        found by get_subscriptions and get_first_open_subscription."""
        for name, key in (
            (long_key(MAX_KEY_LENGTH, "n"), long_key(MAX_KEY_LENGTH)),
            (unicode_key(), unicode_key()),
        ):
            sub = make_subscription(event_name=name, event_key=key)
            await provider.create_subscription(sub)
            assert_same(await provider.get_subscription(sub.id), sub, "subscription")
            assert [s.id for s in await provider.get_subscriptions(name, key, FAR_FUTURE)] == [
                sub.id
            ]
            first = await provider.get_first_open_subscription(name, key, FAR_FUTURE)
            assert first is not None
            assert first.id == sub.id

    async def test_subscription_key_of_401_characters_or_nul_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """create_subscription with a 401-character or NUL-holding key or name raises
        ValueError naming the field; nothing is stored."""
        given = f"sub-{new_id()}"
        cases: list[tuple[dict[str, Any], str, int | None]] = [
            ({"event_key": long_key(MAX_KEY_LENGTH + 1)}, "event_key", MAX_KEY_LENGTH),
            ({"event_name": long_key(MAX_KEY_LENGTH + 1)}, "event_name", MAX_KEY_LENGTH),
            ({"event_key": unicode_key(MAX_KEY_LENGTH + 1)}, "event_key", MAX_KEY_LENGTH),
            ({"event_key": _nul_key()}, "event_key", None),
            ({"event_name": _nul_key()}, "event_name", None),
        ]
        for overrides, field, limit in cases:
            with pytest.raises(ValueError) as raised:  # noqa: PT011
                await provider.create_subscription(make_subscription(id=given, **overrides))
            _refused(raised, field, limit)
        with pytest.raises(SubscriptionNotFound):
            await provider.get_subscription(given)

    async def test_persist_with_unstorable_subscription_key_changes_nothing(
        self, provider: PersistenceProvider
    ) -> None:
        """persist_workflow with a new subscription whose key is too long (or holds a
        NUL) raises ValueError and writes neither the instance nor any subscription."""
        instance = make_instance()
        await provider.create_workflow(instance)
        before = await provider.get_workflow_instance(instance.id)
        for key in (long_key(MAX_KEY_LENGTH + 1), _nul_key()):
            changed = await provider.get_workflow_instance(instance.id)
            changed.status = WorkflowStatus.RUNNABLE
            changed.execution_pointers[0].retry_count += 1
            good = make_subscription(workflow_id=instance.id, event_key=f"ok-{new_id()}")
            bad = make_subscription(workflow_id=instance.id, event_key=key)
            with pytest.raises(ValueError) as raised:  # noqa: PT011
                await provider.persist_workflow(changed, [good, bad])
            _refused(raised, "event_key", None)
            assert_same(await provider.get_workflow_instance(instance.id), before, "instance")
            assert (
                await provider.get_subscriptions(good.event_name, good.event_key, FAR_FUTURE) == []
            )

    async def test_claim_with_worker_id_of_401_characters_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """set_subscription_token takes a 400-character worker id and token; 401
        characters or a NUL raise ValueError and leave the subscription unclaimed."""
        sub = make_subscription()
        await provider.create_subscription(sub)
        expiry = BASE_TIME + timedelta(days=36500)
        for token, worker in (
            (new_id(), long_key(MAX_KEY_LENGTH + 1, "w")),
            (new_id(), _nul_key()),
            (long_key(MAX_KEY_LENGTH + 1, "t"), "worker"),
        ):
            with pytest.raises(ValueError):  # noqa: PT011
                await provider.set_subscription_token(sub.id, token, worker, expiry)
            assert (await provider.get_subscription(sub.id)).external_token is None
        token, worker = long_key(MAX_KEY_LENGTH, "t"), long_key(MAX_KEY_LENGTH, "w")
        assert await provider.set_subscription_token(sub.id, token, worker, expiry) is True
        stored = await provider.get_subscription(sub.id)
        assert (stored.external_token, stored.external_worker_id) == (token, worker)

    # --- workflows --------------------------------------------------------------------

    async def test_definition_id_and_reference_of_400_characters_are_kept(
        self, provider: PersistenceProvider
    ) -> None:
        """An instance with a 400-character definition id and reference (ASCII or not)
        and a 200-character id is stored and found by query_workflows."""
        for definition_id, reference in (
            (long_key(MAX_KEY_LENGTH, "d"), long_key(MAX_KEY_LENGTH, "r")),
            (unicode_key(), unicode_key()),
        ):
            instance = make_instance(
                id=long_key(MAX_ID_LENGTH, "wf"),
                workflow_definition_id=definition_id,
                reference=reference,
            )
            await provider.create_workflow(instance)
            stored = await provider.get_workflow_instance(instance.id)
            assert (stored.workflow_definition_id, stored.reference) == (definition_id, reference)
            assert [i.id for i in await provider.query_workflows(definition_id=definition_id)] == [
                instance.id
            ]
            assert [i.id for i in await provider.query_workflows(reference=reference)] == [
                instance.id
            ]

    async def test_unstorable_definition_id_reference_or_id_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """create_workflow raises ValueError naming the field for a definition id or
        reference over 400 characters or holding a NUL, an id over 200 characters and a
        description holding a NUL; nothing is stored."""
        cases: list[tuple[dict[str, Any], str, int | None]] = [
            (
                {"workflow_definition_id": long_key(MAX_KEY_LENGTH + 1)},
                "workflow_definition_id",
                MAX_KEY_LENGTH,
            ),
            ({"workflow_definition_id": _nul_key()}, "workflow_definition_id", None),
            ({"reference": long_key(MAX_KEY_LENGTH + 1)}, "reference", MAX_KEY_LENGTH),
            ({"reference": unicode_key(MAX_KEY_LENGTH + 1)}, "reference", MAX_KEY_LENGTH),
            ({"reference": _nul_key()}, "reference", None),
            ({"id": long_key(MAX_ID_LENGTH + 1)}, "id", MAX_ID_LENGTH),
            ({"description": f"a\x00b{'x' * 1000}"}, "description", None),
        ]
        for overrides, field, limit in cases:
            with pytest.raises(ValueError) as raised:  # noqa: PT011
                await provider.create_workflow(make_instance(**overrides))
            _refused(raised, field, limit)
        await _no_instances(provider)

    # --- look-ups ---------------------------------------------------------------------

    async def test_lookups_by_unstorable_keys_find_nothing(
        self, provider: PersistenceProvider
    ) -> None:
        """get_events, get_subscriptions, get_first_open_subscription and the
        query_workflows filters return nothing (never raise) for a key over 400
        characters or holding a NUL."""
        event = make_event()
        await provider.create_event(event)
        sub = make_subscription(event_name=event.event_name, event_key=event.event_key)
        await provider.create_subscription(sub)
        await provider.create_workflow(make_instance())
        for bad in (event.event_key + "x" * MAX_KEY_LENGTH, event.event_key + "\x00"):
            assert await provider.get_events(event.event_name, bad, FAR_PAST) == []
            assert await provider.get_events(bad, event.event_key, FAR_PAST) == []
            assert await provider.get_subscriptions(event.event_name, bad, FAR_FUTURE) == []
            assert await provider.get_subscriptions(bad, event.event_key, FAR_FUTURE) == []
            assert await provider.get_first_open_subscription(bad, bad, FAR_FUTURE) is None
            assert await provider.query_workflows(definition_id=bad) == []
            assert await provider.query_workflows(reference=bad) == []
        assert await provider.get_events(event.event_name, event.event_key, FAR_PAST) == [event.id]

    # --- scheduled commands -----------------------------------------------------------

    @requires(Capability.SCHEDULED_COMMANDS)
    async def test_command_data_of_401_characters_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """schedule_command with data over 400 characters or holding a NUL raises
        ValueError and schedules nothing."""
        for data in (long_key(MAX_KEY_LENGTH + 1), _nul_key()):
            with pytest.raises(ValueError) as raised:  # noqa: PT011
                await provider.schedule_command(
                    ScheduledCommand(ScheduledCommand.PROCESS_EVENT, data, BASE_TIME)
                )
            _refused(raised, "data", None)
        seen: list[ScheduledCommand] = []

        async def handler(command: ScheduledCommand) -> None:
            seen.append(command)

        assert await provider.process_commands(FAR_FUTURE, handler) == 0
        assert seen == []
