"""``wfe list``: newest first by default (``--oldest-first`` flips it), with the total
that match, in the table footer and in ``--json`` (``total`` next to ``skip`` /
``take`` / ``count`` / ``more``)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import wfe_core.registry
from click.testing import CliRunner, Result
from wfe_core.cli import cli
from wfe_core.models import WorkflowInstance, WorkflowStatus
from wfe_core.persistence import PersistenceProvider
from wfe_core.registry import StoreComponents

from wfe_memory import MemoryPersistenceProvider
from wfe_sqlite import SqlitePersistenceProvider

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class _KeptMemoryProvider(MemoryPersistenceProvider):
    """A memory store that outlives the CLI invocations of one test (close keeps data)."""

    async def close(self) -> None:
        """Keep the data: the next invocation of the test opens the same store."""


@dataclass(frozen=True)
class Seeded:
    """A store URL holding the sample instances, and their ids in each order."""

    url: str
    newest: list[str]
    oldest: list[str]


# (id, seconds after T0, status, definition, reference); b, c and d share a create_time.
SPECS = [
    ("a-wf", 0, WorkflowStatus.COMPLETE, "order", "R-1"),
    ("d-wf", 10, WorkflowStatus.RUNNABLE, "order", "R-2"),
    ("b-wf", 10, WorkflowStatus.RUNNABLE, "invoice", "R-1"),
    ("c-wf", 10, WorkflowStatus.SUSPENDED, "order", "R-3"),
    ("e-wf", 20, WorkflowStatus.RUNNABLE, "order", "R-1"),
]


async def _seed(provider: PersistenceProvider) -> None:
    """Store the SPECS instances (no data, no pointers)."""
    for wid, seconds, status, definition, reference in SPECS:
        await provider.create_workflow(
            WorkflowInstance(
                definition,
                id=wid,
                status=status,
                reference=reference,
                create_time=T0 + timedelta(seconds=seconds),
            )
        )


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_URL", raising=False)
    monkeypatch.delenv("WFE_APP", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(params=["memory", "sqlite"])
def seeded(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Seeded:
    """A memory or SQLite store holding the SPECS instances."""
    ordered = sorted(SPECS, key=lambda s: (s[1], s[0]))
    oldest = [s[0] for s in ordered]
    newest = list(reversed(oldest))
    if request.param == "sqlite":
        path = tmp_path / "store.db"

        async def seed_file() -> None:
            async with SqlitePersistenceProvider(str(path)) as provider:
                await _seed(provider)

        asyncio.run(seed_file())
        return Seeded(f"sqlite:///{path}", newest, oldest)
    shared = _KeptMemoryProvider()
    asyncio.run(_seed(shared))
    real_open = wfe_core.registry.open_store

    def open_store(url: str, **options: Any) -> StoreComponents:
        if url == "memory://cli-list-test":
            return StoreComponents(persistence=shared)
        return real_open(url, **options)

    monkeypatch.setattr(wfe_core.registry, "open_store", open_store)
    return Seeded("memory://cli-list-test", newest, oldest)


def wfe(*args: str) -> Result:
    """Run ``wfe ARGS`` in process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def listed(seeded: Seeded, *args: str) -> Any:
    """``wfe list --json ARGS`` on the seeded store, checked to succeed."""
    result = wfe("list", "--url", seeded.url, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def ids(document: Any) -> list[str]:
    """The workflow ids of a ``list --json`` document, in order."""
    return [w["id"] for w in document["workflows"]]


def test_newest_first_by_default_with_total(seeded: Seeded) -> None:
    """Newest create_time first, ties by id descending; the JSON keeps its keys and
    adds the total."""
    document = listed(seeded)
    assert ids(document) == seeded.newest == ["e-wf", "d-wf", "c-wf", "b-wf", "a-wf"]
    assert document["total"] == 5
    assert document["skip"] == 0
    assert document["take"] == 20
    assert document["count"] == 5
    assert document["more"] is False


def test_oldest_first_flag(seeded: Seeded) -> None:
    """--oldest-first restores the old order (oldest first, ties by id)."""
    document = listed(seeded, "--oldest-first")
    assert ids(document) == seeded.oldest == ["a-wf", "b-wf", "c-wf", "d-wf", "e-wf"]
    assert document["total"] == 5


@pytest.mark.parametrize("oldest_first", [False, True])
def test_pages_cover_the_order_without_gaps(seeded: Seeded, oldest_first: bool) -> None:
    """skip/take page through the listing order; every page reports the same total."""
    flag = ["--oldest-first"] if oldest_first else []
    pages = [listed(seeded, "--take", "2", "--skip", str(skip), *flag) for skip in (0, 2, 4)]
    assert [w for page in pages for w in ids(page)] == (
        seeded.oldest if oldest_first else seeded.newest
    )
    assert [page["total"] for page in pages] == [5, 5, 5]
    assert [page["count"] for page in pages] == [2, 2, 1]
    assert [page["more"] for page in pages] == [True, True, False]
    assert [(page["skip"], page["take"]) for page in pages] == [(0, 2), (2, 2), (4, 2)]


def test_total_follows_the_filters(seeded: Seeded) -> None:
    """The total counts what the filters match, not the page and not the whole store."""
    runnable = listed(seeded, "--status", "runnable", "--take", "1")
    assert ids(runnable) == ["e-wf"]
    assert runnable["total"] == 3
    assert runnable["more"] is True
    orders = listed(seeded, "--definition", "order")
    assert ids(orders) == ["e-wf", "d-wf", "c-wf", "a-wf"]
    assert orders["total"] == 4
    by_ref = listed(seeded, "--reference", "R-1")
    assert ids(by_ref) == ["e-wf", "b-wf", "a-wf"]
    assert by_ref["total"] == 3
    both = listed(seeded, "--reference", "R-1", "--definition", "order", "--status", "RUNNABLE")
    assert ids(both) == ["e-wf"]
    assert both["total"] == 1
    none = listed(seeded, "--reference", "R-9")
    assert none["workflows"] == []
    assert none["total"] == 0


def test_table_shows_range_total_and_next_page(seeded: Seeded) -> None:
    """The table's footer says which rows of how many, and how to get the next page
    (keeping --oldest-first)."""
    first = wfe("list", "--url", seeded.url, "--take", "2")
    assert first.exit_code == 0, first.stderr
    assert "e-wf" in first.stdout
    assert "a-wf" not in first.stdout
    assert "showing 1-2 of 5" in first.stdout
    assert "more: wfe list --skip 2 --take 2" in first.stdout
    assert "--oldest-first" not in first.stdout
    oldest = wfe("list", "--url", seeded.url, "--take", "2", "--skip", "2", "--oldest-first")
    assert oldest.exit_code == 0, oldest.stderr
    assert "c-wf" in oldest.stdout
    assert "showing 3-4 of 5" in oldest.stdout
    assert "more: wfe list --skip 4 --take 2 --oldest-first" in oldest.stdout
    last = wfe("list", "--url", seeded.url, "--take", "2", "--skip", "4")
    assert last.exit_code == 0, last.stderr
    assert "a-wf" in last.stdout
    assert "showing 5-5 of 5" in last.stdout
    assert "more:" not in last.stdout


def test_empty_pages_and_no_matches(seeded: Seeded) -> None:
    """Past the end the message gives the total; no match at all says so plainly."""
    beyond = wfe("list", "--url", seeded.url, "--skip", "10")
    assert beyond.exit_code == 0, beyond.stderr
    assert "no workflows on this page match (5 in all)" in beyond.stdout
    document = listed(seeded, "--skip", "10")
    assert document["workflows"] == []
    assert document["total"] == 5
    assert document["more"] is False
    nothing = wfe("list", "--url", seeded.url, "--status", "terminated")
    assert nothing.exit_code == 0, nothing.stderr
    assert "no workflows match" in nothing.stdout
    assert "in all" not in nothing.stdout
