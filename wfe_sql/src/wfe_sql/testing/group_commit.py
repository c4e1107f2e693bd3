"""Group commit on the real database: concurrent checkpoints of different instances
share transactions, and within a group a stale revision or a failing batch fails only
its own caller while the others commit (the rules of :mod:`wfe_sql.group_commit`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from wfe_core.errors import ConcurrencyError, WorkflowNotFound
from wfe_core.models import ExecutionPointer, WorkflowInstance

from wfe_sql.driver import Op
from wfe_sql.group_commit import GroupCommit, Outcome
from wfe_sql.provider import SqlPersistenceProvider
from wfe_sql.testing.base import DialectSuiteBase
from wfe_sql.testing.store import (
    DialectStore,
    change,
    gather_outcomes,
    sample_instance,
    subscription,
)

__all__ = ["GroupCommitSuite"]

_WORKFLOWS = "SELECT id, revision FROM wfe_workflows ORDER BY id"


def _commit_of(provider: SqlPersistenceProvider) -> GroupCommit:
    commit = provider.driver.group_commit
    assert isinstance(commit, GroupCommit), "the driver has no GroupCommit"
    return commit


def _stats(provider: SqlPersistenceProvider) -> tuple[int, int]:
    """(groups, batches) the driver's group commit wrote so far."""
    commit = _commit_of(provider)
    return commit.groups, commit.batches


async def _created(provider: SqlPersistenceProvider, *ids: str) -> list[WorkflowInstance]:
    """Create instances with these ids; return them as loaded back from the store."""
    for workflow_id in ids:
        await provider.create_workflow(sample_instance(workflow_id))
    return [await provider.get_workflow_instance(i) for i in ids]


