"""Conformance suite for the execution-error log (``persist_errors`` / ``get_errors``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from wfe_core.models import ExecutionError, ExecutionPointer, WorkflowInstance, new_id
from wfe_core.persistence import PersistenceProvider

from wfe_conformance.base import SuiteBase

__all__ = ["ErrorRepositoryTests"]

_T0 = datetime(2029, 6, 1, 8, 30, 15, 250000, tzinfo=UTC)


async def _workflow(provider: PersistenceProvider) -> tuple[str, str]:
    """Create a workflow with one pointer; return (workflow id, pointer id)."""
    pointer = ExecutionPointer(step_id=0, step_name="failing step")
    instance = WorkflowInstance(workflow_definition_id="wfe-conformance-errors")
    instance.execution_pointers.append(pointer)
    return await provider.create_workflow(instance), pointer.id


def _error(workflow_id: str, pointer_id: str | None, n: int, at: datetime) -> ExecutionError:
    return ExecutionError(
        workflow_id=workflow_id,
        execution_pointer_id=pointer_id,
        message=f"error {n}",
        error_type="builtins.RuntimeError",
        traceback=f"Traceback (most recent call last):\n  line {n}\nRuntimeError: error {n}\n",
        error_time=at,
    )


class ErrorRepositoryTests(SuiteBase):
    """``persist_errors`` / ``get_errors`` semantics."""

    async def test_persisted_error_round_trips_every_field(
        self, provider: PersistenceProvider
    ) -> None:
        """get_errors returns message, type, traceback, ids and aware error_time unchanged."""
        wf, ptr = await _workflow(provider)
        err = ExecutionError(
            workflow_id=wf,
            execution_pointer_id=ptr,
            message="division by zero — ünïcode ✓\nsecond line",
            error_type="builtins.ZeroDivisionError",
            traceback='Traceback (most recent call last):\n  File "x.py", line 1\n'
            "ZeroDivisionError: division by zero\n",
            error_time=_T0,
        )
        await provider.persist_errors([err])
        got = await provider.get_errors(wf)
        assert len(got) == 1
        e = got[0]
        assert e.id == err.id
        assert e.workflow_id == wf
        assert e.execution_pointer_id == ptr
        assert e.message == err.message
        assert e.error_type == err.error_type
        assert e.traceback == err.traceback
        assert e.error_time == _T0
        assert e.error_time.utcoffset() == timedelta(0)

    async def test_error_without_pointer_or_details_round_trips(
        self, provider: PersistenceProvider
    ) -> None:
        """An error with no pointer id, type or traceback comes back with those as None."""
        wf, _ = await _workflow(provider)
        err = ExecutionError(workflow_id=wf, execution_pointer_id=None, message="m")
        await provider.persist_errors([err])
        (got,) = await provider.get_errors(wf)
        assert got.execution_pointer_id is None
        assert got.error_type is None
        assert got.traceback is None
        assert got.message == "m"
        assert got.id == err.id

    async def test_errors_come_oldest_first(self, provider: PersistenceProvider) -> None:
        """get_errors orders by error_time ascending whatever order they were persisted in."""
        wf, ptr = await _workflow(provider)
        offsets = [3, 0, 4, 1, 2]
        await provider.persist_errors(
            [_error(wf, ptr, n, _T0 + timedelta(seconds=n)) for n in offsets]
        )
        got = await provider.get_errors(wf)
        assert [e.message for e in got] == [f"error {n}" for n in range(5)]
        assert [e.error_time for e in got] == [_T0 + timedelta(seconds=n) for n in range(5)]

    async def test_errors_with_equal_times_keep_persist_order(
        self, provider: PersistenceProvider
    ) -> None:
        """Errors with the same error_time come back in the order they were persisted."""
        wf, ptr = await _workflow(provider)
        prefix = new_id()
        # ids deliberately neither ascending nor descending in persist order
        errs = [_error(wf, ptr, n, _T0) for n in range(4)]
        for e, suffix in zip(errs, ["c", "a", "d", "b"], strict=True):
            e.id = f"{prefix}-{suffix}"
        await provider.persist_errors(errs[:2])
        await provider.persist_errors(errs[2:])
        got = await provider.get_errors(wf)
        assert [e.id for e in got] == [e.id for e in errs]

    async def test_ordering_spans_batches(self, provider: PersistenceProvider) -> None:
        """An older error persisted in a later batch still comes before newer ones."""
        wf, ptr = await _workflow(provider)
        await provider.persist_errors([_error(wf, ptr, 2, _T0 + timedelta(minutes=2))])
        await provider.persist_errors([_error(wf, ptr, 1, _T0 + timedelta(minutes=1))])
        await provider.persist_errors([_error(wf, ptr, 3, _T0 + timedelta(minutes=3))])
        got = await provider.get_errors(wf)
        assert [e.message for e in got] == ["error 1", "error 2", "error 3"]

    async def test_errors_of_other_workflows_are_not_returned(
        self, provider: PersistenceProvider
    ) -> None:
        """get_errors returns only the errors of the workflow asked for."""
        wf_a, ptr_a = await _workflow(provider)
        wf_b, ptr_b = await _workflow(provider)
        await provider.persist_errors(
            [
                _error(wf_a, ptr_a, 1, _T0),
                _error(wf_b, ptr_b, 2, _T0),
                _error(wf_a, ptr_a, 3, _T0 + timedelta(seconds=1)),
            ]
        )
        assert [e.message for e in await provider.get_errors(wf_a)] == ["error 1", "error 3"]
        got_b = await provider.get_errors(wf_b)
        assert [e.message for e in got_b] == ["error 2"]
        assert all(e.workflow_id == wf_b for e in got_b)

    async def test_unknown_workflow_has_no_errors(self, provider: PersistenceProvider) -> None:
        """get_errors of an id never used returns an empty list (no error raised)."""
        assert await provider.get_errors(new_id()) == []

    async def test_workflow_without_errors_has_none(self, provider: PersistenceProvider) -> None:
        """An existing workflow with no errors logged returns an empty list."""
        wf, _ = await _workflow(provider)
        assert await provider.get_errors(wf) == []

    async def test_batches_append(self, provider: PersistenceProvider) -> None:
        """Each persist_errors call appends; nothing persisted earlier is replaced."""
        wf, ptr = await _workflow(provider)
        for batch in range(3):
            await provider.persist_errors(
                [
                    _error(wf, ptr, batch * 2 + i, _T0 + timedelta(seconds=batch * 2 + i))
                    for i in (0, 1)
                ]
            )
        got = await provider.get_errors(wf)
        assert [e.message for e in got] == [f"error {n}" for n in range(6)]

    async def test_empty_batch_is_accepted(self, provider: PersistenceProvider) -> None:
        """persist_errors([]) succeeds and changes nothing."""
        wf, ptr = await _workflow(provider)
        await provider.persist_errors([])
        assert await provider.get_errors(wf) == []
        await provider.persist_errors([_error(wf, ptr, 1, _T0)])
        await provider.persist_errors([])
        assert [e.message for e in await provider.get_errors(wf)] == ["error 1"]

    async def test_any_iterable_is_accepted(self, provider: PersistenceProvider) -> None:
        """persist_errors takes any iterable, including a one-shot generator."""
        wf, ptr = await _workflow(provider)
        await provider.persist_errors(
            _error(wf, ptr, n, _T0 + timedelta(seconds=n)) for n in range(3)
        )
        assert [e.message for e in await provider.get_errors(wf)] == [
            "error 0",
            "error 1",
            "error 2",
        ]

    async def test_naive_error_time_is_refused_whole_batch(
        self, provider: PersistenceProvider
    ) -> None:
        """A naive error_time raises ValueError and no error of that batch is stored."""
        wf, ptr = await _workflow(provider)
        good = _error(wf, ptr, 1, _T0)
        naive = _error(wf, ptr, 2, datetime(2029, 6, 1, 8, 30))
        with pytest.raises(ValueError):  # noqa: PT011
            await provider.persist_errors([good, naive])
        assert await provider.get_errors(wf) == []

    async def test_returned_errors_are_copies(self, provider: PersistenceProvider) -> None:
        """Mutating an error after persisting it, or one returned, does not change the log."""
        wf, ptr = await _workflow(provider)
        err = _error(wf, ptr, 1, _T0)
        await provider.persist_errors([err])
        err.message = "changed after persist"
        (got,) = await provider.get_errors(wf)
        assert got.message == "error 1"
        got.message = "changed after get"
        (again,) = await provider.get_errors(wf)
        assert again.message == "error 1"
