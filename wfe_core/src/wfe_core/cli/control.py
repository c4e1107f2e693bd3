"""``wfe suspend``, ``wfe resume``, ``wfe terminate`` and ``wfe purge``: change or
delete instances. None needs ``--app``: control requests are stored and applied
without decoding the instance's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from wfe_core.capabilities import Capability
from wfe_core.cli.options import (
    Services,
    app_option,
    duration_param,
    json_option,
    run,
    service_options,
    store_url,
    url_option,
)
from wfe_core.cli.output import emit_json, iso, read_error, utc_time
from wfe_core.cli.session import client
from wfe_core.errors import SerializationError
from wfe_core.models import WorkflowInstance, WorkflowStatus
from wfe_core.registry import redact_url

__all__ = ["control_command", "purge", "resume", "suspend", "terminate"]


def control_command(action: str, done: str, allowed: str) -> click.Command:
    """``wfe ACTION ID`` for ``suspend``, ``resume`` or ``terminate``: ``done`` is the
    past tense, ``allowed`` says which instances it applies to."""

    @click.command(action, help=f"{action.capitalize()} a workflow instance ({allowed}).")
    @click.argument("workflow_id", metavar="ID")
    @app_option(
        "Register your workflows' data types (module:attr, or WFE_APP) to rewrite the instance."
    )
    @url_option
    @service_options
    @json_option
    def command(
        workflow_id: str, app: str | None, url: str | None, services: Services, as_json: bool
    ) -> None:
        store = store_url(url)

        async def go() -> tuple[bool, WorkflowInstance]:
            async with client(store, app, services) as session:
                host = session.client
                try:
                    await host.get_workflow_instance(workflow_id)  # WorkflowNotFound
                    changed: bool = await getattr(host, f"{action}_workflow")(workflow_id)
                    return changed, await host.get_workflow_instance(workflow_id)
                except SerializationError as exc:
                    raise read_error(exc, app) from exc

        changed, after = run(go())
        status = after.status.value
        pending = changed and after.control_request is not None
        if as_json:
            emit_json(
                {
                    "id": workflow_id,
                    "action": action,
                    "changed": changed,
                    "status": status,
                    "pending": after.control_request,
                }
            )
        if not changed:
            raise click.ClickException(
                f"workflow {workflow_id} was not {done}: it is {status} ({allowed})"
            )
        if not as_json:
            if pending:
                # a worker (another process) holds it: the request is stored, and that
                # worker applies it within about a second
                click.echo(
                    f"workflow {workflow_id}: {action} requested; the worker running it "
                    f"applies it (status now: {status})"
                )
            else:
                click.echo(f"workflow {workflow_id} {done} (status: {status})")

    return command


suspend = control_command("suspend", "suspended", "only a runnable one can be suspended")
"""``wfe suspend ID``."""
resume = control_command("resume", "resumed", "only a suspended one can be resumed")
"""``wfe resume ID``."""
terminate = control_command("terminate", "terminated", "only an unfinished one can be terminated")
"""``wfe terminate ID``."""


@click.command()
@click.option(
    "--status",
    type=click.Choice(["complete", "terminated"], case_sensitive=False),
    required=True,
    help="Purge instances that ended in this status.",
)
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    callback=duration_param,
    help="Only those that ended longer ago than this, e.g. 7d, 12h, 30m, 1h30m.",
)
@url_option
@json_option
def purge(status: str, older_than: timedelta, url: str | None, as_json: bool) -> None:
    """Delete finished instances (with their pointers, subscriptions and errors)."""
    store = store_url(url)
    wanted = WorkflowStatus(status.lower())
    try:
        cutoff = datetime.now(UTC) - older_than
    except OverflowError:
        raise click.BadParameter(
            f"{older_than.days:,} days ago falls before the year 1: nothing ended that long "
            "ago; give a shorter duration",
            param_hint="'--older-than'",
        ) from None

    async def go() -> int:
        async with client(store) as session:
            persistence = session.client.persistence
            if Capability.PURGE not in persistence.capabilities:
                raise click.ClickException(
                    f"the store at {redact_url(store)} ({type(persistence).__name__}) "
                    "does not support purging (it does not declare the PURGE capability)"
                )
            return await persistence.purge_workflows(wanted, cutoff)

    count = run(go())
    if as_json:
        emit_json({"purged": count, "status": wanted.value, "older_than": iso(cutoff)})
    else:
        click.echo(
            f"purged {count} {wanted.value} workflow{'s' if count != 1 else ''} that "
            f"ended before {utc_time(cutoff)}"
        )
