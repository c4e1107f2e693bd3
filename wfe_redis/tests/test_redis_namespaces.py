"""Namespaces on the Redis components: locks, queue items and lifecycle events of one
namespace are invisible to the others, the default namespace keeps the keys of a wfe
without namespaces, and the namespace comes from the keyword, ``?namespace=`` or
``WFE_NAMESPACE`` in that order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
import redis.asyncio as aredis
from wfe_conformance.scenario_support import wait_until
from wfe_core.models import LifecycleEvent, LifecycleEventType, QueueType
from wfe_core.namespaces import DEFAULT_NAMESPACE, NAMESPACE_ENV
from wfe_core.registry import open_store

from wfe_redis import (
    RedisLifecyclePublisher,
    RedisLockProvider,
    RedisQueueProvider,
    RedisSettings,
    components_from_url,
)

pytestmark = pytest.mark.anyio

W = QueueType.WORKFLOW
TTL = 30.0
Factory = Callable[..., Awaitable[Any]]


@pytest.fixture(autouse=True)
def _no_namespace_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without WFE_NAMESPACE, whatever the calling shell sets."""
    monkeypatch.delenv(NAMESPACE_ENV, raising=False)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


@pytest.fixture
async def raw(url: str) -> AsyncIterator[aredis.Redis]:
    """A plain client to look at the keys the components wrote."""
    client = aredis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    yield client
    await client.aclose()


def _factory(cls: type[Any], url: str, prefix: str, stack: AsyncExitStack) -> Factory:
    async def make(namespace: str | None = None, **options: Any) -> Any:
        options.setdefault("prefix", prefix)
        component = cls(url, namespace=namespace, **options)
        await component.start()
        stack.push_async_callback(component.stop)
        return component

    return make


@pytest.fixture
def locks(url: str, prefix: str, stack: AsyncExitStack) -> Factory:
    """``await locks(namespace)``: a started lock provider (stopped at teardown)."""
    return _factory(RedisLockProvider, url, prefix, stack)


@pytest.fixture
def queues(url: str, prefix: str, stack: AsyncExitStack) -> Factory:
    """``await queues(namespace)``: a started queue provider (stopped at teardown)."""
    return _factory(RedisQueueProvider, url, prefix, stack)


@pytest.fixture
def publishers(url: str, prefix: str, stack: AsyncExitStack) -> Factory:
    """``await publishers(namespace)``: a started lifecycle publisher."""
    return _factory(RedisLifecyclePublisher, url, prefix, stack)


def _event(workflow_id: str) -> LifecycleEvent:
    return LifecycleEvent(
        type=LifecycleEventType.STEP_COMPLETED,
        workflow_id=workflow_id,
        workflow_definition_id="def",
        version=1,
    )


async def _keys(raw: aredis.Redis, prefix: str) -> set[str]:
    return {str(k) async for k in raw.scan_iter(match=prefix + "*", count=500)}


# --------------------------------------------------------------------------------------
# isolation on the real server
# --------------------------------------------------------------------------------------


async def test_same_lock_is_held_once_per_namespace(
    locks: Factory, raw: aredis.Redis, prefix: str
) -> None:
    """One resource is held at the same time in namespaces a, b and the default, while
    a second owner in a is refused; each lease is its own key."""
    a1, a2, b, default = (
        await locks("ns_a"),
        await locks("ns_a"),
        await locks("ns_b"),
        await locks(),
    )
    assert await a1.acquire_lock("order-1", TTL)
    assert await b.acquire_lock("order-1", TTL)
    assert await default.acquire_lock("order-1", TTL)
    assert not await a2.acquire_lock("order-1", TTL)
    assert await raw.get(f"{prefix}lock:order-1") == default.owner_id
    assert await raw.get(f"{prefix}ns:ns_a:lock:order-1") == a1.owner_id
    assert await raw.get(f"{prefix}ns:ns_b:lock:order-1") == b.owner_id
    # releasing in one namespace frees it there only
    await a1.release_lock("order-1")
    assert await a2.acquire_lock("order-1", TTL)
    assert await b.renew_lock("order-1", TTL)  # b still holds its own
    assert await raw.get(f"{prefix}lock:order-1") == default.owner_id
    await a2.release_lock("order-1")
    await b.release_lock("order-1")
    await default.release_lock("order-1")
    assert await _keys(raw, prefix) == set()


