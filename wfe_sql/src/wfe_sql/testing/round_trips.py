"""Round trips on the real database: a checkpoint is one transaction holding only the
statements its changes need, and what a provider writes reads back the same from
another provider (the values as the dialect's column types store them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wfe_core.models import ExecutionPointer, PointerStatus, WorkflowStatus

from wfe_sql.testing.base import DialectSuiteBase
from wfe_sql.testing.store import DialectStore, sample_instance, subscription

__all__ = ["RoundTripSuite"]

_SESSION_OPTIONS = ("PRAGMA", "SET", "SHOW", "RESET")


def _kinds(statements: list[str]) -> list[str]:
    """The first word of each statement (``BEGIN``, ``UPDATE``, ...), leaving out the
    ones that only set session options."""
    words = [s.split(None, 1)[0].rstrip(";").upper() for s in statements if s.strip()]
    return [w for w in words if w not in _SESSION_OPTIONS]


class RoundTripSuite(DialectSuiteBase):
    """Statements per checkpoint and values through a reopened store."""

    async def test_a_checkpoint_is_one_transaction_of_its_changes(
        self, dialect_store: DialectStore
    ) -> None:
        async with dialect_store.logged_provider() as (store, sent):
            inst = sample_instance("rt")
            for n in range(1, 50):
                inst.execution_pointers.append(ExecutionPointer(step_id=n))
            await store.create_workflow(inst)
            inst.execution_pointers[7].retry_count += 1
            inst.execution_pointers.append(ExecutionPointer(step_id=99))
            sent.clear()
            await store.persist_workflow(inst)
            # BEGIN, the guarded header UPDATE, the two changed pointers (one statement
            # for both where the dialect sends many rows at once), COMMIT
            inserts = ["INSERT"] * (1 if self.batched_rows_are_one_statement else 2)
            assert _kinds(sent) == ["BEGIN", "UPDATE", *inserts, "COMMIT"]
            loaded = await store.get_workflow_instance(inst.id)
        assert loaded.execution_pointers[7].retry_count == 1
        assert loaded.execution_pointers[-1].step_id == 99
        assert len(loaded.execution_pointers) == 51
        assert loaded.revision == 2

    async def test_a_checkpoint_with_a_subscription_is_one_transaction(
        self, dialect_store: DialectStore
    ) -> None:
        async with dialect_store.logged_provider() as (store, sent):
            inst = sample_instance("rt-sub")
            for n in range(1, 5):
                inst.execution_pointers.append(ExecutionPointer(step_id=n))
            await store.create_workflow(inst)
            loaded = await store.get_workflow_instance(inst.id)
            loaded.execution_pointers[0].event_name = "dialect-suite-event"
            sent.clear()
            await store.persist_workflow(loaded, [subscription(loaded, "sub-rt", "k")])
            # the header, the one changed pointer, the subscription: one transaction
            assert _kinds(sent) == ["BEGIN", "UPDATE", "INSERT", "INSERT", "COMMIT"]
            later = datetime.now(UTC) + timedelta(minutes=1)
            subs = await store.get_subscriptions("dialect-suite-event", "k", later)
            assert [s.id for s in subs] == ["sub-rt"]
            assert (await store.get_workflow_instance(inst.id)).revision == 2

    async def test_values_read_back_the_same_from_another_provider(
        self, dialect_store: DialectStore
    ) -> None:
        odd = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
        data = {
            "text": "naïve café \u2013 東京 \U0001f680 quote ' and \" and \\",
            "big": "x" * 300_000,
            "int": 2**53 + 1,
            "float": 0.1 + 0.2,
            "nested": {"list": [1, None, True, False, {"k": []}], "empty": {}},
        }
        inst = sample_instance(
            "values",
            data=data,
            description="d\u00e9j\u00e0 vu",
            reference="ref-\U0001f511",
            status=WorkflowStatus.SUSPENDED,
            create_time=odd,
            next_execution=odd + timedelta(microseconds=1),
            complete_time=odd + timedelta(days=400),
        )
        pointer = inst.execution_pointers[0]
        pointer.status = PointerStatus.SLEEPING
        pointer.sleep_until = odd - timedelta(microseconds=1)
        pointer.start_time = datetime(1970, 1, 1, tzinfo=UTC)
        pointer.persistence_data = {"deep": [[[[["x"]]]]]}
        pointer.event_data = [True, "é"]
        pointer.extension_attributes = {"k": {"v": 1.5}}
        pointer.children = ["child-1", "child-2"]
        pointer.scope = ["outer", "inner"]
        async with dialect_store.provider() as writer:
            await writer.create_workflow(inst)
        async with dialect_store.provider() as reader:
            back = await reader.get_workflow_instance("values")
        assert back.data == data
        assert (back.description, back.reference, back.status) == (
            "d\u00e9j\u00e0 vu",
            "ref-\U0001f511",
            WorkflowStatus.SUSPENDED,
        )
        assert back.create_time == odd
        assert back.next_execution == odd + timedelta(microseconds=1)
        assert back.complete_time == odd + timedelta(days=400)
        assert back.create_time.tzinfo is not None
        got = back.execution_pointers[0]
        assert got.id == pointer.id
        assert got.status is PointerStatus.SLEEPING
        assert got.sleep_until == odd - timedelta(microseconds=1)
        assert got.start_time == datetime(1970, 1, 1, tzinfo=UTC)
        assert got.persistence_data == {"deep": [[[[["x"]]]]]}
        assert got.event_data == [True, "é"]
        assert got.children == ["child-1", "child-2"]
        assert got.scope == ["outer", "inner"]
        assert got.extension_attributes == {"k": {"v": 1.5}}
