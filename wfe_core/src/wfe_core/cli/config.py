"""The project config: ``wfe.toml`` or ``[tool.wfe]`` in ``pyproject.toml``.

Where it is found
-----------------
``wfe --config PATH`` (or ``WFE_CONFIG``) names the file: a file called
``pyproject.toml`` is read from its ``[tool.wfe]`` table, any other file from its
top-level keys. Without it, the current folder and then each parent is searched, and
the first folder with a config wins:

* ``wfe.toml`` (top-level keys), else
* ``pyproject.toml`` with a ``[tool.wfe]`` table (a ``pyproject.toml`` without one
  does not stop the search: a uv workspace member may leave the settings to its root).

When one folder has both, ``wfe.toml`` wins and a warning on stderr names the ignored
``[tool.wfe]``. The search stops after the folder that holds ``.git`` (the root of
the repository: a config outside your project never applies to it) or at the root of
the file system.

What it holds
-------------
The keys of :data:`KEYS`, each the ``wfe`` option of the same name with ``_`` for
``-``: ``url``, ``namespace``, ``app``, ``lock_url``, ``queue_url``,
``lifecycle_url`` and ``wfe worker``'s ``concurrency``, ``poll_interval``,
``stop_timeout``, ``steps``, ``log_level``, ``log_format``, ``metrics_port``,
``metrics_host``, ``otel``, ``purge_after``, ``purge_status``, ``purge_every`` and
``processes``.
An unknown key, a value of the wrong type or out of the option's range is an error
(exit status 2) naming the key and the file.

A relative SQLite path in a URL of the file (``sqlite:///wfe.db``) is relative to the
folder of the file, not to the current folder: ``wfe list`` run in a subfolder reads
the same database as in the project's root.

Precedence
----------
command-line flag > environment variable > config file > built-in default. Every key
but ``namespace`` reaches the commands through click's ``default_map``
(:func:`default_map`), which gives exactly that order for options that declare their
variable (``envvar=``). ``namespace`` has no click variable (the store resolves
``WFE_NAMESPACE`` itself, after the URL's ``?namespace=``): the config's namespace is
used only when neither ``--namespace``, the URL's ``?namespace=`` nor
``WFE_NAMESPACE`` names one (:func:`config_namespace`).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import click

from wfe_core.namespaces import NAMESPACE_ENV, check_namespace

__all__ = [
    "CONFIG_ENV",
    "KEYS",
    "URL_KEYS",
    "ConfigError",
    "ConfigKey",
    "ProjectConfig",
    "config_namespace",
    "default_map",
    "discover",
    "find_config",
    "load_config",
]

CONFIG_ENV = "WFE_CONFIG"
"""The environment variable of ``wfe --config``."""


@dataclass(frozen=True)
class ConfigKey:
    """One key of the config file: its TOML type and the variable that overrides it."""

    kind: type
    """``str``, ``int``, ``float`` (an integer is accepted too) or ``bool``."""
    env: str
    """The environment variable that wins over the file."""
    flag: str
    """The command-line option that wins over both."""
    commands: tuple[str, ...] | None = None
    """The commands it sets an option of (None: every command with an option of that
    name)."""


def _key(kind: type, env: str, flag: str) -> ConfigKey:
    commands = ("worker",) if flag.startswith("wfe worker ") else None
    return ConfigKey(kind, env, flag, commands)


KEYS: dict[str, ConfigKey] = {
    "url": _key(str, "WFE_URL", "wfe --url"),
    "namespace": _key(str, NAMESPACE_ENV, "wfe --namespace"),
    "app": _key(str, "WFE_APP", "--app"),
    "lock_url": _key(str, "WFE_LOCK_URL", "--lock-url"),
    "queue_url": _key(str, "WFE_QUEUE_URL", "--queue-url"),
    "lifecycle_url": _key(str, "WFE_LIFECYCLE_URL", "--lifecycle-url"),
    "concurrency": _key(int, "WFE_CONCURRENCY", "wfe worker --concurrency"),
    "poll_interval": _key(float, "WFE_POLL_INTERVAL", "wfe worker --poll-interval"),
    "stop_timeout": _key(float, "WFE_STOP_TIMEOUT", "wfe worker --stop-timeout"),
    "steps": _key(bool, "WFE_STEPS", "wfe worker --steps/--no-steps"),
    "log_level": _key(str, "WFE_LOG_LEVEL", "wfe worker --log-level"),
    "log_format": _key(str, "WFE_LOG_FORMAT", "wfe worker --log-format"),
    "metrics_port": _key(int, "WFE_METRICS_PORT", "wfe worker --metrics-port"),
    "metrics_host": _key(str, "WFE_METRICS_HOST", "wfe worker --metrics-host"),
    "otel": _key(bool, "WFE_OTEL", "wfe worker --otel"),
    "purge_after": _key(str, "WFE_PURGE_AFTER", "wfe worker --purge-after"),
    "purge_status": _key(str, "WFE_PURGE_STATUS", "wfe worker --purge-status"),
    "purge_every": _key(str, "WFE_PURGE_EVERY", "wfe worker --purge-every"),
    "processes": _key(int, "WFE_PROCESSES", "wfe worker --processes"),
}
"""Every key the config file may hold (the option it sets, its variable, its type).
``app`` and the service URLs set the option of that name of every command that has
one; the worker's keys set ``wfe worker``'s options only."""

URL_KEYS = ("url", "lock_url", "queue_url", "lifecycle_url")
"""The keys holding URLs (a relative SQLite path in them is relative to the file)."""

_GROUP_KEYS = ("url", "namespace")
"""Keys of the ``wfe`` group itself; the others go to every command with that option."""

_NOT_CONFIGURED = frozenset({"init"})
"""Commands the config never gives defaults to (``wfe init`` writes what it is told)."""


class ConfigError(click.ClickException):
    """A config file that cannot be used: bad TOML, an unknown key, a wrong value
    (exit status 2, as for any bad input)."""

    exit_code = 2


@dataclass(frozen=True)
class ProjectConfig:
    """A config file that was read."""

    path: Path
    """The file (``wfe.toml``, ``pyproject.toml``, or the one ``--config`` named)."""
    values: dict[str, Any] = field(default_factory=dict)
    """Its keys, checked, with relative SQLite paths made relative to the file."""
    ignored: Path | None = None
    """A ``pyproject.toml`` whose ``[tool.wfe]`` was ignored because ``wfe.toml`` is in
    the same folder."""

    @property
    def where(self) -> str:
        """How messages name the file: ``[tool.wfe] in PATH`` or ``PATH``."""
        return _where(self.path)


def _where(path: Path) -> str:
    return f"[tool.wfe] in {path}" if path.name == "pyproject.toml" else str(path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc


def _tool_wfe(path: Path, document: dict[str, Any]) -> dict[str, Any] | None:
    """``[tool.wfe]`` of a parsed ``pyproject.toml`` (None when it has none)."""
    tool = document.get("tool")
    if not isinstance(tool, dict) or "wfe" not in tool:
        return None
    table = tool["wfe"]
    if not isinstance(table, dict):
        raise ConfigError(f"tool.wfe in {path} must be a table ([tool.wfe]), not a value")
    return table


def find_config(start: Path | None = None) -> tuple[Path, dict[str, Any], Path | None] | None:
    """The nearest config from ``start`` (default: the current folder) upwards: the
    file, its raw table, and a ``pyproject.toml`` whose ``[tool.wfe]`` it shadows."""
    folder = (start or Path.cwd()).resolve()
    while True:
        pyproject = folder / "pyproject.toml"
        table = _tool_wfe(pyproject, _read_toml(pyproject)) if pyproject.is_file() else None
        wfe_toml = folder / "wfe.toml"
        if wfe_toml.is_file():
            return wfe_toml, _read_toml(wfe_toml), pyproject if table is not None else None
        if table is not None:
            return pyproject, table, None
        if (folder / ".git").exists() or folder.parent == folder:
            return None
        folder = folder.parent


def load_config(path: Path) -> ProjectConfig:
    """Read the config file ``path`` (``--config``): ``[tool.wfe]`` of a file called
    ``pyproject.toml``, the top-level keys of any other."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (from --config or {CONFIG_ENV})")
    document = _read_toml(path)
    if path.name == "pyproject.toml":
        table = _tool_wfe(path, document)
        if table is None:
            raise ConfigError(f"{path} has no [tool.wfe] table")
        document = table
    return _checked(path.resolve(), document, None)


