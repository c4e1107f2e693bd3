"""Redis-specific behaviour: redelivery, acknowledgement, pub/sub lifecycle events,
key prefixes, URLs and options, and clear errors for bad or unreachable servers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import redis.asyncio as aredis
from wfe_conformance.scenario_support import wait_until
from wfe_core.errors import ProviderUnavailable
from wfe_core.models import QueueType
from wfe_core.registry import open_store
from wfe_redis.lifecycle import decode_event, encode_event

from wfe_core import (
    LifecycleEvent,
    LifecycleEventType,
    StepContext,
    Workflow,
    WorkflowBuilder,
    WorkflowHost,
    WorkflowStatus,
)
from wfe_redis import (
    RedisLifecyclePublisher,
    RedisLockProvider,
    RedisQueueProvider,
    RedisSettings,
    components_from_url,
)

pytestmark = pytest.mark.anyio

W = QueueType.WORKFLOW
VIS = 0.3  # a visibility timeout the tests wait out
BOUND = 10.0  # generous bound on how long a bad URL may take to fail


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


Factory = Callable[..., Awaitable[Any]]


@pytest.fixture
def queues(url: str, prefix: str, stack: AsyncExitStack) -> Factory:
    """``await queues(**options)``: a started queue provider (stopped at teardown)."""

    async def make(**options: Any) -> RedisQueueProvider:
        options.setdefault("prefix", prefix)
        q = RedisQueueProvider(url, **options)
        await q.start()
        stack.push_async_callback(q.stop)
        return q

    return make


@pytest.fixture
def publishers(url: str, prefix: str, stack: AsyncExitStack) -> Factory:
    """``await publishers(**options)``: a started lifecycle publisher."""

    async def make(**options: Any) -> RedisLifecyclePublisher:
        options.setdefault("prefix", prefix)
        p = RedisLifecyclePublisher(url, **options)
        await p.start()
        stack.push_async_callback(p.stop)
        return p

    return make


async def take(q: RedisQueueProvider, within: float = 3.0) -> str:
    with anyio.fail_after(within):
        while True:
            item = await q.dequeue_work(W, 0.5)
            if item is not None:
                return item


# --------------------------------------------------------------------------------------
# redelivery and acknowledgement
# --------------------------------------------------------------------------------------


async def test_item_of_a_dead_consumer_is_delivered_again(queues: Factory) -> None:
    """An item taken by a consumer that dies goes to another after the visibility
    timeout, and not before."""
    a = await queues(visibility_timeout=VIS)
    b = await queues(visibility_timeout=VIS)
    await a.queue_work("job-1", W)
    assert await a.dequeue_work(W, 0) == "job-1"
    taken = time.monotonic()
    await a._kill()
    assert await b.dequeue_work(W, 0) is None  # still in flight
    assert await take(b) == "job-1"
    assert time.monotonic() - taken >= VIS - 0.05
    assert await b.dequeue_work(W, 0.05) is None


async def test_live_consumer_keeps_its_items_past_the_timeout(queues: Factory) -> None:
    """A live consumer's unacknowledged items are kept alive, not handed to others."""
    a = await queues(visibility_timeout=VIS, explicit_ack=True)
    b = await queues(visibility_timeout=VIS)
    await a.queue_work("job-1", W)
    assert await a.dequeue_work(W, 0) == "job-1"
    await anyio.sleep(VIS * 3)  # let several visibility timeouts pass
    assert await b.dequeue_work(W, 0.05) is None
    assert await b.in_flight(W) == 1
    await a.ack("job-1", W)
    assert await b.in_flight(W) == 0
    assert a.held(W) == []


async def test_explicit_ack_holds_until_acked_and_stop_gives_back(queues: Factory) -> None:
    """With explicit acks, stop returns unacknowledged items to the head of the queue."""
    a = await queues(explicit_ack=True)
    b = await queues()
    for item in ("job-1", "job-2", "job-3"):
        await a.queue_work(item, W)
    assert await a.dequeue_work(W, 0) == "job-1"
    assert await a.dequeue_work(W, 0) == "job-2"
    await a.ack("job-1", W)
    assert a.held(W) == ["job-2"]
    await a.stop()
    assert [await take(b) for _ in range(2)] == ["job-2", "job-3"]
    assert await b.in_flight(W) == 1  # b's second dequeue acknowledged its first


