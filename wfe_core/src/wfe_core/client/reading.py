"""Reading instances: load, list, count, and wait for one to end."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from wfe_core.client.activities import ActivityClient
from wfe_core.models import ExecutionError, WorkflowInstance, WorkflowStatus
from wfe_core.retry import Backoff

__all__ = ["ReadingClient"]

_ENDED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED)
_HERE_RECHECK = 1.0  # seconds a waiter trusts a pass running here to signal its end


class ReadingClient(ActivityClient):
    """:class:`~wfe_core.client.activities.ActivityClient` plus the reads."""

    async def wait_for_workflow(self, workflow_id: str, timeout: float = 60.0) -> WorkflowInstance:
        """Wait until the instance is COMPLETE or TERMINATED and return it; raise
        TimeoutError after ``timeout`` seconds.

        When this process runs the workflow (a host), its end is handed over in
        process: no store read while it runs here (the waiter sleeps until the pass
        ends it or stops), and the instance returned is the one its last write stored
        (the first waiter takes that object; a later one reads the store). Otherwise
        the store is read, at growing intervals (5 ms up to 250 ms)."""
        done = self._ended_here(workflow_id)
        if done is not None:
            return done
        deadline = time.monotonic() + timeout
        wait = Backoff(0.005, maximum=0.25, jitter=0.2)
        delay = next(wait)
        ended = self._ended.setdefault(workflow_id, asyncio.Event())
        woke = not self._runs_here(workflow_id)
        status = "unknown"
        try:
            while True:
                # while this host runs the workflow its end -- or the end of the pass
                # -- is signalled here, so the store is read again only when signalled
                # or when nobody here runs it (a big instance is not reloaded over and
                # over under a running loop)
                here = self._runs_here(workflow_id)
                if woke or not here:
                    done = self._ended_here(workflow_id)
                    if done is not None:
                        return done
                    ended.clear()
                    instance = await self.persistence.get_workflow_instance(workflow_id)
                    if instance.status in _ENDED:
                        return instance
                    status = instance.status.value
                    here = self._runs_here(workflow_id)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"workflow {workflow_id} did not finish within {timeout}s (status {status})"
                    )
                woke = False
                try:
                    # running here: signalled when the pass ends (a second is a safety
                    # net); elsewhere: read again after the backoff's delay
                    async with asyncio.timeout(min(_HERE_RECHECK if here else delay, left)):
                        await ended.wait()
                    woke = True
                except TimeoutError:
                    pass
                if not here:
                    delay = next(wait)
        finally:
            if self._ended.get(workflow_id) is ended:
                self._ended.pop(workflow_id, None)

    def _runs_here(self, workflow_id: str) -> bool:
        """Whether this process runs (or was just handed) a pass over ``workflow_id``:
        its end will be signalled here (a client runs nothing)."""
        return self._pass_here(workflow_id) is not None

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Load an instance (WorkflowNotFound when unknown)."""
        return await self.persistence.get_workflow_instance(workflow_id)

    async def get_errors(self, workflow_id: str) -> list[ExecutionError]:
        """The errors recorded for an instance, oldest first."""
        return await self.persistence.get_errors(workflow_id)

    async def query_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        skip: int = 0,
        take: int = 100,
        newest_first: bool = False,
        idempotency_key: str | None = None,
    ) -> list[WorkflowInstance]:
        """Instances matching every filter given (see
        ``WorkflowRepository.query_workflows``)."""
        return await self.persistence.query_workflows(
            status=status,
            definition_id=definition_id,
            reference=reference,
            created_from=created_from,
            created_to=created_to,
            skip=skip,
            take=take,
            newest_first=newest_first,
            idempotency_key=idempotency_key,
        )

    async def count_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """How many instances match every filter given (as :meth:`query_workflows`)."""
        return await self.persistence.count_workflows(
            status=status,
            definition_id=definition_id,
            reference=reference,
            created_from=created_from,
            created_to=created_to,
            idempotency_key=idempotency_key,
        )
