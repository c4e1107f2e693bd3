"""Clients: start workflows, publish events, control and read instances, from async
code (:class:`WorkflowClient`) or sync code (:class:`SyncWorkflowClient`, from
``WorkflowClient.connect_sync``), without running any workflow in the process."""

from wfe_core.client.client import (
    SyncWorkflowClient,
    SyncWorkflowHandle,
    WorkflowClient,
    WorkflowHandle,
)
from wfe_core.options import PendingActivity

__all__ = [
    "PendingActivity",
    "SyncWorkflowClient",
    "SyncWorkflowHandle",
    "WorkflowClient",
    "WorkflowHandle",
]