def discover(start: Path | None = None) -> ProjectConfig | None:
    """The nearest config (:func:`find_config`), checked; None when there is none."""
    found = find_config(start)
    if found is None:
        return None
    path, table, ignored = found
    return _checked(path, table, ignored)


def _checked(path: Path, table: dict[str, Any], ignored: Path | None) -> ProjectConfig:
    where = _where(path)
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = KEYS.get(key)
        if spec is None:
            close = difflib.get_close_matches(key.replace("-", "_"), KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown key {key!r} in {where}{hint}; known keys: {', '.join(KEYS)}"
            )
        if not _has_kind(value, spec.kind):
            raise ConfigError(
                f"{key} in {where} must be {_KIND_NAMES[spec.kind]}, not "
                f"{type(value).__name__} {value!r}"
            )
        if spec.kind is float:
            value = float(value)
        if key == "namespace":
            try:
                check_namespace(value, source=f"namespace in {where}")
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        if key in URL_KEYS:
            value = _anchored(value, path.parent)
        values[key] = value
    return ProjectConfig(path, values, ignored)


_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def _has_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _anchored(url: str, folder: Path) -> str:
    """``url`` with a relative SQLite path made relative to ``folder`` (unchanged when
    ``folder`` is the current folder, or for any other URL)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("sqlite", "sqlite+aiosqlite") or parts.netloc:
        return url
    raw = parts.path
    if raw in ("", "/", "/:memory:") or raw.startswith("//"):
        return url  # memory, or already absolute (sqlite:////abs.db)
    if folder == Path.cwd().resolve():
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}:///{quote(folder.as_posix())}/{raw[1:]}{query}"


def default_map(command: click.Command, config: ProjectConfig) -> dict[str, Any]:
    """click's ``default_map`` for ``command`` (the ``wfe`` group) from ``config``:
    ``url`` for the group, every other key (but ``namespace``) for each command, at
    any depth, that has an option of that name. Each value is checked with the
    option's own type (a range, a choice) and reported against the file if it fails."""
    values = dict(config.values)
    result: dict[str, Any] = {}
    if "url" in values:
        result["url"] = values["url"]
    shared = {k: v for k, v in values.items() if k not in _GROUP_KEYS}
    checked: set[str] = set()
    result.update(_for_commands(command, shared, config, checked))
    return result


