"""The state of one pass over one instance, and every decision a pass makes without
waiting: which pointers are runnable, what a step's result opens or ends, and what
an error does (retry, suspend, terminate, compensate). The executor
(:mod:`wfe_core.executor`) adds what awaits: running steps and checkpoints."""

from __future__ import annotations

import logging
import traceback as tb
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from wfe_core.models import (
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
    utcnow,
)
from wfe_core.options import HostOptions
from wfe_core.retry import RetryPolicy, backoff_delay
from wfe_core.steps import (
    ErrorBehavior,
    ExecutionResult,
    StepBody,
    WorkflowDefinition,
    WorkflowStep,
)

__all__ = ["FAILED_MARK", "PassState", "is_waiting"]

log = logging.getLogger("wfe.executor")

FAILED_MARK = "wfe.failed"
"""The persistence_data key marking a block whose failure is being settled."""


def _storable(text: str) -> str:
    """``text`` with NUL and lone surrogates escaped (``\\x00``, ``\\udc80``)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def is_waiting(p: ExecutionPointer) -> bool:
    """Whether ``p`` still waits for its event."""
    return p.status is PointerStatus.WAITING_FOR_EVENT and not p.event_published


class PassState:
    """One pass's view of an instance: open pointers, runnable ones, what to write."""

    def __init__(
        self,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        options: HostOptions,
        *,
        publish_lifecycle: bool = True,
    ) -> None:
        self.options = options
        self.publish_lifecycle = publish_lifecycle
        self.instance = instance
        self.definition = definition
        self.steps = definition.steps
        self.now = utcnow()
        self.open: dict[str, ExecutionPointer] = {}
        self.open_in_scope: dict[str, int] = {}
        self.waiting_for_predecessor: dict[str, ExecutionPointer] = {}
        self.ready: deque[ExecutionPointer] = deque()
        self.new_subs: list[EventSubscription] = []
        self.errors: list[ExecutionError] = []
        self.ended_waiters: list[str] = []
        self.lifecycle: list[LifecycleEvent] = []
        self.ended_status: WorkflowStatus | None = None
        self.deadline = instance.execution_deadline
        for p in instance.execution_pointers:
            if p.end_time is None:
                self.open[p.id] = p
                for s in p.scope:
                    self.open_in_scope[s] = self.open_in_scope.get(s, 0) + 1
                if p.status is PointerStatus.PENDING_PREDECESSOR and p.predecessor_id:
                    self.waiting_for_predecessor[p.predecessor_id] = p
        for p in self.open.values():
            if self._runnable(p):
                self.ready.append(p)

    def _runnable(self, p: ExecutionPointer) -> bool:
        if p.end_time is not None:
            return False
        if not p.active and not (is_waiting(p) and p.sleep_until is not None):
            return False
        if p.sleep_until is not None and p.sleep_until > self.now:
            return False
        return self.open_in_scope.get(p.id, 0) == 0

    def _open_pointer(self, p: ExecutionPointer) -> None:
        self.instance.execution_pointers.append(p)
        self.open[p.id] = p
        for s in p.scope:
            self.open_in_scope[s] = self.open_in_scope.get(s, 0) + 1
        if p.status is PointerStatus.PENDING_PREDECESSOR and p.predecessor_id:
            self.waiting_for_predecessor[p.predecessor_id] = p
        elif self._runnable(p):
            self.ready.append(p)

    def _end(self, p: ExecutionPointer, status: PointerStatus) -> None:
        if p.end_time is not None:
            return
        if p.event_name is not None and not p.event_published:
            self.ended_waiters.append(p.id)  # its subscription may still be live
        p.active = False
        p.status = status
        p.end_time = self.now
        p.sleep_until = None
        self.open.pop(p.id, None)
        for s in p.scope:
            n = self.open_in_scope.get(s, 0) - 1
            self.open_in_scope[s] = n
            if n <= 0:
                self.open_in_scope.pop(s, None)
                parent = self.open.get(s)
                if parent is not None and self._runnable(parent) and parent not in self.ready:
                    self.ready.append(parent)

    def _new_pointer(
        self,
        step_id: int,
        *,
        scope: list[str],
        predecessor: str | None,
        item: Any = None,
        status: PointerStatus = PointerStatus.PENDING,
    ) -> ExecutionPointer:
        step = self.steps[step_id]
        return ExecutionPointer(
            id=new_id(),
            step_id=step_id,
            step_name=step.label,
            active=status is PointerStatus.PENDING,
            status=status,
            context_item=item,
            predecessor_id=predecessor,
            scope=list(scope),
        )

    def _event(
        self,
        kind: LifecycleEventType,
        p: ExecutionPointer | None = None,
        message: str | None = None,
    ) -> None:
        if not self.publish_lifecycle:
            return
        inst = self.instance
        self.lifecycle.append(
            LifecycleEvent(
                type=kind,
                workflow_id=inst.id,
                workflow_definition_id=inst.workflow_definition_id,
                version=inst.version,
                reference=inst.reference,
                step_id=p.step_id if p else None,
                step_name=p.step_name if p else None,
                execution_pointer_id=p.id if p else None,
                message=message,
                event_time=self.now,
            )
        )

    def _follow_outcomes(self, p: ExecutionPointer, step: WorkflowStep) -> None:
        for o in step.outcomes:
            if o.matches(p.outcome):
                self._open_pointer(
                    self._new_pointer(
                        o.next_step, scope=p.scope, predecessor=p.id, item=p.context_item
                    )
                )
        successor = self.waiting_for_predecessor.pop(p.id, None)
        if successor is not None and successor.end_time is None:
            successor.status = PointerStatus.PENDING
            successor.active = True
            if self._runnable(successor):
                self.ready.append(successor)

    def _dirty(self) -> bool:
        return bool(self.instance.changed_pointers() or self.ended_waiters)

    def _next_execution(self) -> datetime | None:
        if self.instance.status is not WorkflowStatus.RUNNABLE:
            return None
        if self.ready:
            return self.now
        best = self.deadline  # a pass must run when the execution timeout expires
        for p in self.open.values():
            if self.open_in_scope.get(p.id, 0):
                continue
            if p.active or (is_waiting(p) and p.sleep_until is not None):
                t = p.sleep_until or self.now
                if best is None or t < best:
                    best = t
        return best

    def _apply_outputs(self, step: WorkflowStep, body: StepBody) -> None:
        data = self.instance.data
        for attr, fn in step.outputs:
            if attr is None:  # an output action: it sees the step and the data
                fn(body, data)
                continue
            value = fn(body)
            if isinstance(data, dict):
                data[attr] = value
            else:
                setattr(data, attr, value)

    def _apply_result(self, p: ExecutionPointer, step: WorkflowStep, r: ExecutionResult) -> None:
        p.persistence_data = r.persistence_data
        if r.end:
            p.outcome = r.outcome_value
            self._end(p, PointerStatus.COMPLETE)
            self._event(LifecycleEventType.STEP_COMPLETED, p)
            self._finish(WorkflowStatus.COMPLETE)
            return
        if r.event_name is not None:
            p.event_name = r.event_name
            p.event_key = r.event_key
            p.event_published = False
            p.event_data = None
            p.active = False
            p.status = PointerStatus.WAITING_FOR_EVENT
            p.sleep_until = (self.now + r.sleep_for) if r.sleep_for is not None else None
            self.new_subs.append(
                EventSubscription(
                    workflow_id=self.instance.id,
                    step_id=step.id,
                    execution_pointer_id=p.id,
                    event_name=r.event_name,
                    event_key=r.event_key or "",
                    subscribe_as_of=r.event_as_of or self.now,
                    subscription_data=r.subscription_data,
                    id=new_id(),
                )
            )
            return
        if r.proceed:
            p.outcome = r.outcome_value
            self._end(p, PointerStatus.COMPLETE)
            self._event(LifecycleEventType.STEP_COMPLETED, p)
            self._follow_outcomes(p, step)
            return
        if r.branch_values is not None:
            children = r.branch_children if r.branch_children is not None else step.children
            scope = [p.id, *p.scope]
            new_ids = []
            for value in r.branch_values:
                for child in children:
                    c = self._new_pointer(child, scope=scope, predecessor=p.id, item=value)
                    new_ids.append(c.id)
                    self._open_pointer(c)
            # only the latest round: a loop re-branches every iteration, and keeping
            # every round would make each checkpoint grow with the iteration count
            p.children = new_ids
            p.sleep_until = None
            if self._runnable(p):
                self.ready.append(p)
            return
        if r.sleep_for is not None or r.sleep_until is not None:
            p.sleep_until = r.sleep_until or (self.now + (r.sleep_for or timedelta(0)))
            p.status = PointerStatus.SLEEPING
            return
        # persist: run again
        self.ready.append(p)

    def _process_cancellations(self) -> None:
        if not self.definition.cancellable_steps or not self.open:
            return
        for step in self.definition.cancellable_steps:
            targets = [p for p in self.open.values() if p.step_id == step.id]
            if not targets:
                continue
            assert step.cancel_condition is not None
            try:
                cancel = bool(step.cancel_condition(self.instance.data))
            except Exception as exc:
                self._record_error(targets[0], exc)
                continue
            if not cancel:
                continue
            for p in targets:
                self._cancel_tree(p)
                if step.proceed_after_cancel:
                    self._follow_outcomes(p, step)

    def _cancel_tree(self, p: ExecutionPointer) -> None:
        for q in [q for q in self.open.values() if p.id in q.scope]:
            self._end(q, PointerStatus.CANCELLED)
        self._end(p, PointerStatus.CANCELLED)

    def _record_error(self, p: ExecutionPointer, exc: BaseException) -> None:
        # Every store keeps the same text (no NUL, no lone surrogate): an exception
        # message holding one is stored escaped rather than refused.
        message = _storable(str(exc) or type(exc).__name__)
        self.errors.append(
            ExecutionError(
                workflow_id=self.instance.id,
                execution_pointer_id=p.id,
                message=message,
                error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                traceback=_storable("".join(tb.format_exception(exc))),
                error_time=self.now,
            )
        )
        self._event(LifecycleEventType.WORKFLOW_ERROR, p, message)
        step = self.steps[p.step_id].display_name if p.step_id < len(self.steps) else p.step_id
        log.warning(
            "workflow %s %s failed: %s",
            self.instance.id,
            step,
            message,
            extra={
                "workflow_id": self.instance.id,
                "definition": self.instance.workflow_definition_id,
                "step": step,
                "step_id": p.step_id,
                "pointer_id": p.id,
                "attempt": p.retry_count + 1,
            },
        )

    def _retry_policy(self, step: WorkflowStep) -> RetryPolicy | None:
        """The step's policy; else (no shorthand settings) the definition's default;
        None when the ``retry_interval`` / ``max_retries`` / ``backoff`` shorthand or
        the host's ``error_retry_interval`` rules."""
        if step.retry_policy is not None:
            return step.retry_policy
        if step.retry_interval is None and step.max_retries is None and step.backoff == 1.0:
            return self.definition.retry_policy
        return None

    def _retries_exhausted(self, step: WorkflowStep, retries_done: int) -> bool:
        policy = self._retry_policy(step)
        if policy is not None:
            return policy.exhausted(retries_done)
        return step.max_retries is not None and retries_done >= step.max_retries

    def _retry_delay(self, step: WorkflowStep, attempt: int) -> timedelta:
        """The wait before retry ``attempt`` (1 = the first): the one place a step's
        retry delay is computed."""
        policy = self._retry_policy(step)
        if policy is not None:
            return policy.delay(attempt)
        base = step.retry_interval or timedelta(seconds=self.options.error_retry_interval)
        seconds = backoff_delay(attempt, base.total_seconds(), step.backoff)  # no jitter
        return timedelta(seconds=seconds)

    def _handle_error(self, p: ExecutionPointer, step: WorkflowStep, exc: Exception) -> None:
        self._record_error(p, exc)
        behavior = step.error_behavior
        if behavior is None:
            if not step.is_compensation and self._boundary(p) is not None:
                behavior = ErrorBehavior.COMPENSATE
            else:
                behavior = ErrorBehavior.RETRY
        if behavior is ErrorBehavior.RETRY:
            policy = self._retry_policy(step)
            if self._retries_exhausted(step, p.retry_count) or (
                policy is not None and not policy.retries(exc)
            ):
                self._fail(p, exc=exc)
                return
            p.retry_count += 1
            p.sleep_until = self.now + self._retry_delay(step, p.retry_count)
            p.status = PointerStatus.SLEEPING
            if step.is_saga:
                p.persistence_data = None
        elif behavior is ErrorBehavior.SUSPEND:
            p.status = PointerStatus.PENDING
            self._suspend()
        elif behavior is ErrorBehavior.TERMINATE:
            self._end(p, PointerStatus.FAILED)
            self._finish(WorkflowStatus.TERMINATED)
        else:
            self._fail(p, exc=exc)

    def _boundary(self, p: ExecutionPointer, include_self: bool = True) -> ExecutionPointer | None:
        """Who compensates a failure of ``p``: the nearest enclosing saga; else ``p``
        itself when it has a compensation; else the nearest enclosing block that has
        one; else nobody."""
        enclosing = [q for q in (self.instance.pointer(s) for s in p.scope) if q is not None]
        for q in enclosing:
            if self.steps[q.step_id].is_saga:
                return q
        for q in (p, *enclosing) if include_self else enclosing:
            if self.steps[q.step_id].compensation_step_id is not None:
                return q
        return None

    def _fail(
        self, p: ExecutionPointer, undo_self: bool = True, exc: BaseException | None = None
    ) -> None:
        """The step failed for good: compensate if something can, else terminate.

        ``undo_self=False`` when ``p``'s own compensation already ran (a saga whose
        retries are exhausted). ``exc``: the error, when known -- a saga whose retry
        policy does not retry it (``non_retryable``) compensates and does not retry."""
        step = self.steps[p.step_id]
        boundary = None if step.is_compensation else self._boundary(p, undo_self)
        if boundary is None:
            self._end(p, PointerStatus.FAILED)
            self._finish(WorkflowStatus.TERMINATED)
            return
        if boundary is p:  # undo this step, then carry on after it
            self._end(p, PointerStatus.COMPENSATED)
            self._chain_compensations([p])
            self._follow_outcomes(p, step)
            return
        has_undo = undo_self and step.compensation_step_id is not None
        self._end(p, PointerStatus.COMPENSATED if has_undo else PointerStatus.FAILED)
        bid = boundary.id
        for q in [q for q in self.open.values() if bid in q.scope]:
            self._end(q, PointerStatus.CANCELLED)
        done = [
            q
            for q in self.instance.execution_pointers
            if bid in q.scope
            and q.status is PointerStatus.COMPLETE
            and self.steps[q.step_id].compensation_step_id is not None
            and not self.steps[q.step_id].is_compensation
        ]
        done.reverse()  # newest first; the stable sort keeps that order for equal times
        done.sort(key=lambda q: q.end_time or self.now, reverse=True)
        for q in done:
            q.status = PointerStatus.COMPENSATED
        to_compensate = ([p] if has_undo else []) + done
        bstep = self.steps[boundary.step_id]
        behavior = bstep.error_behavior if bstep.is_saga else None
        saga_policy = self._retry_policy(bstep) if bstep.is_saga else None
        retrying = (
            behavior is ErrorBehavior.RETRY
            and not self._retries_exhausted(bstep, boundary.retry_count)
            and (exc is None or saga_policy is None or saga_policy.retries(exc))
        )
        if not retrying:
            to_compensate.append(boundary)  # the block's own compensation, if it has one
        self._chain_compensations(to_compensate, scope=[bid, *boundary.scope])
        if retrying:
            boundary.retry_count += 1
            boundary.persistence_data = None
            boundary.children = []
            boundary.sleep_until = self.now + self._retry_delay(bstep, boundary.retry_count)
            boundary.status = PointerStatus.SLEEPING
        else:
            marks = {
                ErrorBehavior.TERMINATE: "terminate",
                ErrorBehavior.SUSPEND: "suspend",
                ErrorBehavior.RETRY: "fail",
            }
            mark = marks.get(behavior, "compensated") if behavior is not None else "compensated"
            boundary.persistence_data = {FAILED_MARK: mark}
        if self._runnable(boundary) and boundary not in self.ready:
            self.ready.append(boundary)

    def _chain_compensations(
        self, pointers: list[ExecutionPointer], scope: list[str] | None = None
    ) -> None:
        previous: str | None = None
        for q in pointers:
            comp_step = self.steps[q.step_id].compensation_step_id
            if comp_step is None:
                continue
            status = (
                PointerStatus.PENDING if previous is None else PointerStatus.PENDING_PREDECESSOR
            )
            c = self._new_pointer(
                comp_step,
                scope=scope if scope is not None else q.scope,
                predecessor=previous or q.id,
                item=q.context_item,
                status=status,
            )
            self._open_pointer(c)
            previous = c.id

    def _settle_failed_block(self, p: ExecutionPointer, step: WorkflowStep, mark: str) -> None:
        if mark == "terminate":
            self._end(p, PointerStatus.COMPENSATED)
            self._finish(WorkflowStatus.TERMINATED)
        elif mark == "suspend":
            p.persistence_data = None
            p.children = []
            self._suspend()
        elif mark == "fail":
            p.persistence_data = None
            self._fail(p, undo_self=False)
        else:
            p.persistence_data = None
            self._end(p, PointerStatus.COMPENSATED)
            self._event(LifecycleEventType.STEP_COMPLETED, p)
            self._follow_outcomes(p, step)

    def _expired(self) -> bool:
        """Whether the instance's execution timeout has expired."""
        return self.deadline is not None and self.now >= self.deadline

    def _expire(self) -> None:
        """The execution timeout expired: record why and terminate the instance (its
        open pointers are cancelled, their subscriptions dropped at the checkpoint)."""
        first = self.instance.execution_pointers[0]
        self._record_error(
            first,
            TimeoutError(
                f"the execution timeout of workflow {self.instance.id} expired at "
                f"{self.deadline}; the workflow was terminated"
            ),
        )
        self._finish(WorkflowStatus.TERMINATED)

    def _suspend(self) -> None:
        self.instance.status = WorkflowStatus.SUSPENDED
        self._event(LifecycleEventType.WORKFLOW_SUSPENDED)

    def _finish(self, status: WorkflowStatus) -> None:
        inst = self.instance
        for q in list(self.open.values()):
            self._end(q, PointerStatus.CANCELLED)
        self.ready.clear()
        inst.status = status
        inst.complete_time = self.now
        self.ended_status = status
        self._event(
            LifecycleEventType.WORKFLOW_COMPLETED
            if status is WorkflowStatus.COMPLETE
            else LifecycleEventType.WORKFLOW_TERMINATED
        )
