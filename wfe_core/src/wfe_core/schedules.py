"""Schedules: start a workflow on a cron expression or a fixed interval.

A :class:`Schedule` is stored in the database (the :class:`ScheduleRepository` part of
a store) and fired by every running :class:`~wfe_core.host.WorkflowHost` on that store
(:mod:`wfe_core.host.schedules`), exactly once per due time however many hosts run:

* each fire starts its instance with the idempotency key :func:`fire_key` (the
  schedule id and the due time), so two hosts -- or one host retrying after a crash --
  that fire the same due time start one instance;
* then the host claims the fire in the store with a compare-and-set on the stored
  ``next_fire_time`` (:meth:`ScheduleRepository.claim_schedule_fire`); whoever moves it
  on owns the fire, a loser changes nothing.

Order and crashes: start first, claim second. A crash between the two leaves the due
time stored; the next pass (on any host) starts again with the same key, which starts
nothing and returns the instance already started, and then claims. Nothing is lost and
nothing runs twice -- unless the started instance was purged (which drops its key)
before the fire was claimed.

Times are evaluated in the schedule's ``timezone`` (an IANA name; cron DST-correct
through ``croniter`` and :mod:`zoneinfo`) and stored in UTC. "Now" is the engine's
clock (:func:`wfe_core.models.utcnow`), so a test's virtual clock drives schedules too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter  # type: ignore[import-untyped]

from wfe_core.errors import NotFoundError, WfeError
from wfe_core.models import utcnow
from wfe_core.persistence import check_aware, check_id, check_key

__all__ = [
    "SKIP_GRACE",
    "CatchupPolicy",
    "OverlapPolicy",
    "Schedule",
    "ScheduleAlreadyExists",
    "ScheduleNotFound",
    "ScheduleRepository",
    "SchedulesNotSupported",
    "fire_key",
    "supports_schedules",
]

SKIP_GRACE = timedelta(minutes=1)
"""With :attr:`CatchupPolicy.SKIP`, how late a due time may still be fired."""

_ZERO = timedelta(0)
_TINY = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class OverlapPolicy(StrEnum):
    """What a fire does while the schedule's previous run has not ended."""

    SKIP = "skip"
    """Start nothing for this due time (the default, like Temporal's)."""

    ALLOW = "allow"
    """Start another run anyway."""


class CatchupPolicy(StrEnum):
    """What happens to due times missed while no host ran (or while paused)."""

    ONE = "one"
    """Fire one catch-up run for the missed due times, then go on (the default)."""

    SKIP = "skip"
    """Skip missed due times: fire only a due time at most :data:`SKIP_GRACE` late
    and with no later due time already passed."""


class ScheduleNotFound(NotFoundError):
    """No schedule has this id."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(
            f"no schedule with id {schedule_id!r}: list them with `wfe schedule list` "
            "or client.list_schedules()"
        )
        self.schedule_id = schedule_id


class ScheduleAlreadyExists(WfeError, ValueError):
    """A schedule with this id exists already."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(
            f"a schedule with id {schedule_id!r} exists already: pick another id, or "
            "delete the existing one first"
        )
        self.schedule_id = schedule_id


class SchedulesNotSupported(WfeError, NotImplementedError):
    """The persistence provider does not implement :class:`ScheduleRepository`."""