async def test_default_namespace_keeps_todays_keys(
    locks: Factory, queues: Factory, raw: aredis.Redis, prefix: str
) -> None:
    """The default namespace (by name or left out) uses exactly the pre-namespace keys
    and channels; a lock resource named like another namespace's key stays apart."""
    implicit = await locks()
    explicit = await locks(DEFAULT_NAMESPACE)
    assert implicit.namespace == explicit.namespace == DEFAULT_NAMESPACE
    assert implicit.key_prefix == prefix
    assert await implicit.acquire_lock("res", TTL)
    assert await raw.get(f"{prefix}lock:res") == implicit.owner_id
    assert not await explicit.acquire_lock("res", TTL)  # the same key: the same lock
    # a default-namespace resource called "ns:a:..." is still under "lock:"
    tricky = await locks()
    other = await locks("a")
    assert await tricky.acquire_lock("ns:a:lock:res", TTL)
    assert await other.acquire_lock("res", TTL)
    assert await raw.get(f"{prefix}lock:ns:a:lock:res") == tricky.owner_id
    assert await raw.get(f"{prefix}ns:a:lock:res") == other.owner_id
    q = await queues()
    await q.queue_work("job", W)
    assert await raw.lrange(f"{prefix}queue:workflow:waiting", 0, -1) == ["job"]
    assert q.settings.channel("lifecycle") == f"{prefix}db{q.settings.db}:lifecycle"
    default_keys = {k for k in await _keys(raw, prefix) if not k.startswith(prefix + "ns:a:")}
    assert default_keys == {
        f"{prefix}lock:res",
        f"{prefix}lock:ns:a:lock:res",
        f"{prefix}queue:workflow:waiting",
        f"{prefix}queue:workflow:ids",
    }
    assert await q.dequeue_work(W, 1.0) == "job"


async def test_queued_id_stays_in_its_namespace(
    queues: Factory, raw: aredis.Redis, prefix: str
) -> None:
    """An id queued in a is not dequeued by consumers in b or the default namespace
    (not even when woken), but is by one in a; the same id may wait in each."""
    a_producer, a_consumer = await queues("a"), await queues("a")
    b_consumer, default_consumer = await queues("b"), await queues()
    await a_producer.queue_work("wf-1", W)
    assert await b_consumer.dequeue_work(W, 0.3) is None
    assert await default_consumer.dequeue_work(W, 0.3) is None
    assert (await b_consumer.qsize(W), await default_consumer.qsize(W)) == (0, 0)
    assert await a_consumer.qsize(W) == 1
    assert await a_consumer.dequeue_work(W, 2.0) == "wf-1"
    # the same id is queued independently in every namespace
    await b_consumer.queue_work("wf-1", W)
    await default_consumer.queue_work("wf-1", W)
    assert await b_consumer.dequeue_work(W, 2.0) == "wf-1"
    assert await default_consumer.dequeue_work(W, 2.0) == "wf-1"
    keys = await _keys(raw, prefix)  # each taken id is in flight in its own namespace
    assert f"{prefix}ns:a:queue:workflow:inflight" in keys
    assert f"{prefix}ns:b:queue:workflow:inflight" in keys
    assert f"{prefix}queue:workflow:inflight" in keys
    assert await a_consumer.dequeue_work(W, 0.1) is None


