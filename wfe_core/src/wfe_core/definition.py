"""Workflow definitions: the ``Workflow`` base class and everything a definition is
made of (re-exported from :mod:`wfe_core.steps` and :mod:`wfe_core.workflow`, where
they live; this module is the stable import path)."""

from __future__ import annotations

from wfe_core.steps import (
    ErrorBehavior,
    ExecutionResult,
    FunctionStep,
    Outcome,
    StepBody,
    StepContext,
    WorkflowDefinition,
    WorkflowRegistry,
    WorkflowStep,
)
from wfe_core.workflow import Workflow

__all__ = [
    "ErrorBehavior",
    "ExecutionResult",
    "FunctionStep",
    "Outcome",
    "StepBody",
    "StepContext",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowRegistry",
    "WorkflowStep",
]
