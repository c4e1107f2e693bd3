"""Settings shared by clients and hosts: :class:`HostOptions` and the phases of
workflow middleware (:class:`MiddlewarePhase`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from wfe_core.models import WorkflowInstance

__all__ = [
    "HostOptions",
    "MiddlewarePhase",
    "NextMiddleware",
    "PendingActivity",
    "WorkflowMiddleware",
]

NextMiddleware = Callable[[], Awaitable[None]]
"""What a wrapping workflow middleware calls to run the rest: ``await next()``."""

WorkflowMiddleware = (
    Callable[[WorkflowInstance], Awaitable[None] | None]
    | Callable[[WorkflowInstance, NextMiddleware], Awaitable[None]]
)
"""A workflow middleware: ``mw(instance)`` (sync or async), or a wrapping one,
``async mw(instance, next)``, that runs code before and after ``await next()`` (Workflow
Core's ``IWorkflowMiddleware``): in EXECUTE_WORKFLOW ``next()`` runs the pass itself; in
PRE_WORKFLOW and POST_WORKFLOW it runs the phase's later middleware."""


class MiddlewarePhase(StrEnum):
    """When a workflow middleware runs."""

    PRE_WORKFLOW = "pre_workflow"
    """Before a new instance is first stored (it may change the instance)."""
    POST_WORKFLOW = "post_workflow"
    """After an instance completed or was terminated."""
    EXECUTE_WORKFLOW = "execute_workflow"
    """After every pass over an instance (``mw(instance)``), or around it (a wrapping
    ``mw(instance, next)``: ``await next()`` runs the pass)."""


@dataclass(frozen=True)
class HostOptions:
    """Host settings; every duration is in seconds."""

    poll_interval: float = 2.0
    """How often the poller looks for due workflows, events and commands."""
    idle_time: float = 0.1
    """How long a consumer waits for work before looking again."""
    error_retry_interval: float = 60.0
    """Default pause before a failed step is retried."""
    max_concurrent_workflows: int = 32
    """Passes one host runs at once."""
    max_concurrent_events: int = 16
    """Event deliveries one host runs at once."""
    lock_ttl: float = 30.0
    """Lease of a workflow's lock; renewed every third of it while a pass runs."""
    activity_token_ttl: float = 300.0
    """How long an activity worker's claim lasts before another worker may take it."""
    stop_timeout: float = 30.0
    """How long stopping waits for running steps before cancelling them."""
    poll_batch: int = 1000
    """The most due workflows or events one poll queues."""
    control_interval: float = 0.5
    """How often a host looks in the store for suspend / resume / terminate requests
    recorded by other processes for the instances it is running."""
    sync_steps: str = "auto"
    """Where plain ``def`` steps run: ``"auto"`` (in a worker thread until their trial
    runs show them quick, then inline on the event loop; back to a thread if one is
    ever slow), ``"thread"`` (always a worker thread) or ``"inline"`` (always on the
    loop). See :mod:`wfe_core.sync_steps`."""
    inline_step_limit: float = 0.001
    """``sync_steps="auto"``: a ``def`` step runs inline only while its runs take less
    than this (seconds)."""

    def __post_init__(self) -> None:
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(
                    f"HostOptions.{option.name} must be a finite number, not {value!r}"
                )
        for name in ("poll_interval", "idle_time", "lock_ttl", "activity_token_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HostOptions.{name} must be positive")
        if self.error_retry_interval < 0 or self.stop_timeout < 0:
            raise ValueError("HostOptions durations must not be negative")
        if self.max_concurrent_workflows < 1 or self.max_concurrent_events < 1:
            raise ValueError("HostOptions concurrency limits must be at least 1")
        if self.sync_steps not in ("auto", "thread", "inline"):
            raise ValueError(
                f"HostOptions.sync_steps must be 'auto', 'thread' or 'inline', "
                f"not {self.sync_steps!r}"
            )
        if self.inline_step_limit < 0:
            raise ValueError("HostOptions.inline_step_limit must not be negative")


@dataclass(frozen=True)
class PendingActivity:
    """An activity claimed by a worker: do the work, then submit with ``token``."""

    token: str
    activity_name: str
    parameters: Any
    token_expiry: datetime