async def test_next_dequeue_acknowledges_without_explicit_acks(queues: Factory) -> None:
    """Without acks, a consumer's next dequeue on a queue acknowledges what it took."""
    a = await queues(visibility_timeout=VIS)
    b = await queues(visibility_timeout=VIS)
    await a.queue_work("job-1", W)
    assert await a.dequeue_work(W, 0) == "job-1"
    assert await a.in_flight(W) == 1
    assert await a.dequeue_work(W, 0) is None
    assert await a.in_flight(W) == 0
    await a._kill()
    await anyio.sleep(VIS + 0.1)
    assert await b.dequeue_work(W, 0.05) is None  # acknowledged: never redelivered


async def test_stop_acknowledges_without_explicit_acks(queues: Factory) -> None:
    """Without acks, stop acknowledges what the consumer still holds."""
    a = await queues()
    await a.queue_work("job-1", W)
    assert await a.dequeue_work(W, 0) == "job-1"
    await a.stop()
    b = await queues()
    assert await b.in_flight(W) == 0
    assert await b.qsize(W) == 0


async def test_first_ack_switches_to_explicit_acks(queues: Factory) -> None:
    """Left at None, explicit_ack turns on at the first ack; later items stay held."""
    a = await queues()
    mode: bool | None = a.explicit_ack
    assert mode is None
    for item in ("job-1", "job-2"):
        await a.queue_work(item, W)
    assert await a.dequeue_work(W, 0) == "job-1"
    await a.ack("job-1", W)
    mode = a.explicit_ack
    assert mode is True
    assert await a.dequeue_work(W, 0) == "job-2"
    assert await a.dequeue_work(W, 0) is None
    assert a.held(W) == ["job-2"]
    assert await a.in_flight(W) == 1


async def test_redelivery_does_not_duplicate_a_waiting_id(queues: Factory) -> None:
    """An abandoned id that was queued again meanwhile comes out once."""
    a = await queues(visibility_timeout=VIS)
    b = await queues(visibility_timeout=VIS)
    await a.queue_work("job-1", W)
    assert await a.dequeue_work(W, 0) == "job-1"
    await a.queue_work("job-1", W)  # queued again while in flight: waits once
    await a._kill()
    await anyio.sleep(VIS + 0.1)
    assert await b.dequeue_work(W, 0) == "job-1"
    assert await b.dequeue_work(W, 0.05) is None


async def test_ack_of_an_item_taken_over_is_a_noop(queues: Factory) -> None:
    """A consumer acking an item another consumer now holds does not free it."""
    a = await queues(visibility_timeout=VIS, explicit_ack=True)
    b = await queues(visibility_timeout=VIS, explicit_ack=True)
    await a.queue_work("job-1", W)
    assert await a.dequeue_work(W, 0) == "job-1"
    await a.queue_work("job-1", W)
    assert await b.dequeue_work(W, 0) == "job-1"  # b took the same id again
    await a.ack("job-1", W)
    assert await b.in_flight(W) == 1
    await b.ack("job-1", W)
    assert await b.in_flight(W) == 0


async def test_stop_wakes_a_blocked_consumer(queues: Factory) -> None:
    """A consumer waiting with a long timeout returns None soon after stop."""
    q = await queues()
    results: list[str | None] = []

    async def consume() -> None:
        results.append(await q.dequeue_work(W, 30.0))

    with anyio.fail_after(3.0):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.05)
            await q.stop()
    assert results == [None]


