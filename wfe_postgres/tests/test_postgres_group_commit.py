"""Group commit on a real PostgreSQL server (a schema of its own per test): concurrent
checkpoints of different instances share transactions, and within a group a stale
revision or a failing batch fails only its own caller while the others commit. Also
the ``write_groups`` option, in code and in the URL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from wfe_core.errors import ConcurrencyError, WorkflowNotFound
from wfe_core.models import EventSubscription, ExecutionPointer, WorkflowInstance
from wfe_sql.driver import Op
from wfe_sql.group_commit import Outcome

from wfe_postgres import PostgresDriver, PostgresPersistenceProvider, parse_postgres_url
from wfe_postgres import provider_from_url as postgres_from_url

pytestmark = pytest.mark.anyio

SMALL: dict[str, Any] = {"min_size": 1, "max_size": 4}
TIMEOUT = 15.0
OFFLINE = "postgresql://wfe@127.0.0.1:1/nowhere"  # never connected to


# anyio_backend, url, schema and store: see conftest.py


@pytest.fixture
def group_sizes(store: PostgresPersistenceProvider, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group handed to the driver's real transaction (a spy: each
    call goes through to PostgreSQL)."""
    sizes: list[int] = []
    commit = store.driver._groups
    real = commit._run

    async def spy(batches: list[Sequence[Op]], *more: Any) -> list[Outcome]:
        sizes.append(len(batches))
        return await real(batches, *more)

    monkeypatch.setattr(commit, "_run", spy)
    return sizes


@contextlib.asynccontextmanager
async def raw(url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection (another client of the database)."""
    conn = await asyncpg.connect(
        parse_postgres_url(url).dsn, server_settings={"search_path": f'"{schema}"'}
    )
    try:
        yield conn
    finally:
        await conn.close()


async def rows(url: str, schema: str, sql: str) -> list[tuple[Any, ...]]:
    async with raw(url, schema) as conn:
        return [tuple(r) for r in await conn.fetch(sql)]


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def instance(workflow_id: str, **overrides: Any) -> WorkflowInstance:
    values: dict[str, Any] = {
        "workflow_definition_id": "pg-group-commit",
        "id": workflow_id,
        "data": {"n": 0},
    }
    values.update(overrides)
    inst = WorkflowInstance(**values)
    inst.execution_pointers.append(ExecutionPointer(step_id=0, persistence_data={"n": 0}))
    return inst


def subscription(owner: WorkflowInstance, sub_id: str, key: str) -> EventSubscription:
    return EventSubscription(
        workflow_id=owner.id,
        step_id=0,
        execution_pointer_id=owner.execution_pointers[0].id,
        event_name="pg-group-commit-event",
        event_key=key,
        id=sub_id,
    )


def stats(store: PostgresPersistenceProvider) -> tuple[int, int]:
    """(groups, batches) the driver's group commit wrote so far."""
    groups = store.driver._groups
    return groups.groups, groups.batches


async def created(store: PostgresPersistenceProvider, *ids: str) -> list[WorkflowInstance]:
    """Create instances with these ids; return them as loaded back from the store."""
    await asyncio.gather(*(store.create_workflow(instance(i)) for i in ids))
    return [await store.get_workflow_instance(i) for i in ids]


def change(inst: WorkflowInstance, n: int) -> None:
    """A checkpoint's worth of changes: data, header and the first pointer."""
    inst.data = {"n": n}
    inst.description = f"checkpoint {n}"
    inst.execution_pointers[0].persistence_data = {"n": n}


async def gather(*calls: Any) -> list[Any]:
    return list(await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), TIMEOUT))


# --------------------------------------------------------------------------------------
# group commit against the server
# --------------------------------------------------------------------------------------


async def test_concurrent_checkpoints_of_different_instances_share_transactions(
    url: str, schema: str, store: PostgresPersistenceProvider, group_sizes: list[int]
) -> None:
    ids = [f"wf-{i:02d}" for i in range(24)]
    loaded = await created(store, *ids)
    for n, inst in enumerate(loaded):
        change(inst, 100 + n)
        inst.execution_pointers.append(ExecutionPointer(step_id=1))
    groups_before, batches_before = stats(store)
    group_sizes.clear()

    outcomes = await gather(*(store.persist_workflow(inst) for inst in loaded))

    assert outcomes == [None] * len(ids)
    groups, batches = stats(store)
    assert batches - batches_before == len(ids)
    assert 1 <= groups - groups_before < batches - batches_before, "no group commit happened"
    assert sum(group_sizes) == len(ids)
    assert max(group_sizes) > 1
    assert all(inst.revision == 2 for inst in loaded)
    async with PostgresPersistenceProvider(url, schema=schema, **SMALL) as fresh:
        for n, workflow_id in enumerate(ids):
            back = await fresh.get_workflow_instance(workflow_id)
            assert back.revision == 2
            assert back.data == {"n": 100 + n}
            assert back.description == f"checkpoint {100 + n}"
            assert [p.step_id for p in back.execution_pointers] == [0, 1]
            assert back.execution_pointers[0].persistence_data == {"n": 100 + n}


