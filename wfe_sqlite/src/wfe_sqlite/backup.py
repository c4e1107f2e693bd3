"""Online backup of a SQLite store: :func:`backup` (and ``wfe backup``).

The copy is taken with SQLite's online backup API (``sqlite3.Connection.backup``) while
workers keep running:

- **Consistent.** The pages are copied inside one read transaction of the source, so
  the copy is the database exactly as one commit left it: every step checkpoint either
  is in it whole or is not in it at all.
- **Online.** wfe runs its files in WAL mode, where a reader never blocks a writer: the
  workers go on committing while the copy is read (they only keep the WAL from being
  checkpointed past the copy's snapshot until it ends). That is why the default copies
  every page in *one* step (``pages=-1``): copied in several steps, the backup starts
  over whenever another connection writes the file between two steps, and under a steady
  load it may never end. ``pages=N`` (with ``sleep`` seconds between steps) is for a file
  in a rollback-journal mode, where a long read would hold writers off.
- **All or nothing.** The copy is written to a temporary file next to ``dest``, synced,
  checked (``PRAGMA integrity_check``), and only then renamed to ``dest``; a failure or a
  crash at any point leaves no ``dest`` (at most a ``.<name>.*.tmp`` file, removed on
  failure whenever the process lives to do it). ``dest`` is never overwritten unless
  ``force=True``.

Why not ``VACUUM INTO``: it also reads one snapshot and would make a compact copy, but it
rebuilds every table and index (more work while the workers run), and the backup API
copies pages as they are, so the copy is the same database, page for page. Compact a
long-lived file with ``VACUUM`` instead (see the README).

Restore: stop the workers, replace the database file with the copy (and delete the old
file's ``-wal`` and ``-shm`` sidecars), start the workers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

from wfe_core.errors import WfeError
from wfe_core.namespaces import DEFAULT_NAMESPACE
from wfe_sql.schema import tables_for

from wfe_sqlite.driver import MEMORY
from wfe_sqlite.url import parse_sqlite_url

__all__ = ["BackupError", "BackupResult", "backup"]

_SIDECARS = ("-wal", "-shm", "-journal")


class BackupError(WfeError):
    """A backup could not be taken; the message names the problem and what to do.
    Nothing was written to the destination."""


@dataclass(frozen=True)
class BackupResult:
    """What :func:`backup` made."""

    source: str
    """The database file that was copied (absolute path)."""
    dest: str
    """The copy (absolute path)."""
    size: int
    """The copy's size in bytes."""
    pages: int
    """The number of database pages copied."""
    instances: int | None
    """The number of workflow instances in the copy (in ``namespace``); None when the
    file holds no wfe store."""
    integrity: str
    """What ``PRAGMA integrity_check`` said of the copy (``"ok"``)."""
    seconds: float
    """How long the backup took."""


def backup(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    pages: int = -1,
    sleep: float = 0.005,
    busy_timeout: float = 30.0,
    namespace: str | None = None,
) -> BackupResult:
    """Copy the SQLite store ``source`` (a ``sqlite://`` URL or a file path) to the new
    file ``dest``, consistently, while other processes keep writing it (see the module
    docstring); return what was copied.

    ``force`` replaces an existing ``dest``. ``pages`` is the number of pages copied per
    step (-1: all in one step, the right choice for wfe's WAL files); ``sleep`` is the
    pause between steps and ``busy_timeout`` how long to wait for a lock. ``namespace``
    picks whose instances are counted (default: the URL's ``?namespace=``, else
    ``default``). Raises :class:`BackupError` naming the problem; then nothing was
    written to ``dest``.

    Blocking: from async code, run it in a thread (``await asyncio.to_thread(backup,
    ...)``).
    """
    started = time.monotonic()
    src, found_namespace = _source_path(source)
    target = Path(os.path.abspath(os.fspath(dest)))
    _check_dest(src, target, force)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        copied = _copy(src, tmp, pages, sleep, busy_timeout)
        integrity, instances = _verify(tmp, namespace or found_namespace or DEFAULT_NAMESPACE)
        _sync(tmp)
        _publish(tmp, target, force)
    except BaseException:
        _remove(tmp)
        raise
    return BackupResult(
        source=str(src),
        dest=str(target),
        size=target.stat().st_size,
        pages=copied,
        instances=instances,
        integrity=integrity,
        seconds=time.monotonic() - started,
    )