async def test_dequeue_wakes_fast_across_providers(queues: Factory) -> None:
    """A consumer blocked on one provider gets an id queued through another within
    milliseconds (pub/sub wake-up, not a poll interval)."""
    a = await queues()
    b = await queues()
    got: list[tuple[str | None, float]] = []

    async def consume() -> None:
        item = await a.dequeue_work(W, 5.0)
        got.append((item, time.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.sleep(0.1)
        sent = time.monotonic()
        await b.queue_work("job-1", W)
    assert got[0][0] == "job-1"
    assert got[0][1] - sent < 0.5


# --------------------------------------------------------------------------------------
# lifecycle publisher
# --------------------------------------------------------------------------------------


def _event(workflow_id: str = "wf-1", **fields: Any) -> LifecycleEvent:
    return LifecycleEvent(
        type=LifecycleEventType.STEP_COMPLETED,
        workflow_id=workflow_id,
        workflow_definition_id="def",
        version=2,
        **fields,
    )


def test_lifecycle_event_round_trips_through_json() -> None:
    """Every field of a lifecycle event survives encoding."""
    event = _event(reference="ref", step_id=3, step_name="s", execution_pointer_id="p")
    assert decode_event(encode_event(event)) == event


async def test_lifecycle_events_reach_every_publisher(publishers: Factory) -> None:
    """An event published by one publisher reaches the handlers of all (itself too),
    sync and async alike, in order."""
    one = await publishers()
    two = await publishers()
    got_one: list[LifecycleEvent] = []
    got_two: list[LifecycleEvent] = []

    async def async_handler(event: LifecycleEvent) -> None:
        got_two.append(event)

    one.subscribe(got_one.append)
    two.subscribe(async_handler)
    events = [_event(f"wf-{i}") for i in range(5)]
    for event in events:
        await one.publish(event)
    await wait_until(lambda: len(got_one) == 5 and len(got_two) == 5, message="5 events each")
    assert got_one == events
    assert got_two == events


async def test_unsubscribe_and_failing_handlers(publishers: Factory) -> None:
    """An unsubscribed handler gets nothing more; a raising handler does not stop the
    others."""
    pub = await publishers()
    got: list[LifecycleEvent] = []
    dropped: list[LifecycleEvent] = []

    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("handler bug")

    pub.subscribe(broken)
    unsubscribe = pub.subscribe(dropped.append)
    pub.subscribe(got.append)
    unsubscribe()
    unsubscribe()
    await pub.publish(_event())
    await wait_until(lambda: len(got) == 1, message="one event")
    assert dropped == []


async def test_stop_delivers_own_pending_events(publishers: Factory) -> None:
    """Events a publisher sent before stop reach its own handlers by the time stop
    returns."""
    pub = await publishers()
    got: list[LifecycleEvent] = []
    pub.subscribe(got.append)
    for i in range(20):
        await pub.publish(_event(f"wf-{i}"))
    await pub.stop()
    assert [e.workflow_id for e in got] == [f"wf-{i}" for i in range(20)]


async def test_lifecycle_channels_are_isolated_by_prefix(publishers: Factory, prefix: str) -> None:
    """Publishers with another key prefix do not receive each other's events."""
    mine = await publishers()
    other = await publishers(prefix=prefix + "other:")
    got_mine: list[LifecycleEvent] = []
    got_other: list[LifecycleEvent] = []
    mine.subscribe(got_mine.append)
    other.subscribe(got_other.append)
    await other.publish(_event("for-other"))
    await mine.publish(_event("for-mine"))
    await wait_until(lambda: bool(got_mine and got_other), message="both received")
    await mine.stop()
    await other.stop()
    assert [e.workflow_id for e in got_mine] == ["for-mine"]
    assert [e.workflow_id for e in got_other] == ["for-other"]


async def test_malformed_channel_messages_are_ignored(publishers: Factory, url: str) -> None:
    """Garbage published on the channel is logged and skipped."""
    pub = await publishers()
    got: list[LifecycleEvent] = []
    pub.subscribe(got.append)
    raw = aredis.Redis.from_url(url)
    try:
        await raw.publish(pub.channel, "not json")
        await raw.publish(pub.channel, '{"type": "no-such-type"}')
    finally:
        await raw.aclose()
    await pub.publish(_event())
    await wait_until(lambda: len(got) == 1, message="the valid event")


# --------------------------------------------------------------------------------------
# key prefixes
# --------------------------------------------------------------------------------------


async def test_key_prefix_isolates_queues_and_locks(
    url: str, prefix: str, queues: Factory, stack: AsyncExitStack
) -> None:
    """Queues and locks under one prefix are invisible under another, and every key
    written lies under the provider's prefix."""
    a = await queues()
    b = await queues(prefix=prefix + "b:")
    await a.queue_work("job-1", W)
    assert await b.dequeue_work(W, 0.05) is None
    lock_a = RedisLockProvider(url, prefix=prefix)
    lock_b = RedisLockProvider(url, prefix=prefix + "b:")
    for lock in (lock_a, lock_b):
        await lock.start()
        stack.push_async_callback(lock.stop)
    assert await lock_a.acquire_lock("res", 30)
    assert await lock_b.acquire_lock("res", 30)
    raw = aredis.Redis.from_url(url, decode_responses=True)
    try:
        keys = [k async for k in raw.scan_iter(match=prefix + "*")]
    finally:
        await raw.aclose()
    assert keys
    assert all(k.startswith(prefix) for k in keys)
    assert prefix + "lock:res" in keys
    assert prefix + "b:lock:res" in keys
    assert prefix + "queue:workflow:waiting" in keys


async def test_default_prefix_is_wfe(url: str) -> None:
    """Without a prefix option, keys live under "wfe:"."""
    lock = RedisLockProvider(url)
    assert lock.prefix == "wfe:"
    assert lock.key("lock", "x") == "wfe:lock:x"
    await lock.stop()


# --------------------------------------------------------------------------------------
# URLs, options and the entry point
# --------------------------------------------------------------------------------------


def test_url_options_are_parsed_and_keywords_win() -> None:
    """prefix, timeouts and the database come from the URL; keywords override them."""
    s = RedisSettings.parse(
        "redis://:secret@host:6380/3?prefix=app:&visibility_timeout=2.5&connect_timeout=1"
    )
    assert (s.db, s.prefix, s.visibility_timeout, s.connect_timeout) == (3, "app:", 2.5, 1.0)
    assert "secret" not in s.display
    assert "prefix" not in s.url
    s = RedisSettings.parse("redis://host/1?prefix=app:", prefix="kw:", socket_timeout=2)
    assert (s.db, s.prefix, s.socket_timeout) == (1, "kw:", 2.0)
    assert RedisSettings.parse("redis://host").db == 0
    assert RedisSettings.parse("unix:///tmp/redis.sock?db=4").db == 4


@pytest.mark.parametrize(
    ("url", "options", "error", "text"),
    [
        ("redis://host/0?bogus=1", {}, ValueError, "unknown option 'bogus'"),
        ("redis://host/0", {"bogus": 1}, TypeError, "unknown Redis provider option"),
        ("redis://host/0?visibility_timeout=-1", {}, ValueError, "positive"),
        ("redis://host/0?socket_timeout=abc", {}, ValueError, "not a number"),
        ("redis://host/zero", {}, ValueError, "database must be a number"),
        ("postgresql://host/0", {}, ValueError, "not a Redis URL"),
    ],
)
def test_bad_urls_and_options_are_refused_at_once(
    url: str, options: dict[str, Any], error: type[Exception], text: str
) -> None:
    """Unknown options, bad numbers and non-Redis URLs raise when the provider is built."""
    with pytest.raises(error, match=text):
        components_from_url(url, **options)


def test_lock_ttl_must_be_positive() -> None:
    """A ttl that is not a positive finite number is refused before Redis is asked."""
    lock = RedisLockProvider("redis://127.0.0.1:1/0")
    for ttl in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            anyio.run(lock.acquire_lock, "r", ttl)


def test_entry_point_builds_coordination_components(url: str) -> None:
    """redis:// opens through the registry as lock + queue + lifecycle, no persistence."""
    store = open_store(url, prefix="x:", visibility_timeout=5)
    assert store.persistence is None
    assert isinstance(store.lock_provider, RedisLockProvider)
    assert isinstance(store.queue_provider, RedisQueueProvider)
    assert isinstance(store.lifecycle, RedisLifecyclePublisher)
    assert store.queue_provider.settings.visibility_timeout == 5.0
    assert store.lock_provider.prefix == "x:"


@dataclass
class _Counter:
    count: int = 0


class _CountingWorkflow(Workflow[_Counter]):
    id = "redis-counting"
    version = 1
    data_type = _Counter

    def build(self, builder: WorkflowBuilder[_Counter]) -> None:
        async def bump(context: StepContext[_Counter]) -> None:
            context.data.count += 1

        builder.start_with(bump).then(bump)


async def test_host_from_url_with_redis_lock_and_queue(url: str, prefix: str) -> None:
    """WorkflowHost.from_url(store, lock_url=redis, queue_url=redis) runs workflows."""
    redis_with_prefix = f"{url}?prefix={prefix}"
    host = WorkflowHost.from_url(
        "memory://", lock_url=redis_with_prefix, queue_url=redis_with_prefix
    )
    assert isinstance(host.lock_provider, RedisLockProvider)
    assert isinstance(host.queue_provider, RedisQueueProvider)
    host.register_workflow(_CountingWorkflow())
    async with host:
        done = await host.run_workflow(_CountingWorkflow.id, _Counter(), timeout=10)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.data.count == 2


# --------------------------------------------------------------------------------------
# bad servers: a clear ProviderUnavailable within a bounded time
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start_each(url: str, **options: Any) -> list[ProviderUnavailable]:
    """Start a lock, a queue and a publisher on ``url``; return the errors (each must
    come within BOUND seconds)."""
    errors: list[ProviderUnavailable] = []
    for cls in (RedisLockProvider, RedisQueueProvider, RedisLifecyclePublisher):
        component = cls(url, **options)
        start = time.monotonic()
        try:
            with pytest.raises(ProviderUnavailable) as info:
                await component.start()
        finally:
            await component.stop()
        assert time.monotonic() - start < BOUND
        errors.append(info.value)
    return errors


async def test_url_pointing_at_postgresql_is_a_clear_error() -> None:
    """A redis:// URL at the PostgreSQL port fails fast and says it is not Redis."""
    for error in await _start_each("redis://127.0.0.1:5432/0"):
        assert "does not answer like a Redis server" in str(error)
        assert "127.0.0.1:5432" in str(error)


async def test_closed_port_is_a_clear_error() -> None:
    """Nothing listening: ProviderUnavailable naming the URL and what to fix."""
    port = _free_port()
    for error in await _start_each(f"redis://127.0.0.1:{port}/0"):
        assert f"127.0.0.1:{port}" in str(error)
        assert "cannot be reached" in str(error)
        assert "start the server or fix the host and port" in str(error)


async def test_unknown_host_is_a_clear_error() -> None:
    """A host name that does not resolve: ProviderUnavailable, quickly."""
    for error in await _start_each("redis://no-such-host.invalid:6379/0", connect_timeout=1):
        assert "no-such-host.invalid" in str(error)


async def test_silent_server_times_out_within_the_socket_timeout() -> None:
    """A server that accepts but never answers fails after the socket timeout, not
    never."""

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(BOUND)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, silent)
        start = time.monotonic()
        errors = await _start_each(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
        assert time.monotonic() - start < 3 * 2 * 0.3 + 2
        tg.cancel_scope.cancel()
    await listener.aclose()
    for error in errors:
        assert "did not answer in time" in str(error)


async def test_missing_database_is_a_clear_error(url: str) -> None:
    """A database number the server does not have is named as such."""
    base = url.rsplit("/", 1)[0]
    for error in await _start_each(f"{base}/9999"):
        assert "no such database" in str(error)


async def test_wrong_credentials_are_a_clear_error_without_the_password(url: str) -> None:
    """A user/password the server rejects is reported, with the password redacted."""
    host = url.split("://", 1)[1].split("/", 1)[0].split("@")[-1]
    for error in await _start_each(f"redis://nobody:hunter2@{host}/0"):
        assert "rejected the credentials" in str(error)
        assert "hunter2" not in str(error)


async def test_calls_on_an_unreachable_server_raise_provider_unavailable() -> None:
    """Every call (not only start) raises ProviderUnavailable, never a redis-py error."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    lock = RedisLockProvider(url)
    queue = RedisQueueProvider(url)
    publisher = RedisLifecyclePublisher(url)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: lock.acquire_lock("r", 1),
        lambda: lock.renew_lock("r", 1),
        lambda: lock.release_lock("r"),
        lambda: queue.queue_work("x", W),
        lambda: queue.dequeue_work(W, 0),
        lambda: queue.dequeue_work(W, 0.2),
        lambda: queue.qsize(W),
        lambda: publisher.publish(_event()),
    ]
    try:
        for call in calls:
            with anyio.fail_after(BOUND), pytest.raises(ProviderUnavailable):
                await call()
    finally:
        for component in (lock, queue, publisher):
            await component.stop()


@pytest.fixture(scope="module")
def password_redis() -> Iterator[str]:
    """A private redis-server requiring a password (the shared one has none); yields
    its address host:port. Needs the redis-server program, as .ci/run does."""
    program = shutil.which("redis-server")
    if program is None:
        pytest.skip("redis-server is not installed: needed for the password tests")
    port = _free_port()
    args = [program, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--requirepass", "s3cret-pw"]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("the private redis-server did not start")
                time.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(BOUND)


async def test_missing_password_is_a_clear_error(password_redis: str) -> None:
    """A server that needs a password the URL does not give says so."""
    for error in await _start_each(f"redis://{password_redis}/0"):
        assert "requires a password" in str(error)


async def test_wrong_password_is_a_clear_error(password_redis: str) -> None:
    """A wrong password is reported as rejected credentials, redacted."""
    for error in await _start_each(f"redis://:not-it@{password_redis}/0"):
        assert "rejected the credentials" in str(error)
        assert "not-it" not in str(error)


async def test_right_password_works(password_redis: str, prefix: str) -> None:
    """With the password in the URL every component works."""
    url = f"redis://:s3cret-pw@{password_redis}/0"
    lock = RedisLockProvider(url, prefix=prefix)
    queue = RedisQueueProvider(url, prefix=prefix)
    try:
        await lock.start()
        await queue.start()
        assert await lock.acquire_lock("r", 5)
        await queue.queue_work("job", W)
        assert await queue.dequeue_work(W, 1.0) == "job"
    finally:
        await lock.stop()
        await queue.stop()
