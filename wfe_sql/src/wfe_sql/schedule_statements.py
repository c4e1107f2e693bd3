"""The statements of the schedule store (:mod:`wfe_sql.repository.schedules`), built
with SQLAlchemy Core and compiled once per dialect (:meth:`SqlDriver.cached`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, select, update

from wfe_sql.driver import SqlDriver
from wfe_sql.schema import schedules

__all__ = ["SCHEDULE_COLUMNS", "ScheduleStatements"]

SCHEDULE_COLUMNS: tuple[str, ...] = tuple(c.key for c in schedules.c)
"""Every column of ``wfe_schedules``, in the order the ``SELECT`` statements return them."""


def _b(name: str) -> Any:
    return bindparam(f"p_{name}")


class ScheduleStatements:
    """The compiled schedule statements for one dialect."""

    def __init__(self, driver: SqlDriver) -> None:
        c = driver.compile
        t = driver.tables.schedules
        columns = [t.c[n] for n in SCHEDULE_COLUMNS]
        self.insert = c(
            driver.insert(t)
            .values({t.c[n]: _b(n) for n in SCHEDULE_COLUMNS})
            .on_conflict_do_nothing(index_elements=[t.c.id])
        )
        self.select_one = c(select(*columns).where(t.c.id == _b("id")))
        self.select_all = c(select(*columns).order_by(t.c.id))
        self.select_due = c(
            select(*columns)
            .where(
                t.c.next_fire_time.is_not(None),
                t.c.next_fire_time <= _b("as_at"),
                t.c.paused.is_(False),
            )
            .order_by(t.c.next_fire_time, t.c.id)
            .limit(_b("limit"))
        )
        self.set_paused = c(
            update(t)
            .where(t.c.id == _b("id"), t.c.paused != _b("paused"))
            .values(paused=_b("paused"))
        )
        self.delete = c(delete(t).where(t.c.id == _b("id")))
        # the fire claim: whoever moves next_fire_time on from the due time owns the fire
        where = (t.c.id == _b("id"), t.c.next_fire_time == _b("due"), t.c.paused.is_(False))
        self.claim = c(
            update(t).where(*where).values(next_fire_time=_b("next"), last_fire_time=_b("due"))
        )
        self.claim_with_instance = c(
            update(t)
            .where(*where)
            .values(
                next_fire_time=_b("next"),
                last_fire_time=_b("due"),
                last_instance_id=_b("instance"),
            )
        )