async def test_a_stale_revision_fails_alone_inside_a_group(
    url: str, schema: str, store: PostgresPersistenceProvider, group_sizes: list[int]
) -> None:
    a, b, c = await created(store, "a", "b", "c")
    stale_b = await store.get_workflow_instance("b")
    change(b, 1)
    await store.persist_workflow(b)  # b is at revision 2 now; stale_b still says 1
    change(a, 10)
    change(stale_b, 20)
    change(c, 30)
    groups_before, batches_before = stats(store)
    group_sizes.clear()

    outcomes = await gather(
        store.persist_workflow(a), store.persist_workflow(stale_b), store.persist_workflow(c)
    )

    assert outcomes[0] is None
    assert isinstance(outcomes[1], ConcurrencyError)
    assert outcomes[2] is None
    # one transaction held all three: the stale one was skipped, not re-run alone
    assert group_sizes == [3]
    groups, batches = stats(store)
    assert (groups - groups_before, batches - batches_before) == (1, 3)
    assert stale_b.revision == 1
    assert stale_b.changed_pointers(), "a failed persist must not mark the instance saved"
    assert await rows(url, schema, "SELECT id, revision FROM wfe_workflows ORDER BY id") == [
        ("a", 2),
        ("b", 2),
        ("c", 2),
    ]
    assert (await store.get_workflow_instance("a")).data == {"n": 10}
    assert (await store.get_workflow_instance("b")).data == {"n": 1}  # not the stale write
    assert (await store.get_workflow_instance("c")).data == {"n": 30}


async def test_a_failing_checkpoint_fails_alone_and_the_others_commit(
    url: str, schema: str, store: PostgresPersistenceProvider, group_sizes: list[int]
) -> None:
    owner, a, b, c = await created(store, "owner", "a", "b", "c")
    await store.create_subscription(subscription(owner, "sub-taken", "owner-key"))
    change(a, 10)
    change(b, 20)
    change(c, 30)
    new_sub = subscription(a, "sub-a", "a-key")
    clash = subscription(b, "sub-taken", "b-key")  # the id exists: the batch fails
    groups_before, batches_before = stats(store)
    group_sizes.clear()

    outcomes = await gather(
        store.persist_workflow(a, [new_sub]),
        store.persist_workflow(b, [clash]),
        store.persist_workflow(c),
    )

    assert outcomes[0] is None
    assert isinstance(outcomes[1], ValueError)
    assert "already exists" in str(outcomes[1])
    assert outcomes[2] is None
    # the group of three rolled back, then each batch ran alone: the good ones once each
    assert group_sizes == [3, 1, 1, 1]
    groups, batches = stats(store)
    assert (groups - groups_before, batches - batches_before) == (2, 2)
    assert (a.revision, b.revision, c.revision) == (2, 1, 2)
    assert await rows(url, schema, "SELECT id, revision FROM wfe_workflows ORDER BY id") == [
        ("a", 2),
        ("b", 1),
        ("c", 2),
        ("owner", 1),
    ]
    assert await rows(
        url, schema, "SELECT id, workflow_id, event_key FROM wfe_subscriptions ORDER BY id"
    ) == [("sub-a", "a", "a-key"), ("sub-taken", "owner", "owner-key")]
    assert (await store.get_workflow_instance("b")).data == {"n": 0}
    # b is not stuck: with a fresh subscription id its checkpoint commits
    await store.persist_workflow(b, [subscription(b, "sub-b", "b-key")])
    back = await store.get_workflow_instance("b")
    assert (back.revision, back.data) == (2, {"n": 20})


