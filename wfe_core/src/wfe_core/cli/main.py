"""The ``wfe`` group: the global ``--url``, ``--version``, and every command."""

from __future__ import annotations

from typing import NoReturn

import click

from wfe_core.cli.control import purge, resume, suspend, terminate
from wfe_core.cli.dashboard import dashboard
from wfe_core.cli.demo import demo
from wfe_core.cli.events import publish
from wfe_core.cli.options import DEFAULT_URL, Settings
from wfe_core.cli.query import list_, show
from wfe_core.cli.schedule import schedule
from wfe_core.cli.start import start
from wfe_core.cli.worker import worker

__all__ = ["cli", "main"]


@click.group(name="wfe", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="WFE_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Store URL, e.g. sqlite:///wfe.db, postgresql://user@host/db, memory:// (env: WFE_URL).",
)
@click.option(
    "--namespace",
    default=None,
    metavar="NAME",
    help="Namespace in the store (default: the URL's ?namespace=, else env WFE_NAMESPACE, "
    "else 'default'); namespaces never see each other's workflows, events or schedules.",
)
@click.version_option(package_name="wfe-core", prog_name="wfe")
@click.pass_context
def cli(ctx: click.Context, url: str, namespace: str | None) -> None:
    """wfe: durable, event-driven workflows.

    Run workers, start and inspect workflows, publish events. Try `wfe demo`.
    """
    ctx.obj = Settings(url=url, namespace=namespace)


for _command in (worker, start, publish, show, list_, suspend, resume, terminate, purge, demo):
    cli.add_command(_command)
cli.add_command(schedule)
cli.add_command(dashboard)


def main(argv: list[str] | None = None) -> NoReturn:
    """The ``wfe`` entry point."""
    cli.main(args=argv, prog_name="wfe")
    raise SystemExit(0)  # pragma: no cover - cli.main always exits