def _source_path(source: str | os.PathLike[str]) -> tuple[Path, str | None]:
    raw = os.fspath(source)
    namespace: str | None = None
    if "://" in raw:
        scheme = raw.split("://", 1)[0].lower()
        if scheme not in ("sqlite", "sqlite+aiosqlite"):
            raise BackupError(
                f"backup copies SQLite stores only, and {scheme}:// is not one; for "
                "PostgreSQL use its own tools (pg_dump, or a base backup with WAL "
                "archiving), for Redis its RDB/AOF persistence"
            )
        try:
            raw, options = parse_sqlite_url(raw)
        except ValueError as exc:
            raise BackupError(str(exc)) from None
        namespace = options.get("namespace")
    if raw == MEMORY:
        raise BackupError(
            "an in-memory SQLite database lives inside its process only: there is nothing "
            "to back up from outside it; give the path of a database file"
        )
    path = Path(os.path.abspath(raw))
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise BackupError(
            f"cannot back up {path}: it {what}; give the path of the SQLite database file "
            "your workers use (e.g. --url sqlite:///wfe.db)"
        )
    return path, namespace


def _check_dest(source: Path, dest: Path, force: bool) -> None:
    if not dest.parent.is_dir():
        raise BackupError(
            f"cannot write the backup {dest}: the folder {dest.parent} does not exist; "
            f"create it first (mkdir -p {dest.parent}) or choose another path"
        )
    if dest.is_dir():
        raise BackupError(f"cannot write the backup to {dest}: it is a folder; name a file")
    if dest == source or (dest.exists() and os.path.samefile(dest, source)):
        raise BackupError(f"the backup {dest} would overwrite the database it copies")
    if dest.exists() and not force:
        raise BackupError(
            f"{dest} already exists; choose another name, or pass --force (force=True) to "
            "replace it"
        )


def _copy(source: Path, tmp: Path, pages: int, sleep: float, busy_timeout: float) -> int:
    """The backup itself: ``source`` copied into the new file ``tmp``; the page count."""
    uri = f"file:{urllib.parse.quote(str(source), safe='/')}?mode=ro"
    copied = 0

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal copied
        copied = total
        if remaining and sleep > 0:
            time.sleep(sleep)  # between steps: let the writers in

    try:
        src = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source} to back it up: {exc}") from exc
    try:
        dst = sqlite3.connect(tmp, timeout=busy_timeout)
        try:
            src.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            src.backup(dst, pages=pages, progress=progress, sleep=sleep)
            # The copy is in WAL mode like its source: fold its log into the file, so the
            # one file renamed to dest holds everything.
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if not copied:
                copied = int(dst.execute("PRAGMA page_count").fetchone()[0])
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"the backup of {source} failed: {exc}") from exc
    finally:
        src.close()
    for suffix in _SIDECARS:  # empty once the last connection closed; never needed
        _remove_file(Path(f"{tmp}{suffix}"))
    return copied


def _verify(tmp: Path, namespace: str) -> tuple[str, int | None]:
    """``PRAGMA integrity_check`` of the copy, and its instance count (None: no wfe
    store in ``namespace``)."""
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(tmp), safe='/')}?mode=ro", uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        result = "; ".join(str(row[0]) for row in rows)
        if result != "ok":
            raise BackupError(f"the copy failed its integrity check ({result}); not kept")
        table = tables_for(namespace).workflows.name
        present = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        count = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone() if present else None
    except sqlite3.Error as exc:
        raise BackupError(f"cannot check the copy: {exc}") from exc
    finally:
        conn.close()
    for suffix in _SIDECARS:
        _remove_file(Path(f"{tmp}{suffix}"))
    return result, int(count[0]) if count is not None else None


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, dest: Path, force: bool) -> None:
    """Rename the checked copy to ``dest`` (atomically; without ``force`` never over a
    file that appeared meanwhile), then sync the folder."""
    if force:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)  # fails if dest exists: no overwrite, even in a race
        except FileExistsError:
            raise BackupError(
                f"{dest} appeared while the backup ran; nothing was replaced (pass --force "
                "to replace it)"
            ) from None
        except OSError:  # a file system without hard links
            if dest.exists():
                raise BackupError(f"{dest} appeared while the backup ran") from None
            os.replace(tmp, dest)
        else:
            os.unlink(tmp)
    with contextlib.suppress(OSError):  # not every platform syncs folders
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(tmp: Path) -> None:
    for path in (tmp, *(Path(f"{tmp}{suffix}") for suffix in _SIDECARS)):
        _remove_file(path)


def _remove_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
