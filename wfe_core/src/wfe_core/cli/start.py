"""``wfe start``: start a workflow instance of a definition ``--app`` registers, its
data built into the definition's data type from ``--data``."""

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
from wfe_core.cli.output import emit_json
from wfe_core.cli.session import client
from wfe_core.coercion import coerce
from wfe_core.errors import SerializationError, WorkflowNotRegistered
from wfe_core.models import WorkflowStatus
from wfe_core.persistence import check_idempotency_key

__all__ = ["start"]


@click.command()
@click.argument("definition")
@click.option(
    "--data",
    default=None,
    metavar="JSON",
    help="The workflow's data as JSON (@file reads a file, - reads stdin), built "
    "into the definition's data type.",
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="Definition version (default: the newest registered).",
)
@click.option("--reference", default=None, help="Your own reference for the instance.")
@click.option(
    "--idempotency-key",
    default=None,
    metavar="KEY",
    help="Start at most once per KEY and definition: run again with the same key and "
    "data, it prints the id of the instance already started and starts nothing.",
)
@click.option(
    "--execution-timeout",
    default=None,
    metavar="DURATION",
    callback=duration_param,
    help="Terminate the instance if it has not ended this long after it starts "
    "(30s, 15m, 2h, 3d, 1h30m).",
)
@app_option()
@url_option
@service_options
@json_option
def start(
    definition: str,
    data: str | None,
    version: int | None,
    reference: str | None,
    idempotency_key: str | None,
    execution_timeout: timedelta | None,
    app: str | None,
    url: str | None,
    services: Services,
    as_json: bool,
) -> None:
    """Start a workflow instance of DEFINITION; print its id.

    Needs --app (or WFE_APP) to know the definition and build its data type from --data.
    The instance runs on whichever worker serves this store.
    """
    spec = need_app(app, "start")
    if execution_timeout is not None and execution_timeout <= timedelta(0):
        raise click.BadParameter("must be a positive duration", param_hint="--execution-timeout")
    try:
        check_idempotency_key(idempotency_key, "the idempotency key")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--idempotency-key") from exc
    payload = parse_json(data)
    store = store_url(url)

    async def go() -> dict[str, Any]:
        async with client(store, spec, services) as session:
            try:
                found = session.definition(definition, version)
            except WorkflowNotRegistered:
                known = ", ".join(sorted(f"{d.id} v{d.version}" for d in session.definitions))
                what = repr(definition) + (f" version {version}" if version else "")
                raise click.BadParameter(
                    f"workflow definition {what} is not registered by --app {spec} "
                    f"(it registers: {known})",
                    param_hint="DEFINITION",
                ) from None
            try:
                value = coerce(payload, found.data_type) if data is not None else None
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--data") from exc
            try:
                wid = await session.client.start_workflow(
                    found.id,
                    value,
                    version=found.version,
                    reference=reference,
                    idempotency_key=idempotency_key,
                    execution_timeout=execution_timeout,
                )
            except (TypeError, SerializationError) as exc:
                raise click.BadParameter(str(exc), param_hint="--data") from exc
            started: dict[str, Any] = {
                "id": wid,
                "definition": found.id,
                "version": found.version,
                "reference": reference,
                "status": WorkflowStatus.RUNNABLE.value,
            }
            if execution_timeout is not None:
                deadline = (await session.client.get_workflow_instance(wid)).execution_deadline
                started["execution_deadline"] = deadline.isoformat() if deadline else None
            if idempotency_key is not None:  # maybe started before: its status now
                started["idempotency_key"] = idempotency_key
                started["status"] = (await session.client.get_workflow_instance(wid)).status.value
            return started

    result = run(go())
    if as_json:
        emit_json(result)
    else:
        click.echo(f"started {result['definition']} v{result['version']}: {result['id']}")