async def test_a_mixed_group_leaves_exactly_what_succeeded(
    url: str, schema: str, store: PostgresPersistenceProvider, group_sizes: list[int]
) -> None:
    good = await created(store, *(f"good-{i}" for i in range(6)))
    (stale,) = await created(store, "stale")
    (clashing,) = await created(store, "clashing")
    await store.create_subscription(subscription(good[0], "sub-taken", "k0"))
    stale_copy = await store.get_workflow_instance("stale")
    change(stale, 1)
    await store.persist_workflow(stale)
    for n, inst in enumerate(good):
        change(inst, 100 + n)
    change(stale_copy, 999)
    change(clashing, 999)
    subs = [subscription(inst, f"sub-{inst.id}", inst.id) for inst in good[:3]]

    calls = [
        *(store.persist_workflow(inst, [sub]) for inst, sub in zip(good[:3], subs, strict=True)),
        *(store.persist_workflow(inst) for inst in good[3:]),
        store.persist_workflow(stale_copy),
        store.persist_workflow(clashing, [subscription(clashing, "sub-taken", "x")]),
        store.persist_workflow(instance("never-created", revision=1)),
        store.create_workflow(instance("good-0")),  # exists already
        store.create_workflow(instance("new-1")),
        store.create_workflow(instance("new-2")),
    ]
    group_sizes.clear()
    outcomes = await gather(*calls)

    assert outcomes[:6] == [None] * 6
    assert isinstance(outcomes[6], ConcurrencyError)
    assert isinstance(outcomes[7], ValueError)
    assert isinstance(outcomes[8], WorkflowNotFound)
    assert isinstance(outcomes[9], ConcurrencyError)
    assert outcomes[10:] == ["new-1", "new-2"]
    # one group of all twelve, rolled back by the clash, then each batch alone
    assert group_sizes == [12] + [1] * 12
    expected_revisions = {
        **{inst.id: 2 for inst in good},
        "stale": 2,
        "clashing": 1,
        "new-1": 1,
        "new-2": 1,
    }
    assert dict(await rows(url, schema, "SELECT id, revision FROM wfe_workflows")) == (
        expected_revisions
    )
    assert sorted(await rows(url, schema, "SELECT id, workflow_id FROM wfe_subscriptions")) == (
        sorted([("sub-taken", "good-0"), *((f"sub-{i.id}", i.id) for i in good[:3])])
    )
    pointer_counts = dict(
        await rows(
            url, schema, "SELECT workflow_id, COUNT(*) FROM wfe_execution_pointers GROUP BY 1"
        )
    )
    assert pointer_counts == dict.fromkeys(expected_revisions, 1)
    async with PostgresPersistenceProvider(url, schema=schema, **SMALL) as fresh:
        for n, inst in enumerate(good):
            assert (await fresh.get_workflow_instance(inst.id)).data == {"n": 100 + n}
        assert (await fresh.get_workflow_instance("stale")).data == {"n": 1}
        assert (await fresh.get_workflow_instance("clashing")).data == {"n": 0}
        assert (await fresh.get_workflow_instance("new-1")).data == {"n": 0}


# --------------------------------------------------------------------------------------
# the write_groups option
# --------------------------------------------------------------------------------------


def test_write_groups_defaults_to_three_capped_by_the_pool() -> None:
    driver = PostgresDriver(OFFLINE)
    assert driver.write_groups == 3
    assert driver._groups.max_groups == 3
    small = PostgresDriver(OFFLINE, max_size=2)
    assert small.write_groups == 3
    assert small._groups.max_groups == 2  # never more transactions than connections


@pytest.mark.parametrize("bad", [0, -1])
def test_write_groups_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="write_groups must be positive"):
        PostgresDriver(OFFLINE, write_groups=bad)
    with pytest.raises(ValueError, match="write_groups must be positive"):
        PostgresDriver(with_query(OFFLINE, f"write_groups={bad}"))


@pytest.mark.parametrize("bad", [1.5, True, "2"])
def test_write_groups_must_be_a_whole_number(bad: Any) -> None:
    with pytest.raises(TypeError, match="write_groups must be a whole number"):
        PostgresDriver(OFFLINE, write_groups=bad)


def test_write_groups_in_the_url() -> None:
    parsed = parse_postgres_url(with_query(OFFLINE, "write_groups=2"))
    assert parsed.options == {"write_groups": 2}
    assert "write_groups" not in parsed.dsn
    driver = PostgresDriver(with_query(OFFLINE, "write_groups=2"))
    assert driver.write_groups == 2
    assert driver._groups.max_groups == 2
    # a keyword argument wins over the URL
    assert PostgresDriver(with_query(OFFLINE, "write_groups=2"), write_groups=5).write_groups == 5
    with pytest.raises(ValueError, match="write_groups"):
        parse_postgres_url(with_query(OFFLINE, "write_groups=many"))
    store = postgres_from_url(with_query(OFFLINE, "write_groups=1"))
    assert isinstance(store.persistence, PostgresPersistenceProvider)
    assert store.persistence.driver.write_groups == 1
    assert store.persistence.driver._groups.max_groups == 1


async def test_a_store_from_a_url_with_write_groups_commits_in_groups(
    url: str, schema: str
) -> None:
    components = postgres_from_url(with_query(url, "write_groups=2"), schema=schema, **SMALL)
    persistence = components.persistence
    assert isinstance(persistence, PostgresPersistenceProvider)
    assert persistence.driver.write_groups == 2
    assert persistence.driver._groups.max_groups == 2
    async with persistence:
        ids = [f"u-{i}" for i in range(10)]
        loaded = await created(persistence, *ids)
        for n, inst in enumerate(loaded):
            change(inst, n)
        groups_before, batches_before = stats(persistence)
        assert await gather(*(persistence.persist_workflow(i) for i in loaded)) == [None] * 10
        groups, batches = stats(persistence)
        assert batches - batches_before == 10
        assert groups - groups_before < 10
        assert await rows(url, schema, "SELECT id, revision FROM wfe_workflows ORDER BY id") == [
            (i, 2) for i in sorted(ids)
        ]
