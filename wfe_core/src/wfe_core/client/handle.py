"""A handle on one workflow instance: its id, typed by the workflow's data."""

from __future__ import annotations

from typing import Generic, TypeVar

from wfe_core.client.reading import ReadingClient
from wfe_core.errors import WorkflowTerminated
from wfe_core.models import ExecutionError, WorkflowInstance, WorkflowStatus

__all__ = ["WorkflowHandle"]

T = TypeVar("T")


class WorkflowHandle(Generic[T]):
    """One instance, reached through the client that made the handle.

    ``T`` is the workflow's data type: ``await handle.result()`` returns the data as
    the workflow left it when it completed. Cheap to make (no store access):
    ``client.get_handle(workflow_id)`` gives one for any id."""

    __slots__ = ("_client", "id")

    def __init__(self, client: ReadingClient, workflow_id: str) -> None:
        self._client = client
        self.id = workflow_id
        """The instance's id."""

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"

    async def instance(self) -> WorkflowInstance:
        """The instance as stored now (WorkflowNotFound when unknown)."""
        return await self._client.get_workflow_instance(self.id)

    async def status(self) -> WorkflowStatus:
        """The instance's status now."""
        return (await self.instance()).status

    async def wait(self, timeout: float = 60.0) -> WorkflowInstance:
        """Wait until the instance is COMPLETE or TERMINATED and return it
        (TimeoutError after ``timeout`` seconds)."""
        return await self._client.wait_for_workflow(self.id, timeout)

    async def result(self, timeout: float = 60.0) -> T:
        """Wait for the end and return the workflow's final data; raise
        :class:`~wfe_core.errors.WorkflowTerminated` when it ended TERMINATED and
        TimeoutError after ``timeout`` seconds."""
        instance = await self.wait(timeout)
        if instance.status is not WorkflowStatus.COMPLETE:
            raise WorkflowTerminated(instance, self.id)
        data: T = instance.data
        return data

    async def errors(self) -> list[ExecutionError]:
        """The errors recorded for the instance, oldest first."""
        return await self._client.get_errors(self.id)

    async def suspend(self) -> bool:
        """Suspend the instance (see ``WorkflowClient.suspend_workflow``)."""
        return await self._client.suspend_workflow(self.id)

    async def resume(self) -> bool:
        """Resume the instance (see ``WorkflowClient.resume_workflow``)."""
        return await self._client.resume_workflow(self.id)

    async def terminate(self) -> bool:
        """Terminate the instance (see ``WorkflowClient.terminate_workflow``)."""
        return await self._client.terminate_workflow(self.id)
