"""The in-memory schedule store (:class:`~wfe_core.schedules.ScheduleRepository`), a
mixin of :class:`~wfe_memory.MemoryPersistenceProvider`.

Every check-and-set runs without an ``await`` in between, so a fire claim is atomic
among any number of asyncio tasks on the provider's event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wfe_core.capabilities import Capability
from wfe_core.persistence import check_aware, check_non_negative
from wfe_core.provider_base import ProviderBase
from wfe_core.schedules import Schedule, ScheduleAlreadyExists, ScheduleNotFound

if TYPE_CHECKING:
    from wfe_core.serialization import JSONValue

__all__ = ["MemoryScheduleStore"]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class MemoryScheduleStore(ProviderBase):
    """Schedules kept in a dict; user data stored in its serialized form."""

    def __init__(self, *, capabilities: Iterable[Capability] | None = None) -> None:
        super().__init__(capabilities=capabilities)
        self._schedules: dict[str, Schedule] = {}

    if TYPE_CHECKING:

        async def _enter(self) -> None: ...

        def _encode(self, value: Any, what: str) -> JSONValue: ...

        def _decode(self, stored: JSONValue, what: str) -> Any: ...

    async def close(self) -> None:
        """Drop the schedules too."""
        await super().close()
        self._schedules.clear()

    def _load_schedule(self, stored: Schedule) -> Schedule:
        return stored.copy(data=self._decode(stored.data, f"schedule {stored.id!r} data"))

    def _stored_schedule(self, schedule_id: str) -> Schedule:
        found = self._schedules.get(schedule_id)
        if found is None:
            raise ScheduleNotFound(schedule_id)
        return found

    async def create_schedule(self, schedule: Schedule) -> None:
        """Store a new schedule; :class:`ScheduleAlreadyExists` when the id is taken."""
        self.check_type(schedule, Schedule, "schedule")
        schedule.validate()
        data = self._encode(schedule.data, "schedule.data")
        await self._enter()
        if schedule.id in self._schedules:
            raise ScheduleAlreadyExists(schedule.id)
        self._schedules[schedule.id] = schedule.copy(
            data=data,
            start_at=_utc(schedule.start_at),
            end_at=_utc(schedule.end_at),
            next_fire_time=_utc(schedule.next_fire_time),
            last_fire_time=_utc(schedule.last_fire_time),
            create_time=schedule.create_time.astimezone(UTC),
        )

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule; :class:`ScheduleNotFound` for an unknown id."""
        await self._enter()
        return self._load_schedule(self._stored_schedule(schedule_id))

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        await self._enter()
        return [self._load_schedule(self._schedules[k]) for k in sorted(self._schedules)]

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        """Pause or resume; True when this changed it."""
        self.check_type(paused, bool, "paused")
        await self._enter()
        stored = self._stored_schedule(schedule_id)
        if stored.paused == paused:
            return False
        stored.paused = paused
        return True

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete it; :class:`ScheduleNotFound` for an unknown id."""
        await self._enter()
        self._stored_schedule(schedule_id)
        del self._schedules[schedule_id]

    async def get_due_schedules(self, as_at: datetime, limit: int = 100) -> list[Schedule]:
        """Unpaused schedules due at ``as_at``, earliest first."""
        check_aware(as_at, "as_at")
        check_non_negative(limit, "limit")
        await self._enter()
        due = sorted(
            (s.next_fire_time, s.id)
            for s in self._schedules.values()
            if not s.paused and s.next_fire_time is not None and s.next_fire_time <= as_at
        )
        return [self._load_schedule(self._schedules[i]) for _, i in due[:limit]]

    async def claim_schedule_fire(
        self,
        schedule_id: str,
        due: datetime,
        next_fire_time: datetime | None,
        instance_id: str | None,
    ) -> bool:
        """Compare-and-set of ``next_fire_time`` from ``due`` (see the protocol)."""
        check_aware(due, "due")
        check_aware(next_fire_time, "next_fire_time")
        await self._enter()
        stored = self._schedules.get(schedule_id)
        if stored is None or stored.paused or stored.next_fire_time != due:
            return False
        stored.next_fire_time = _utc(next_fire_time)
        stored.last_fire_time = due.astimezone(UTC)
        if instance_id is not None:
            stored.last_instance_id = instance_id
        return True
