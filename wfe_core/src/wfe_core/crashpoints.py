"""Test-only crash points: kill the process at a named point of a durable path.

Set the environment variable ``WFE_CRASH_AT`` before the process imports wfe to
``name`` (the first time the point is reached) or ``name:N`` (the N-th time); when
that point is reached the process ends at once with ``os._exit(77)`` -- a hard kill:
nothing is flushed, no ``finally`` block runs, no lock or claim is released. A test
then starts another worker on the same store and checks that nothing was lost and
no finished step ran again. Unset (the normal case), :func:`crash_point` returns at
once: the variable is read once, at import.

The named points (:data:`CRASH_POINTS`):

``start.after_create``
    ``WorkflowHost.start_workflow``: the new instance is stored, nothing else done.
``checkpoint.before_persist`` / ``checkpoint.after_persist``
    ``_Pass._checkpoint`` (executor): just before / just after the instance (with its
    new subscriptions) is persisted after a step.
``delivery.after_persist``
    ``EventDelivery.deliver`` (host.delivery): the instance holding the delivered
    event is persisted, its subscription not yet terminated.
``delivery.after_subscription``
    ``EventDelivery.deliver``: the subscription is terminated, the event not yet
    marked processed (``EventDelivery.deliver_event``).
``activity.after_submit``
    ``WorkflowClient._submit`` (client.activities): the activity result event is stored.
``child.after_create``
    ``WorkflowClient.start_child`` (client.core): the child instance is stored, the parent's
    checkpoint (with its subscription to the child's end) not yet written.
``control.after_persist``
    ``WorkflowClient._apply_control`` (client.control): the suspended / resumed /
    terminated instance is persisted; subscriptions not yet terminated, the end not
    yet handled.
``control.after_subscriptions``
    ``WorkflowClient._apply_control``: a terminated instance is persisted and its
    subscriptions terminated; the end (its parent's ended event) not yet handled.
``ended.before_parent_event``
    ``WorkflowClient.workflow_ended`` (client.core): a child has ended (its final checkpoint is
    written) and the event telling its parent is not yet published.
"""

from __future__ import annotations

import os

__all__ = ["CRASH_EXIT_CODE", "CRASH_POINTS", "crash_point"]

CRASH_POINTS: tuple[str, ...] = (
    "start.after_create",
    "checkpoint.before_persist",
    "checkpoint.after_persist",
    "delivery.after_persist",
    "delivery.after_subscription",
    "activity.after_submit",
    "child.after_create",
    "control.after_persist",
    "control.after_subscriptions",
    "ended.before_parent_event",
)
"""Every point at which :func:`crash_point` is called."""

CRASH_EXIT_CODE = 77
"""The exit status of a process killed at a crash point."""


def _parse(spec: str | None) -> dict[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return {name.strip(): int(count) if count.strip() else 1}


_target: dict[str, int] | None = _parse(os.environ.get("WFE_CRASH_AT"))
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    """End the process with ``os._exit(77)`` when ``WFE_CRASH_AT`` names this point
    (and this is the N-th time it is reached); otherwise do nothing."""
    if _target is None:
        return
    wanted = _target.get(name)
    if wanted is None:
        return
    seen = _seen.get(name, 0) + 1
    _seen[name] = seen
    if seen == wanted:
        os._exit(CRASH_EXIT_CODE)
