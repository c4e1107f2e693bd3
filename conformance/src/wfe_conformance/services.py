"""How tests reach the services they need: PostgreSQL and Redis.

Call :func:`postgres_url` or :func:`redis_url` from a fixture or a test. The URL comes
from, in order:

1. the environment variable ``WFE_TEST_POSTGRES_URL`` / ``WFE_TEST_REDIS_URL``;
2. a container started with testcontainers, when Docker answers (started once per
   test process, on first use, and removed when the process exits).

A service that cannot be reached makes the calling test skip with a reason naming the
variable to set; when the environment variable ``CI`` is set it makes the test fail
instead, because a missing service must never pass CI silently. A URL that is set is
checked first (TCP connect plus a one-packet protocol probe, bounded by
:data:`PROBE_TIMEOUT`), so a service that is down, or a port that belongs to something
else, is reported with its cause rather than as a hang or a driver error deep inside
the test. Every outcome is cached for the test process.

Tests sharing one service must isolate themselves: each test uses its own schema, key
prefix or file, so ``pytest -n auto`` is safe.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import socket
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import pytest
from wfe_core.registry import redact_url

__all__ = [
    "POSTGRES_ENV",
    "PROBE_TIMEOUT",
    "REDIS_ENV",
    "postgres_url",
    "redis_url",
]

POSTGRES_ENV = "WFE_TEST_POSTGRES_URL"
"""The environment variable holding the PostgreSQL URL tests use."""
REDIS_ENV = "WFE_TEST_REDIS_URL"
"""The environment variable holding the Redis URL tests use."""
PROBE_TIMEOUT = 3.0
"""Seconds a reachability check (or the Docker check) may take."""


def redis_url() -> str:
    """The Redis URL for tests (``redis://host:port/db``), or skip / fail the test."""
    return _resolve(_REDIS)


def postgres_url() -> str:
    """The PostgreSQL URL for tests (``postgresql://user@host:port/db``), or skip /
    fail the test."""
    return _resolve(_POSTGRES)


# --------------------------------------------------------------------------------------
# Implementation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Service:
    name: str
    env: str
    default_port: int
    example: str
    probe: Callable[[socket.socket], str | None]
    """Sends a probe on a connected socket; returns None if the peer answered like this
    service, else what was wrong."""
    container: Callable[[], tuple[Any, str]]
    """Starts a container; returns it and its URL."""


class _Unavailable(Exception):
    """Why a service cannot be used."""


_resolved: dict[str, str | _Unavailable] = {}
_containers: list[Any] = []


def _resolve(service: _Service) -> str:
    outcome = _resolved.get(service.name)
    if outcome is None:
        try:
            outcome = _find(service)
        except _Unavailable as exc:
            outcome = exc
        _resolved[service.name] = outcome
    if not isinstance(outcome, str):
        _unavailable(str(outcome))
    return outcome


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def _find(service: _Service) -> str:
    url = os.environ.get(service.env, "").strip()
    if url:
        problem = _check(service, url)
        if problem is not None:
            raise _Unavailable(
                f"{service.env}={redact_url(url)} {problem}; start {service.name} there "
                f"or point {service.env} at a running {service.name}"
            )
        return url
    docker_problem = _docker_problem()
    if docker_problem is not None:
        raise _Unavailable(
            f"{service.name} is not configured: set {service.env} (e.g. {service.example}) "
            f"or make Docker available for testcontainers ({docker_problem})"
        )
    try:
        container, url = service.container()
    except Exception as exc:
        raise _Unavailable(
            f"starting a {service.name} container with testcontainers failed "
            f"({type(exc).__name__}: {exc}); set {service.env} (e.g. {service.example})"
        ) from exc
    _containers.append(container)
    return url


def _check(service: _Service, url: str) -> str | None:
    """None if ``url`` answers like ``service`` within :data:`PROBE_TIMEOUT`, else the
    cause."""
    try:
        target = _address(url, service.default_port)
    except ValueError as exc:
        return f"is not a usable URL ({exc})"
    try:
        if isinstance(target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(PROBE_TIMEOUT)
            sock.connect(target)
        else:
            sock = socket.create_connection(target, timeout=PROBE_TIMEOUT)
    except OSError as exc:
        return f"does not answer ({exc.strerror or exc})"
    with sock:
        try:
            sock.settimeout(PROBE_TIMEOUT)
            return service.probe(sock)
        except OSError as exc:
            return f"accepted a connection but did not answer ({exc.strerror or exc})"


def _address(url: str, default_port: int) -> tuple[str, int] | str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    port = parts.port or default_port
    host = parts.hostname
    query_host = parse_qs(parts.query).get("host", [None])[0]
    if not host and query_host and query_host.startswith("/"):  # libpq socket directory
        return f"{query_host.rstrip('/')}/.s.PGSQL.{port}"
    return (host or "localhost", port)


def _probe_redis(sock: socket.socket) -> str | None:
    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
    reply = sock.recv(64)
    if not reply:
        return "accepted a connection and closed it without answering"
    if reply[:1] in (b"+", b"-"):  # +PONG, or an error such as -NOAUTH: a Redis server
        return None
    return "answers, but not like a Redis server (wrong port?)"


def _probe_postgres(sock: socket.socket) -> str | None:
    sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest: the reply is one byte
    reply = sock.recv(1)
    if not reply:
        return "accepted a connection and closed it without answering"
    if reply in (b"S", b"N"):
        return None
    return "answers, but not like a PostgreSQL server (wrong port?)"


def _docker_problem() -> str | None:
    """None when Docker answers, else why not."""
    try:
        from testcontainers.core.docker_client import DockerClient
    except Exception as exc:
        return f"testcontainers is not importable: {exc}"
    problem: str | None = None
    # A failed attempt leaves the Docker SDK's socket to the garbage collector:
    # collect it here, where its ResourceWarning is expected, not in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = DockerClient(timeout=PROBE_TIMEOUT).client
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            problem = f"Docker does not answer: {type(exc).__name__}: {exc}"
        gc.collect()
    return problem


def _stop_containers() -> None:
    while _containers:
        with contextlib.suppress(Exception):
            _containers.pop().stop()


atexit.register(_stop_containers)


def _redis_container() -> tuple[Any, str]:
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:  # testcontainers before the community namespace
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.redis import RedisContainer
    container = RedisContainer("redis:7-alpine")
    container.start()
    host = container.get_container_host_ip()
    return container, f"redis://{host}:{container.get_exposed_port(6379)}/0"


def _postgres_container() -> tuple[Any, str]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the community namespace
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.postgres import PostgresContainer
    container = PostgresContainer("postgres:16-alpine", dbname="test", driver=None)
    container.start()
    return container, str(container.get_connection_url())


_REDIS = _Service(
    "Redis", REDIS_ENV, 6379, "redis://127.0.0.1:6379/0", _probe_redis, _redis_container
)
_POSTGRES = _Service(
    "PostgreSQL",
    POSTGRES_ENV,
    5432,
    "postgresql://postgres@127.0.0.1:5432/test",
    _probe_postgres,
    _postgres_container,
)
