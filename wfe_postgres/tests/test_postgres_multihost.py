"""Four worker processes on one PostgreSQL store run 1,000 workflows that each wait
for a published event — once with PostgreSQL locks and queues, once with Redis ones —
and survive a worker killed with SIGKILL mid-step (the shared MultiHostTests)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from wfe_conformance.multihost import MultiHostTests
from wfe_conformance.services import postgres_url, redis_url
from wfe_postgres.testing import drop_schema, new_schema_name


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@pytest.fixture
def schema_url() -> Iterator[str]:
    """The test database with a schema of this test's own (dropped afterwards)."""
    url = postgres_url()
    schema = new_schema_name("wfe_mh_")
    try:
        yield _with_schema(url, schema)
    finally:
        asyncio.run(drop_schema(url, schema))


@pytest.mark.slow
class TestPostgresMultiHost(MultiHostTests):
    workers = 4
    workflows = 1000

    @pytest.fixture
    def store_url(self, schema_url: str) -> str:
        return schema_url


@pytest.mark.slow
class TestPostgresRedisMultiHost(MultiHostTests):
    workers = 4
    workflows = 1000

    @pytest.fixture
    def store_url(self, schema_url: str) -> str:
        return schema_url

    @pytest.fixture
    def lock_url(self) -> str:
        return _with_prefix(redis_url())

    @pytest.fixture
    def queue_url(self, lock_url: str) -> str:
        return lock_url


def _with_prefix(url: str) -> str:
    prefix = f"wfe-mh-{uuid.uuid4().hex[:10]}:"
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"
