"""The Redis queue provider: a reliable queue with redelivery of abandoned items.

Keys of one queue (``<q>`` is ``workflow``, ``event`` or ``index``)::

    <prefix>queue:<q>:waiting    LIST  ids waiting, oldest first
    <prefix>queue:<q>:ids        SET   the same ids, so one is never waiting twice
    <prefix>queue:<q>:inflight   ZSET  ids taken and not finished -> deadline (ms)
    <prefix>queue:<q>:owner      HASH  ids taken -> the consumer that took them

(in a namespace ``ns`` other than the default, ``<prefix>`` is followed by ``ns:<ns>:``,
e.g. ``wfe:ns:staging:queue:workflow:waiting``, and so are the wake-up channels
``<prefix>db<N>:queue:<q>``: consumers in different namespaces never see each other's
items.)

Every change runs in one Lua script, so it is atomic on the server: queuing adds to
the SET and, only if the id was not there, to the LIST; taking pops the oldest id,
removes it from the SET and records it in flight with a deadline of
``visibility_timeout`` from now (server time) and its consumer.

An item in flight is *held* by the consumer (the provider instance) that took it until
it is *acknowledged*. While the consumer lives, a background task pushes the deadline
of everything it holds forward every third of the visibility timeout, so a long pass
is never handed to someone else. When the consumer dies (its process is killed, or it
is cut off from Redis for longer than the timeout), its deadlines pass and the next
``dequeue_work`` of any consumer moves those items back to the head of their queue
(unless the id is already waiting again): an item taken by a consumer that died before
finishing is delivered again.

Acknowledgement:

* ``await queue.ack(id, queue_type)`` when the work on a taken item is finished
  (successfully or not: the store keeps the truth). A consumer that acknowledges
  explicitly (``explicit_ack=True``, or from its first ``ack`` call on when the option
  is left at None) holds each item until it acks it; on :meth:`stop` the items it
  still holds are given back to their queue at once.
* A consumer that never calls ``ack`` is covered too: each ``dequeue_work`` on a queue
  acknowledges everything the same provider took from that queue before, and
  :meth:`stop` acknowledges what it still holds. Redelivery then protects the window
  between taking an item and asking for the next one.

Blocking: ``dequeue_work`` waits for work up to its timeout. Queuing publishes a
wake-up on the queue's pub/sub channel; waiting consumers (their provider started)
try again at once, and at least every second regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from redis.commands.core import AsyncScript
from wfe_core.models import QueueType

from wfe_redis._connection import RedisComponent, cancel_and_wait, raise_if_cancel_requested
from wfe_redis._pubsub import ChannelListener

__all__ = ["RedisQueueProvider"]

log = logging.getLogger("wfe.redis")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: waiting, ids   ARGV: id, channel
_PUSH = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[2], '1')
  return 1
end
return 0
"""

# KEYS: waiting, ids, inflight, owner
# ARGV: consumer, visibility ms, reap limit, ids to acknowledge...
# Returns {taken id or '', number of expired items returned to the queue}.
_TAKE = (
    _NOW
    + """
for i = 4, #ARGV do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[1] then
    redis.call('ZREM', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for i = #expired, 1, -1 do
  local id = expired[i]
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  if redis.call('SADD', KEYS[2], id) == 1 then
    redis.call('LPUSH', KEYS[1], id)
  end
end
local id = redis.call('LPOP', KEYS[1])
if not id then
  return {'', #expired}
end
redis.call('SREM', KEYS[2], id)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[4], id, ARGV[1])
return {id, #expired}
"""
)