class GroupCommitSuite(DialectSuiteBase):
    """Group commit against the dialect's database. Skipped (as an undeclared
    capability) when the suite's ``group_commit`` flag is False."""

    @pytest.fixture
    def group_sizes(self, provider: SqlPersistenceProvider) -> Iterator[list[int]]:
        """The size of every group handed to the driver's real transaction (a spy: each
        call goes through to the database)."""
        if not self.group_commit:
            pytest.skip("the dialect does not declare capability 'group commit'")
        commit = _commit_of(provider)
        sizes: list[int] = []
        real = commit._run

        async def spy(batches: list[Sequence[Op]], durable: bool) -> list[Outcome]:
            sizes.append(len(batches))
            return await real(batches, durable)

        commit._run = spy
        try:
            yield sizes
        finally:
            commit._run = real

    async def test_concurrent_checkpoints_of_different_instances_share_transactions(
        self,
        dialect_store: DialectStore,
        provider: SqlPersistenceProvider,
        group_sizes: list[int],
    ) -> None:
        ids = [f"wf-{i:02d}" for i in range(24)]
        loaded = await _created(provider, *ids)
        for n, inst in enumerate(loaded):
            change(inst, 100 + n)
            inst.execution_pointers.append(ExecutionPointer(step_id=1))
        groups_before, batches_before = _stats(provider)
        group_sizes.clear()

        outcomes = await gather_outcomes(
            self.timeout, *(provider.persist_workflow(inst) for inst in loaded)
        )

        assert outcomes == [None] * len(ids)
        groups, batches = _stats(provider)
        assert batches - batches_before == len(ids)
        assert 1 <= groups - groups_before < batches - batches_before, "no group commit"
        assert sum(group_sizes) == len(ids)
        assert max(group_sizes) > 1
        assert all(inst.revision == 2 for inst in loaded)
        async with dialect_store.provider() as fresh:  # what the store holds
            for n, workflow_id in enumerate(ids):
                back = await fresh.get_workflow_instance(workflow_id)
                assert back.revision == 2
                assert back.data == {"n": 100 + n}
                assert back.description == f"checkpoint {100 + n}"
                assert [p.step_id for p in back.execution_pointers] == [0, 1]
                assert back.execution_pointers[0].persistence_data == {"n": 100 + n}

    async def test_a_stale_revision_fails_alone_inside_a_group(
        self,
        dialect_store: DialectStore,
        provider: SqlPersistenceProvider,
        group_sizes: list[int],
    ) -> None:
        a, b, c = await _created(provider, "a", "b", "c")
        stale_b = await provider.get_workflow_instance("b")
        change(b, 1)
        await provider.persist_workflow(b)  # b is at revision 2 now; stale_b still says 1
        change(a, 10)
        change(stale_b, 20)
        change(c, 30)
        groups_before, batches_before = _stats(provider)
        group_sizes.clear()

        outcomes = await gather_outcomes(
            self.timeout,
            provider.persist_workflow(a),
            provider.persist_workflow(stale_b),
            provider.persist_workflow(c),
        )

        assert outcomes[0] is None
        assert isinstance(outcomes[1], ConcurrencyError)
        assert outcomes[2] is None
        # one transaction held all three: the stale one was skipped, not re-run alone
        assert group_sizes == [3]
        groups, batches = _stats(provider)
        assert (groups - groups_before, batches - batches_before) == (1, 3)
        assert stale_b.revision == 1
        assert stale_b.changed_pointers(), "a failed persist must not mark the instance saved"
        assert await dialect_store.rows(_WORKFLOWS) == [("a", 2), ("b", 2), ("c", 2)]
        assert (await provider.get_workflow_instance("a")).data == {"n": 10}
        assert (await provider.get_workflow_instance("b")).data == {"n": 1}  # not the stale one
        assert (await provider.get_workflow_instance("c")).data == {"n": 30}

    async def test_a_failing_checkpoint_fails_alone_and_the_others_commit(
        self,
        dialect_store: DialectStore,
        provider: SqlPersistenceProvider,
        group_sizes: list[int],
    ) -> None:
        owner, a, b, c = await _created(provider, "owner", "a", "b", "c")
        await provider.create_subscription(subscription(owner, "sub-taken", "owner-key"))
        change(a, 10)
        change(b, 20)
        change(c, 30)
        new_sub = subscription(a, "sub-a", "a-key")
        clash = subscription(b, "sub-taken", "b-key")  # the id exists: the batch fails
        groups_before, batches_before = _stats(provider)
        group_sizes.clear()

        outcomes = await gather_outcomes(
            self.timeout,
            provider.persist_workflow(a, [new_sub]),
            provider.persist_workflow(b, [clash]),
            provider.persist_workflow(c),
        )

        assert outcomes[0] is None
        assert isinstance(outcomes[1], ValueError)
        assert "already exists" in str(outcomes[1])
        assert outcomes[2] is None
        # the group of three rolled back, then each batch ran alone: the good ones once each
        assert group_sizes == [3, 1, 1, 1]
        groups, batches = _stats(provider)
        assert (groups - groups_before, batches - batches_before) == (2, 2)
        assert (a.revision, b.revision, c.revision) == (2, 1, 2)
        assert await dialect_store.rows(_WORKFLOWS) == [
            ("a", 2),
            ("b", 1),
            ("c", 2),
            ("owner", 1),
        ]
        assert await dialect_store.rows(
            "SELECT id, workflow_id, event_key FROM wfe_subscriptions ORDER BY id"
        ) == [("sub-a", "a", "a-key"), ("sub-taken", "owner", "owner-key")]
        assert (await provider.get_workflow_instance("b")).data == {"n": 0}
        # b is not stuck: with a fresh subscription id its checkpoint commits
        await provider.persist_workflow(b, [subscription(b, "sub-b", "b-key")])
        back = await provider.get_workflow_instance("b")
        assert (back.revision, back.data) == (2, {"n": 20})

    async def test_a_mixed_group_leaves_exactly_what_succeeded(
        self,
        dialect_store: DialectStore,
        provider: SqlPersistenceProvider,
        group_sizes: list[int],
    ) -> None:
        good = await _created(provider, *(f"good-{i}" for i in range(6)))
        (stale,) = await _created(provider, "stale")
        (clashing,) = await _created(provider, "clashing")
        await provider.create_subscription(subscription(good[0], "sub-taken", "k0"))
        stale_copy = await provider.get_workflow_instance("stale")
        change(stale, 1)
        await provider.persist_workflow(stale)
        for n, inst in enumerate(good):
            change(inst, 100 + n)
        change(stale_copy, 999)
        change(clashing, 999)
        subs = [subscription(inst, f"sub-{inst.id}", inst.id) for inst in good[:3]]

        calls: list[Any] = [
            *(
                provider.persist_workflow(inst, [sub])
                for inst, sub in zip(good[:3], subs, strict=True)
            ),
            *(provider.persist_workflow(inst) for inst in good[3:]),
            provider.persist_workflow(stale_copy),
            provider.persist_workflow(clashing, [subscription(clashing, "sub-taken", "x")]),
            provider.persist_workflow(sample_instance("never-created", revision=1)),
            provider.create_workflow(sample_instance("good-0")),  # exists already
            provider.create_workflow(sample_instance("new-1")),
            provider.create_workflow(sample_instance("new-2")),
        ]
        group_sizes.clear()
        outcomes = await gather_outcomes(self.timeout, *calls)

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
        assert dict(await dialect_store.rows(_WORKFLOWS)) == expected_revisions
        assert sorted(
            await dialect_store.rows("SELECT id, workflow_id FROM wfe_subscriptions")
        ) == sorted([("sub-taken", "good-0"), *((f"sub-{i.id}", i.id) for i in good[:3])])
        pointer_counts = dict(
            await dialect_store.rows(
                "SELECT workflow_id, COUNT(*) FROM wfe_execution_pointers GROUP BY workflow_id"
            )
        )
        assert pointer_counts == dict.fromkeys(expected_revisions, 1)
        async with dialect_store.provider() as fresh:
            for n, inst in enumerate(good):
                assert (await fresh.get_workflow_instance(inst.id)).data == {"n": 100 + n}
            assert (await fresh.get_workflow_instance("stale")).data == {"n": 1}
            assert (await fresh.get_workflow_instance("clashing")).data == {"n": 0}
            assert (await fresh.get_workflow_instance("new-1")).data == {"n": 0}
