"""Every host scenario with memory persistence plus Redis locks and queues.

Each host gets its own lock and queue provider instances (as separate processes
would); all hosts of one test share one key prefix, tests never share one.
"""

from collections.abc import AsyncIterator

import pytest
from wfe_conformance import HostScenarioTests
from wfe_conformance.scenario_support import HostBuilder

from wfe_core import HostOptions, WorkflowHost
from wfe_memory import MemoryPersistenceProvider
from wfe_redis import RedisLockProvider, RedisQueueProvider


class TestRedisHostScenarios(HostScenarioTests):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with MemoryPersistenceProvider() as p:
            yield p

    @pytest.fixture
    def host_builder(
        self, provider: MemoryPersistenceProvider, url: str, prefix: str
    ) -> HostBuilder:
        def build(options: HostOptions) -> WorkflowHost:
            return WorkflowHost(
                provider,
                lock_provider=RedisLockProvider(url, prefix=prefix),
                queue_provider=RedisQueueProvider(url, prefix=prefix),
                options=options,
            )

        return build
