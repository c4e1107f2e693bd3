"""wfe-redis runs the shared lock and queue suites exactly as a third party would."""

from collections.abc import AsyncIterator

import pytest
from wfe_conformance import LockProviderTests, QueueProviderTests

from wfe_redis import RedisLockProvider, RedisQueueProvider


class TestRedisLockConformance(LockProviderTests):
    @pytest.fixture
    async def lock_provider(self, url: str, prefix: str) -> AsyncIterator[RedisLockProvider]:
        lock = RedisLockProvider(url, prefix=prefix)
        await lock.start()
        yield lock
        await lock.stop()

    @pytest.fixture
    async def second_lock_provider(self, url: str, prefix: str) -> AsyncIterator[RedisLockProvider]:
        lock = RedisLockProvider(url, prefix=prefix)
        await lock.start()
        yield lock
        await lock.stop()


class TestRedisQueueConformance(QueueProviderTests):
    @pytest.fixture
    async def queue_provider(self, url: str, prefix: str) -> AsyncIterator[RedisQueueProvider]:
        queue = RedisQueueProvider(url, prefix=prefix)
        await queue.start()
        yield queue
        await queue.stop()
