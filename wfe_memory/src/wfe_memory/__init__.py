"""wfe in-memory persistence provider: the reference implementation (not durable)."""

from __future__ import annotations

from wfe_memory.provider import MemoryPersistenceProvider
from wfe_memory.url import provider_from_url

__all__ = ["MemoryPersistenceProvider", "provider_from_url"]
