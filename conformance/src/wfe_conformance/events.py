"""Conformance suite for :class:`~wfe_core.persistence.EventRepository`."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from wfe_core.errors import EventNotFound, SerializationError
from wfe_core.models import Event, new_id
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.sample import (
    BASE_TIME,
    FAR_FUTURE,
    FAR_PAST,
    PRECISE_AMOUNT_TEXT,
    SampleOrder,
    assert_aware_utc,
    assert_refused_as_naive,
    assert_same,
    make_event,
    sample_data,
)

__all__ = ["EventRepositoryTests"]


async def _create(provider: PersistenceProvider, **overrides: Any) -> Event:
    """Create a sample event and return the caller's object (id written back)."""
    event = make_event(**overrides)
    await provider.create_event(event)
    return event


class EventRepositoryTests(SuiteBase):
    """Published events: create, load, the runnable list, lookups and the processed flag."""

    # --- create / get -----------------------------------------------------------------

    async def test_create_event_assigns_id_when_empty(self, provider: PersistenceProvider) -> None:
        """create_event with an empty id assigns one, returns it and writes it back."""
        first, second = make_event(), make_event()
        first_id = await provider.create_event(first)
        second_id = await provider.create_event(second)
        assert isinstance(first_id, str)
        assert first_id
        assert first.id == first_id
        assert second.id == second_id
        assert first_id != second_id
        assert (await provider.get_event(first_id)).id == first_id

    async def test_create_event_keeps_given_id(self, provider: PersistenceProvider) -> None:
        """create_event keeps an id the caller gave."""
        given = f"evt-{new_id()}"
        assert await provider.create_event(make_event(id=given)) == given
        assert (await provider.get_event(given)).id == given

    async def test_every_event_field_round_trips(self, provider: PersistenceProvider) -> None:
        """Every Event field comes back equal: typed event_data, aware UTC event_time.

        A Decimal with 18 places in the data keeps every digit.
        """
        event = await _create(provider)
        stored = await provider.get_event(event.id)
        assert_same(stored, event, "event")
        assert isinstance(stored.event_data, SampleOrder)
        assert stored.event_data == sample_data()
        assert str(stored.event_data.total) == PRECISE_AMOUNT_TEXT
        assert_aware_utc(stored.event_time, "event_time")
        assert stored.is_processed is False

    async def test_plain_event_data_round_trips(self, provider: PersistenceProvider) -> None:
        """None, empty and primitive event data come back as given, not mixed up."""
        values: list[object] = [None, {}, [], 0, "", "text", {"amount": 1.25, "ok": True}]
        events = [await _create(provider, event_data=v) for v in values]
        for event, value in zip(events, values, strict=True):
            got = (await provider.get_event(event.id)).event_data
            assert (got, type(got)) == (value, type(value)), f"{value!r} came back as {got!r}"

    async def test_non_utc_event_time_is_the_same_instant(
        self, provider: PersistenceProvider
    ) -> None:
        """An aware non-UTC event_time is stored as the same instant and comes back at UTC."""
        local = BASE_TIME.astimezone(timezone(timedelta(hours=-7)))
        event = await _create(provider, event_time=local)
        stored = await provider.get_event(event.id)
        assert stored.event_time == BASE_TIME
        assert_aware_utc(stored.event_time, "event_time")
        assert await provider.get_runnable_events(BASE_TIME) == [event.id]
        assert await provider.get_events(event.event_name, event.event_key, BASE_TIME) == [event.id]

    async def test_get_unknown_event_raises_event_not_found(
        self, provider: PersistenceProvider
    ) -> None:
        """get_event of an unknown id raises EventNotFound."""
        await _create(provider)
        with pytest.raises(EventNotFound):
            await provider.get_event(f"unknown-{new_id()}")

    async def test_returned_event_is_a_copy(self, provider: PersistenceProvider) -> None:
        """Mutating a returned event, or the one handed to create, changes nothing stored."""
        event = await _create(provider)
        expected = copy.deepcopy(event)
        event.event_key = "after create"
        assert isinstance(event.event_data, SampleOrder)
        event.event_data.lines.clear()
        got = await provider.get_event(expected.id)
        got.is_processed = True
        got.event_time = FAR_PAST
        assert isinstance(got.event_data, SampleOrder)
        got.event_data.tags["channel"] = "mutated"
        assert_same(await provider.get_event(expected.id), expected, "stored")
        assert await provider.get_runnable_events(BASE_TIME) == [expected.id]

    async def test_unserializable_event_data_refused(self, provider: PersistenceProvider) -> None:
        """Unserializable event data raises SerializationError naming the field; no event."""
        given = f"evt-{new_id()}"
        with pytest.raises(SerializationError) as raised:
            await provider.create_event(make_event(id=given, event_data={"sock": object()}))
        assert "sock" in str(raised.value)
        with pytest.raises(EventNotFound):
            await provider.get_event(given)
        assert await provider.get_runnable_events(FAR_FUTURE) == []

    # --- runnable ---------------------------------------------------------------------

    async def test_runnable_events_unprocessed_only(self, provider: PersistenceProvider) -> None:
        """get_runnable_events lists unprocessed events only."""
        fresh = await _create(provider)
        await _create(provider, is_processed=True)
        done = await _create(provider)
        await provider.mark_event_processed(done.id)
        assert await provider.get_runnable_events(BASE_TIME) == [fresh.id]

    async def test_runnable_events_due_boundary_inclusive(
        self, provider: PersistenceProvider
    ) -> None:
        """event_time == as_at is runnable; a future-dated event is not until its time."""
        at = await _create(provider, event_time=BASE_TIME)
        future = await _create(provider, event_time=BASE_TIME + timedelta(microseconds=1))
        assert await provider.get_runnable_events(BASE_TIME) == [at.id]
        assert await provider.get_runnable_events(BASE_TIME - timedelta(microseconds=1)) == []
        assert await provider.get_runnable_events(BASE_TIME + timedelta(microseconds=1)) == [
            at.id,
            future.id,
        ]

    async def test_runnable_events_oldest_first_with_limit(
        self, provider: PersistenceProvider
    ) -> None:
        """Runnable events come oldest event_time first, and at most `limit` of them."""
        offsets = [4, 0, 3, 1, 2]
        made = {
            off: await _create(provider, event_time=BASE_TIME - timedelta(seconds=10 - off))
            for off in offsets
        }
        in_order = [made[off].id for off in sorted(offsets)]
        assert await provider.get_runnable_events(BASE_TIME) == in_order
        assert await provider.get_runnable_events(BASE_TIME, limit=3) == in_order[:3]
        assert await provider.get_runnable_events(BASE_TIME, 1) == in_order[:1]

    # --- get_events -------------------------------------------------------------------

    async def test_get_events_matches_name_and_key_exactly(
        self, provider: PersistenceProvider
    ) -> None:
        """get_events matches event name and key exactly: no case folding or wildcards."""
        hit = await _create(provider, event_name="order_paid", event_key="K_1")
        for name, key in [
            ("orderXpaid", "K_1"),
            ("ORDER_PAID", "K_1"),
            ("order_paid", "k_1"),
            ("order_paid", "KX1"),
            ("order_paid", "K_10"),
            ("order_pai", "K_1"),
        ]:
            await _create(provider, event_name=name, event_key=key)
        assert await provider.get_events("order_paid", "K_1", FAR_PAST) == [hit.id]

    async def test_get_events_as_of_inclusive(self, provider: PersistenceProvider) -> None:
        """get_events lists events with event_time >= as_of; the boundary is included."""
        key = f"k-{new_id()}"
        await _create(provider, event_key=key, event_time=BASE_TIME - timedelta(microseconds=1))
        at = await _create(provider, event_key=key, event_time=BASE_TIME)
        after = await _create(provider, event_key=key, event_time=BASE_TIME + timedelta(hours=1))
        assert await provider.get_events("payment.received", key, BASE_TIME) == [at.id, after.id]
        assert await provider.get_events("payment.received", key, FAR_FUTURE) == []

    async def test_get_events_includes_processed_oldest_first(
        self, provider: PersistenceProvider
    ) -> None:
        """get_events lists processed and unprocessed events, oldest event_time first."""
        key = f"k-{new_id()}"
        offsets = [2, 0, 3, 1]
        made = {
            off: await _create(provider, event_key=key, event_time=BASE_TIME + timedelta(off))
            for off in offsets
        }
        await provider.mark_event_processed(made[0].id)
        await provider.mark_event_processed(made[3].id)
        got = await provider.get_events("payment.received", key, FAR_PAST)
        assert got == [made[off].id for off in sorted(offsets)]

    # --- processed flag ---------------------------------------------------------------

    async def test_mark_processed_and_unprocessed(self, provider: PersistenceProvider) -> None:
        """Marking processed/unprocessed flips is_processed and the runnable listing.

        Both are idempotent.
        """
        event = await _create(provider)
        other = await _create(provider, event_time=BASE_TIME - timedelta(hours=1))
        await provider.mark_event_processed(event.id)
        await provider.mark_event_processed(event.id)
        assert (await provider.get_event(event.id)).is_processed is True
        assert (await provider.get_event(other.id)).is_processed is False
        assert await provider.get_runnable_events(FAR_FUTURE) == [other.id]
        await provider.mark_event_unprocessed(event.id)
        await provider.mark_event_unprocessed(event.id)
        stored = await provider.get_event(event.id)
        assert stored.is_processed is False
        assert_same(stored, event, "event")
        assert await provider.get_runnable_events(FAR_FUTURE) == [other.id, event.id]

    async def test_mark_unknown_event_raises_event_not_found(
        self, provider: PersistenceProvider
    ) -> None:
        """Marking an unknown event processed or unprocessed raises EventNotFound."""
        await _create(provider)
        with pytest.raises(EventNotFound):
            await provider.mark_event_processed(f"unknown-{new_id()}")
        with pytest.raises(EventNotFound):
            await provider.mark_event_unprocessed(f"unknown-{new_id()}")

    # --- set aside (poison data) --------------------------------------------------------

    async def test_set_aside_event_keeps_reason_and_counts_as_processed(
        self, provider: PersistenceProvider
    ) -> None:
        """set_aside_event returns True, stores the reason (get_event.set_aside) and
        marks the event processed: not runnable, still listed by get_events."""
        event = await _create(provider)
        other = await _create(provider, event_key=event.event_key)
        reason = "event_data: stored data names the type 'app.Gone', which is not registered"
        assert await provider.set_aside_event(event.id, reason) is True
        stored = await provider.get_event(event.id)
        assert stored.set_aside == reason
        assert stored.is_processed is True
        expected = dataclasses.replace(event, is_processed=True, set_aside=reason)
        assert_same(stored, expected, "event")
        assert await provider.get_runnable_events(FAR_FUTURE) == [other.id]
        assert await provider.get_events(event.event_name, event.event_key, FAR_PAST) == [
            event.id,
            other.id,
        ]
        assert (await provider.get_event(other.id)).set_aside is None

    async def test_set_aside_is_final(self, provider: PersistenceProvider) -> None:
        """A set-aside event stays processed and set aside: mark_event_unprocessed (as a
        subscription's catch-up calls it) neither reopens nor clears it."""
        event = await _create(provider)
        assert await provider.set_aside_event(event.id, "cannot decode")
        await provider.mark_event_unprocessed(event.id)
        await provider.mark_event_processed(event.id)
        await provider.mark_event_unprocessed(event.id)
        stored = await provider.get_event(event.id)
        assert (stored.is_processed, stored.set_aside) == (True, "cannot decode")
        assert await provider.get_runnable_events(FAR_FUTURE) == []

    async def test_set_aside_again_returns_false_and_keeps_first_reason(
        self, provider: PersistenceProvider
    ) -> None:
        """Setting aside an event that already is returns False and keeps the first
        reason; of concurrent callers exactly one gets True."""
        event = await _create(provider)
        assert await provider.set_aside_event(event.id, "first") is True
        assert await provider.set_aside_event(event.id, "second") is False
        assert (await provider.get_event(event.id)).set_aside == "first"
        racing = await _create(provider)
        results = await asyncio.gather(
            *(provider.set_aside_event(racing.id, f"reason {n}") for n in range(8))
        )
        assert sorted(results) == [False] * 7 + [True]
        assert (await provider.get_event(racing.id)).set_aside in {f"reason {n}" for n in range(8)}

    async def test_set_aside_unknown_event_or_empty_reason_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """set_aside_event raises EventNotFound for an unknown id and ValueError for an
        empty reason (changing nothing)."""
        event = await _create(provider)
        with pytest.raises(EventNotFound):
            await provider.set_aside_event(f"unknown-{new_id()}", "reason")
        with pytest.raises(ValueError, match="reason"):
            await provider.set_aside_event(event.id, "")
        stored = await provider.get_event(event.id)
        assert (stored.is_processed, stored.set_aside) == (False, None)

    async def test_create_event_set_aside_round_trips(self, provider: PersistenceProvider) -> None:
        """An event created with set_aside comes back set aside and processed; an
        ordinary one has set_aside None."""
        aside = await _create(provider, set_aside="poison")
        plain = await _create(provider)
        stored = await provider.get_event(aside.id)
        assert (stored.is_processed, stored.set_aside) == (True, "poison")
        assert (await provider.get_event(plain.id)).set_aside is None
        assert await provider.get_runnable_events(FAR_FUTURE) == [plain.id]

    async def test_event_headers_round_trip(self, provider: PersistenceProvider) -> None:
        """Propagation headers (e.g. a W3C traceparent) come back as given, as a copy;
        an event without headers comes back with none; non-text headers are refused."""
        headers = {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "vendor=value,other=ünïcode",
        }
        traced = await _create(provider, headers=dict(headers))
        plain = await _create(provider, headers={})
        stored = await provider.get_event(traced.id)
        assert stored.headers == headers
        stored.headers["traceparent"] = "changed"
        assert (await provider.get_event(traced.id)).headers == headers
        assert (await provider.get_event(plain.id)).headers == {}
        given = f"evt-{new_id()}"
        with pytest.raises(TypeError, match="headers"):
            await provider.create_event(make_event(id=given, headers={"n": 1}))
        with pytest.raises(EventNotFound):
            await provider.get_event(given)

    # --- naive datetimes --------------------------------------------------------------

    async def test_event_naive_datetimes_refused(self, provider: PersistenceProvider) -> None:
        """Naive datetimes raise ValueError in every event method that takes a time."""
        naive = datetime(2024, 1, 1, 12, 0)
        given = f"evt-{new_id()}"
        await assert_refused_as_naive(
            provider.create_event(make_event(id=given, event_time=naive)), "create_event"
        )
        with pytest.raises(EventNotFound):
            await provider.get_event(given)
        await assert_refused_as_naive(provider.get_runnable_events(naive), "get_runnable_events")
        await assert_refused_as_naive(
            provider.get_events("payment.received", "k", naive), "get_events"
        )