def fire_key(schedule_id: str, due: datetime) -> str:
    """The idempotency key of the instance a schedule starts for ``due``."""
    return f"schedule:{schedule_id}:{due.astimezone(UTC).isoformat()}"


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str):
        raise TypeError(f"timezone must be a str (an IANA name), not {type(name).__name__}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from exc


def check_cron(expression: object) -> str:
    """Refuse an invalid cron expression with ``ValueError`` naming it."""
    if not isinstance(expression, str):
        raise TypeError(f"cron must be a str, not {type(expression).__name__}")
    try:
        croniter(expression)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ValueError(
            f"invalid cron expression {expression!r}: {exc} "
            "(five fields: minute hour day-of-month month day-of-week, e.g. '0 9 * * 1-5')"
        ) from exc
    return expression


@dataclass
class Schedule:
    """A stored schedule: start ``definition_id`` (with ``data``) on ``cron`` or
    ``every``.

    Exactly one of ``cron`` (evaluated in ``timezone``) and ``every`` (a positive
    timedelta counted from ``start_at``, or from the Unix epoch when there is none: an
    hourly schedule fires on the hour) is set.
    Fires happen at or after ``start_at`` and not after ``end_at``. ``next_fire_time``
    is the next due time (UTC; None when the schedule has no more), ``last_fire_time``
    the last claimed one and ``last_instance_id`` the instance last started.
    """

    id: str
    definition_id: str
    data: Any = None
    version: int | None = None
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup: CatchupPolicy = CatchupPolicy.ONE
    start_at: datetime | None = None
    end_at: datetime | None = None
    paused: bool = False
    next_fire_time: datetime | None = None
    last_fire_time: datetime | None = None
    last_instance_id: str | None = None
    create_time: datetime = field(default_factory=utcnow)

    def validate(self) -> None:
        """Raise ``TypeError`` / ``ValueError`` naming what is wrong and how to fix it."""
        check_id(self.id, "schedule id")
        if not self.id:
            raise ValueError("schedule id must not be empty")
        check_key(self.definition_id, "definition_id")
        if not self.definition_id:
            raise ValueError("definition_id must not be empty")
        if self.version is not None and (
            not isinstance(self.version, int) or isinstance(self.version, bool)
        ):
            raise TypeError(f"version must be an int or None, not {self.version!r}")
        if (self.cron is None) == (self.every is None):
            raise ValueError(
                "give exactly one of cron= (e.g. '0 9 * * *') and every= (a timedelta), "
                f"not {'both' if self.cron is not None else 'neither'}"
            )
        if self.cron is not None:
            check_cron(self.cron)
        if self.every is not None:
            if not isinstance(self.every, timedelta):
                raise TypeError(f"every must be a timedelta, not {type(self.every).__name__}")
            if self.every <= _ZERO:
                raise ValueError(f"every must be a positive interval, not {self.every}")
        _zone(self.timezone)
        self.overlap = OverlapPolicy(self.overlap)
        self.catchup = CatchupPolicy(self.catchup)
        for name in ("start_at", "end_at", "next_fire_time", "last_fire_time", "create_time"):
            check_aware(getattr(self, name), name)
        if self.start_at and self.end_at and self.end_at < self.start_at:
            raise ValueError(f"end_at ({self.end_at}) is before start_at ({self.start_at})")

    def fire_time_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (UTC), or None when none is left."""
        start = self.start_at
        if self.every is not None:
            anchor = start if start is not None else _EPOCH
            if after < anchor:
                found = anchor
            else:
                steps = (after - anchor) // self.every + 1
                found = anchor + self.every * steps
        else:
            base = after
            if start is not None and start > after:
                base = start - _TINY
            it = croniter(self.cron, base.astimezone(_zone(self.timezone)))
            found = it.get_next(datetime)
        found = found.astimezone(UTC)
        if self.end_at is not None and found > self.end_at:
            return None
        return found

    def first_fire_time(self) -> datetime | None:
        """The first fire time from ``create_time`` (what a new schedule stores): at
        or after ``start_at`` when that is later, else after ``create_time``."""
        after = self.create_time
        if self.start_at is not None and self.start_at >= after:
            after = self.start_at - _TINY
        return self.fire_time_after(after)

    def next_fire_times(self, n: int = 5) -> list[datetime]:
        """The next ``n`` due times (UTC), from the stored ``next_fire_time``."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, not {n!r}")
        out: list[datetime] = []
        at = self.next_fire_time
        while at is not None and len(out) < n:
            out.append(at)
            at = self.fire_time_after(at)
        return out

    def copy(self, **changes: Any) -> Schedule:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


@runtime_checkable
class ScheduleRepository(Protocol):
    """The schedule store. Every in-repo provider implements it; a host fires the
    schedules of a provider that does (:func:`supports_schedules`)."""

    async def create_schedule(self, schedule: Schedule) -> None:
        """Store a new schedule (validated, as given: the caller sets
        ``next_fire_time``); raise :class:`ScheduleAlreadyExists` when the id is taken."""
        ...

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule; :class:`ScheduleNotFound` for an unknown id."""
        ...

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        ...

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        """Pause or resume; True when this changed it. :class:`ScheduleNotFound` for an
        unknown id. A paused schedule is never due; resuming keeps ``next_fire_time``
        (the catch-up policy decides about the times missed meanwhile)."""
        ...

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete it (instances it started stay); :class:`ScheduleNotFound` for an
        unknown id."""
        ...

    async def get_due_schedules(self, as_at: datetime, limit: int = 100) -> list[Schedule]:
        """Unpaused schedules with ``next_fire_time <= as_at``, earliest first."""
        ...

    async def claim_schedule_fire(
        self,
        schedule_id: str,
        due: datetime,
        next_fire_time: datetime | None,
        instance_id: str | None,
    ) -> bool:
        """Atomically: if the schedule exists, is not paused and its ``next_fire_time``
        equals ``due``, set it to ``next_fire_time``, ``last_fire_time`` to ``due``
        and (when not None) ``last_instance_id``, and return True; otherwise change
        nothing and return False. Of concurrent claims of one due time exactly one
        wins."""
        ...


def supports_schedules(provider: object) -> bool:
    """Whether ``provider`` implements :class:`ScheduleRepository`."""
    return isinstance(provider, ScheduleRepository)
