"""wfe-memory runs the shared conformance suite exactly as a third party would."""

from collections.abc import AsyncIterator

import pytest
from wfe_conformance import NamespaceOpener, ProviderConformance
from wfe_core.locks import InProcessLockProvider, shared_lock_table
from wfe_core.queues import InProcessQueueProvider
from wfe_core.registry import StoreComponents

from wfe_memory import MemoryPersistenceProvider


class TestMemoryConformance(ProviderConformance):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with MemoryPersistenceProvider() as p:
            yield p

    @pytest.fixture
    def namespace_opener(self, provider: MemoryPersistenceProvider) -> NamespaceOpener:
        """The provider's sibling in another namespace (the same in-process database),
        with the lock and queue a host on that sibling uses: in-process locks in the
        sibling's own lock table, and an in-process queue."""

        async def open_namespace(namespace: str) -> StoreComponents:
            sibling = provider.in_namespace(namespace)
            return StoreComponents(
                persistence=sibling,
                lock_provider=InProcessLockProvider(shared_lock_table(sibling)),
                queue_provider=InProcessQueueProvider(),
            )

        return open_namespace
