"""Fixtures shared by the wfe-postgres tests: the server URL, a fresh schema per test,
and a persistence provider on it with a small pool."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from wfe_conformance.services import postgres_url
from wfe_postgres.testing import temporary_schema

from wfe_postgres import PostgresPersistenceProvider

SMALL_POOL = {"min_size": 1, "max_size": 4}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def url() -> str:
    return postgres_url()


@pytest.fixture
async def schema(url: str) -> AsyncIterator[str]:
    async with temporary_schema(url) as name:
        yield name


@pytest.fixture
async def store(url: str, schema: str) -> AsyncIterator[PostgresPersistenceProvider]:
    async with PostgresPersistenceProvider(url, schema=schema, **SMALL_POOL) as p:
        yield p
