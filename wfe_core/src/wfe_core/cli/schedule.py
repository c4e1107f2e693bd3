"""``wfe schedule add|list|pause|resume|delete``: schedules stored in the store and
fired by the workers serving it (see :mod:`wfe_core.schedules`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from wfe_core.cli.inputs import parse_json
from wfe_core.cli.options import (
    Services,
    app_option,
    duration_param,
    json_option,
    need_app,
    run,
    service_options,
    store_url,
    url_option,
)
from wfe_core.cli.output import data_text, emit_json, iso, table_console, utc_time
from wfe_core.cli.session import client, reader
from wfe_core.coercion import coerce, jsonable
from wfe_core.errors import SerializationError, WorkflowNotRegistered
from wfe_core.schedules import (
    CatchupPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleAlreadyExists,
    ScheduleNotFound,
)

__all__ = ["schedule", "schedule_json"]


def schedule_json(s: Schedule, upcoming: int = 3) -> dict[str, Any]:
    """A schedule as a JSON document, with its next ``upcoming`` fire times."""
    return {
        "id": s.id,
        "definition": s.definition_id,
        "version": s.version,
        "cron": s.cron,
        "every_seconds": None if s.every is None else s.every.total_seconds(),
        "timezone": s.timezone,
        "overlap": s.overlap.value,
        "catchup": s.catchup.value,
        "paused": s.paused,
        "start_at": iso(s.start_at),
        "end_at": iso(s.end_at),
        "next_fire_times": [iso(t) for t in s.next_fire_times(upcoming)],
        "last_fire_time": iso(s.last_fire_time),
        "last_instance_id": s.last_instance_id,
        "data": jsonable(s.data),
    }


def _spec(s: Schedule) -> str:
    if s.cron is not None:
        return f"cron {s.cron} ({s.timezone})"
    return f"every {s.every}"


@click.group()
def schedule() -> None:
    """Start workflows on a cron expression or a fixed interval (fired by the workers)."""


@schedule.command("add")
@click.argument("schedule_id", metavar="ID")
@click.argument("definition")
@click.option("--cron", default=None, metavar="EXPR", help="Cron expression, e.g. '0 9 * * 1-5'.")
@click.option(
    "--every",
    default=None,
    metavar="DURATION",
    callback=duration_param,
    help="Fixed interval instead of --cron, e.g. 30s, 15m, 1h30m.",
)
@click.option(
    "--timezone", default="UTC", show_default=True, help="IANA time zone the cron runs in."
)
@click.option(
    "--overlap",
    type=click.Choice([p.value for p in OverlapPolicy]),
    default=OverlapPolicy.SKIP.value,
    show_default=True,
    help="skip: start nothing while the previous run runs; allow: start anyway.",
)
@click.option(
    "--catchup",
    type=click.Choice([p.value for p in CatchupPolicy]),
    default=CatchupPolicy.ONE.value,
    show_default=True,
    help="Due times missed while no worker ran: one catch-up run, or skip them.",
)
@click.option(
    "--data",
    default=None,
    metavar="JSON",
    help="The workflow's data as JSON (@file reads a file, - reads stdin).",
)
@click.option("--version", "version", type=click.IntRange(min=1), default=None)
@click.option("--paused", is_flag=True, help="Create it paused.")
@app_option()
@url_option
@service_options
@json_option
def add(
    schedule_id: str,
    definition: str,
    cron: str | None,
    every: timedelta | None,
    timezone: str,
    overlap: str,
    catchup: str,
    data: str | None,
    version: int | None,
    paused: bool,
    app: str | None,
    url: str | None,
    services: Services,
    as_json: bool,
) -> None:
    """Add schedule ID starting DEFINITION on --cron or --every. Needs --app."""
    spec = need_app(app, "schedule add")
    if (cron is None) == (every is None):
        raise click.UsageError("give exactly one of --cron EXPR and --every DURATION")
    try:  # validate before touching the store
        Schedule(
            id=schedule_id, definition_id=definition, cron=cron, every=every, timezone=timezone
        ).validate()
    except (TypeError, ValueError) as exc:
        hint = "--cron" if "cron" in str(exc) else "--timezone" if "zone" in str(exc) else None
        raise click.BadParameter(str(exc), param_hint=hint or "--every") from exc
    payload = parse_json(data)
    store = store_url(url)

    async def go() -> Schedule:
        async with client(store, spec, services) as session:
            try:
                found = session.definition(definition, version)
            except WorkflowNotRegistered:
                known = ", ".join(sorted(f"{d.id} v{d.version}" for d in session.definitions))
                raise click.BadParameter(
                    f"workflow definition {definition!r} is not registered by --app {spec} "
                    f"(it registers: {known})",
                    param_hint="DEFINITION",
                ) from None
            try:
                value = coerce(payload, found.data_type) if data is not None else None
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--data") from exc
            try:
                return await session.client.create_schedule(
                    schedule_id,
                    found.id,
                    value,
                    version=found.version,
                    cron=cron,
                    every=every,
                    timezone=timezone,
                    overlap=overlap,
                    catchup=catchup,
                    paused=paused,
                )
            except ScheduleAlreadyExists as exc:
                raise click.ClickException(str(exc)) from exc
            except (TypeError, SerializationError) as exc:
                raise click.BadParameter(str(exc), param_hint="--data") from exc

    made = run(go())
    if as_json:
        emit_json(schedule_json(made))
    else:
        times = ", ".join(utc_time(t) for t in made.next_fire_times(3)) or "none"
        click.echo(f"schedule {made.id} added ({_spec(made)}); next: {times}")


@schedule.command("list")
@click.option("--next", "upcoming", type=click.IntRange(min=0, max=100), default=3)
@app_option("Register your workflows' data types (module:attr, or WFE_APP) to show data.")
@url_option
@json_option
def list_schedules(upcoming: int, app: str | None, url: str | None, as_json: bool) -> None:
    """List schedules with their next fire times (UTC)."""
    store = store_url(url)

    async def go() -> list[Schedule]:
        async with reader(store, app) as session:
            return await session.client.list_schedules()

    found = run(go())
    if as_json:
        emit_json([schedule_json(s, upcoming) for s in found])
        return
    if not found:
        click.echo("no schedules")
        return
    from rich.table import Table

    table = Table("id", "definition", "when", "overlap", "state", "next fire times", "data")
    for s in found:
        table.add_row(
            s.id,
            s.definition_id,
            _spec(s),
            s.overlap.value,
            "paused" if s.paused else "active",
            "\n".join(utc_time(t) for t in s.next_fire_times(upcoming)) or "-",
            data_text(s.data),
        )
    table_console().print(table)


def _change(action: str) -> click.Command:
    past = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[action]

    @click.command(action, help=f"{action.capitalize()} schedule ID.")
    @click.argument("schedule_id", metavar="ID")
    @url_option
    @json_option
    def command(schedule_id: str, url: str | None, as_json: bool) -> None:
        store = store_url(url)

        async def go() -> bool:
            async with client(store) as session:
                host = session.client
                try:
                    if action == "delete":
                        await host.delete_schedule(schedule_id)
                        return True
                    changed: bool = await getattr(host, f"{action}_schedule")(schedule_id)
                    return changed
                except ScheduleNotFound as exc:
                    raise click.ClickException(str(exc)) from exc

        changed = run(go())
        if as_json:
            emit_json({"id": schedule_id, "action": action, "changed": changed})
        elif changed:
            click.echo(f"schedule {schedule_id} {past}")
        else:
            click.echo(f"schedule {schedule_id} was already {past}")

    return command


for _action in ("pause", "resume", "delete"):
    schedule.add_command(_change(_action))
