"""Conformance suite for :class:`~wfe_core.persistence.SubscriptionRepository`."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from wfe_core.errors import SubscriptionNotFound, TokenMismatch
from wfe_core.models import EventSubscription, new_id, utcnow
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase
from wfe_conformance.sample import (
    BASE_TIME,
    FAR_FUTURE,
    SampleProgress,
    assert_aware_utc,
    assert_refused_as_naive,
    assert_same,
    make_subscription,
)

__all__ = ["SubscriptionRepositoryTests"]


def _held() -> datetime:
    """An expiry comfortably in the future: the claim is live."""
    return utcnow() + timedelta(hours=1)


def _expired() -> datetime:
    """An expiry in the past: the claim counts as no claim."""
    return utcnow() - timedelta(seconds=5)


async def _create(provider: PersistenceProvider, **overrides: Any) -> EventSubscription:
    """Create a sample subscription and return the caller's object (id written back)."""
    subscription = make_subscription(**overrides)
    await provider.create_subscription(subscription)
    return subscription


class SubscriptionRepositoryTests(SuiteBase):
    """Event subscriptions: create, look up, terminate, and the activity-claim tokens."""

    # --- create / get -----------------------------------------------------------------

    async def test_create_subscription_assigns_id_when_empty(
        self, provider: PersistenceProvider
    ) -> None:
        """create_subscription with an empty id assigns one, returns it and writes it back."""
        first = make_subscription()
        second = make_subscription()
        first_id = await provider.create_subscription(first)
        second_id = await provider.create_subscription(second)
        assert isinstance(first_id, str)
        assert first_id
        assert first.id == first_id
        assert second.id == second_id
        assert first_id != second_id
        assert (await provider.get_subscription(first_id)).id == first_id

    async def test_create_subscription_keeps_given_id(self, provider: PersistenceProvider) -> None:
        """create_subscription keeps an id the caller gave."""
        given = f"sub-{new_id()}"
        subscription = make_subscription(id=given)
        assert await provider.create_subscription(subscription) == given
        assert (await provider.get_subscription(given)).id == given

    async def test_every_subscription_field_round_trips(
        self, provider: PersistenceProvider
    ) -> None:
        """Every EventSubscription field comes back equal, with and without a claim.

        subscription_data keeps its type; times come back aware UTC.
        """
        plain = await _create(provider)
        claimed = await _create(
            provider,
            external_token=f"tok-{new_id()}",
            external_worker_id="worker-7",
            external_token_expiry=BASE_TIME + timedelta(minutes=3, microseconds=3),
            subscription_data={
                "activity": "approve",
                "params": [
                    SampleProgress(attempt=1, cursor=Decimal("2.5"), last_seen_at=BASE_TIME)
                ],
            },
        )
        for original in (plain, claimed):
            stored = await provider.get_subscription(original.id)
            assert_same(stored, original, "subscription")
            assert_aware_utc(stored.subscribe_as_of, "subscribe_as_of")
        stored_plain = await provider.get_subscription(plain.id)
        assert isinstance(stored_plain.subscription_data, SampleProgress)
        assert str(stored_plain.subscription_data.cursor) == "0.123456789012345678"
        assert stored_plain.external_token is None
        assert stored_plain.external_worker_id is None
        assert stored_plain.external_token_expiry is None
        stored_claimed = await provider.get_subscription(claimed.id)
        assert_aware_utc(stored_claimed.external_token_expiry, "external_token_expiry")

    async def test_get_unknown_subscription_raises_subscription_not_found(
        self, provider: PersistenceProvider
    ) -> None:
        """get_subscription of an unknown id raises SubscriptionNotFound."""
        await _create(provider)
        with pytest.raises(SubscriptionNotFound):
            await provider.get_subscription(f"unknown-{new_id()}")

    async def test_returned_subscription_is_a_copy(self, provider: PersistenceProvider) -> None:
        """Mutating a returned subscription, or the one handed to create, changes nothing."""
        subscription = await _create(provider)
        expected = copy.deepcopy(subscription)
        subscription.event_key = "changed after create"
        assert isinstance(subscription.subscription_data, SampleProgress)
        subscription.subscription_data.seen.clear()
        got = await provider.get_subscription(expected.id)
        got.event_name = "changed"
        got.external_token = "changed"
        assert isinstance(got.subscription_data, SampleProgress)
        got.subscription_data.attempt = 99
        (listed,) = await provider.get_subscriptions(
            expected.event_name, expected.event_key, FAR_FUTURE
        )
        listed.workflow_id = "changed"
        assert_same(await provider.get_subscription(expected.id), expected, "stored")

    # --- get_subscriptions ------------------------------------------------------------

    async def test_get_subscriptions_matches_name_and_key_exactly(
        self, provider: PersistenceProvider
    ) -> None:
        """get_subscriptions matches name and key exactly: no case folding or wildcards."""
        hits = [
            await _create(provider, event_name="order_paid", event_key="K-1%"),
            await _create(
                provider,
                event_name="order_paid",
                event_key="K-1%",
                subscribe_as_of=BASE_TIME - timedelta(days=1),
            ),
        ]
        for name, key in [
            ("orderXpaid", "K-1%"),
            ("Order_paid", "K-1%"),
            ("order_paid", "k-1%"),
            ("order_paid", "K-12"),
            ("order_paid", "K-1"),
            ("order_paid ", "K-1%"),
            ("order", "K-1%"),
        ]:
            await _create(provider, event_name=name, event_key=key)
        got = await provider.get_subscriptions("order_paid", "K-1%", FAR_FUTURE)
        assert sorted(s.id for s in got) == sorted(s.id for s in hits)
        assert await provider.get_subscriptions("order_paid", "K-10", FAR_FUTURE) == []

    async def test_get_subscriptions_as_of_is_inclusive(
        self, provider: PersistenceProvider
    ) -> None:
        """get_subscriptions includes subscribe_as_of == as_of and excludes anything later."""
        key = f"k-{new_id()}"
        at = await _create(provider, event_key=key, subscribe_as_of=BASE_TIME)
        await _create(
            provider, event_key=key, subscribe_as_of=BASE_TIME + timedelta(microseconds=1)
        )
        got = await provider.get_subscriptions(at.event_name, key, BASE_TIME)
        assert [s.id for s in got] == [at.id]
        assert await provider.get_subscriptions(at.event_name, key, BASE_TIME - timedelta(1)) == []

    async def test_get_subscriptions_oldest_first(self, provider: PersistenceProvider) -> None:
        """get_subscriptions returns the oldest subscribe_as_of first."""
        key = f"k-{new_id()}"
        offsets = [3, 0, 4, 1, 2]
        made = {
            off: await _create(
                provider, event_key=key, subscribe_as_of=BASE_TIME + timedelta(seconds=off)
            )
            for off in offsets
        }
        got = await provider.get_subscriptions("payment.received", key, FAR_FUTURE)
        assert [s.id for s in got] == [made[off].id for off in sorted(offsets)]
        assert_same(got[0], made[0], "first")

    async def test_get_subscriptions_includes_claimed(self, provider: PersistenceProvider) -> None:
        """get_subscriptions lists subscriptions whether or not a token is held on them."""
        key = f"k-{new_id()}"
        claimed = await _create(provider, event_key=key)
        open_ = await _create(provider, event_key=key, subscribe_as_of=BASE_TIME)
        assert await provider.set_subscription_token(claimed.id, "tok", "w", _held())
        got = await provider.get_subscriptions("payment.received", key, FAR_FUTURE)
        assert [s.id for s in got] == [claimed.id, open_.id]
        assert got[0].external_token == "tok"

    # --- terminate --------------------------------------------------------------------

    async def test_terminate_removes_subscription(self, provider: PersistenceProvider) -> None:
        """A terminated subscription can no longer be got, listed or claimed."""
        sub = await _create(provider)
        other = await _create(provider, event_key=sub.event_key)
        await provider.terminate_subscription(sub.id)
        with pytest.raises(SubscriptionNotFound):
            await provider.get_subscription(sub.id)
        listed = await provider.get_subscriptions(sub.event_name, sub.event_key, FAR_FUTURE)
        assert [s.id for s in listed] == [other.id]
        first = await provider.get_first_open_subscription(
            sub.event_name, sub.event_key, FAR_FUTURE
        )
        assert first is not None
        assert first.id == other.id
        with pytest.raises(SubscriptionNotFound):
            await provider.set_subscription_token(sub.id, "tok", "w", _held())

    async def test_terminate_unknown_subscription_raises(
        self, provider: PersistenceProvider
    ) -> None:
        """Terminating an unknown or already terminated id raises SubscriptionNotFound."""
        with pytest.raises(SubscriptionNotFound):
            await provider.terminate_subscription(f"unknown-{new_id()}")
        sub = await _create(provider)
        await provider.terminate_subscription(sub.id)
        with pytest.raises(SubscriptionNotFound):
            await provider.terminate_subscription(sub.id)

    async def test_terminate_subscriptions_of_workflow(self, provider: PersistenceProvider) -> None:
        """terminate_subscriptions(workflow_id) deletes that workflow's only; returns count."""
        wf, other_wf = new_id(), new_id()
        mine = [await _create(provider, workflow_id=wf) for _ in range(3)]
        theirs = await _create(provider, workflow_id=other_wf)
        assert await provider.terminate_subscriptions(wf) == 3
        for sub in mine:
            with pytest.raises(SubscriptionNotFound):
                await provider.get_subscription(sub.id)
        assert (await provider.get_subscription(theirs.id)).workflow_id == other_wf
        assert await provider.terminate_subscriptions(wf) == 0
        assert await provider.terminate_subscriptions(f"unknown-{new_id()}") == 0

    async def test_terminate_subscriptions_of_pointers(self, provider: PersistenceProvider) -> None:
        """terminate_subscriptions(wf, pointer_ids) deletes only those; [] deletes nothing."""
        wf, other_wf = new_id(), new_id()
        p1, p2, p3 = new_id(), new_id(), new_id()
        s1 = await _create(provider, workflow_id=wf, execution_pointer_id=p1)
        s1b = await _create(provider, workflow_id=wf, execution_pointer_id=p1)
        s2 = await _create(provider, workflow_id=wf, execution_pointer_id=p2)
        s3 = await _create(provider, workflow_id=wf, execution_pointer_id=p3)
        foreign = await _create(provider, workflow_id=other_wf, execution_pointer_id=p1)
        assert await provider.terminate_subscriptions(wf, []) == 0
        removed = await provider.terminate_subscriptions(wf, (p for p in (p1, p3, "unknown")))
        assert removed == 3
        for sub in (s1, s1b, s3):
            with pytest.raises(SubscriptionNotFound):
                await provider.get_subscription(sub.id)
        assert (await provider.get_subscription(s2.id)).execution_pointer_id == p2
        assert (await provider.get_subscription(foreign.id)).workflow_id == other_wf

    # --- get_first_open_subscription --------------------------------------------------

    async def test_first_open_skips_held_token(self, provider: PersistenceProvider) -> None:
        """get_first_open_subscription skips subscriptions with a live token."""
        key = f"k-{new_id()}"
        oldest = await _create(provider, event_key=key, subscribe_as_of=BASE_TIME)
        newer = await _create(provider, event_key=key, subscribe_as_of=BASE_TIME + timedelta(1))
        assert await provider.set_subscription_token(oldest.id, "tok", "w", _held())
        got = await provider.get_first_open_subscription("payment.received", key, FAR_FUTURE)
        assert got is not None
        assert got.id == newer.id
        assert await provider.set_subscription_token(newer.id, "tok2", "w", _held())
        assert (
            await provider.get_first_open_subscription("payment.received", key, FAR_FUTURE) is None
        )

    async def test_first_open_includes_expired_token(self, provider: PersistenceProvider) -> None:
        """A subscription whose token has expired counts as open."""
        key = f"k-{new_id()}"
        sub = await _create(
            provider,
            event_key=key,
            external_token="stale",
            external_worker_id="gone",
            external_token_expiry=_expired(),
        )
        got = await provider.get_first_open_subscription("payment.received", key, FAR_FUTURE)
        assert got is not None
        assert got.id == sub.id

    async def test_first_open_honours_as_of(self, provider: PersistenceProvider) -> None:
        """get_first_open_subscription only considers subscribe_as_of <= as_of (inclusive)."""
        key = f"k-{new_id()}"
        sub = await _create(provider, event_key=key, subscribe_as_of=BASE_TIME)
        before = BASE_TIME - timedelta(microseconds=1)
        assert await provider.get_first_open_subscription("payment.received", key, before) is None
        got = await provider.get_first_open_subscription("payment.received", key, BASE_TIME)
        assert got is not None
        assert got.id == sub.id

    async def test_first_open_returns_oldest(self, provider: PersistenceProvider) -> None:
        """get_first_open_subscription returns the oldest open subscription, every field."""
        key = f"k-{new_id()}"
        made = [
            await _create(provider, event_key=key, subscribe_as_of=BASE_TIME + timedelta(seconds=s))
            for s in (2, 0, 1)
        ]
        await _create(provider, event_key=key + "-other", subscribe_as_of=BASE_TIME - timedelta(1))
        await _create(provider, event_name="other", event_key=key, subscribe_as_of=FAR_FUTURE)
        got = await provider.get_first_open_subscription("payment.received", key, FAR_FUTURE)
        assert got is not None
        assert_same(got, made[1], "first open")

    async def test_first_open_none_when_nothing_matches(
        self, provider: PersistenceProvider
    ) -> None:
        """get_first_open_subscription returns None when no subscription matches."""
        await _create(provider, event_key="present")
        assert (
            await provider.get_first_open_subscription("payment.received", "absent", FAR_FUTURE)
            is None
        )
        assert await provider.get_first_open_subscription("absent", "present", FAR_FUTURE) is None

    # --- tokens -----------------------------------------------------------------------

    async def test_set_token_first_claim_wins(self, provider: PersistenceProvider) -> None:
        """The first claim wins; a later one loses and the stored claim stays the first's.

        The token, worker id and expiry all stay the first claimer's.
        """
        sub = await _create(provider)
        expiry = BASE_TIME.replace(year=2999)
        assert await provider.set_subscription_token(sub.id, "tok-a", "worker-a", expiry) is True
        later = expiry + timedelta(days=1)
        assert await provider.set_subscription_token(sub.id, "tok-b", "worker-b", later) is False
        stored = await provider.get_subscription(sub.id)
        assert stored.external_token == "tok-a"
        assert stored.external_worker_id == "worker-a"
        assert stored.external_token_expiry == expiry
        assert_aware_utc(stored.external_token_expiry, "external_token_expiry")

    async def test_set_token_takes_over_expired_claim(self, provider: PersistenceProvider) -> None:
        """A claim whose expiry has passed can be taken over by another token."""
        sub = await _create(provider)
        assert await provider.set_subscription_token(sub.id, "old", "w-old", _expired())
        new_expiry = _held()
        assert await provider.set_subscription_token(sub.id, "new", "w-new", new_expiry)
        stored = await provider.get_subscription(sub.id)
        assert (stored.external_token, stored.external_worker_id) == ("new", "w-new")
        assert stored.external_token_expiry == new_expiry

    async def test_set_token_claim_expires_with_time(self, provider: PersistenceProvider) -> None:
        """A live claim with a short expiry blocks others until it passes, then frees."""
        sub = await _create(provider)
        expiry = utcnow() + timedelta(milliseconds=200)
        assert await provider.set_subscription_token(sub.id, "short", "w1", expiry)
        won = await provider.set_subscription_token(sub.id, "other", "w2", _held())
        # Winning is only right once the expiry has passed (a slow machine may get there).
        assert not won or utcnow() >= expiry, "a live claim was taken over before its expiry"
        with anyio.fail_after(5):
            while not won:
                await anyio.sleep(0.01)
                won = await provider.set_subscription_token(sub.id, "other", "w2", _held())
        assert utcnow() >= expiry
        assert (await provider.get_subscription(sub.id)).external_token == "other"

    async def test_set_token_unknown_raises(self, provider: PersistenceProvider) -> None:
        """set_subscription_token of an unknown id raises SubscriptionNotFound."""
        with pytest.raises(SubscriptionNotFound):
            await provider.set_subscription_token(f"unknown-{new_id()}", "t", "w", _held())

    async def test_set_token_concurrent_claims_exactly_one_wins(
        self, provider: PersistenceProvider
    ) -> None:
        """Of twenty concurrent claims exactly one wins and the stored claim is the winner's."""
        sub = await _create(provider)
        expiries = [_held() + timedelta(seconds=n) for n in range(20)]
        results = await asyncio.gather(
            *(
                provider.set_subscription_token(sub.id, f"tok-{n}", f"worker-{n}", expiries[n])
                for n in range(20)
            )
        )
        assert results.count(True) == 1, results
        winner = results.index(True)
        stored = await provider.get_subscription(sub.id)
        assert stored.external_token == f"tok-{winner}"
        assert stored.external_worker_id == f"worker-{winner}"
        assert stored.external_token_expiry == expiries[winner]

    async def test_clear_token_frees_claim(self, provider: PersistenceProvider) -> None:
        """Clearing with the held token frees the subscription for another worker."""
        sub = await _create(provider)
        assert await provider.set_subscription_token(sub.id, "tok-a", "worker-a", _held())
        await provider.clear_subscription_token(sub.id, "tok-a")
        stored = await provider.get_subscription(sub.id)
        assert stored.external_token is None
        assert stored.external_worker_id is None
        assert stored.external_token_expiry is None
        first = await provider.get_first_open_subscription(
            sub.event_name, sub.event_key, FAR_FUTURE
        )
        assert first is not None
        assert first.id == sub.id
        assert await provider.set_subscription_token(sub.id, "tok-b", "worker-b", _held())
        assert (await provider.get_subscription(sub.id)).external_token == "tok-b"

    async def test_clear_wrong_token_raises_and_keeps_claim(
        self, provider: PersistenceProvider
    ) -> None:
        """Clearing with another token raises TokenMismatch and leaves the claim as it was."""
        sub = await _create(provider)
        expiry = _held()
        assert await provider.set_subscription_token(sub.id, "tok-a", "worker-a", expiry)
        with pytest.raises(TokenMismatch):
            await provider.clear_subscription_token(sub.id, "tok-b")
        stored = await provider.get_subscription(sub.id)
        assert (stored.external_token, stored.external_worker_id) == ("tok-a", "worker-a")
        assert stored.external_token_expiry == expiry
        assert not await provider.set_subscription_token(sub.id, "tok-c", "worker-c", _held())

    async def test_clear_when_no_token_held_raises(self, provider: PersistenceProvider) -> None:
        """Clearing a subscription that holds no token raises TokenMismatch."""
        sub = await _create(provider)
        with pytest.raises(TokenMismatch):
            await provider.clear_subscription_token(sub.id, "tok")
        assert (await provider.get_subscription(sub.id)).external_token is None

    async def test_clear_token_unknown_raises(self, provider: PersistenceProvider) -> None:
        """clear_subscription_token of an unknown id raises SubscriptionNotFound."""
        with pytest.raises(SubscriptionNotFound):
            await provider.clear_subscription_token(f"unknown-{new_id()}", "tok")

    # --- naive datetimes --------------------------------------------------------------

    async def test_subscription_naive_datetimes_refused(
        self, provider: PersistenceProvider
    ) -> None:
        """Naive datetimes raise ValueError in every subscription method that takes a time."""
        naive = datetime(2024, 1, 1, 12, 0)
        bad = make_subscription(id=new_id(), subscribe_as_of=naive)
        await assert_refused_as_naive(provider.create_subscription(bad), "create_subscription")
        with pytest.raises(SubscriptionNotFound):
            await provider.get_subscription(bad.id)
        sub = await _create(provider)
        await assert_refused_as_naive(
            provider.get_subscriptions(sub.event_name, sub.event_key, naive), "get_subscriptions"
        )
        await assert_refused_as_naive(
            provider.get_first_open_subscription(sub.event_name, sub.event_key, naive),
            "get_first_open_subscription",
        )
        await assert_refused_as_naive(
            provider.set_subscription_token(sub.id, "tok", "w", naive), "set_subscription_token"
        )
        assert (await provider.get_subscription(sub.id)).external_token is None
