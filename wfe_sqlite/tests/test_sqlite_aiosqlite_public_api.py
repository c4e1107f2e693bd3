"""``wfe_sqlite.driver`` uses aiosqlite's public API only (no private attribute), so it
keeps working across aiosqlite releases without a pinned range."""

from __future__ import annotations

import ast
from pathlib import Path

import aiosqlite
import pytest
import wfe_sqlite.driver
from wfe_core.errors import ProviderUnavailable
from wfe_sqlite.driver import SqliteDriver

DRIVER = Path(wfe_sqlite.driver.__file__)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _aiosqlite_private_names() -> set[str]:
    """Every private name of aiosqlite's connection and cursor (class and instance)."""
    names = {"_tx", "_connection", "_running", "_conn", "_execute", "_connector", "_thread"}
    for cls in (aiosqlite.Connection, aiosqlite.Cursor):
        for klass in cls.__mro__:
            names.update(n for n in vars(klass) if _is_private(n))
    return names


def private_uses(source: str) -> list[str]:
    """Private attributes ``source`` reaches on objects other than its own ``self``:
    ``x._name`` where ``_name`` is a private name of aiosqlite or is not defined in
    ``source`` itself, ``getattr(x, "_name")`` and the like, and private imports from
    aiosqlite. Each as ``line: what``."""
    tree = ast.parse(source)
    own: set[str] = set()  # private names source defines (its own methods, attributes)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
    aiosqlite_private = _aiosqlite_private_names()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "__dict__":
            found.append(f"{node.lineno}: .__dict__")
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if node.attr in aiosqlite_private and not on_self:
                found.append(f"{node.lineno}: .{node.attr} (a private name of aiosqlite)")
            elif not on_self and node.attr not in own:
                found.append(f"{node.lineno}: .{node.attr} (not defined in this module)")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr", "vars")
        ):
            for arg in node.args[1:2]:
                text = arg.value if isinstance(arg, ast.Constant) else None
                if isinstance(text, str) and (_is_private(text) or text == "__dict__"):
                    found.append(f"{node.lineno}: {node.func.id}(..., {text!r})")
            if node.func.id == "vars":
                found.append(f"{node.lineno}: vars(...)")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiosqlite"):
            if (node.module or "") != "aiosqlite":
                found.append(f"{node.lineno}: from {node.module} import ... (a submodule)")
            found.extend(
                f"{node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if _is_private(a.name)
            )
    return sorted(found)


def test_the_driver_touches_no_private_attribute_of_aiosqlite() -> None:
    assert private_uses(DRIVER.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "conn._tx.put_nowait((None, work))",
        "raw = conn._connection",
        "if not conn._running: pass",
        "conn._conn.execute('SELECT 1')",
        "async def f(conn): await conn._execute(print)",
        "getattr(conn, '_tx')",
        "conn.__dict__['_tx']",
        "from aiosqlite.core import _connection_worker_thread",
        "queue = db._queue_of_work",  # private, and not defined by the module itself
    ],
)
def test_the_check_catches_private_access(snippet: str) -> None:
    assert private_uses(snippet), snippet


def test_the_check_allows_the_modules_own_privates() -> None:
    source = (
        "class A:\n"
        "    def __init__(self):\n"
        "        self._conn = 1\n"
        "    def _raise(self):\n"
        "        return self._conn\n"
        "def f(a):\n"
        "    a._raise()\n"
    )
    assert private_uses(source) == []


def test_a_closed_connection_reads_as_closed(tmp_path: Path) -> None:
    """aiosqlite's errors for a closed connection ("Connection closed", or "no active
    connection" from its ``execute``) map to the same wfe error."""
    driver = SqliteDriver(tmp_path / "x.db")
    for message in ("Connection closed", "no active connection"):
        mapped = driver.error(ValueError(message))
        assert isinstance(mapped, ProviderUnavailable)
        assert "is closed" in str(mapped)
