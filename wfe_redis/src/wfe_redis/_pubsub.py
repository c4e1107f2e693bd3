"""A resilient pub/sub listener: one connection, a background task, reconnects.

:meth:`ChannelListener.start` subscribes before it returns (so a message published
after it is seen) and raises :class:`~wfe_core.errors.ProviderUnavailable` when Redis
cannot be reached. The background task then reads messages and hands them to the
callback; when the connection breaks it logs once, retries with a capped back-off,
re-subscribes, and tells the owner through ``on_state`` so it can re-check whatever
it might have missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub
from wfe_core.retry import Backoff

from wfe_redis._connection import RedisComponent, cancel_and_wait

__all__ = ["ChannelListener"]

log = logging.getLogger("wfe.redis")

MessageCallback = Callable[[str, str], Awaitable[None] | None]
"""Called with (channel, data) for every message."""

_READ_TIMEOUT = 1.0
_MAX_BACKOFF = 2.0


class ChannelListener:
    """Listens on ``channels`` of ``component``'s Redis and calls ``on_message``."""

    def __init__(
        self,
        component: RedisComponent,
        channels: list[str],
        on_message: MessageCallback,
        on_state: Callable[[bool], None] | None = None,
        name: str = "wfe-redis-listener",
    ) -> None:
        self._component = component
        self._channels = channels
        self._on_message = on_message
        self._on_state = on_state
        self._name = name
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        """True while subscribed on a live connection."""

    @property
    def running(self) -> bool:
        """True between start and stop."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Subscribe now and start the background reader; idempotent."""
        if self.running:
            return
        await self._subscribe()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop the reader and close the connection; idempotent."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._close()

    async def _subscribe(self) -> None:
        await self._close()
        pubsub = self._component._client.pubsub(ignore_subscribe_messages=True)
        try:
            with self._component._translate():
                await pubsub.subscribe(*self._channels)
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self._pubsub = pubsub
        self._set_state(True)

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self.connected = False
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _set_state(self, connected: bool) -> None:
        self.connected = connected
        if self._on_state is not None:
            try:
                self._on_state(connected)
            except Exception:
                log.exception("pub/sub state callback failed")

    async def _run(self) -> None:
        wait = Backoff(0.05, maximum=_MAX_BACKOFF, jitter=0.2)
        failing = False
        while True:
            try:
                if self._pubsub is None:
                    await self._subscribe()
                    if failing:
                        log.info("Redis at %s is back; listening again", self._component.url)
                    failing = False
                    wait.reset()
                assert self._pubsub is not None
                message: dict[str, Any] | None = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_READ_TIMEOUT
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning(
                        "lost the Redis pub/sub connection to %s (%s); reconnecting",
                        self._component.url,
                        exc,
                    )
                was_connected = self.connected
                failing = True
                await self._close()
                if was_connected:
                    self._set_state(False)
                await asyncio.sleep(next(wait))
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                result = self._on_message(str(message["channel"]), str(message["data"]))
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a Redis pub/sub message failed")
