"""``wfe definitions load|list|show``: workflow definitions written as JSON or YAML
documents (definitions as data, :mod:`wfe_core.definitions`), kept in the store with
their version so every worker on it runs the same one.

``load FILE`` always checks the document (schema, expressions, step ids and
references) before storing it; with ``--app`` it also builds it with the application's
:class:`~wfe_core.definitions.DefinitionRegistry`, so an unknown step or data type or a
step input the type does not have is refused before anything is stored. ``--app``
names either a ``DefinitionRegistry`` (``myapp.flows:registry``) or what ``wfe worker
--app`` takes, whose registration sets ``host.definition_registry``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from wfe_core.app_loading import AppLoadError, import_target
from wfe_core.cli.options import app_option, json_option, run, store_url, url_option
from wfe_core.cli.output import emit_json, iso, table_console, utc_time
from wfe_core.cli.session import client, reader
from wfe_core.definitions import (
    DefinitionRegistry,
    DefinitionRepository,
    StoredDefinition,
    parse_definition,
)
from wfe_core.definitions.document import guess_format
from wfe_core.definitions.errors import DefinitionLoadError, DefinitionNotFound
from wfe_core.registry import redact_url

__all__ = ["definitions"]

LOAD_APP_HELP = (
    "Check the document against your application's step and data types: a "
    "DefinitionRegistry (module:attr), or the --app of your workers when its "
    "registration sets host.definition_registry (env: WFE_APP)."
)


def _store_of(session_client: Any) -> DefinitionRepository:
    store = session_client.persistence
    if not isinstance(store, DefinitionRepository):
        raise click.ClickException(
            f"{type(store).__name__} does not store workflow definitions (definitions as "
            "data need a store implementing wfe_core.definitions.DefinitionRepository)"
        )
    return store


@click.group()
def definitions() -> None:
    """Workflow definitions written as JSON or YAML, stored with their version."""


@definitions.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "yaml"]),
    default=None,
    help="The document's format (default: from the file's extension).",
)
@app_option(LOAD_APP_HELP)
@url_option
@json_option
def load(fmt: str | None, file: Path, app: str | None, url: str | None, as_json: bool) -> None:
    """Check FILE and store it in the store with its version."""
    if fmt is None:
        try:
            fmt = guess_format(file.name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--format") from exc
    text = file.read_bytes()
    try:
        parsed = parse_definition(text, fmt)
    except DefinitionLoadError as exc:
        raise click.ClickException(f"{file}: {exc}") from exc
    registry: DefinitionRegistry | None = None
    spec = app
    if app is not None:
        try:
            target = import_target(app)
        except AppLoadError as exc:
            raise click.BadParameter(str(exc), param_hint="--app") from exc
        if isinstance(target, DefinitionRegistry):
            registry, spec = target, None
    store = store_url(url)

    async def go() -> bool:
        async with client(store, spec) as session:
            repository = _store_of(session.client)
            if app is not None:
                from wfe_core.definitions.loader import build_definition

                try:
                    build_definition(parsed, registry or session.client.definition_registry)
                except DefinitionLoadError as exc:
                    raise click.ClickException(f"{file}: {exc}") from exc
            return await repository.save_definition(
                StoredDefinition(parsed.definition_id, parsed.version, fmt, parsed.text)
            )

    added = run(go())
    where = redact_url(store)
    if as_json:
        emit_json(
            {
                "id": parsed.definition_id,
                "version": parsed.version,
                "format": fmt,
                "stored": added,
                "url": where,
                "checked_with_app": app is not None,
            }
        )
    elif added:
        click.echo(f"definition {parsed.definition_id} v{parsed.version} stored in {where}")
    else:
        click.echo(
            f"definition {parsed.definition_id} v{parsed.version} was already stored in "
            f"{where} (same text)"
        )


@definitions.command("list")
@click.argument("definition_id", metavar="[ID]", required=False)
@url_option
@json_option
def list_definitions(definition_id: str | None, url: str | None, as_json: bool) -> None:
    """List the stored definition versions (of ID only, when given)."""
    store = store_url(url)

    async def go() -> list[Any]:
        async with reader(store) as session:
            return await _store_of(session.client).list_definitions(definition_id)

    found = run(go())
    if as_json:
        emit_json(
            [
                {
                    "id": s.definition_id,
                    "version": s.version,
                    "format": s.format,
                    "stored_at": iso(s.create_time),
                }
                for s in found
            ]
        )
        return
    if not found:
        click.echo("no stored definitions")
        return
    from rich.table import Table

    table = Table("id", "version", "format", "stored at")
    for s in found:
        table.add_row(s.definition_id, str(s.version), s.format, utc_time(s.create_time))
    table_console().print(table)


@definitions.command("show")
@click.argument("definition_id", metavar="ID")
@click.option(
    "--version", "version", type=click.IntRange(min=1), default=None, help="Default: newest."
)
@url_option
@json_option
def show(definition_id: str, version: int | None, url: str | None, as_json: bool) -> None:
    """Print the stored document of definition ID (the newest version by default)."""
    store = store_url(url)

    async def go() -> StoredDefinition:
        async with reader(store) as session:
            try:
                return await _store_of(session.client).get_definition(definition_id, version)
            except DefinitionNotFound as exc:
                raise click.ClickException(str(exc)) from exc

    found = run(go())
    if as_json:
        emit_json(
            {
                "id": found.definition_id,
                "version": found.version,
                "format": found.format,
                "stored_at": iso(found.create_time),
                "text": found.text,
            }
        )
        return
    click.echo(found.text, nl=not found.text.endswith("\n"))
