"""Every statement the shared providers run, built with SQLAlchemy Core and compiled once
per dialect (:meth:`SqlDriver.cached`).

Parameters are named ``p_<something>``; :meth:`Statement.args` turns a mapping into the
positional tuple the driver takes. Statements whose shape depends on the call (``IN``
lists, the filters of ``query_workflows``) are compiled on first use per shape and kept:
``IN`` lists are padded to the next power of two (repeating the last value), so a few
shapes serve every list length.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from sqlalchemy import (
    Column,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import ColumnClause

from wfe_sql.driver import SqlDriver, Statement
from wfe_sql.schema import events, execution_errors, execution_pointers, subscriptions, workflows

__all__ = [
    "ERROR_COLUMNS",
    "EVENT_COLUMNS",
    "HEADER_READ_COLUMNS",
    "IN_CHUNK",
    "POINTER_COLUMNS",
    "SUBSCRIPTION_COLUMNS",
    "WORKFLOW_COLUMNS",
    "LockStatements",
    "ProviderStatements",
    "QueueStatements",
    "padded",
]

IN_CHUNK = 256
"""The most values one ``IN`` list carries; longer lists are split into chunks."""

_CLAIM_COLUMNS = ("owner", "lease_until", "control")
_CREATE_ONLY_COLUMNS = ("idempotency_key",)

WORKFLOW_COLUMNS: tuple[str, ...] = tuple(
    c.key for c in workflows.c if c.key not in _CLAIM_COLUMNS + _CREATE_ONLY_COLUMNS
)
"""The header columns the provider writes, in the order the header ``SELECT`` returns
them; every header ``SELECT`` adds ``control`` (the pending control request) and
``idempotency_key`` after them. The claim columns (``owner``, ``lease_until``) and
``control`` are written only by the claim and control statements, ``idempotency_key``
only by the inserts."""

HEADER_READ_COLUMNS: tuple[str, ...] = (*WORKFLOW_COLUMNS, "control", "idempotency_key")
"""The columns of every header ``SELECT``."""

POINTER_COLUMNS: tuple[str, ...] = tuple(c.key for c in execution_pointers.c if c.key != "ordinal")
"""The pointer columns the provider reads and writes (``ordinal`` is the store's own)."""

SUBSCRIPTION_COLUMNS: tuple[str, ...] = tuple(c.key for c in subscriptions.c if c.key != "seq")
"""The subscription columns, in ``SELECT`` order."""

EVENT_COLUMNS: tuple[str, ...] = tuple(c.key for c in events.c if c.key != "seq")
"""The event columns, in ``SELECT`` order (``set_aside``: the reason an event whose
data cannot be decoded was set aside, or NULL; ``headers`` last: its propagation
headers as JSON text, or NULL)."""

ERROR_COLUMNS: tuple[str, ...] = tuple(c.key for c in execution_errors.c if c.key != "seq")
"""The execution-error columns, in ``SELECT`` order."""

_RUNNABLE: ColumnClause[Any] = literal_column("'runnable'")  # literal: the partial index applies
_ONE: ColumnClause[Any] = literal_column("1")
_ZERO: ColumnClause[Any] = literal_column("0")


def _b(name: str) -> Any:
    return bindparam("p_" + name)


def _values(table_columns: Any, names: tuple[str, ...]) -> dict[Column[Any], Any]:
    return {table_columns[n]: _b(n) for n in names}


def padded(values: list[str]) -> list[str]:
    """``values`` (1..IN_CHUNK of them) padded with its last value to a power of two."""
    n = 1
    while n < len(values):
        n *= 2
    return values + [values[-1]] * (n - len(values))


def _in_names(n: int) -> list[str]:
    return [f"p_in{i}" for i in range(n)]


def _in_list(column: Any, n: int) -> ColumnElement[bool]:
    return column.in_([bindparam(name) for name in _in_names(n)])  # type: ignore[no-any-return]


def in_args(values: list[str]) -> dict[str, str]:
    """The parameters of an ``IN`` list statement for already padded ``values``."""
    return {f"p_in{i}": v for i, v in enumerate(values)}


class ProviderStatements:
    """The statements of :class:`~wfe_sql.provider.SqlPersistenceProvider` for one dialect."""

    def __init__(self, driver: SqlDriver) -> None:
        self._driver = driver
        self._tables = t = driver.tables
        self._shapes: dict[Hashable, Statement] = {}
        c = driver.compile
        w, p, s, e, sc, er = (
            t.workflows,
            t.execution_pointers,
            t.subscriptions,
            t.events,
            t.scheduled_commands,
            t.execution_errors,
        )

        # -- workflows ---------------------------------------------------------------
        # A taken id matches the ON CONFLICT (no row: ConcurrencyError); a taken
        # (definition, idempotency key) breaks wfe_ux_workflows_idempotency.
        insert_columns = (*WORKFLOW_COLUMNS, *_CREATE_ONLY_COLUMNS)
        self.insert_workflow = c(
            driver.insert(w)
            .values(_values(w.c, insert_columns))
            .on_conflict_do_nothing(index_elements=[w.c.id])
        )
        self.insert_workflow_claimed = c(
            driver.insert(w)
            .values(
                {
                    **_values(w.c, insert_columns),
                    w.c.owner: _b("owner"),
                    w.c.lease_until: _b("lease"),
                }
            )
            .on_conflict_do_nothing(index_elements=[w.c.id])
        )
        header = tuple(n for n in WORKFLOW_COLUMNS if n not in ("id", "revision"))
        header_values = {**_values(w.c, header), w.c.revision: w.c.revision + _ONE}
        same_revision = and_(w.c.id == _b("key_id"), w.c.revision == _b("key_revision"))
        # Fencing (see WorkflowRepository): an unowned write needs no live claim; an
        # owned one needs its own live claim and, unless it applies it, no pending
        # control request.
        self.update_workflow = c(
            update(w)
            .where(
                same_revision,
                or_(w.c.owner.is_(None), w.c.lease_until.is_(None), w.c.lease_until <= _b("now")),
            )
            .values(header_values)
        )
        owned = and_(same_revision, w.c.owner == _b("owner"), w.c.lease_until > _b("now"))
        self.update_workflow_owned = c(
            update(w).where(owned, w.c.control.is_(None)).values(header_values)
        )
        self.update_workflow_control = c(
            update(w).where(owned).values({**header_values, w.c.control: null()})
        )
        # The same two for a write that ends the instance: it drops the claim too.
        released = {w.c.owner: null(), w.c.lease_until: null()}
        self.update_workflow_owned_end = c(
            update(w).where(owned, w.c.control.is_(None)).values({**header_values, **released})
        )
        self.update_workflow_control_end = c(
            update(w).where(owned).values({**header_values, w.c.control: null(), **released})
        )
        self.workflow_exists = c(select(w.c.id).where(w.c.id == _b("key_id")))
        self.workflow_by_idempotency_key = c(
            select(w.c.id).where(
                w.c.workflow_definition_id == _b("workflow_definition_id"),
                w.c.idempotency_key == _b("idempotency_key"),
            )
        )
        self.workflow_fence = c(
            select(w.c.revision, w.c.owner, w.c.lease_until, w.c.control).where(
                w.c.id == _b("key_id")
            )
        )
        # a claim of a free (or own) instance first; only when that fails, the
        # takeover of another owner's expired claim (so a takeover can be told apart)
        self.claim_workflow = c(
            update(w)
            .where(
                w.c.id == _b("key_id"),
                or_(w.c.owner.is_(None), w.c.owner == _b("owner"), w.c.lease_until.is_(None)),
            )
            .values(owner=_b("owner"), lease_until=_b("lease"))
        )
        self.take_over_workflow = c(
            update(w)
            .where(w.c.id == _b("key_id"), w.c.lease_until <= _b("now"))
            .values(owner=_b("owner"), lease_until=_b("lease"))
        )
        self.release_workflow = c(
            update(w)
            .where(w.c.id == _b("key_id"), w.c.owner == _b("owner"))
            .values(owner=None, lease_until=None)
        )
        self.request_control = c(
            update(w)
            .where(
                w.c.id == _b("key_id"),
                or_(w.c.control.is_(None), w.c.control != literal_column("'terminate'")),
            )
            .values(control=_b("action"))
        )
        self.unclaimed_controls = c(
            select(w.c.id, w.c.control)
            .where(
                w.c.control.is_not(None),
                or_(w.c.owner.is_(None), w.c.lease_until.is_(None), w.c.lease_until <= _b("now")),
            )
            .limit(1000)
        )
        header_read = [w.c[n] for n in HEADER_READ_COLUMNS]
        self.select_workflow = c(select(*header_read).where(w.c.id == _b("key_id")))
        self.insert_pointer = c(
            driver.insert(p).values({**_values(p.c, POINTER_COLUMNS), p.c.ordinal: _b("ordinal")})
        )
        next_ordinal = (
            select(func.coalesce(func.max(p.c.ordinal) + _ONE, _ZERO))
            .where(p.c.workflow_id == _b("workflow_id"))
            .scalar_subquery()
        )
        upsert = driver.insert(p).values(
            {**_values(p.c, POINTER_COLUMNS), p.c.ordinal: next_ordinal}
        )
        self.upsert_pointer = c(
            upsert.on_conflict_do_update(
                index_elements=[p.c.workflow_id, p.c.id],
                set_={
                    p.c[n]: upsert.excluded[n]
                    for n in POINTER_COLUMNS
                    if n not in ("workflow_id", "id")
                },
            )
        )
        self.select_pointers = c(
            select(*(p.c[n] for n in POINTER_COLUMNS))
            .where(p.c.workflow_id == _b("key_id"))
            .order_by(p.c.ordinal)
        )
        # The header and its pointers in ONE statement (one snapshot, one round trip,
        # no transaction): rows of kind 0 (the header) then 1 (pointers by ordinal),
        # each padded with typed NULLs where the other kind's columns are.
        header_cols = [w.c[n] for n in HEADER_READ_COLUMNS]
        pointer_cols = [p.c[n] for n in POINTER_COLUMNS]
        head = select(
            literal_column("0").label("row_kind"),
            literal_column("0").label("row_order"),
            *(col.label(f"h_{col.key}") for col in header_cols),
            *(cast(null(), col.type).label(f"p_{col.key}") for col in pointer_cols),
        ).where(w.c.id == _b("key_id"))
        rows = select(
            literal_column("1"),
            p.c.ordinal,
            *(cast(null(), col.type) for col in header_cols),
            *pointer_cols,
        ).where(p.c.workflow_id == _b("key_id"))
        self.select_instance = c(
            union_all(head, rows).order_by(literal_column("row_kind"), literal_column("row_order"))
        )
        self.runnable_workflows = c(
            select(w.c.id)
            .where(
                w.c.status == _RUNNABLE,
                w.c.next_execution.is_not(None),
                w.c.next_execution <= _b("as_at"),
                # not while a host runs it (its claim live)
                or_(w.c.owner.is_(None), w.c.lease_until.is_(None), w.c.lease_until <= _b("as_at")),
            )
            .order_by(w.c.next_execution, w.c.id)
            .limit(_b("limit"))
            # Without statistics SQLite prefers the (status, ...) index and sorts every
            # runnable instance; the partial index is already in order and holds only
            # runnable ones. Other dialects ignore the hint.
            .with_hint(w, t.hint("ix_workflows_runnable"), "sqlite")
        )
        doomed = select(w.c.id).where(
            w.c.status == _b("status"), w.c.complete_time < _b("older_than")
        )
        self.purge = (
            c(delete(p).where(p.c.workflow_id.in_(doomed))),
            c(delete(s).where(s.c.workflow_id.in_(doomed))),
            c(delete(er).where(er.c.workflow_id.in_(doomed))),
        )
        self.purge_workflows = c(
            delete(w).where(w.c.status == _b("status"), w.c.complete_time < _b("older_than"))
        )

        # -- subscriptions -----------------------------------------------------------
        self.insert_subscription = c(driver.insert(s).values(_values(s.c, SUBSCRIPTION_COLUMNS)))
        sub_cols = tuple(s.c[n] for n in SUBSCRIPTION_COLUMNS)
        self.select_subscription = c(select(*sub_cols).where(s.c.id == _b("key_id")))
        topic = and_(
            s.c.event_name == _b("event_name"),
            s.c.event_key == _b("event_key"),
            s.c.subscribe_as_of <= _b("as_of"),
        )
        self.topic_subscriptions = c(
            select(*sub_cols).where(topic).order_by(s.c.subscribe_as_of, s.c.seq)
        )
        self.first_open_subscription = c(
            select(*sub_cols)
            .where(
                topic,
                or_(s.c.external_token.is_(None), s.c.external_token_expiry <= _b("now")),
            )
            .order_by(s.c.subscribe_as_of, s.c.seq)
            .limit(1)
        )
        self.delete_subscription = c(delete(s).where(s.c.id == _b("key_id")))
        self.delete_workflow_subscriptions = c(
            delete(s).where(s.c.workflow_id == _b("workflow_id"))
        )
        self.subscription_exists = c(select(s.c.id).where(s.c.id == _b("key_id")))
        self.set_token = c(
            update(s)
            .where(
                s.c.id == _b("key_id"),
                or_(s.c.external_token.is_(None), s.c.external_token_expiry <= _b("now")),
            )
            .values(
                external_token=_b("token"),
                external_worker_id=_b("worker"),
                external_token_expiry=_b("expiry"),
            )
        )
        self.clear_token = c(
            update(s)
            .where(s.c.id == _b("key_id"), s.c.external_token == _b("token"))
            .values(external_token=None, external_worker_id=None, external_token_expiry=None)
        )

        # -- events ------------------------------------------------------------------
        self.insert_event = c(driver.insert(e).values(_values(e.c, EVENT_COLUMNS)))
        ev_cols = tuple(e.c[n] for n in EVENT_COLUMNS)
        self.select_event = c(select(*ev_cols).where(e.c.id == _b("key_id")))
        self.runnable_events = c(
            select(e.c.id)
            .where(not_(e.c.is_processed), e.c.event_time <= _b("as_at"))
            .order_by(e.c.event_time, e.c.seq)
            .limit(_b("limit"))
        )
        self.topic_events = c(
            select(e.c.id)
            .where(
                e.c.event_name == _b("event_name"),
                e.c.event_key == _b("event_key"),
                e.c.event_time >= _b("as_of"),
            )
            .order_by(e.c.event_time, e.c.seq)
        )
        # A set-aside event stays processed (setting aside is final), but still counts
        # as found.
        self.mark_event = c(
            update(e)
            .where(e.c.id == _b("key_id"))
            .values(
                is_processed=case(
                    (e.c.set_aside.is_not(None), e.c.is_processed),
                    else_=bindparam("p_flag", type_=e.c.is_processed.type),
                )
            )
        )
        self.set_aside_event = c(
            update(e)
            .where(e.c.id == _b("key_id"), e.c.set_aside.is_(None))
            .values(is_processed=_b("flag"), set_aside=_b("reason"))
        )
        self.event_exists = c(select(e.c.id).where(e.c.id == _b("key_id")))

        # -- scheduled commands ------------------------------------------------------
        schedule = driver.insert(sc).values(
            command_name=_b("command_name"),
            data=_b("data"),
            execute_time=_b("execute_time"),
            claim_token=None,
            claimed_until=None,
        )
        claimed_live = and_(sc.c.claim_token.is_not(None), sc.c.claimed_until > _b("now"))
        self.schedule_command = c(
            schedule.on_conflict_do_update(
                index_elements=[sc.c.command_name, sc.c.data],
                set_={
                    # In flight (claimed, lease live): this is a new request, due at its
                    # own time, and the running claim no longer owns the row. Otherwise
                    # the earlier time wins.
                    sc.c.execute_time: case(
                        (claimed_live, schedule.excluded.execute_time),
                        (
                            schedule.excluded.execute_time < sc.c.execute_time,
                            schedule.excluded.execute_time,
                        ),
                        else_=sc.c.execute_time,
                    ),
                    sc.c.claim_token: None,
                    sc.c.claimed_until: None,
                },
            )
        )
        self.claim_commands = c(
            update(sc)
            .where(
                sc.c.execute_time <= _b("as_of"),
                or_(sc.c.claim_token.is_(None), sc.c.claimed_until <= _b("now")),
            )
            .values(claim_token=_b("token"), claimed_until=_b("until"))
            .returning(sc.c.command_name, sc.c.data, sc.c.execute_time)
        )
        command_key = and_(
            sc.c.command_name == _b("command_name"),
            sc.c.data == _b("data"),
            sc.c.claim_token == _b("token"),
        )
        self.delete_command = c(delete(sc).where(command_key))
        self.release_command = c(
            update(sc).where(command_key).values(claim_token=None, claimed_until=None)
        )

        # -- errors ------------------------------------------------------------------
        self.insert_error = c(driver.insert(er).values(_values(er.c, ERROR_COLUMNS)))
        self.select_errors = c(
            select(*(er.c[n] for n in ERROR_COLUMNS))
            .where(er.c.workflow_id == _b("key_id"))
            .order_by(er.c.error_time, er.c.seq)
        )

    # -- shapes compiled on first use ------------------------------------------------------

    def _shape(self, key: Hashable, build: Any) -> Statement:
        found = self._shapes.get(key)
        if found is None:
            found = self._driver.compile(build())
            self._shapes[key] = found
        return found

    def workflows_in(self, n: int) -> Statement:
        """Headers of the workflows whose id is one of ``p_in0..p_in{n-1}``."""
        w = self._tables.workflows
        return self._shape(
            ("workflows_in", n),
            lambda: select(*(w.c[c] for c in HEADER_READ_COLUMNS)).where(_in_list(w.c.id, n)),
        )

    def controls_in(self, n: int) -> Statement:
        """Pending control requests of the workflows ``p_in0..p_in{n-1}``."""
        w = self._tables.workflows
        return self._shape(
            ("controls_in", n),
            lambda: select(w.c.id, w.c.control).where(
                _in_list(w.c.id, n), w.c.control.is_not(None)
            ),
        )

    def pointers_in(self, n: int) -> Statement:
        """Pointers of the workflows ``p_in0..p_in{n-1}``, by workflow then creation order."""
        p = self._tables.execution_pointers
        return self._shape(
            ("pointers_in", n),
            lambda: (
                select(*(p.c[c] for c in POINTER_COLUMNS))
                .where(_in_list(p.c.workflow_id, n))
                .order_by(p.c.workflow_id, p.c.ordinal)
            ),
        )

    def delete_pointer_subscriptions(self, n: int) -> Statement:
        """Delete the subscriptions of workflow ``p_workflow_id`` on pointers ``p_in*``."""
        s = self._tables.subscriptions
        return self._shape(
            ("delete_pointer_subscriptions", n),
            lambda: delete(s).where(
                s.c.workflow_id == _b("workflow_id"), _in_list(s.c.execution_pointer_id, n)
            ),
        )

    def query_workflows(self, filters: tuple[str, ...], newest_first: bool = False) -> Statement:
        """Headers matching the named filters (``status``, ``definition_id``,
        ``reference``, ``created_from``, ``created_to``), oldest first (newest first,
        ties by id descending, with ``newest_first``), paged by ``p_take`` /
        ``p_skip``."""

        w = self._tables.workflows

        def build() -> Any:
            order = (
                (w.c.create_time.desc(), w.c.id.desc())
                if newest_first
                else (w.c.create_time, w.c.id)
            )
            return (
                select(*(w.c[c] for c in HEADER_READ_COLUMNS))
                .where(*_workflow_filters(w, filters))
                .order_by(*order)
                .limit(_b("take"))
                .offset(_b("skip"))
            )

        return self._shape(("query", filters, newest_first), build)

    def count_workflows(self, filters: tuple[str, ...]) -> Statement:
        """The number of workflows matching the named filters (those of
        :meth:`query_workflows`)."""
        w = self._tables.workflows
        return self._shape(
            ("count", filters),
            lambda: select(func.count()).select_from(w).where(*_workflow_filters(w, filters)),
        )


def _workflow_filters(w: Table, filters: tuple[str, ...]) -> list[ColumnElement[bool]]:
    """The ``WHERE`` conditions on workflows table ``w`` of the named
    ``query_workflows`` filters, bound to ``p_<filter>``."""
    conditions: dict[str, ColumnElement[bool]] = {
        "status": w.c.status == _b("status"),
        "definition_id": w.c.workflow_definition_id == _b("definition_id"),
        "reference": w.c.reference == _b("reference"),
        "created_from": w.c.create_time >= _b("created_from"),
        "created_to": w.c.create_time < _b("created_to"),
        "idempotency_key": w.c.idempotency_key == _b("idempotency_key"),
    }
    return [conditions[f] for f in filters]


class LockStatements:
    """The statements of the table-backed lock provider."""

    def __init__(self, driver: SqlDriver) -> None:
        c = driver.compile
        lk = driver.tables.locks
        acquire = driver.insert(lk).values(
            resource=_b("resource"), owner=_b("owner"), expires_at=_b("expires_at")
        )
        self.acquire = c(
            acquire.on_conflict_do_update(
                index_elements=[lk.c.resource],
                set_={
                    lk.c.owner: acquire.excluded.owner,
                    lk.c.expires_at: acquire.excluded.expires_at,
                },
                where=lk.c.expires_at <= _b("now"),
            )
        )
        self.renew = c(
            update(lk)
            .where(lk.c.resource == _b("resource"), lk.c.owner == _b("owner"))
            .values(expires_at=_b("expires_at"))
        )
        self.release = c(
            delete(lk).where(lk.c.resource == _b("resource"), lk.c.owner == _b("owner"))
        )
        self.release_all = c(delete(lk).where(lk.c.owner == _b("owner")))


class QueueStatements:
    """The statements of the table-backed queue provider."""

    def __init__(self, driver: SqlDriver) -> None:
        c = driver.compile
        q = driver.tables.queue_items
        self.enqueue = c(
            driver.insert(q)
            .values(queue=_b("queue"), item=_b("item"))
            .on_conflict_do_nothing(index_elements=[q.c.queue, q.c.item])
        )
        # SKIP LOCKED (PostgreSQL; SQLite, with one writer, renders nothing): a consumer
        # whose oldest row is being taken by another one takes the next row instead of
        # waiting for it and then finding nothing.
        oldest = (
            select(q.c.seq)
            .where(q.c.queue == _b("queue"))
            .order_by(q.c.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        self.dequeue = c(delete(q).where(q.c.seq == oldest).returning(q.c.item))
        self.peek = c(select(q.c.seq).where(q.c.queue == _b("queue")).limit(1))
