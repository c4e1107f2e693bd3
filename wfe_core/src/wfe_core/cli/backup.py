"""``wfe backup DEST``: a consistent online copy of a SQLite store, taken while workers
run (:func:`wfe_sqlite.backup`; wfe-sqlite is imported only when the command runs)."""

from __future__ import annotations

import os

import click

from wfe_core.cli.options import json_option, store_url, url_option
from wfe_core.cli.output import emit_json
from wfe_core.registry import redact_url, url_scheme

__all__ = ["backup"]


@click.command()
@click.argument("dest", metavar="DEST", type=click.Path(dir_okay=False))
@url_option
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@json_option
def backup(dest: str, url: str | None, force: bool, as_json: bool) -> None:
    """Copy a SQLite store to the new file DEST while workers keep running.

    The copy is one consistent snapshot (SQLite's online backup API), written to a
    temporary file next to DEST, checked with PRAGMA integrity_check, then renamed to
    DEST: a failure never leaves a half-written DEST. To restore, stop the workers,
    put the copy in place of the database file (removing its -wal and -shm files) and
    start them again. For PostgreSQL use pg_dump.
    """
    store = store_url(url)
    try:
        scheme = url_scheme(store)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--url'") from exc
    if scheme != "sqlite":
        raise click.BadParameter(
            f"wfe backup copies SQLite stores only, not {redact_url(store)}; for "
            "PostgreSQL use pg_dump (or a base backup with WAL archiving), for Redis its "
            "RDB/AOF persistence",
            param_hint="'--url'",
        )
    try:
        from wfe_sqlite.backup import BackupError
        from wfe_sqlite.backup import backup as sqlite_backup
    except ImportError as exc:  # pragma: no cover - wfe-sqlite ships with the CLI's users
        raise click.ClickException(
            f"wfe backup needs the wfe-sqlite package ({exc}): pip install wfe-sqlite"
        ) from exc
    try:
        result = sqlite_backup(store, dest, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"the backup to {os.path.abspath(dest)} failed: {exc}") from exc
    if as_json:
        emit_json(
            {
                "source": result.source,
                "dest": result.dest,
                "size": result.size,
                "pages": result.pages,
                "instances": result.instances,
                "integrity": result.integrity,
                "seconds": round(result.seconds, 3),
            }
        )
        return
    instances = "no wfe store" if result.instances is None else f"{result.instances} instances"
    click.echo(
        f"backed up {result.source} to {result.dest}: {result.size:,} bytes, {instances}, "
        f"integrity {result.integrity} ({result.seconds:.2f}s)"
    )