async def test_blocked_consumer_is_woken_only_by_its_namespace(queues: Factory) -> None:
    """A consumer blocking in a takes the id queued in a, not the one queued in b
    before it; each namespace has its own wake-up channel."""
    a, b = await queues("a"), await queues("b")
    got: list[str | None] = []

    async def consume() -> None:
        got.append(await a.dequeue_work(W, 5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await b.queue_work("for-b", W)
        await a.queue_work("for-a", W)
    assert got == ["for-a"]
    assert a.settings.channel("queue:workflow") != b.settings.channel("queue:workflow")
    assert await b.qsize(W) == 1


async def test_lifecycle_event_stays_in_its_namespace(publishers: Factory) -> None:
    """An event published in a reaches subscribers in a, not those in b or the
    default namespace (each of which gets its own marker, sent after a's event, and
    nothing else)."""
    a_sender, a_listener = await publishers("a"), await publishers("a")
    b_listener, default_listener = await publishers("b"), await publishers()
    got: dict[str, list[str]] = {"a": [], "b": [], "default": []}
    a_listener.subscribe(lambda e: got["a"].append(e.workflow_id))
    b_listener.subscribe(lambda e: got["b"].append(e.workflow_id))
    default_listener.subscribe(lambda e: got["default"].append(e.workflow_id))
    await a_sender.publish(_event("in-a"))
    await wait_until(lambda: got["a"] == ["in-a"], timeout=5.0, message="a receives")
    # markers sent after a's event: were b or default listening on a's channel, they
    # would have received a's event first (one server, one connection each)
    await b_listener.publish(_event("marker-b"))
    await default_listener.publish(_event("marker-default"))
    await wait_until(
        lambda: bool(got["b"]) and bool(got["default"]), timeout=5.0, message="markers"
    )
    assert got["b"] == ["marker-b"]
    assert got["default"] == ["marker-default"]
    assert got["a"] == ["in-a"]
    assert a_sender.channel.startswith(a_sender.prefix + "ns:a:db")
    assert (
        default_listener.channel
        == f"{default_listener.prefix}db{default_listener.settings.db}:lifecycle"
    )


# --------------------------------------------------------------------------------------
# where the namespace comes from
# --------------------------------------------------------------------------------------


def test_keyword_beats_url_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """keyword > ?namespace= > WFE_NAMESPACE > "default", on every component."""
    base = "redis://127.0.0.1:6379/0"
    for cls in (RedisLockProvider, RedisQueueProvider, RedisLifecyclePublisher):
        assert cls(base).namespace == DEFAULT_NAMESPACE
        monkeypatch.setenv(NAMESPACE_ENV, "from_env")
        assert cls(base).namespace == "from_env"
        assert cls(base + "?namespace=from_url").namespace == "from_url"
        assert cls(base + "?namespace=from_url", namespace="from_kw").namespace == "from_kw"
        assert cls(base, namespace="from_kw").namespace == "from_kw"
        monkeypatch.setenv(NAMESPACE_ENV, "")  # empty counts as unset
        assert cls(base).namespace == DEFAULT_NAMESPACE
        monkeypatch.delenv(NAMESPACE_ENV)


async def test_url_and_environment_namespaces_isolate_on_the_server(
    url: str, prefix: str, monkeypatch: pytest.MonkeyPatch, stack: AsyncExitStack
) -> None:
    """A lock taken through ?namespace=x conflicts with one in WFE_NAMESPACE=x, not with
    the default namespace's."""
    sep = "&" if "?" in url else "?"
    by_url = RedisLockProvider(f"{url}{sep}namespace=shared_ns", prefix=prefix)
    monkeypatch.setenv(NAMESPACE_ENV, "shared_ns")
    by_env = RedisLockProvider(url, prefix=prefix)
    monkeypatch.delenv(NAMESPACE_ENV)
    default = RedisLockProvider(url, prefix=prefix)
    for lock in (by_url, by_env, default):
        await lock.start()
        stack.push_async_callback(lock.stop)
    assert by_url.namespace == by_env.namespace == "shared_ns"
    assert await by_url.acquire_lock("r", TTL)
    assert not await by_env.acquire_lock("r", TTL)
    assert await default.acquire_lock("r", TTL)


def test_entry_point_passes_the_namespace(url: str, prefix: str) -> None:
    """components_from_url / open_store give all three components the namespace, from
    a keyword or the URL."""
    sep = "&" if "?" in url else "?"
    for store in (
        components_from_url(url, prefix=prefix, namespace="tenant_1"),
        open_store(f"{url}{sep}namespace=tenant_1", prefix=prefix),
    ):
        parts = (store.lock_provider, store.queue_provider, store.lifecycle)
        assert [p.namespace for p in parts] == ["tenant_1"] * 3  # type: ignore[union-attr]
        assert store.lock_provider.key("lock", "r") == f"{prefix}ns:tenant_1:lock:r"  # type: ignore[union-attr]


def test_repr_shows_a_namespace_other_than_the_default() -> None:
    """The namespace appears in repr when it is not the default."""
    base = "redis://127.0.0.1:6379/0"
    assert "namespace" not in repr(RedisLockProvider(base))
    shown = repr(RedisQueueProvider(base, namespace="staging"))
    assert "namespace='staging'" in shown
    assert RedisSettings.parse(base, namespace="staging").key_prefix == "wfe:ns:staging:"


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        ("Bad-Name", ValueError, "not a valid namespace"),
        ("", ValueError, "empty"),
        (42, TypeError, "must be a string"),
        ("a:b", ValueError, "not a valid namespace"),
    ],
)
def test_bad_namespace_keyword_is_refused(value: object, error: type[Exception], text: str) -> None:
    """A bad name raises at once, naming the problem, for every component and the
    entry point."""
    base = "redis://127.0.0.1:6379/0"
    for build in (
        RedisLockProvider,
        RedisQueueProvider,
        RedisLifecyclePublisher,
        components_from_url,
    ):
        with pytest.raises(error, match=text):
            build(base, namespace=value)


@pytest.mark.parametrize(
    ("query", "text"),
    [("namespace=Bad-Name", "not a valid namespace"), ("namespace=", "empty")],
)
def test_bad_namespace_in_url_is_refused(query: str, text: str) -> None:
    """?namespace= with a bad name (or none) is refused, saying it came from the URL."""
    with pytest.raises(ValueError, match=text) as info:
        RedisLockProvider(f"redis://127.0.0.1:6379/0?{query}")
    assert "URL" in str(info.value)


def test_bad_namespace_in_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad WFE_NAMESPACE is refused, naming the variable."""
    monkeypatch.setenv(NAMESPACE_ENV, "Bad-Name")
    with pytest.raises(ValueError, match=NAMESPACE_ENV):
        RedisQueueProvider("redis://127.0.0.1:6379/0")
