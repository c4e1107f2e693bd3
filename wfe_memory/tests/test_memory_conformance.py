"""wfe-memory runs the shared conformance suite exactly as a third party would."""

from collections.abc import AsyncIterator

import pytest
from wfe_conformance import ProviderConformance

from wfe_memory import MemoryPersistenceProvider


class TestMemoryConformance(ProviderConformance):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryPersistenceProvider]:
        async with MemoryPersistenceProvider() as p:
            yield p
