"""The ``wfe`` group: the global ``--url``, ``--namespace``, ``--config``,
``--version``, and every command. The project config (:mod:`wfe_core.cli.config`) is
read here, once, into click's ``default_map``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import click

from wfe_core.cli.backup import backup
from wfe_core.cli.config import (
    CONFIG_ENV,
    ConfigError,
    ProjectConfig,
    default_map,
    discover,
    load_config,
)
from wfe_core.cli.control import purge, resume, suspend, terminate
from wfe_core.cli.dashboard import dashboard
from wfe_core.cli.definitions import definitions
from wfe_core.cli.demo import demo
from wfe_core.cli.events import publish
from wfe_core.cli.init import init
from wfe_core.cli.options import DEFAULT_URL, Settings
from wfe_core.cli.query import list_, show
from wfe_core.cli.schedule import schedule
from wfe_core.cli.start import start
from wfe_core.cli.tasks import tasks
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
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, _param, value: _read_config(ctx, value),
    metavar="PATH",
    help="Project config file (env: WFE_CONFIG; default: the nearest wfe.toml, or "
    "pyproject.toml with [tool.wfe], from here up to the repository's root).",
)
@click.version_option(package_name="wfe-core", prog_name="wfe")
@click.pass_context
def cli(ctx: click.Context, url: str, namespace: str | None) -> None:
    """wfe: durable, event-driven workflows.

    Run workers, start and inspect workflows, publish events. Try `wfe init`, then
    `wfe demo`.

    Settings come from the command line, else the environment (WFE_URL, WFE_APP, ...),
    else the project config (wfe.toml or [tool.wfe] in pyproject.toml), else the
    defaults.
    """
    error = ctx.meta.get(_ERROR)
    if error is not None and ctx.invoked_subcommand != "init":
        raise error  # `wfe init --force` may replace a broken config
    config: ProjectConfig | None = ctx.meta.get(_CONFIG)
    if config is not None and config.ignored is not None:
        click.echo(
            f"warning: {config.path} is used; [tool.wfe] in {config.ignored} is ignored "
            "(wfe.toml wins: keep one of them)",
            err=True,
        )
    ctx.obj = Settings(
        url=url,
        namespace=namespace,
        config_namespace=config.values.get("namespace") if config is not None else None,
        config_path=config.path if config is not None else None,
    )


_CONFIG = "wfe.config"
_ERROR = "wfe.config_error"


def _read_config(ctx: click.Context, path: Path | None) -> None:
    """``--config``'s callback, run before the other options: find and read the project
    config and make it click's ``default_map`` (flag > env > config > default). An
    error is kept for :func:`cli` to raise (so that ``wfe init --force`` can replace a
    broken file)."""
    if ctx.resilient_parsing:
        return
    try:
        config = load_config(path) if path is not None else discover()
        defaults = default_map(cli, config) if config is not None else {}
    except ConfigError as exc:
        ctx.meta[_ERROR] = exc
        return
    ctx.meta[_CONFIG] = config
    if defaults:
        ctx.default_map = _merged(defaults, ctx.default_map or {})


def _merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, nested tables merged."""
    result = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


for _command in (worker, start, publish, show, list_, suspend, resume, terminate, purge, demo):
    cli.add_command(_command)
cli.add_command(schedule)
cli.add_command(definitions)
cli.add_command(init)
cli.add_command(dashboard)
cli.add_command(backup)
cli.add_command(tasks)


def main(argv: list[str] | None = None) -> NoReturn:
    """The ``wfe`` entry point."""
    cli.main(args=argv, prog_name="wfe")
    raise SystemExit(0)  # pragma: no cover - cli.main always exits
