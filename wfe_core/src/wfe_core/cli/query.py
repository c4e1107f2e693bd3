"""``wfe show`` and ``wfe list``: read instances (and events) without ``--app``.

Both open the store read-only where its provider supports it
(:func:`wfe_core.cli.session.reader`). Data of a type this process does not know is
shown as it is stored, marked "(raw: type not registered here)"; ``--app`` only
registers your types so that it is shown decoded.
"""

from __future__ import annotations

from typing import Any

import click

from wfe_core.cli.options import (
    DATA_TYPES_HELP,
    MAX_INT64,
    app_option,
    json_option,
    run,
    store_url,
    url_option,
)
from wfe_core.cli.output import (
    emit_json,
    event_json,
    instance_json,
    print_event,
    print_instance,
    print_list,
    read_error,
    summary_json,
)
from wfe_core.cli.session import reader
from wfe_core.errors import EventNotFound, SerializationError, WorkflowNotFound
from wfe_core.models import Event, ExecutionError, WorkflowInstance, WorkflowStatus

__all__ = ["list_", "show"]


@click.command()
@click.argument("workflow_id", metavar="ID")
@app_option(DATA_TYPES_HELP)
@url_option
@json_option
def show(workflow_id: str, app: str | None, url: str | None, as_json: bool) -> None:
    """Show a workflow instance: status, times, data, pointers and errors.

    ID may also be an event's id (as `wfe publish` prints it): then the event is shown,
    with the reason it was set aside if it was. Data of a type this command does not
    know (no --app) is shown as stored, marked "(raw: type not registered here)".
    """
    store = store_url(url)

    async def go() -> tuple[WorkflowInstance, list[ExecutionError]] | Event:
        async with reader(store, app) as session:
            reads = session.client
            try:
                inst = await reads.get_workflow_instance(workflow_id)
            except SerializationError as exc:
                raise read_error(exc, app) from exc
            except WorkflowNotFound:
                try:
                    return await reads.persistence.get_event(workflow_id)
                except (EventNotFound, ValueError, TypeError):
                    raise click.ClickException(
                        f"{WorkflowNotFound(workflow_id)} (and no event has that id)"
                    ) from None
                except SerializationError as exc:
                    raise read_error(exc, app) from exc
            return inst, await reads.get_errors(workflow_id)

    found = run(go())
    if isinstance(found, Event):
        if as_json:
            emit_json(event_json(found))
        else:
            print_event(found)
        return
    inst, errors = found
    if as_json:
        emit_json(instance_json(inst, errors))
    else:
        print_instance(inst, errors)


_STATUSES = [s.value for s in WorkflowStatus]


@click.command("list")
@click.option(
    "--status",
    type=click.Choice(_STATUSES, case_sensitive=False),
    default=None,
    help="Only instances in this status.",
)
@click.option("--definition", default=None, help="Only instances of this definition id.")
@click.option("--reference", default=None, help="Only instances with this reference.")
@click.option(
    "--skip",
    type=click.IntRange(min=0, max=MAX_INT64),
    default=0,
    show_default=True,
    help="Skip this many (in the listing order).",
)
@click.option(
    "--take",
    type=click.IntRange(min=1, max=10_000),
    default=20,
    show_default=True,
    help="Show at most this many.",
)
@click.option(
    "--oldest-first",
    is_flag=True,
    default=False,
    help="List the oldest instances first (default: newest first).",
)
@app_option(DATA_TYPES_HELP)
@url_option
@json_option
def list_(
    status: str | None,
    definition: str | None,
    reference: str | None,
    skip: int,
    take: int,
    oldest_first: bool,
    app: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """List workflow instances, newest first (or --oldest-first), a page at a time,
    with the total that match."""
    store = store_url(url)
    filters: dict[str, Any] = {
        "status": WorkflowStatus(status.lower()) if status else None,
        "definition_id": definition,
        "reference": reference,
    }

    async def go() -> tuple[list[WorkflowInstance], int]:
        async with reader(store, app) as session:
            persistence = session.client.persistence
            try:
                found = await persistence.query_workflows(
                    **filters, skip=skip, take=take + 1, newest_first=not oldest_first
                )
            except SerializationError as exc:
                raise read_error(exc, app) from exc
            return found, await persistence.count_workflows(**filters)

    found, total = run(go())
    more = len(found) > take
    page = found[:take]
    if as_json:
        emit_json(
            {
                "workflows": [summary_json(i) for i in page],
                "skip": skip,
                "take": take,
                "count": len(page),
                "more": more,
                "total": total,
            }
        )
        return
    print_list(page, skip=skip, take=take, total=total, more=more, oldest_first=oldest_first)
