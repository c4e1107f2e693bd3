"""Conformance suite for :class:`~wfe_core.persistence.WorkflowRepository`:
``WorkflowRepositoryTests``, the composition of

- :class:`~wfe_conformance.workflow_writes.WorkflowWriteTests` -- create, persist and
  the copies a store hands out;
- :class:`~wfe_conformance.workflow_round_trips.WorkflowRoundTripTests` -- every field
  comes back as written;
- :class:`~wfe_conformance.workflow_queries.WorkflowQueryTests` -- loads, runnable
  instances, queries, counts, paging and naive datetimes refused.
"""

from __future__ import annotations

from wfe_conformance.workflow_queries import WorkflowQueryTests
from wfe_conformance.workflow_round_trips import WorkflowRoundTripTests
from wfe_conformance.workflow_writes import WorkflowWriteTests

__all__ = [
    "WorkflowQueryTests",
    "WorkflowRepositoryTests",
    "WorkflowRoundTripTests",
    "WorkflowWriteTests",
]


class WorkflowRepositoryTests(WorkflowWriteTests, WorkflowRoundTripTests, WorkflowQueryTests):
    """Workflow instances and execution pointers: create, persist, load, list, query."""