def _for_commands(
    command: click.Command, values: dict[str, Any], config: ProjectConfig, checked: set[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if not isinstance(command, click.Group):
        return result
    for name, sub in command.commands.items():
        if name in _NOT_CONFIGURED:
            continue
        if isinstance(sub, click.Group):
            nested = _for_commands(sub, values, config, checked)
            if nested:
                result[name] = nested
            continue
        mine: dict[str, Any] = {}
        for param in sub.params:
            spec = KEYS.get(param.name or "")
            if spec is not None and spec.commands is not None and name not in spec.commands:
                continue
            if param.name in values:
                value = values[param.name]
                if param.name not in checked:
                    _check_param(param, value, config)
                    checked.add(param.name)
                mine[param.name] = value
        if mine:
            result[name] = mine
    return result


def _check_param(param: click.Parameter, value: Any, config: ProjectConfig) -> None:
    try:
        param.type.convert(value, param, None)
    except click.BadParameter as exc:
        raise ConfigError(f"{param.name} in {config.where}: {exc.message}") from exc


def config_namespace(settings_namespace: str | None, url: str) -> str | None:
    """The config file's namespace for a store at ``url``, when nothing stronger names
    one: not the URL's ``?namespace=``, nor ``WFE_NAMESPACE``. (``--namespace`` is
    checked by the caller.)"""
    if settings_namespace is None:
        return None
    if os.environ.get(NAMESPACE_ENV):
        return None
    if any(k == "namespace" for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)):
        return None
    return settings_namespace
