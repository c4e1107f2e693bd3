"""``wfe publish``: publish an event; workflows waiting for it resume. Needs no
``--app``: the event's data is stored as the JSON given."""

from __future__ import annotations

import click

from wfe_core.cli.inputs import parse_json, parse_when
from wfe_core.cli.options import (
    Services,
    json_option,
    run,
    service_options,
    store_url,
    url_option,
)
from wfe_core.cli.output import emit_json, iso
from wfe_core.cli.session import client
from wfe_core.client.idempotency import check_event_id

__all__ = ["publish"]


@click.command()
@click.argument("name")
@click.argument("key")
@click.option(
    "--data",
    default=None,
    metavar="JSON",
    help="The event's data as JSON (@file reads a file, - reads stdin).",
)
@click.option(
    "--effective-date",
    default=None,
    metavar="ISO",
    help="The event's time (ISO 8601; without an offset it is UTC). Subscriptions "
    "made at or before it receive it; a future time holds it back.",
)
@click.option(
    "--event-id",
    default=None,
    metavar="ID",
    help="Publish at most once per ID: run again with the same ID (a retried "
    "webhook), nothing is stored or delivered again and the same id is printed.",
)
@url_option
@service_options
@json_option
def publish(
    name: str,
    key: str,
    data: str | None,
    effective_date: str | None,
    event_id: str | None,
    url: str | None,
    services: Services,
    as_json: bool,
) -> None:
    """Publish event NAME with KEY: workflows waiting for it resume."""
    payload = parse_json(data)
    when = parse_when(effective_date, "--effective-date") if effective_date else None
    if not name:
        raise click.BadParameter("the event name must not be empty", param_hint="NAME")
    try:
        check_event_id(event_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--event-id") from exc
    store = store_url(url)

    async def go() -> str:
        async with client(store, services=services) as session:
            return await session.client.publish_event(name, key, payload, when, event_id=event_id)

    published = run(go())
    if as_json:
        emit_json(
            {
                "id": published,
                "name": name,
                "key": key,
                "effective_date": iso(when),
                "data": payload,
            }
        )
    else:
        click.echo(f"published {name} {key!r}: {published}")
