"""Published events: store them, find the due ones, mark or set them aside.

Internal to :mod:`wfe_sql` (a mixin of :class:`~wfe_sql.SqlPersistenceProvider`).
"""

from __future__ import annotations

from datetime import datetime

from wfe_core.errors import DuplicateEventId, EventNotFound
from wfe_core.models import Event, new_id
from wfe_core.persistence import check_event_text as _check_event_text
from wfe_core.persistence import check_non_negative as _non_negative
from wfe_core.persistence import storable_key as _storable_key
from wfe_core.telemetry import encode_headers

from wfe_sql.driver import IntegrityViolation
from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.times import to_micros

__all__ = ["SqlEventRepository"]


class SqlEventRepository(SqlRepositoryBase):
    """The :class:`~wfe_core.persistence.EventRepository` part of the SQL provider."""

    async def create_event(self, event: Event) -> str:
        """Insert an event; return its id (assigned when empty, written back)."""
        self.check_type(event, Event, "event")
        _check_event_text(event)
        if event.event_time is None:
            raise TypeError("event.event_time must be a datetime, not None")
        event_time = to_micros(event.event_time, "event.event_time")
        s = await self._ready()
        event_id = event.id or new_id()
        stmt = s.insert_event
        args = stmt.args(
            {
                "p_id": event_id,
                "p_event_name": event.event_name,
                "p_event_key": event.event_key,
                "p_event_data": self._enc(event.event_data, "event_data"),
                "p_event_time": event_time,
                "p_is_processed": bool(event.is_processed) or event.set_aside is not None,
                "p_set_aside": None
                if event.set_aside is None
                else self.check_reason(event.set_aside),
                "p_headers": encode_headers(event.headers),
            }
        )
        try:
            await self.driver.execute(stmt.sql, args)
        except IntegrityViolation as exc:
            raise DuplicateEventId(event_id) from exc
        event.id = event_id
        return event_id

    async def get_event(self, event_id: str) -> Event:
        """Return a copy of the event, or raise ``EventNotFound``."""
        s = await self._ready()
        row = await self.driver.fetchone(s.select_event.sql, (event_id,))
        if row is None:
            raise EventNotFound(event_id)
        return self._load_event(row)

    async def get_runnable_events(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of unprocessed events with ``event_time <= as_at``, oldest first."""
        at = to_micros(as_at, "as_at")
        _non_negative(limit, "limit")
        s = await self._ready()
        stmt = s.runnable_events
        rows = await self.driver.fetchall(stmt.sql, stmt.args({"p_as_at": at, "p_limit": limit}))
        return [r[0] for r in rows]

    async def get_events(self, event_name: str, event_key: str, as_of: datetime) -> list[str]:
        """Ids of events on this name and key with ``event_time >= as_of``, oldest first."""
        at = to_micros(as_of, "as_of")
        s = await self._ready()
        if not (_storable_key(event_name) and _storable_key(event_key)):
            return []
        rows = await self.driver.fetchall(s.topic_events.sql, (event_name, event_key, at))
        return [r[0] for r in rows]

    async def _mark_event(self, event_id: str, processed: bool) -> None:
        s = await self._ready()
        stmt = s.mark_event
        if not await self.driver.execute(
            stmt.sql, stmt.args({"p_flag": processed, "p_key_id": event_id})
        ):
            raise EventNotFound(event_id)

    async def mark_event_processed(self, event_id: str) -> None:
        """Set ``is_processed``, or raise ``EventNotFound``."""
        await self._mark_event(event_id, True)

    async def mark_event_unprocessed(self, event_id: str) -> None:
        """Clear ``is_processed`` (a set-aside event stays processed), or raise
        ``EventNotFound``."""
        await self._mark_event(event_id, False)

    async def set_aside_event(self, event_id: str, reason: str) -> bool:
        """Mark the event processed for good with ``reason``; True when this call did."""
        values = {"p_key_id": event_id, "p_flag": True, "p_reason": self.check_reason(reason)}
        s = await self._ready()
        stmt = s.set_aside_event
        if await self.driver.execute(stmt.sql, stmt.args(values)):
            return True
        if await self.driver.fetchone(s.event_exists.sql, (event_id,)) is None:
            raise EventNotFound(event_id)
        return False
