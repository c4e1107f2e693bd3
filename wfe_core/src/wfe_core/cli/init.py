"""``wfe init``: write the project config in the current folder.

It writes ``wfe.toml`` (or, with ``--pyproject``, appends a ``[tool.wfe]`` table to the
``pyproject.toml`` that is there, leaving the rest of the file as it was) holding
``url`` (default ``sqlite:///wfe.db``), ``app`` when given, and every other setting
as a commented line; adds a SQLite file and its ``-wal`` / ``-shm`` sidecars to
``.gitignore`` (created if missing, no line added twice); and prints the commands to
run next. An existing config in this folder is never replaced without ``--force``.

The file is written as text (no TOML writer is needed) and read back with ``tomllib``
before anything is saved.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click

from wfe_core.cli.config import KEYS
from wfe_core.cli.options import DEFAULT_URL
from wfe_core.registry import redact_url, url_scheme

__all__ = ["init", "render_config", "sqlite_file"]

_EXAMPLES = {
    "app": "myproject.workflows:workflows",
    "namespace": "default",
    "lock_url": "redis://localhost:6379/0",
    "queue_url": "redis://localhost:6379/0",
    "lifecycle_url": "redis://localhost:6379/0",
    "concurrency": 16,
    "poll_interval": 1.0,
    "stop_timeout": 30.0,
    "steps": True,
    "log_level": "warning",
    "log_format": "text",
    "metrics_port": 9464,
    "metrics_host": "127.0.0.1",
    "otel": False,
    "purge_after": "30d",
    "purge_status": "complete,terminated",
    "purge_every": "1h",
    "processes": 2,
}
"""The example value of each commented line."""


def _toml(value: object) -> str:
    """``value`` as a TOML value (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def render_config(url: str, app: str | None, *, table: bool = False) -> str:
    """The text of a new config: ``url``, ``app`` when given, the other keys commented
    out with an example value and the variable that overrides them; under a
    ``[tool.wfe]`` header when ``table``."""
    lines = []
    if table:
        lines.append("[tool.wfe]")
    lines += [
        "# wfe project settings, read by every wfe command run in this folder or below.",
        "# Precedence: command-line flag > environment variable > this file > default.",
    ]
    values: dict[str, object] = {"url": url, "app": app} if app else {"url": url}
    width = max(len(k) for k in KEYS) + len(" = ") + 34
    for key, spec in KEYS.items():
        if key in values:
            line = f"{key} = {_toml(values[key])}"
        else:
            line = f"# {key} = {_toml(_EXAMPLES[key])}"
        lines.append(f"{line:<{width}} # {spec.env}")
    return "\n".join(lines) + "\n"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite ``url`` relative to the current folder (None for
    another store, ``:memory:`` or a file outside this folder)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("sqlite", "sqlite+aiosqlite") or parts.netloc:
        return None
    raw = unquote(parts.path)
    if raw in ("", "/", "/:memory:"):
        return None
    path = Path(raw[1:])
    if path.is_absolute():
        try:
            return path.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            return None
    return path


def _ignore(entries: list[str]) -> list[str]:
    """Add ``entries`` to ``./.gitignore`` (created if missing); return those added."""
    gitignore = Path(".gitignore")
    text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    present = {line.strip().lstrip("/") for line in text.splitlines()}
    added = [e for e in entries if e not in present]
    if added:
        prefix = "" if not text or text.endswith("\n") else "\n"
        gitignore.write_text(text + prefix + "\n".join(added) + "\n", encoding="utf-8")
    return added


def _without_tool_wfe(text: str) -> str | None:
    """``text`` (a ``pyproject.toml``) without its ``[tool.wfe]`` table, or None when
    it cannot be cut out safely (the rest of the file must read the same after)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == "[tool.wfe]"]
    if len(starts) != 1:
        return None
    start = starts[0]
    end = start + 1
    while end < len(lines) and not lines[end].lstrip().startswith("["):
        end += 1
    cut = "".join(lines[:start] + lines[end:])
    try:
        before, after = tomllib.loads(text), tomllib.loads(cut)
    except tomllib.TOMLDecodeError:
        return None
    before.get("tool", {}).pop("wfe", None)
    if not before.get("tool") and "tool" in before and "tool" not in after:
        before.pop("tool")
    return cut if before == after else None


def _write_pyproject(body: str, force: bool) -> Path:
    path = Path("pyproject.toml")
    if not path.is_file():
        raise click.ClickException(
            "--pyproject: there is no pyproject.toml in this folder; run wfe init without "
            "--pyproject to write wfe.toml"
        )
    text = path.read_text(encoding="utf-8")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise click.ClickException(f"{path} is not valid TOML ({exc}); fix it first") from exc
    if "wfe" in document.get("tool", {}):
        if not force:
            raise click.ClickException(f"{path} already has [tool.wfe]; pass --force to replace it")
        cut = _without_tool_wfe(text)
        if cut is None:
            raise click.ClickException(
                f"cannot replace [tool.wfe] in {path} safely (it is not one plain table); "
                "edit or remove it by hand, then run wfe init --pyproject again"
            )
        text = cut
    separator = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
    path.write_text(text + separator + body, encoding="utf-8")
    return path


def _write_wfe_toml(body: str, force: bool) -> Path:
    path = Path("wfe.toml")
    if path.exists() and not force:
        raise click.ClickException(f"{path} already exists; pass --force to overwrite it")
    pyproject = Path("pyproject.toml")
    if not force and pyproject.is_file():
        try:
            has_table = "wfe" in tomllib.loads(pyproject.read_text("utf-8")).get("tool", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            has_table = False
        if has_table:
            raise click.ClickException(
                "pyproject.toml here already has [tool.wfe]; a wfe.toml would take its "
                "place: pass --force to write wfe.toml anyway, or edit [tool.wfe]"
            )
    path.write_text(body, encoding="utf-8")
    return path


@click.command()
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="The store URL to write (sqlite:///wfe.db, postgresql://user@host/db, ...).",
)
@click.option(
    "--app",
    default=None,
    metavar="MODULE:ATTR",
    help="Your workflows, to write as app (else a commented example line).",
)
@click.option(
    "--pyproject",
    is_flag=True,
    help="Append [tool.wfe] to ./pyproject.toml instead of writing wfe.toml.",
)
@click.option("--force", is_flag=True, help="Replace a config that already exists here.")
def init(url: str, app: str | None, pyproject: bool, force: bool) -> None:
    """Write the project config (wfe.toml) in the current folder.

    It holds the store URL (default sqlite:///wfe.db) and, as commented lines, every
    other setting. A SQLite file and its -wal and -shm files are added to .gitignore.
    Every wfe command run in this folder or below reads the config; environment
    variables and command-line options win over it.
    """
    try:
        url_scheme(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from exc
    if app is not None and ":" not in app:
        raise click.BadParameter(
            f"{app!r} is not module:attr (e.g. myproject.workflows:workflows)",
            param_hint="--app",
        )
    body = render_config(url, app, table=pyproject)
    tomllib.loads(body)  # never write a file that does not read back
    written = _write_pyproject(body, force) if pyproject else _write_wfe_toml(body, force)
    what = "[tool.wfe] in pyproject.toml" if pyproject else str(written)
    click.echo(f"wrote {what} (url = {redact_url(url)})")
    database = sqlite_file(url)
    if database is not None:
        name = database.as_posix()
        added = _ignore([name, f"{name}-wal", f"{name}-shm"])
        if added:
            click.echo(f"added {', '.join(added)} to .gitignore")
    click.echo("next:")
    click.echo("  wfe demo        # the order example, end to end, on this store")
    if app:
        click.echo("  wfe worker      # run your workflows (app is set in the config)")
    else:
        click.echo(f"  wfe worker --app your_module:workflows   # or set app in {what.split()[-1]}")
    if os.environ.get("WFE_URL"):
        click.echo("note: WFE_URL is set in your environment and wins over the config", err=True)
