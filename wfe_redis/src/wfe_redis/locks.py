"""The Redis distributed lock provider: leases as keys with an expiry.

A lock on ``resource`` is the key ``<prefix>lock:<resource>`` holding the owner token
of the provider instance that took it, with a millisecond expiry equal to the lease
(``<prefix>ns:<ns>:lock:<resource>`` in a namespace ``ns`` other than the default, so
the same resource may be locked once in each namespace; a resource named ``ns:...`` in
the default namespace is still under ``lock:`` and cannot meet another namespace's key).
``acquire_lock`` is ``SET key token NX PX ttl``; ``renew_lock`` and ``release_lock``
are Lua scripts that compare the stored token with this owner's on the server and only
then extend or delete, so an owner can never renew or free a lock another owner took
after its own lease ran out.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from wfe_redis._connection import RedisComponent

__all__ = ["RedisLockProvider"]

log = logging.getLogger("wfe.redis")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    released = released + redis.call('DEL', key)
  end
end
return released
"""


def _ttl_ms(ttl: float) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {ttl!r}")
    if not ttl > 0 or math.isinf(ttl):
        raise ValueError(f"ttl must be a positive, finite number of seconds, not {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


class RedisLockProvider(RedisComponent):
    """A :class:`~wfe_core.locks.DistributedLockProvider` on Redis.

    Each instance is one owner (``owner_id``); give every host its own instance.
    Options (keywords or URL query): ``prefix`` (default ``"wfe:"``), ``namespace``
    (keyword, ``?namespace=``, ``WFE_NAMESPACE``, default ``"default"``),
    ``connect_timeout`` and ``socket_timeout`` in seconds. Every call raises
    :class:`~wfe_core.errors.ProviderUnavailable` when Redis cannot be used.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> None:
        super().__init__(url, **options)
        self.owner_id: str = uuid.uuid4().hex
        self._held: set[str] = set()
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    def _lock_key(self, resource: str) -> str:
        if not isinstance(resource, str) or not resource:
            raise ValueError(f"a lock resource must be a non-empty string, not {resource!r}")
        return self.key("lock", resource)

    async def acquire_lock(self, resource: str, ttl: float) -> bool:
        """Take the lease on ``resource`` for ``ttl`` seconds if nobody (this owner
        included) holds it; never waits for it."""
        key, ms = self._lock_key(resource), _ttl_ms(ttl)
        with self._translate():
            taken = await self._client.set(key, self.owner_id, nx=True, px=ms)
        if taken:
            self._held.add(resource)
        return bool(taken)

    async def renew_lock(self, resource: str, ttl: float) -> bool:
        """Extend this owner's lease to ``ttl`` seconds from now; False when this owner
        no longer holds it."""
        key, ms = self._lock_key(resource), _ttl_ms(ttl)
        with self._translate():
            renewed = await self._renew(keys=[key], args=[self.owner_id, ms])
        if not renewed:
            self._held.discard(resource)
        return bool(renewed)

    async def release_lock(self, resource: str) -> None:
        """Give up this owner's lease on ``resource``; a no-op when it does not hold it."""
        key = self._lock_key(resource)
        with self._translate():
            await self._release(keys=[key], args=[self.owner_id])
        self._held.discard(resource)

    async def start(self) -> None:
        """Check that Redis answers (ProviderUnavailable otherwise); idempotent."""
        with self._translate():
            await self._client.ping()

    async def stop(self) -> None:
        """Release every lease this owner still holds and close the connections;
        idempotent. When Redis is down the leases are left to expire."""
        held = sorted(self._held)
        self._held.clear()
        if held:
            try:
                with self._translate():
                    keys = [self.key("lock", r) for r in held]
                    await self._release(keys=keys, args=[self.owner_id])
            except Exception as exc:
                log.warning("could not release %d Redis lock(s) on stop: %s", len(held), exc)
        await self._close_client()
