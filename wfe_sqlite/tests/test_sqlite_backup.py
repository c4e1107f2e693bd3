"""SQLite in production: :func:`wfe_sqlite.backup` (online, consistent, all or nothing)
and ``checkpoint="external"`` (WAL checkpoints left to a replicator such as Litestream).

Every test uses real database files in its own ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from wfe_core.models import ExecutionPointer, WorkflowInstance, WorkflowStatus
from wfe_core.registry import open_store

from wfe_sqlite import (
    BackupError,
    SqliteDriver,
    SqlitePersistenceProvider,
    backup,
    parse_sqlite_url,
)

pytestmark = pytest.mark.anyio

backup_module = importlib.import_module("wfe_sqlite.backup")
PAGE = 4096
BLOB = "x" * 6000  # a few pages per instance: every commit adds several WAL frames


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def instance(n: int, **overrides: Any) -> WorkflowInstance:
    values: dict[str, Any] = {"workflow_definition_id": "bk", "data": {"n": n, "blob": BLOB}}
    values.update(overrides)
    inst = WorkflowInstance(**values)
    inst.execution_pointers.append(ExecutionPointer(step_id=0, persistence_data={"n": n}))
    return inst


async def fill(store: SqlitePersistenceProvider, count: int, start: int = 0) -> list[str]:
    ids: list[str] = []
    for chunk in range(start, start + count, 50):
        batch = range(chunk, min(chunk + 50, start + count))
        ids += await asyncio.gather(*(store.create_workflow(instance(n)) for n in batch))
    return ids


def wal_frames(path: Path) -> int:
    """Frames in the WAL file (its size; the WAL is never truncated by wfe)."""
    wal = Path(f"{path}-wal")
    size = wal.stat().st_size if wal.exists() else 0
    return max(0, (size - 32) // (PAGE + 24))


# --------------------------------------------------------------------- checkpoint option


async def test_external_checkpoint_leaves_the_wal_to_the_replicator(tmp_path: Path) -> None:
    db = tmp_path / "ext.db"
    async with SqlitePersistenceProvider(db, synchronous="NORMAL", checkpoint="external") as store:
        assert store.driver.checkpoint == "external"
        assert await store.driver.pragma("wal_autocheckpoint") == 0
        # a replicator (Litestream holds a read connection) has the file open
        replicator = sqlite3.connect(db)
        replicator.execute("SELECT count(*) FROM sqlite_master").fetchall()
        await fill(store, 600)
        main_size = db.stat().st_size
        frames = wal_frames(db)
    try:
        # past SQLite's 1000-page automatic checkpoint, and nothing folded into the file
        assert frames > 1200, frames
        assert main_size <= 8 * PAGE, main_size
        # wfe closed without checkpointing (the replicator still has the file open):
        # every frame is still in the log, and the replicator's checkpoint takes them all
        assert wal_frames(db) >= frames
        assert db.stat().st_size == main_size
        busy, log, done = replicator.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert (busy, log, done) == (0, 0, 0) or log == done
        assert db.stat().st_size > 600 * 4000
        assert replicator.execute("SELECT count(*) FROM wfe_workflows").fetchone()[0] == 600
    finally:
        replicator.close()


async def test_default_checkpoint_is_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "auto.db"
    async with SqlitePersistenceProvider(db, synchronous="NORMAL") as store:
        assert store.driver.checkpoint == "auto"
        assert await store.driver.pragma("wal_autocheckpoint") == 1000
        await fill(store, 600)
        # SQLite's automatic checkpoints folded the log into the file as it went
        assert db.stat().st_size > 300 * 4000
        assert wal_frames(db) < 1200


async def test_checkpoint_from_the_url_and_bad_values(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}?checkpoint=external"
    assert parse_sqlite_url(url)[1] == {"checkpoint": "external"}
    components = open_store(url)
    store = components.persistence
    assert isinstance(store, SqlitePersistenceProvider)
    async with store:
        assert store.driver.checkpoint == "external"
        assert await store.driver.pragma("wal_autocheckpoint") == 0
    with pytest.raises(ValueError, match=r"checkpoint must be 'auto'.*or 'external'"):
        SqliteDriver(tmp_path / "x.db", checkpoint="manual")
    with pytest.raises(ValueError, match="checkpoint must be"):
        open_store(f"sqlite:///{tmp_path / 'v.db'}?checkpoint=never")


def test_the_driver_never_checkpoints_explicitly() -> None:
    """Nothing in wfe-sqlite runs ``wal_checkpoint`` itself (only the backup's copy,
    which is a file of its own)."""
    src = Path(backup_module.__file__ or "").parent
    for path in src.glob("*.py"):
        text = path.read_text()
        if path.name == "backup.py":
            assert text.count('"PRAGMA wal_checkpoint') == 1
            assert 'dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")' in text
        else:
            assert "PRAGMA wal_checkpoint" not in text, path


# --------------------------------------------------------------------------- backup


async def test_backup_is_a_consistent_copy_of_an_open_store(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    dest = tmp_path / "copy.db"
    async with SqlitePersistenceProvider(db, synchronous="NORMAL") as store:
        ids = await fill(store, 120)
        done = await store.get_workflow_instance(ids[0])
        done.status = WorkflowStatus.COMPLETE
        await store.persist_workflow(done)
        # taken while the store is open and writing
        writer = asyncio.create_task(fill(store, 100, start=1000))
        result = await asyncio.to_thread(backup, f"sqlite:///{db}", dest)
        await writer
    assert result.dest == str(dest)
    assert result.source == str(db)
    assert result.integrity == "ok"
    assert result.size == dest.stat().st_size > 0
    assert 120 <= (result.instances or 0) <= 220
    assert result.pages * PAGE == result.size
    names = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert names == ["copy.db", "live.db"]
    async with SqlitePersistenceProvider(dest) as copy:
        assert (await copy.get_workflow_instance(ids[0])).status is WorkflowStatus.COMPLETE
        again = await copy.get_workflow_instance(ids[-1])
        assert again.data == {"n": 119, "blob": BLOB}
        assert await copy.count_workflows() == result.instances


async def test_backup_in_steps_and_of_a_namespace(tmp_path: Path) -> None:
    db = tmp_path / "ns.db"
    async with SqlitePersistenceProvider(db, namespace="staging") as store:
        await fill(store, 30)
    result = backup(f"sqlite:///{db}?namespace=staging", tmp_path / "a.db", pages=5, sleep=0)
    assert result.instances == 30
    assert backup(db, tmp_path / "b.db").instances is None  # no store in 'default'
    assert backup(db, tmp_path / "c.db", namespace="staging").instances == 30


def test_refuses_an_existing_dest_unless_forced(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    dest = tmp_path / "d.db"
    dest.write_text("keep me")
    with pytest.raises(BackupError, match=r"already exists.*--force"):
        backup(db, dest)
    assert dest.read_text() == "keep me"
    result = backup(db, dest, force=True)
    assert result.integrity == "ok"
    assert result.instances is None
    assert sqlite3.connect(dest).execute("SELECT count(*) FROM t").fetchone() == (0,)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("postgresql://u@h/db", "SQLite stores only.*pg_dump"),
        ("redis://localhost:6379/0", "SQLite stores only"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///{tmp}/missing.db", "does not exist"),
        ("{tmp}", "is a folder"),
        ("sqlite://host/x.db", "names a host"),
    ],
)
def test_refuses_bad_sources(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(BackupError, match=message):
        backup(source.format(tmp=tmp_path), tmp_path / "d.db")
    assert not (tmp_path / "d.db").exists()


def test_refuses_bad_destinations(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(BackupError, match=r"folder .*nope does not exist.*mkdir -p"):
        backup(db, tmp_path / "nope" / "d.db")
    with pytest.raises(BackupError, match="is a folder"):
        backup(db, tmp_path)
    with pytest.raises(BackupError, match="would overwrite the database it copies"):
        backup(db, db, force=True)


def _source_with_rows(tmp_path: Path) -> Path:
    db = tmp_path / "s.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(BLOB,)] * 50)
    conn.commit()
    conn.close()
    return db


@pytest.mark.parametrize("stage", ["_verify", "_sync", "_publish"])
def test_a_failure_after_the_copy_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    db = _source_with_rows(tmp_path)
    seen: list[Path] = []

    def failing(tmp: Path, *args: Any) -> Any:
        seen.append(tmp)
        assert tmp.stat().st_size > 50 * 4000  # the whole copy was written
        raise OSError("simulated crash")

    monkeypatch.setattr(backup_module, stage, failing)
    with pytest.raises(OSError, match="simulated crash"):
        backup(db, tmp_path / "d.db")
    assert seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


def test_a_failure_in_the_middle_of_the_page_copy_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copied in steps of 2 pages, the copy fails after a few steps (between steps the
    backup pauses with ``time.sleep``: that pause raises the third time)."""
    db = _source_with_rows(tmp_path)
    pauses: list[float] = []

    class _Time:
        monotonic = staticmethod(backup_module.time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            pauses.append(seconds)
            if len(pauses) == 3:
                partial = [p for p in tmp_path.iterdir() if p.name.startswith(".d.db.")]
                assert partial  # the copy is under way
                raise OSError("disk unplugged")

    monkeypatch.setattr(backup_module, "time", _Time)
    with pytest.raises(OSError, match="disk unplugged"):
        backup(db, tmp_path / "d.db", pages=2, sleep=0.001)
    assert len(pauses) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


def test_backup_module_exports() -> None:
    assert backup_module.backup is backup
    assert os.path.basename(backup_module.__file__ or "") == "backup.py"
