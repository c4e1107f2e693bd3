"""Workflow instances: create, checkpoint, read, query and purge them, plus the
ownership claims and control requests that fence them.

A step checkpoint (``persist_workflow``) is one write transaction: one ``UPDATE`` of the
header guarded by the revision (and the owner's claim), one batched upsert of only the
changed pointers, and one batched insert of the new subscriptions when there are any.
Internal to :mod:`wfe_sql` (a mixin of :class:`~wfe_sql.SqlPersistenceProvider`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from wfe_core.capabilities import Capability
from wfe_core.errors import (
    ConcurrencyError,
    ControlPending,
    DuplicateIdempotencyKey,
    LeaseLost,
    WorkflowNotFound,
)
from wfe_core.models import EventSubscription, WorkflowInstance, WorkflowStatus, new_id
from wfe_core.persistence import Claim
from wfe_core.persistence import check_aware as _check_aware
from wfe_core.persistence import check_claim as _check_claim
from wfe_core.persistence import check_control_action as _check_control_action
from wfe_core.persistence import check_instance_text as _check_instance_text
from wfe_core.persistence import check_non_negative as _non_negative
from wfe_core.persistence import id_list as _id_list

from wfe_sql.driver import BatchAborted, IntegrityViolation, Op, Row
from wfe_sql.repository.base import SqlRepositoryBase
from wfe_sql.repository.codec import (
    _FINISHED,
    _HEADER_WIDTH,
    _chunks,
    _workflow_filter_values,
    _workflow_status,
)
from wfe_sql.times import to_micros

__all__ = ["SqlWorkflowRepository"]


class SqlWorkflowRepository(SqlRepositoryBase):
    """The :class:`~wfe_core.persistence.WorkflowRepository` part of the SQL provider."""

    async def create_workflow(
        self,
        instance: WorkflowInstance,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> str:
        """Insert a new instance (revision 1) with all its pointers; return its id
        (claimed by ``owner`` until ``lease_until`` when given)."""
        if not isinstance(instance, WorkflowInstance):
            raise TypeError(f"instance must be a WorkflowInstance, not {type(instance).__name__}")
        _check_instance_text(instance)
        if owner is not None:
            _check_claim(owner, lease_until)
        s = await self._ready()
        workflow_id = instance.id or new_id()
        header = self._header_values(instance)
        header["p_id"] = workflow_id
        header["p_revision"] = 1
        insert = s.insert_workflow
        if owner is not None and lease_until is not None:
            insert = s.insert_workflow_claimed
            header["p_owner"] = owner
            header["p_lease"] = to_micros(lease_until, "lease_until")
        header_args = insert.args(header)
        rows = []
        for ordinal, pointer in enumerate(instance.execution_pointers):
            values = self._pointer_values(workflow_id, pointer)
            values["p_ordinal"] = ordinal
            rows.append(s.insert_pointer.args(values))
        ops = [Op(insert.sql, header_args, expect=1)]
        if rows:
            ops.append(Op(s.insert_pointer.sql, rows=rows))
        try:
            await self.driver.write_batch(ops)
        except BatchAborted:
            raise ConcurrencyError(workflow_id, 0) from None
        except IntegrityViolation as exc:
            raise await self._create_refused(instance, workflow_id, exc) from exc
        instance.id = workflow_id
        instance.revision = 1
        instance.mark_persisted()
        return workflow_id

    async def persist_workflow(
        self,
        instance: WorkflowInstance,
        subscriptions: Sequence[EventSubscription] = (),
        *,
        owner: str | None = None,
        apply_control: bool = False,
    ) -> None:
        """Save header, data and changed pointers plus new subscriptions, atomically
        (fenced by the claim: see ``WorkflowRepository``)."""
        originals = list(subscriptions)
        if not isinstance(instance, WorkflowInstance):
            raise TypeError(f"instance must be a WorkflowInstance, not {type(instance).__name__}")
        s = await self._ready()
        # Everything is converted (and so validated) before the transaction starts.
        workflow_id = instance.id
        header = self._header_values(instance)
        header["p_key_id"] = workflow_id
        header["p_key_revision"] = instance.revision
        now = self._now()
        header["p_now"] = now
        if owner is None:
            update = s.update_workflow
        elif instance.status in _FINISHED:  # the write that ends it drops the claim
            update = s.update_workflow_control_end if apply_control else s.update_workflow_owned_end
            header["p_owner"] = owner
        else:
            update = s.update_workflow_control if apply_control else s.update_workflow_owned
            header["p_owner"] = owner
        header_args = update.args(header)
        upsert = s.upsert_pointer.args
        pointer_rows = [
            upsert(self._pointer_values(workflow_id, p)) for p in instance.changed_pointers()
        ]
        new_subs = self._subscription_values(originals, "subscriptions")
        sub_rows = [s.insert_subscription.args(v) for v in new_subs]
        # One transaction, one round trip: the guarded header UPDATE (a stale revision
        # or unknown id matches no row and rolls the whole batch back), the upsert of the
        # changed pointers, the new subscriptions.
        ops = [Op(update.sql, header_args, expect=1)]
        if pointer_rows:
            ops.append(Op(s.upsert_pointer.sql, rows=pointer_rows))
        if sub_rows:
            ops.append(Op(s.insert_subscription.sql, rows=sub_rows))
        try:
            await self.driver.write_batch(ops)
        except BatchAborted:
            raise await self._refused(workflow_id, instance.revision, owner, now) from None
        except IntegrityViolation as exc:
            raise ValueError(f"subscriptions: a subscription id already exists ({exc})") from exc
        for original, values in zip(originals, new_subs, strict=True):
            original.id = values["p_id"]
        instance.revision += 1
        instance.mark_persisted()

    async def _create_refused(
        self, instance: WorkflowInstance, workflow_id: str, exc: IntegrityViolation
    ) -> Exception:
        """The error for an insert that broke a unique index: the idempotency key is
        taken (one look-up, on this path only) or two pointers share an id."""
        key = instance.idempotency_key
        if key is not None:
            s = await self._ready()
            definition_id = instance.workflow_definition_id
            row = await self.driver.fetchone(
                s.workflow_by_idempotency_key.sql,
                s.workflow_by_idempotency_key.args(
                    {"p_workflow_definition_id": definition_id, "p_idempotency_key": key}
                ),
            )
            if row is not None:
                return DuplicateIdempotencyKey(definition_id, key, row[0])
            pointer_ids = {p.id for p in instance.execution_pointers}
            if len(pointer_ids) == len(instance.execution_pointers):
                # The key's holder was purged between the insert and the look-up.
                return ConcurrencyError(workflow_id, 0)
        return ValueError(
            f"workflow instance {workflow_id!r} has two execution pointers with one id: {exc}"
        )

    async def _refused(
        self, workflow_id: str, revision: int, owner: str | None, now: int
    ) -> Exception:
        """The error for a refused header write: which guard did not hold."""
        s = await self._ready()
        row = await self.driver.fetchone(
            s.workflow_fence.sql, s.workflow_fence.args({"p_key_id": workflow_id})
        )
        if row is None:
            return WorkflowNotFound(workflow_id)
        stored_revision, holder, lease, control = row
        if stored_revision != revision:
            return ConcurrencyError(workflow_id, revision)
        live = holder is not None and lease is not None and lease > now
        if owner is None or not live or holder != owner:
            return LeaseLost(workflow_id, owner)
        return ControlPending(workflow_id, control)

    async def claim_workflow(
        self, workflow_id: str, owner: str, lease_until: datetime
    ) -> bool | Claim:
        """Take or renew ``owner``'s claim unless another owner holds a live one: one
        statement for a free or own instance; a second, the takeover of an expired
        claim, only when the first finds another owner."""
        _check_claim(owner, lease_until)
        lease = to_micros(lease_until, "lease_until")
        s = await self._ready()
        values = {"p_key_id": workflow_id, "p_owner": owner, "p_lease": lease, "p_now": self._now()}
        stmt = s.claim_workflow
        if await self.driver.execute(stmt.sql, stmt.args(values), durable=False):
            return Claim.CLAIMED
        stmt = s.take_over_workflow
        if await self.driver.execute(stmt.sql, stmt.args(values), durable=False):
            return Claim.TAKEN_OVER
        if await self.driver.fetchone(s.workflow_exists.sql, (workflow_id,)) is None:
            raise WorkflowNotFound(workflow_id)
        return Claim.REFUSED

    async def release_workflow(self, workflow_id: str, owner: str) -> None:
        """Drop ``owner``'s claim (a no-op when it does not hold it)."""
        s = await self._ready()
        stmt = s.release_workflow
        await self.driver.execute(
            stmt.sql, stmt.args({"p_key_id": workflow_id, "p_owner": owner}), durable=False
        )

    async def request_control(self, workflow_id: str, action: str) -> None:
        """Record a pending control request (a pending terminate is kept)."""
        _check_control_action(action)
        s = await self._ready()
        stmt = s.request_control
        if await self.driver.execute(
            stmt.sql, stmt.args({"p_key_id": workflow_id, "p_action": action})
        ):
            return
        if await self.driver.fetchone(s.workflow_exists.sql, (workflow_id,)) is None:
            raise WorkflowNotFound(workflow_id)

    async def get_pending_controls(
        self, workflow_ids: Iterable[str] | None = None, as_at: datetime | None = None
    ) -> dict[str, str]:
        """Pending control requests (see ``WorkflowRepository.get_pending_controls``)."""
        s = await self._ready()
        out: dict[str, str] = {}
        if workflow_ids is not None:
            ids = list(dict.fromkeys(_id_list(workflow_ids, "workflow_ids")))
            for chunk in _chunks(ids):
                stmt = s.controls_in(len(chunk))
                for row in await self.driver.fetchall(stmt.sql, chunk):
                    out[row[0]] = row[1]
            return out
        now = self._now() if as_at is None else to_micros(as_at, "as_at")
        stmt = s.unclaimed_controls
        for row in await self.driver.fetchall(stmt.sql, stmt.args({"p_now": now})):
            out[row[0]] = row[1]
        return out

    async def get_workflow_instance(self, workflow_id: str) -> WorkflowInstance:
        """Return a copy of the instance, or raise ``WorkflowNotFound``."""
        s = await self._ready()
        # One statement: the header row first, then the pointer rows (see statements).
        rows = await self.driver.fetchall(
            s.select_instance.sql, s.select_instance.args({"p_key_id": workflow_id})
        )
        if not rows or rows[0][0] != 0:
            raise WorkflowNotFound(workflow_id)
        split = 2 + _HEADER_WIDTH
        return self._load_instance(rows[0][2:split], [row[split:] for row in rows[1:]])

    async def _load_many(self, ids: list[str]) -> dict[str, WorkflowInstance]:
        """The instances found among ``ids`` (distinct), read in one snapshot."""
        s = await self._ready()
        headers: dict[str, Row] = {}
        pointers: dict[str, list[Row]] = {}
        async with self.driver.read() as r:
            for chunk in _chunks(ids):
                for row in await r.fetchall(s.workflows_in(len(chunk)).sql, chunk):
                    headers[row[0]] = row
            found = [i for i in ids if i in headers]
            for chunk in _chunks(found):
                for row in await r.fetchall(s.pointers_in(len(chunk)).sql, chunk):
                    pointers.setdefault(row[0], []).append(row)
        return {i: self._load_instance(headers[i], pointers.get(i, ())) for i in found}

    async def get_workflow_instances(self, workflow_ids: Iterable[str]) -> list[WorkflowInstance]:
        """Copies of the instances found, in the order asked (each once)."""
        ids = list(dict.fromkeys(_id_list(workflow_ids, "workflow_ids")))
        if not ids:
            await self._ready()
            return []
        loaded = await self._load_many(ids)
        return [loaded[i] for i in ids if i in loaded]

    async def get_runnable_instances(self, as_at: datetime, limit: int = 1000) -> list[str]:
        """Ids of RUNNABLE instances due at ``as_at`` and not claimed then, earliest
        ``next_execution`` first."""
        at = to_micros(as_at, "as_at")
        _non_negative(limit, "limit")
        s = await self._ready()
        rows = await self.driver.fetchall(
            s.runnable_workflows.sql, s.runnable_workflows.args({"p_as_at": at, "p_limit": limit})
        )
        return [r[0] for r in rows]

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
        """Matching instances, oldest ``create_time`` first (ties by id), paged;
        ``newest_first`` reverses the order."""
        _check_aware(created_from, "created_from")
        _check_aware(created_to, "created_to")
        _non_negative(skip, "skip")
        _non_negative(take, "take")
        s = await self._ready()
        values = _workflow_filter_values(
            status, definition_id, reference, created_from, created_to, idempotency_key
        )
        if values is None or take == 0:
            return []
        stmt = s.query_workflows(tuple(k[2:] for k in values), newest_first)
        values["p_take"] = take
        values["p_skip"] = skip
        pointers: dict[str, list[Row]] = {}
        async with self.driver.read() as r:
            headers = await r.fetchall(stmt.sql, stmt.args(values))
            ids = [h[0] for h in headers]
            for chunk in _chunks(ids):
                for row in await r.fetchall(s.pointers_in(len(chunk)).sql, chunk):
                    pointers.setdefault(row[0], []).append(row)
        return [self._load_instance(h, pointers.get(h[0], ())) for h in headers]

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
        """How many instances match the filters of :meth:`query_workflows`."""
        _check_aware(created_from, "created_from")
        _check_aware(created_to, "created_to")
        s = await self._ready()
        values = _workflow_filter_values(
            status, definition_id, reference, created_from, created_to, idempotency_key
        )
        if values is None:
            return 0
        stmt = s.count_workflows(tuple(k[2:] for k in values))
        row = await self.driver.fetchone(stmt.sql, stmt.args(values))
        return int(row[0]) if row is not None else 0

    async def purge_workflows(self, status: WorkflowStatus, older_than: datetime) -> int:
        """Delete finished instances completed before ``older_than`` with their pointers,
        subscriptions and errors; return the count."""
        self.require(Capability.PURGE)
        if status not in _FINISHED:
            raise ValueError(f"purge_workflows only purges COMPLETE or TERMINATED, not {status!r}")
        cutoff = to_micros(older_than, "older_than")
        s = await self._ready()
        values = {"p_status": _workflow_status(status), "p_older_than": cutoff}
        ops = [Op(stmt.sql, stmt.args(values)) for stmt in (*s.purge, s.purge_workflows)]
        counts = await self.driver.write_batch(ops)
        return int(counts[-1])
