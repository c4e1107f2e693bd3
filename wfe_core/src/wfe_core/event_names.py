"""Names the engine reserves for its own events and pointer attributes.

A leaf module (it imports nothing from wfe_core), so both
:mod:`wfe_core.definition` (``ExecutionResult.wait_for_activity``) and
:mod:`wfe_core.primitives` (the activity and sub-workflow steps) can use them without
importing each other.
"""

from __future__ import annotations

__all__ = [
    "ACTIVITY_EVENT",
    "EXECUTION_DEADLINE_ATTRIBUTE",
    "PARENT_ATTRIBUTE",
    "WORKFLOW_ENDED_EVENT",
]

ACTIVITY_EVENT = "wfe.activity"
"""Event name of activity subscriptions (the key is the activity name)."""

WORKFLOW_ENDED_EVENT = "wfe.workflow.ended"
"""Event name published when a child workflow ends (the key is the child's id)."""

PARENT_ATTRIBUTE = "wfe.parent_workflow_id"
"""Extension attribute on a child's first pointer naming its parent workflow."""

EXECUTION_DEADLINE_ATTRIBUTE = "wfe.execution_deadline"
"""Extension attribute on an instance's first pointer: when its execution timeout
expires (an ISO 8601 UTC time; see ``WorkflowInstance.execution_deadline``)."""
