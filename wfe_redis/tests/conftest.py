"""Fixtures for the wfe-redis tests: the Redis URL and a fresh key prefix per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
import redis
from wfe_conformance.services import redis_url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def url() -> str:
    """The test Redis (WFE_TEST_REDIS_URL, testcontainers, or skip / fail in CI)."""
    return redis_url()


@pytest.fixture
def prefix(url: str) -> Iterator[str]:
    """A key prefix no other test uses, so tests are safe under ``pytest -n auto``;
    its keys are deleted afterwards."""
    value = f"wfe-test:{uuid.uuid4().hex[:12]}:"
    yield value
    with (
        contextlib.suppress(redis.RedisError, OSError),
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client,
    ):
        keys = list(client.scan_iter(match=value + "*", count=500))
        if keys:
            client.delete(*keys)
