"""Schedules: the :class:`~wfe_core.schedules.ScheduleRepository` part of the SQL
provider. A fire is claimed with one conditional ``UPDATE`` (a compare-and-set on
``next_fire_time``): whoever updates the row owns the fire.

Internal to :mod:`wfe_sql` (a mixin of :class:`~wfe_sql.SqlPersistenceProvider`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from wfe_core.persistence import check_aware, check_non_negative
from wfe_core.schedules import (
    CatchupPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleAlreadyExists,
    ScheduleNotFound,
)

from wfe_sql.driver import Row
from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.schedule_statements import SCHEDULE_COLUMNS, ScheduleStatements
from wfe_sql.times import from_micros, from_micros_opt, to_micros, to_micros_opt

__all__ = ["SqlScheduleRepository"]


class SqlScheduleRepository(SqlRepositoryBase):
    """The schedule store of the SQL provider (table ``wfe_schedules``)."""

    async def _schedule_statements(self) -> ScheduleStatements:
        await self._ready()
        stmts: ScheduleStatements = self.driver.cached("wfe_sql.schedules", ScheduleStatements)
        return stmts

    def _schedule_row(self, s: Schedule) -> dict[str, Any]:
        every = None if s.every is None else s.every // timedelta(microseconds=1)
        values = {
            "id": s.id,
            "definition_id": s.definition_id,
            "version": s.version,
            "data": self._enc(s.data, "schedule.data"),
            "cron": s.cron,
            "every_micros": every,
            "timezone": s.timezone,
            "overlap": s.overlap.value,
            "catchup": s.catchup.value,
            "start_at": to_micros_opt(s.start_at, "start_at"),
            "end_at": to_micros_opt(s.end_at, "end_at"),
            "paused": s.paused,
            "next_fire_time": to_micros_opt(s.next_fire_time, "next_fire_time"),
            "last_fire_time": to_micros_opt(s.last_fire_time, "last_fire_time"),
            "last_instance_id": s.last_instance_id,
            "create_time": to_micros(s.create_time, "create_time"),
        }
        return {f"p_{k}": v for k, v in values.items()}

    def _load_schedule(self, row: Row) -> Schedule:
        r = dict(zip(SCHEDULE_COLUMNS, row, strict=True))
        every = r["every_micros"]
        return Schedule(
            id=r["id"],
            definition_id=r["definition_id"],
            data=self._dec(r["data"], f"schedule {r['id']!r} data"),
            version=r["version"],
            cron=r["cron"],
            every=None if every is None else timedelta(microseconds=every),
            timezone=r["timezone"],
            overlap=OverlapPolicy(r["overlap"]),
            catchup=CatchupPolicy(r["catchup"]),
            start_at=from_micros_opt(r["start_at"]),
            end_at=from_micros_opt(r["end_at"]),
            paused=bool(r["paused"]),
            next_fire_time=from_micros_opt(r["next_fire_time"]),
            last_fire_time=from_micros_opt(r["last_fire_time"]),
            last_instance_id=r["last_instance_id"],
            create_time=from_micros(r["create_time"]),
        )

    async def create_schedule(self, schedule: Schedule) -> None:
        """Store a new schedule; :class:`ScheduleAlreadyExists` when the id is taken."""
        self.check_type(schedule, Schedule, "schedule")
        schedule.validate()
        values = self._schedule_row(schedule)
        s = await self._schedule_statements()
        if not await self.driver.execute(s.insert.sql, s.insert.args(values)):
            raise ScheduleAlreadyExists(schedule.id)

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule; :class:`ScheduleNotFound` for an unknown id."""
        s = await self._schedule_statements()
        row = await self.driver.fetchone(s.select_one.sql, (schedule_id,))
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return self._load_schedule(row)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        s = await self._schedule_statements()
        return [self._load_schedule(r) for r in await self.driver.fetchall(s.select_all.sql)]

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        """Pause or resume; True when this changed it."""
        self.check_type(paused, bool, "paused")
        s = await self._schedule_statements()
        stmt = s.set_paused
        changed = await self.driver.execute(
            stmt.sql, stmt.args({"p_id": schedule_id, "p_paused": paused})
        )
        if not changed:
            await self.get_schedule(schedule_id)  # ScheduleNotFound for an unknown id
        return bool(changed)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete it; :class:`ScheduleNotFound` for an unknown id."""
        s = await self._schedule_statements()
        if not await self.driver.execute(s.delete.sql, (schedule_id,)):
            raise ScheduleNotFound(schedule_id)

    async def get_due_schedules(self, as_at: datetime, limit: int = 100) -> list[Schedule]:
        """Unpaused schedules due at ``as_at``, earliest first."""
        check_aware(as_at, "as_at")
        check_non_negative(limit, "limit")
        s = await self._schedule_statements()
        stmt = s.select_due
        rows = await self.driver.fetchall(
            stmt.sql, stmt.args({"p_as_at": to_micros(as_at, "as_at"), "p_limit": limit})
        )
        return [self._load_schedule(r) for r in rows]

    async def claim_schedule_fire(
        self,
        schedule_id: str,
        due: datetime,
        next_fire_time: datetime | None,
        instance_id: str | None,
    ) -> bool:
        """Compare-and-set of ``next_fire_time`` from ``due`` (see the protocol)."""
        s = await self._schedule_statements()
        stmt = s.claim if instance_id is None else s.claim_with_instance
        values = {
            "p_id": schedule_id,
            "p_due": to_micros(due, "due"),
            "p_next": to_micros_opt(next_fire_time, "next_fire_time"),
            "p_instance": instance_id,
        }
        return bool(await self.driver.execute(stmt.sql, stmt.args(values)))
