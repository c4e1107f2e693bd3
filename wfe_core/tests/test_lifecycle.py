"""The in-process lifecycle publisher."""

from __future__ import annotations

import logging

import anyio
import pytest
from wfe_core.lifecycle import InProcessLifecyclePublisher, LifecyclePublisher
from wfe_core.models import LifecycleEvent, LifecycleEventType

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _event(workflow_id: str = "wf-1") -> LifecycleEvent:
    return LifecycleEvent(LifecycleEventType.WORKFLOW_STARTED, workflow_id, "def", 1)


async def test_is_a_lifecycle_publisher() -> None:
    assert isinstance(InProcessLifecyclePublisher(), LifecyclePublisher)


async def test_delivers_to_sync_and_async_handlers_in_subscription_order() -> None:
    pub = InProcessLifecyclePublisher()
    calls: list[tuple[str, str]] = []

    def sync_handler(e: LifecycleEvent) -> None:
        calls.append(("sync", e.workflow_id))

    async def async_handler(e: LifecycleEvent) -> None:
        await anyio.sleep(0.001)
        calls.append(("async", e.workflow_id))

    pub.subscribe(async_handler)
    pub.subscribe(sync_handler)
    await pub.start()
    await pub.publish(_event("a"))
    await pub.publish(_event("b"))
    # publish returns only after every handler (async ones awaited) saw the event
    assert calls == [("async", "a"), ("sync", "a"), ("async", "b"), ("sync", "b")]
    await pub.stop()
    await pub.stop()


async def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    pub = InProcessLifecyclePublisher()
    seen: list[str] = []
    unsubscribe = pub.subscribe(lambda e: seen.append(e.workflow_id))
    await pub.publish(_event("a"))
    unsubscribe()
    unsubscribe()
    await pub.publish(_event("b"))
    assert seen == ["a"]


async def test_same_handler_twice_gets_two_registrations() -> None:
    pub = InProcessLifecyclePublisher()
    seen: list[str] = []

    def handler(e: LifecycleEvent) -> None:
        seen.append(e.workflow_id)

    first = pub.subscribe(handler)
    pub.subscribe(handler)
    await pub.publish(_event("a"))
    first()
    await pub.publish(_event("b"))
    assert seen == ["a", "a", "b"]


async def test_raising_handler_is_logged_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub = InProcessLifecyclePublisher()
    seen: list[str] = []

    def boom(e: LifecycleEvent) -> None:
        raise RuntimeError("sync boom")

    async def async_boom(e: LifecycleEvent) -> None:
        raise RuntimeError("async boom")

    pub.subscribe(boom)
    pub.subscribe(async_boom)
    pub.subscribe(lambda e: seen.append(e.workflow_id))
    with caplog.at_level(logging.ERROR, logger="wfe.lifecycle"):
        await pub.publish(_event("a"))
    assert seen == ["a"]
    records = [r for r in caplog.records if r.name == "wfe.lifecycle"]
    assert len(records) == 2
    assert all(r.exc_info is not None for r in records)
    assert "for workflow a" in records[0].getMessage()
    assert "sync boom" in caplog.text
    assert "async boom" in caplog.text


async def test_subscribing_during_publish_takes_effect_next_time() -> None:
    pub = InProcessLifecyclePublisher()
    seen: list[str] = []

    def late(e: LifecycleEvent) -> None:
        seen.append("late:" + e.workflow_id)

    def first(e: LifecycleEvent) -> None:
        seen.append("first:" + e.workflow_id)
        if e.workflow_id == "a":
            pub.subscribe(late)

    pub.subscribe(first)
    await pub.publish(_event("a"))
    await pub.publish(_event("b"))
    assert seen == ["first:a", "first:b", "late:b"]


def test_subscribe_refuses_non_callables() -> None:
    with pytest.raises(TypeError, match="callable"):
        InProcessLifecyclePublisher().subscribe("nope")  # type: ignore[arg-type]
