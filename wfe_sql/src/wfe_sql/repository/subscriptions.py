"""Event subscriptions and their claim tokens (an atomic compare-and-set per token).

Internal to :mod:`wfe_sql` (a mixin of :class:`~wfe_sql.SqlPersistenceProvider`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from wfe_core.errors import SubscriptionNotFound, TokenMismatch
from wfe_core.models import EventSubscription
from wfe_core.persistence import check_key as _check_key
from wfe_core.persistence import id_list as _id_list
from wfe_core.persistence import storable_key as _storable_key

from wfe_sql.driver import IntegrityViolation, Op
from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.repository.codec import _chunks
from wfe_sql.statements import in_args
from wfe_sql.times import to_micros

__all__ = ["SqlSubscriptionRepository"]


class SqlSubscriptionRepository(SqlRepositoryBase):
    """The :class:`~wfe_core.persistence.SubscriptionRepository` part of the SQL provider."""

    async def create_subscription(self, subscription: EventSubscription) -> str:
        """Insert a subscription; return its id (assigned when empty, written back)."""
        s = await self._ready()
        (values,) = self._subscription_values([subscription], "subscription")
        try:
            await self.driver.execute(s.insert_subscription.sql, s.insert_subscription.args(values))
        except IntegrityViolation as exc:
            raise ValueError(
                f"subscription: a subscription with id {values['p_id']!r} already exists"
            ) from exc
        subscription.id = values["p_id"]
        return subscription.id

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        """Return a copy of a live subscription, or raise ``SubscriptionNotFound``."""
        s = await self._ready()
        row = await self.driver.fetchone(s.select_subscription.sql, (subscription_id,))
        if row is None:
            raise SubscriptionNotFound(subscription_id)
        return self._load_subscription(row)

    async def get_subscriptions(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> list[EventSubscription]:
        """Live subscriptions on this name and key as of ``as_of``, oldest first."""
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        if not (_storable_key(event_name) and _storable_key(event_key)):
            return []
        rows = await self.driver.fetchall(s.topic_subscriptions.sql, (event_name, event_key, at))
        return [self._load_subscription(r) for r in rows]

    async def get_first_open_subscription(
        self, event_name: str, event_key: str, as_of: datetime
    ) -> EventSubscription | None:
        """The oldest matching subscription without a live token, or None."""
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        if not (_storable_key(event_name) and _storable_key(event_key)):
            return None
        stmt = s.first_open_subscription
        row = await self.driver.fetchone(
            stmt.sql,
            stmt.args(
                {
                    "p_event_name": event_name,
                    "p_event_key": event_key,
                    "p_as_of": at,
                    "p_now": self._now(),
                }
            ),
        )
        return None if row is None else self._load_subscription(row)

    async def terminate_subscription(self, subscription_id: str) -> None:
        """Delete a subscription, or raise ``SubscriptionNotFound``."""
        s = await self._ready()
        if await self.driver.execute(s.delete_subscription.sql, (subscription_id,)) == 0:
            raise SubscriptionNotFound(subscription_id)

    async def terminate_subscriptions(
        self, workflow_id: str, pointer_ids: Iterable[str] | None = None
    ) -> int:
        """Delete a workflow's subscriptions (or those of some pointers); return the count."""
        wanted = (
            None
            if pointer_ids is None
            else list(dict.fromkeys(_id_list(pointer_ids, "pointer_ids")))
        )
        s = await self._ready()
        if wanted is None:
            return await self.driver.execute(s.delete_workflow_subscriptions.sql, (workflow_id,))
        if not wanted:
            return 0
        ops = []
        for chunk in _chunks(wanted):
            stmt = s.delete_pointer_subscriptions(len(chunk))
            ops.append(Op(stmt.sql, stmt.args({"p_workflow_id": workflow_id, **in_args(chunk)})))
        return sum(await self.driver.write_batch(ops))

    async def set_subscription_token(
        self, subscription_id: str, token: str, worker_id: str, expiry: datetime
    ) -> bool:
        """Claim the subscription if no live token is held; return whether we won."""
        if expiry is None:
            raise TypeError("expiry must be a datetime, not None")
        until = to_micros(expiry, "expiry")
        _check_key(token, "token")
        _check_key(worker_id, "worker_id")
        s = await self._ready()
        stmt = s.set_token
        won = await self.driver.execute(
            stmt.sql,
            stmt.args(
                {
                    "p_token": token,
                    "p_worker": worker_id,
                    "p_expiry": until,
                    "p_key_id": subscription_id,
                    "p_now": self._now(),
                }
            ),
        )
        if won:
            return True
        if await self.driver.fetchone(s.subscription_exists.sql, (subscription_id,)) is None:
            raise SubscriptionNotFound(subscription_id)
        return False

    async def clear_subscription_token(self, subscription_id: str, token: str) -> None:
        """Release the claim held with ``token``; ``TokenMismatch`` for any other token."""
        s = await self._ready()
        stmt = s.clear_token
        if await self.driver.execute(
            stmt.sql, stmt.args({"p_key_id": subscription_id, "p_token": token})
        ):
            return
        if await self.driver.fetchone(s.subscription_exists.sql, (subscription_id,)) is None:
            raise SubscriptionNotFound(subscription_id)
        raise TokenMismatch(subscription_id)
