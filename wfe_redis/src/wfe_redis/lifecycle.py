"""The Redis lifecycle publisher: lifecycle events fanned out over pub/sub.

Every publisher on one Redis database, key prefix and namespace shares the channel
``<prefix>db<N>:lifecycle`` (``<prefix>ns:<ns>:db<N>:lifecycle`` in a namespace ``ns``
other than the default, so publishers in other namespaces never hear it); each
receives every event any of them publishes (its own included) and hands it to its
subscribers. Events are JSON objects of the
:class:`~wfe_core.models.LifecycleEvent` fields (``event_time`` in ISO 8601), so
programs in other languages can listen too. Pub/sub is fire-and-forget: a publisher
that is not connected when an event is sent does not get it later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from wfe_core.lifecycle import InProcessLifecyclePublisher, LifecycleHandler
from wfe_core.models import LifecycleEvent, LifecycleEventType

from wfe_redis._connection import RedisComponent
from wfe_redis._pubsub import ChannelListener

__all__ = ["RedisLifecyclePublisher", "decode_event", "encode_event"]

log = logging.getLogger("wfe.lifecycle")

_FENCE = "wfe_fence"
_DRAIN_TIMEOUT = 1.0


def encode_event(event: LifecycleEvent) -> str:
    """The JSON text of ``event`` as sent on the channel."""
    fields: dict[str, Any] = asdict(event)
    fields["type"] = event.type.value
    fields["event_time"] = event.event_time.isoformat()
    return json.dumps(fields, separators=(",", ":"))


def decode_event(text: str) -> LifecycleEvent:
    """The event encoded by :func:`encode_event` (ValueError / KeyError if malformed)."""
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise ValueError("a lifecycle event must be a JSON object")
    return LifecycleEvent(
        type=LifecycleEventType(fields["type"]),
        workflow_id=str(fields["workflow_id"]),
        workflow_definition_id=str(fields["workflow_definition_id"]),
        version=int(fields["version"]),
        reference=fields.get("reference"),
        step_id=fields.get("step_id"),
        step_name=fields.get("step_name"),
        execution_pointer_id=fields.get("execution_pointer_id"),
        message=fields.get("message"),
        event_time=datetime.fromisoformat(fields["event_time"]),
    )


class RedisLifecyclePublisher(RedisComponent):
    """A :class:`~wfe_core.lifecycle.LifecyclePublisher` over Redis pub/sub.

    :meth:`publish` sends the event to the channel; a background listener (started by
    :meth:`start`) delivers every event on the channel to this publisher's handlers,
    one at a time in the order received. A handler that raises is logged on the
    ``wfe.lifecycle`` logger; the others still get the event. Options: ``prefix``,
    ``namespace`` (keyword, ``?namespace=``, ``WFE_NAMESPACE``), ``connect_timeout``,
    ``socket_timeout``. ``publish`` raises :class:`~wfe_core.errors.ProviderUnavailable`
    when Redis cannot be used.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> None:
        super().__init__(url, **options)
        self.channel: str = self.settings.channel("lifecycle")
        self._local = InProcessLifecyclePublisher()  # this publisher's own fan-out
        self._listener = ChannelListener(
            self, [self.channel], self._on_message, name="wfe-redis-lifecycle-listener"
        )
        self._fences: dict[str, asyncio.Future[None]] = {}

    def subscribe(self, handler: LifecycleHandler) -> Callable[[], None]:
        """Register ``handler`` (sync or async); return a function that unregisters it
        (idempotent). Delivery to this publisher's handlers is the in-process fan-out
        (:class:`~wfe_core.lifecycle.InProcessLifecyclePublisher`)."""
        return self._local.subscribe(handler)

    async def publish(self, event: LifecycleEvent) -> None:
        """Send ``event`` to every publisher listening on the channel."""
        payload = encode_event(event)
        with self._translate():
            await self._client.publish(self.channel, payload)

    async def start(self) -> None:
        """Subscribe to the channel and start delivering (ProviderUnavailable when Redis
        cannot be reached); idempotent."""
        await self._listener.start()

    async def stop(self) -> None:
        """Deliver the events this publisher sent that are still on their way (bounded),
        stop listening and close the connections; idempotent."""
        if self._listener.running and self._listener.connected:
            token = uuid.uuid4().hex
            fence: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._fences[token] = fence
            try:
                with self._translate():
                    await self._client.publish(self.channel, json.dumps({_FENCE: token}))
                async with asyncio.timeout(_DRAIN_TIMEOUT):
                    await fence
            except Exception as exc:
                log.debug("could not drain pending lifecycle events on stop: %s", exc)
            finally:
                self._fences.pop(token, None)
        await self._listener.stop()
        for fence in self._fences.values():
            fence.cancel()
        self._fences.clear()
        await self._close_client()

    async def _on_message(self, channel: str, data: str) -> None:
        try:
            if data.startswith('{"' + _FENCE):
                token = json.loads(data)[_FENCE]
                fence = self._fences.get(token)
                if fence is not None and not fence.done():
                    fence.set_result(None)
                return
            event = decode_event(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed message on %s: %s", channel, exc)
            return
        await self._local.publish(event)
