"""The execution error log of workflows (append-only).

Internal to :mod:`wfe_sql` (a mixin of :class:`~wfe_sql.SqlPersistenceProvider`).
"""

from __future__ import annotations

from collections.abc import Iterable

from wfe_core.models import ExecutionError

from wfe_sql.driver import Op
from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.times import from_micros, to_micros

__all__ = ["SqlErrorRepository"]


class SqlErrorRepository(SqlRepositoryBase):
    """The :class:`~wfe_core.persistence.ErrorRepository` part of the SQL provider."""

    async def persist_errors(self, errors: Iterable[ExecutionError]) -> None:
        """Append errors to the log (all or none)."""
        s = await self._ready()
        stmt = s.insert_error
        rows = []
        for i, error in enumerate(errors):
            if not isinstance(error, ExecutionError):
                raise TypeError(
                    f"errors[{i}] must be an ExecutionError, not {type(error).__name__}"
                )
            if error.error_time is None:
                raise TypeError(f"errors[{i}].error_time must be a datetime, not None")
            rows.append(
                stmt.args(
                    {
                        "p_id": error.id,
                        "p_workflow_id": error.workflow_id,
                        "p_execution_pointer_id": error.execution_pointer_id,
                        "p_error_time": to_micros(error.error_time, f"errors[{i}].error_time"),
                        "p_message": error.message,
                        "p_error_type": error.error_type,
                        "p_traceback": error.traceback,
                    }
                )
            )
        if not rows:
            return
        await self.driver.write_batch([Op(stmt.sql, rows=rows)])

    async def get_errors(self, workflow_id: str) -> list[ExecutionError]:
        """A workflow's errors, oldest first (ties in the order persisted)."""
        s = await self._ready()
        rows = await self.driver.fetchall(s.select_errors.sql, (workflow_id,))
        return [
            ExecutionError(
                workflow_id=wf,
                execution_pointer_id=pointer_id,
                message=message,
                error_type=error_type,
                traceback=tb,
                error_time=from_micros(error_time),
                id=error_id,
            )
            for error_id, wf, pointer_id, error_time, message, error_type, tb in rows
        ]