# KEYS: inflight, owner   ARGV: consumer, visibility ms, ids...
# Returns the ids this consumer no longer holds.
_EXTEND = (
    _NOW
    + """
local lost = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""
)

# KEYS: inflight, owner   ARGV: consumer, ids...
_ACK = """
local n = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""

# KEYS: waiting, ids, inflight, owner   ARGV: consumer, channel, ids (oldest first)...
_GIVE_BACK = """
local n = 0
for i = #ARGV, 3, -1 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[4], id) == ARGV[1] then
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    if redis.call('SADD', KEYS[2], id) == 1 then
      redis.call('LPUSH', KEYS[1], id)
      n = n + 1
    end
  end
end
if n > 0 then
  redis.call('PUBLISH', ARGV[2], '1')
end
return n
"""

_REAP_LIMIT = 100
_POLL_LISTENING = 1.0  # safety re-check while wake-ups arrive through pub/sub
_POLL_DEAF = 0.05  # re-check interval while not subscribed (not started, or reconnecting)


class RedisQueueProvider(RedisComponent):
    """A :class:`~wfe_core.queues.QueueProvider` on Redis with redelivery.

    Options (keywords or URL query): ``prefix`` (default ``"wfe:"``), ``namespace``
    (keyword, ``?namespace=``, ``WFE_NAMESPACE``, default ``"default"``),
    ``visibility_timeout`` (seconds, default 30: how long an item taken by a consumer
    that stopped answering stays away before it is delivered again),
    ``connect_timeout``, ``socket_timeout``; keyword only: ``explicit_ack`` (None:
    explicit from the first :meth:`ack` call on; see the module docstring). Each
    instance is one consumer: give every host its own. Every call raises
    :class:`~wfe_core.errors.ProviderUnavailable` when Redis cannot be used.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        explicit_ack: bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        self.consumer_id: str = uuid.uuid4().hex
        self.explicit_ack: bool | None = explicit_ack
        self._visibility_ms = max(1, round(self.settings.visibility_timeout * 1000))
        self._held: dict[QueueType, dict[str, None]] = {q: {} for q in QueueType}
        self._signals: dict[QueueType, asyncio.Event] = {q: asyncio.Event() for q in QueueType}
        self._by_channel = {self.settings.channel(f"queue:{q.value}"): q for q in QueueType}
        self._channels = {q: c for c, q in self._by_channel.items()}
        self._listener = ChannelListener(
            self,
            list(self._by_channel),
            self._on_message,
            self._on_listener_state,
            name="wfe-redis-queue-listener",
        )
        self._keeper: asyncio.Task[None] | None = None
        self._stopped = False
        self._push: AsyncScript = self._client.register_script(_PUSH)
        self._take_script: AsyncScript = self._client.register_script(_TAKE)
        self._extend: AsyncScript = self._client.register_script(_EXTEND)
        self._ack: AsyncScript = self._client.register_script(_ACK)
        self._give_back: AsyncScript = self._client.register_script(_GIVE_BACK)

    # ------------------------------------------------------------------ keys
    def _keys(self, queue: QueueType, *names: str) -> list[str]:
        return [self.key("queue", queue.value, name) for name in names]

    @staticmethod
    def _queue(queue: QueueType) -> QueueType:
        try:
            return QueueType(queue)
        except ValueError:
            raise ValueError(f"unknown queue {queue!r}; expected a QueueType") from None

    # ------------------------------------------------------------------ protocol
    @property
    def is_dequeue_blocking(self) -> bool:
        """True: ``dequeue_work`` waits for work up to its timeout."""
        return True

    async def queue_work(self, id: str, queue: QueueType) -> None:
        """Append ``id`` to ``queue`` unless it is already waiting there."""
        q = self._queue(queue)
        if not isinstance(id, str) or not id:
            raise ValueError(f"a queued id must be a non-empty string, not {id!r}")
        with self._translate():
            await self._push(keys=self._keys(q, "waiting", "ids"), args=[id, self._channels[q]])

    async def dequeue_work(self, queue: QueueType, timeout: float) -> str | None:
        """Take the oldest id from ``queue``, waiting up to ``timeout`` seconds for one
        (not at all once stopped); None if none came."""
        q = self._queue(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        task = asyncio.current_task()
        baseline = task.cancelling() if task is not None else 0
        while True:
            signal = self._signals[q]  # taken before looking, so no wake-up is missed
            item = await self._take(q)
            if item is not None:
                return item
            raise_if_cancel_requested(baseline)
            left = deadline - loop.time()
            if left <= 0 or self._stopped:
                return None
            pause = _POLL_LISTENING if self._listener.connected else _POLL_DEAF
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, pause)):
                    await signal.wait()

    async def ack(self, id: str, queue: QueueType) -> None:
        """Acknowledge that the work on ``id`` (taken from ``queue`` by this provider)
        is finished, so it is not delivered again; a no-op for an id this provider
        does not hold. The first call makes an ``explicit_ack=None`` provider hold
        items until they are acknowledged."""
        q = self._queue(queue)
        if self.explicit_ack is None:
            self.explicit_ack = True
        held = self._held[q]
        if id not in held:
            return
        del held[id]
        try:
            with self._translate():
                keys = self._keys(q, "inflight", "owner")
                await self._ack(keys=keys, args=[self.consumer_id, id])
        except BaseException:
            held[id] = None  # still ours: keep it alive, try again later
            raise

    async def start(self) -> None:
        """Subscribe to wake-ups and start keeping held items alive (ProviderUnavailable
        when Redis cannot be reached); idempotent."""
        self._stopped = False
        await self._listener.start()
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="wfe-redis-queue-keeper")

    async def stop(self) -> None:
        """Wake every waiting consumer (they return None), give back (explicit acks) or
        acknowledge what this consumer still holds, and close the connections;
        idempotent."""
        self._stopped = True
        for q in QueueType:
            self._wake(q)
        keeper, self._keeper = self._keeper, None
        await cancel_and_wait(keeper)
        await self._listener.stop()
        try:
            await self._release_held()
        except Exception as exc:
            log.warning("could not release held Redis queue items on stop: %s", exc)
        await self._close_client()

    # ------------------------------------------------------------------ inspection
    async def qsize(self, queue: QueueType) -> int:
        """How many ids are waiting in ``queue``."""
        q = self._queue(queue)
        with self._translate():
            return int(await self._client.llen(self._keys(q, "waiting")[0]))

    async def in_flight(self, queue: QueueType) -> int:
        """How many ids taken from ``queue`` (by any consumer) are not acknowledged."""
        q = self._queue(queue)
        with self._translate():
            return int(await self._client.zcard(self._keys(q, "inflight")[0]))

    def held(self, queue: QueueType) -> list[str]:
        """The ids this provider took from ``queue`` and has not acknowledged."""
        return list(self._held[self._queue(queue)])

    # ------------------------------------------------------------------ internals
    async def _take(self, q: QueueType) -> str | None:
        held = self._held[q]
        acks = [] if self.explicit_ack else list(held)
        for id in acks:
            held.pop(id, None)
        try:
            with self._translate():
                item, reaped = await self._take_script(
                    keys=self._keys(q, "waiting", "ids", "inflight", "owner"),
                    args=[self.consumer_id, self._visibility_ms, _REAP_LIMIT, *acks],
                )
        except BaseException:
            for id in acks:  # not acknowledged after all: still ours
                held[id] = None
            raise
        if reaped:
            log.info(
                "%s queue: %d item(s) abandoned by a consumer returned for redelivery",
                q.value,
                reaped,
            )
        if not item:
            return None
        held[str(item)] = None
        return str(item)

    async def _release_held(self) -> None:
        for q in QueueType:
            held = list(self._held[q])
            if not held:
                continue
            with self._translate():
                if self.explicit_ack:
                    await self._give_back(
                        keys=self._keys(q, "waiting", "ids", "inflight", "owner"),
                        args=[self.consumer_id, self._channels[q], *held],
                    )
                else:
                    await self._ack(
                        keys=self._keys(q, "inflight", "owner"), args=[self.consumer_id, *held]
                    )
            for id in held:
                self._held[q].pop(id, None)

    async def _keep(self) -> None:
        """Push the deadlines of held items forward while this consumer lives."""
        interval = self.settings.visibility_timeout / 3
        failing = False
        while True:
            await asyncio.sleep(interval)
            for q in QueueType:
                held = self._held[q]
                if not held:
                    continue
                try:
                    with self._translate():
                        lost = await self._extend(
                            keys=self._keys(q, "inflight", "owner"),
                            args=[self.consumer_id, self._visibility_ms, *held],
                        )
                except Exception as exc:
                    if not failing:
                        log.warning("could not extend held Redis queue items: %s", exc)
                    failing = True
                    continue
                failing = False
                for id in lost:
                    held.pop(str(id), None)

    def _wake(self, q: QueueType) -> None:
        signal = self._signals[q]
        self._signals[q] = asyncio.Event()
        signal.set()

    def _on_message(self, channel: str, data: str) -> None:
        q = self._by_channel.get(channel)
        if q is not None:
            self._wake(q)

    def _on_listener_state(self, connected: bool) -> None:
        for q in QueueType:  # re-check at once: a wake-up may have been missed
            self._wake(q)

    async def _kill(self) -> None:
        """Tests only: stop every background task and drop the connections without
        acknowledging or giving back anything, as a crashed process would."""
        self._stopped = True
        keeper, self._keeper = self._keeper, None
        await cancel_and_wait(keeper)
        await self._listener.stop()
        for held in self._held.values():
            held.clear()
        await self._close_client()
