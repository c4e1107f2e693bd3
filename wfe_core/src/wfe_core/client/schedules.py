"""The schedule part of the client: create, read, pause, resume and delete schedules
(see :mod:`wfe_core.schedules`; a started :class:`~wfe_core.host.WorkflowHost` fires
them, :mod:`wfe_core.host.schedules`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from wfe_core.client.core import ClientCore
from wfe_core.models import utcnow
from wfe_core.schedules import (
    CatchupPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleRepository,
    SchedulesNotSupported,
)
from wfe_core.workflow import Workflow

__all__ = ["ScheduleClient", "schedule_store"]


def schedule_store(persistence: object) -> ScheduleRepository:
    """``persistence`` as a :class:`~wfe_core.schedules.ScheduleRepository`, or
    :class:`~wfe_core.schedules.SchedulesNotSupported` naming the provider."""
    if not isinstance(persistence, ScheduleRepository):
        raise SchedulesNotSupported(
            f"{type(persistence).__name__} does not store schedules (it does not implement "
            "wfe_core.schedules.ScheduleRepository); use a store that does, e.g. memory://, "
            "sqlite:// or postgresql://"
        )
    return persistence


def _policy(kind: type[OverlapPolicy] | type[CatchupPolicy], value: str, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}") from None


class ScheduleClient(ClientCore):
    """Schedules on the client (and so on every host)."""

    async def create_schedule(
        self,
        schedule_id: str,
        workflow: type[Workflow[Any]] | Workflow[Any] | str,
        data: Any = None,
        *,
        version: int | None = None,
        cron: str | None = None,
        every: timedelta | None = None,
        timezone: str = "UTC",
        overlap: OverlapPolicy | str = OverlapPolicy.SKIP,
        catchup: CatchupPolicy | str = CatchupPolicy.ONE,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        paused: bool = False,
    ) -> Schedule:
        """Store a schedule that starts ``workflow`` (a ``Workflow`` -- registered here
        when new -- or a definition id) with ``data`` on ``cron`` (evaluated in
        ``timezone``) or ``every`` (exactly one of the two), and return it.

        ``overlap`` says whether a fire starts a run while the previous one has not
        ended (``skip``, the default, or ``allow``); ``catchup`` what happens to due
        times missed while no host ran (``one`` catch-up run, the default, or
        ``skip``). Fires happen from ``start_at`` until ``end_at``. Raises
        ``ValueError`` naming the problem (invalid cron expression, unknown time zone,
        non-positive interval, both or neither of cron / every) and
        :class:`~wfe_core.schedules.ScheduleAlreadyExists` for a taken id; nothing is
        stored then."""
        if isinstance(workflow, type):
            if not issubclass(workflow, Workflow):
                raise TypeError(f"create_schedule takes a Workflow, not {workflow.__name__}")
            workflow = workflow()
        if isinstance(workflow, Workflow):
            if self.registry.find(workflow.id, workflow.version) is None:
                self.register_workflow(workflow)
            definition_id, version = workflow.id, workflow.version
        elif isinstance(workflow, str):
            definition_id = workflow
        else:
            raise TypeError(
                "create_schedule takes a Workflow or a definition id, "
                f"not {type(workflow).__name__}"
            )
        if not isinstance(paused, bool):
            raise TypeError(f"paused must be a bool, not {type(paused).__name__}")
        schedule = Schedule(
            id=schedule_id,
            definition_id=definition_id,
            data=data,
            version=version,
            cron=cron,
            every=every,
            timezone=timezone,
            overlap=_policy(OverlapPolicy, overlap, "overlap"),
            catchup=_policy(CatchupPolicy, catchup, "catchup"),
            start_at=start_at,
            end_at=end_at,
            paused=paused,
            create_time=utcnow(),
        )
        schedule.validate()
        schedule.next_fire_time = schedule.first_fire_time()
        await schedule_store(self.persistence).create_schedule(schedule)
        return schedule

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The stored schedule; :class:`~wfe_core.schedules.ScheduleNotFound` for an
        unknown id."""
        return await schedule_store(self.persistence).get_schedule(schedule_id)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by id."""
        return await schedule_store(self.persistence).list_schedules()

    async def pause_schedule(self, schedule_id: str) -> bool:
        """Pause it (nothing fires until resumed); True when it was running."""
        return await schedule_store(self.persistence).set_schedule_paused(schedule_id, True)

    async def resume_schedule(self, schedule_id: str) -> bool:
        """Resume it; True when it was paused. Due times missed while paused follow
        its catch-up policy."""
        return await schedule_store(self.persistence).set_schedule_paused(schedule_id, False)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete it (instances it started stay);
        :class:`~wfe_core.schedules.ScheduleNotFound` for an unknown id."""
        await schedule_store(self.persistence).delete_schedule(schedule_id)

    async def next_fire_times(self, schedule_id: str, n: int = 5) -> list[datetime]:
        """The schedule's next ``n`` due times (UTC)."""
        return (await self.get_schedule(schedule_id)).next_fire_times(n)
