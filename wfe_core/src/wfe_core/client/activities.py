"""Activities: work done outside the workflow by workers that claim it with a token
and submit its result (``get_pending_activity``, ``submit_activity_success`` ...)."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from typing import Any

from wfe_core.client.control import ControllingClient
from wfe_core.crashpoints import crash_point
from wfe_core.errors import SubscriptionNotFound, TokenMismatch
from wfe_core.models import EventSubscription, utcnow
from wfe_core.options import PendingActivity
from wfe_core.primitives import ACTIVITY_EVENT, ActivityResult
from wfe_core.retry import backoff_delay

__all__ = ["ActivityClient"]


class ActivityClient(ControllingClient):
    """:class:`~wfe_core.client.control.ControllingClient` plus the activity calls."""

    # ------------------------------------------------------------------ activities
    async def get_pending_activity(
        self, activity_name: str, worker_id: str, timeout: float = 0.0
    ) -> PendingActivity | None:
        """Claim the oldest open activity ``activity_name`` for ``worker_id``, waiting up
        to ``timeout`` seconds for one; None if none came."""
        deadline = time.monotonic() + timeout
        while True:
            now = utcnow()
            sub = await self.persistence.get_first_open_subscription(
                ACTIVITY_EVENT, activity_name, now
            )
            if sub is not None:
                token = f"{sub.id}~{secrets.token_hex(16)}"
                expiry = now + timedelta(seconds=self.options.activity_token_ttl)
                if await self.persistence.set_subscription_token(sub.id, token, worker_id, expiry):
                    return PendingActivity(token, activity_name, sub.subscription_data, expiry)
                continue
            if time.monotonic() >= deadline:
                return None
            poll = backoff_delay(1, 0.05, jitter=0.2)  # polls of many workers spread out
            await asyncio.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    async def _claimed(self, token: str) -> EventSubscription:
        if not isinstance(token, str) or "~" not in token:
            raise TokenMismatch(str(token))
        sub_id = token.split("~", 1)[0]
        try:
            sub = await self.persistence.get_subscription(sub_id)
        except SubscriptionNotFound:
            raise TokenMismatch(sub_id) from None
        if sub.external_token != token:
            raise TokenMismatch(sub_id)
        return sub

    async def submit_activity_success(self, token: str, result: Any = None) -> None:
        """Complete a claimed activity with ``result``; TokenMismatch when the claim is
        no longer held with this token."""
        await self._submit(token, True, result)

    async def submit_activity_failure(self, token: str, error: Any = None) -> None:
        """Fail a claimed activity: the activity step raises ActivityFailed(error)."""
        await self._submit(token, False, error)

    async def _submit(self, token: str, success: bool, data: Any) -> None:
        self.serializer.to_primitive(data, "activity_result")
        sub = await self._claimed(token)
        await self._publish(ACTIVITY_EVENT, sub.event_key, ActivityResult(sub.id, success, data))
        crash_point("activity.after_submit")

    async def release_activity_token(self, token: str) -> None:
        """Give a claimed activity back so another worker can take it."""
        sub = await self._claimed(token)
        await self.persistence.clear_subscription_token(sub.id, token)
