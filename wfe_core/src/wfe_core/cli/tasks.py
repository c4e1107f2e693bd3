"""``wfe tasks list|complete``: user tasks waiting for a person (see
:mod:`wfe_core.user_tasks`).

The CLI does not authenticate anyone: ``--user`` (and ``--group``) say who completes a
task, exactly as an application passes them to ``client.complete_user_task`` after it
has authenticated the person.
"""

from __future__ import annotations

import click

from wfe_core.cli.inputs import parse_json
from wfe_core.cli.options import app_option, json_option, run, store_url, url_option
from wfe_core.cli.output import emit_json, table_console
from wfe_core.cli.session import client, reader
from wfe_core.cli.task_output import user_task_json, user_tasks_table
from wfe_core.errors import SerializationError
from wfe_core.user_tasks import (
    OpenUserTask,
    UserTaskError,
    UserTaskInvalidOption,
    UserTaskNotAssigned,
    UserTaskNotFound,
    UserTaskNotOpen,
)

__all__ = ["tasks"]

_APP_HELP = (
    "Register your workflows' data types (module:attr, or WFE_APP) so that completion "
    "--data of your types can be stored."
)


@click.group()
def tasks() -> None:
    """User tasks: list the open ones, complete one (the workers run what follows)."""


@tasks.command("list")
@click.option("--user", default=None, metavar="USER", help="Only tasks USER may complete.")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Only tasks assigned to GROUP (repeat for several; with --user: either).",
)
@click.option("--workflow", "workflow_id", default=None, metavar="ID", help="Only this instance.")
@click.option("--definition", default=None, help="Only instances of this definition id.")
@app_option("Register your workflows' data types (module:attr, or WFE_APP).")
@url_option
@json_option
def list_tasks(
    user: str | None,
    groups: tuple[str, ...],
    workflow_id: str | None,
    definition: str | None,
    app: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """List open user tasks, oldest first. Without --workflow every unfinished instance
    is read (fine for an inbox; slow on a store with very many of them)."""
    store = store_url(url)

    async def go() -> list[OpenUserTask]:
        async with reader(store, app) as session:
            return await session.client.get_open_user_tasks(
                user=user, group=list(groups), workflow_id=workflow_id, definition_id=definition
            )

    found = run(go())
    if as_json:
        emit_json([user_task_json(t) for t in found])
        return
    if not found:
        click.echo("no open user tasks")
        return
    table_console().print(user_tasks_table(found))


@tasks.command("complete")
@click.argument("task_id", metavar="TASK_ID")
@click.option("--user", required=True, metavar="USER", help="Who completes it (not checked).")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="A group USER is in (repeat for several): enough for a task assigned to it.",
)
@click.option("--option", "option", required=True, metavar="VALUE", help="The chosen option.")
@click.option(
    "--data",
    default=None,
    metavar="JSON",
    help="Data for the workflow, as JSON (@file reads a file, - reads stdin).",
)
@app_option(_APP_HELP)
@url_option
@json_option
def complete(
    task_id: str,
    user: str,
    groups: tuple[str, ...],
    option: str,
    data: str | None,
    app: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Complete user task TASK_ID as --user with --option (and --data). Refused
    (exit status 1) when the task is not open, USER may not complete it, or VALUE is
    not one of its options."""
    payload = parse_json(data)
    store = store_url(url)

    async def go() -> None:
        async with client(store, app) as session:
            try:
                await session.client.complete_user_task(
                    task_id, option, user=user, groups=list(groups), data=payload
                )
            except UserTaskInvalidOption as exc:
                raise click.BadParameter(str(exc), param_hint="--option") from exc
            except (UserTaskNotFound, UserTaskNotOpen, UserTaskNotAssigned) as exc:
                raise click.ClickException(str(exc)) from exc
            except (TypeError, SerializationError) as exc:
                raise click.BadParameter(str(exc), param_hint="--data") from exc
            except UserTaskError as exc:  # pragma: no cover - every kind is named above
                raise click.ClickException(str(exc)) from exc

    run(go())
    if as_json:
        emit_json({"task_id": task_id, "option": option, "user": user, "completed": True})
    else:
        click.echo(f"user task {task_id} completed by {user} with {option!r}")
