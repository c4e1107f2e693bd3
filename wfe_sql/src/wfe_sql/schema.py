"""The wfe schema in SQLAlchemy Core, shared by every SQL dialect.

Conventions:

- Every table name starts with ``wfe_`` so the store can share a database with an
  application's own tables.
- Each namespace (:mod:`wfe_core.namespaces`) has tables of its own: the default
  namespace's are named ``wfe_<table>`` (as before namespaces existed), those of namespace
  ``ns`` ``wfe_ns__<table>`` (:func:`table_prefix`); :func:`tables_for` gives the
  :class:`SqlTables` of a namespace. Nothing a statement could forget to filter on
  joins two namespaces: they share no table, index or constraint.
- Times are ``BIGINT`` microseconds since the Unix epoch, UTC (:mod:`wfe_sql.times`).
- User values (workflow data, event data, the data fields of pointers, subscription data)
  are the JSON text written by :meth:`wfe_core.serialization.Serializer.dumps`; SQL
  ``NULL`` stands for ``None``.
- Execution pointers are rows of their own, keyed by ``(workflow_id, id)``, with an
  ``ordinal`` that keeps creation order, so a persist writes only the pointers that
  changed.
- Look-ups the host makes all the time (runnable workflows, runnable events,
  subscriptions of an event) go through indexes whose size does not depend on how many
  finished instances or processed events the store holds: partial indexes where the
  dialect has them (SQLite, PostgreSQL).

:data:`SCHEMA_VERSION` is the version this code writes; :mod:`wfe_sql.migrations` creates
and upgrades stores to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    not_,
)
from wfe_core.namespaces import DEFAULT_NAMESPACE, check_namespace

__all__ = [
    "SCHEMA_VERSION",
    "TABLE_PREFIX",
    "SqlTables",
    "definitions",
    "events",
    "execution_errors",
    "execution_pointers",
    "locks",
    "metadata",
    "queue_items",
    "scheduled_commands",
    "schedules",
    "schema_version",
    "subscriptions",
    "table_prefix",
    "tables_for",
    "workflows",
]

SCHEMA_VERSION = 6
"""The schema version this code creates and understands."""

TABLE_PREFIX = "wfe_"
"""The prefix of every table (and index) name of the default namespace."""

_Micros = BigInteger
"""A time column: microseconds since the Unix epoch, UTC."""

_Serial = BigInteger().with_variant(Integer(), "sqlite")
"""An auto-incrementing surrogate key (``INTEGER PRIMARY KEY`` = rowid on SQLite)."""

_ID = String(200)
"""An id column (UUIDs unless the caller gives its own)."""

_NAME = String(400)
"""A name or key column used in look-ups (definition ids, event names and keys)."""


def _partial(where: object) -> dict[str, Any]:
    """Index keyword arguments making it partial on the dialects that support it."""
    return {"sqlite_where": where, "postgresql_where": where}


def table_prefix(namespace: str) -> str:
    """The prefix of the table, index and constraint names of ``namespace``:
    :data:`TABLE_PREFIX` for the default namespace, ``wfe_<namespace>__`` for another
    (namespace names hold no ``__``, so no two namespaces share a name)."""
    if check_namespace(namespace) == DEFAULT_NAMESPACE:
        return TABLE_PREFIX
    return f"{TABLE_PREFIX}{namespace}__"


@dataclass(frozen=True)
class SqlTables:
    """The wfe tables of one namespace (see :func:`tables_for`)."""

    namespace: str
    """The namespace these tables hold."""
    prefix: str
    """The prefix of their names (:func:`table_prefix`)."""
    metadata: MetaData
    """Every table of the namespace, with its indexes."""
    workflows: Table
    """Workflow instance headers (one row per instance; pointers live in their own
    table). ``owner`` / ``lease_until``: the host that has claimed the instance and when
    that claim lapses; ``control``: a pending suspend / resume / terminate request;
    ``idempotency_key``: unique per definition id, or NULL."""
    execution_pointers: Table
    """Execution pointers, one row each; ``ordinal`` is the creation order."""
    events: Table
    """Published events; ``seq`` orders events with equal times by insertion."""
    subscriptions: Table
    """Live event subscriptions (a terminated subscription is deleted)."""
    scheduled_commands: Table
    """Commands to run later, claimed with a lease when due."""
    execution_errors: Table
    """The append-only execution-error log."""
    locks: Table
    """Lock leases: held by ``owner`` until ``expires_at``."""
    queue_items: Table
    """Work-queue entries: FIFO by ``seq`` per queue; an id waits at most once per queue."""
    schedules: Table
    """Schedules (schema version 4); a fire is claimed by a compare-and-set on
    ``next_fire_time``."""
    definitions: Table
    """Definition documents loaded from data (schema version 6), one row per id and
    version; a stored version never changes."""
    schema_version: Table
    """One row per schema version applied (the highest is the current one)."""

    def hint(self, index: str) -> str:
        """The SQLite ``INDEXED BY`` hint naming this namespace's index ``index``
        (its name without the prefix, e.g. ``"ix_workflows_runnable"``)."""
        return f"INDEXED BY {self.prefix}{index}"


@cache
def tables_for(namespace: str = DEFAULT_NAMESPACE) -> SqlTables:
    """The tables of ``namespace`` (built once per namespace; ``ValueError`` for a name
    :func:`wfe_core.namespaces.check_namespace` refuses)."""
    p = table_prefix(namespace)
    md = MetaData()

    workflows = Table(
        p + "workflows",
        md,
        Column("id", _ID, primary_key=True),
        Column("workflow_definition_id", _NAME, nullable=False),
        Column("version", Integer, nullable=False),
        Column("description", Text),
        Column("reference", _NAME),
        Column("status", String(32), nullable=False),
        Column("data", Text),
        Column("next_execution", _Micros),
        Column("create_time", _Micros, nullable=False),
        Column("complete_time", _Micros),
        Column("revision", Integer, nullable=False),
        # Version 2: ownership fencing and durable control requests.
        Column("owner", String(100)),
        Column("lease_until", _Micros),
        Column("control", String(32)),
        # Version 3: idempotent starts.
        Column("idempotency_key", _NAME),
    )
    # Workflow instance headers (one row per instance; pointers live in their own table).
    #
    # ``owner`` / ``lease_until``: the host that has claimed the instance to run it and when
    # that claim lapses (see ``WorkflowRepository.claim_workflow``); ``control``: a pending
    # suspend / resume / terminate request, applied by whoever holds the instance;
    # ``idempotency_key``: the key it was started with, unique per definition id
    # (``wfe_ux_workflows_idempotency``), or NULL.

    Index(
        p + "ix_workflows_runnable",
        workflows.c.next_execution,
        workflows.c.id,
        **_partial(and_(workflows.c.status == "runnable", workflows.c.next_execution.is_not(None))),
    )
    Index(p + "ix_workflows_created", workflows.c.create_time, workflows.c.id)
    Index(
        p + "ix_workflows_status_created",
        workflows.c.status,
        workflows.c.create_time,
        workflows.c.id,
    )
    Index(
        p + "ix_workflows_definition",
        workflows.c.workflow_definition_id,
        workflows.c.create_time,
        workflows.c.id,
    )
    Index(p + "ix_workflows_reference", workflows.c.reference, workflows.c.create_time)
    Index(
        p + "ix_workflows_control",
        workflows.c.id,
        **_partial(workflows.c.control.is_not(None)),
    )
    Index(
        p + "ux_workflows_idempotency",
        workflows.c.workflow_definition_id,
        workflows.c.idempotency_key,
        unique=True,
        **_partial(workflows.c.idempotency_key.is_not(None)),
    )
    Index(
        p + "ix_workflows_finished",
        workflows.c.status,
        workflows.c.complete_time,
        **_partial(workflows.c.complete_time.is_not(None)),
    )

    execution_pointers = Table(
        p + "execution_pointers",
        md,
        Column("workflow_id", _ID, primary_key=True),
        Column("id", _ID, primary_key=True),
        Column("ordinal", Integer, nullable=False),
        Column("step_id", Integer, nullable=False),
        Column("step_name", Text),
        Column("active", Boolean(create_constraint=False), nullable=False),
        Column("status", String(32), nullable=False),
        Column("sleep_until", _Micros),
        Column("persistence_data", Text),
        Column("start_time", _Micros),
        Column("end_time", _Micros),
        Column("event_name", Text),
        Column("event_key", Text),
        Column("event_published", Boolean(create_constraint=False), nullable=False),
        Column("event_data", Text),
        Column("retry_count", Integer, nullable=False),
        Column("children", Text),
        Column("context_item", Text),
        Column("predecessor_id", _ID),
        Column("outcome", Text),
        Column("scope", Text),
        Column("extension_attributes", Text),
    )
    # Execution pointers, one row each; ``ordinal`` is the creation order within an instance.

    Index(
        p + "ix_pointers_order",
        execution_pointers.c.workflow_id,
        execution_pointers.c.ordinal,
        unique=True,
    )

    events = Table(
        p + "events",
        md,
        Column("seq", _Serial, primary_key=True, autoincrement=True),
        Column("id", _ID, nullable=False, unique=True),
        Column("event_name", _NAME, nullable=False),
        Column("event_key", _NAME, nullable=False),
        Column("event_data", Text),
        Column("event_time", _Micros, nullable=False),
        Column("is_processed", Boolean(create_constraint=False), nullable=False),
        # Version 2: why the event was set aside (poison data), or NULL.
        Column("set_aside", Text),
        # Version 5: propagation headers (JSON text, e.g. a traceparent), or NULL.
        Column("headers", Text),
    )
    # Published events; ``seq`` orders events with equal times by insertion.

    Index(
        p + "ix_events_runnable",
        events.c.event_time,
        events.c.seq,
        **_partial(not_(events.c.is_processed)),
    )
    Index(
        p + "ix_events_topic",
        events.c.event_name,
        events.c.event_key,
        events.c.event_time,
        events.c.seq,
    )

    subscriptions = Table(
        p + "subscriptions",
        md,
        Column("seq", _Serial, primary_key=True, autoincrement=True),
        Column("id", _ID, nullable=False, unique=True),
        Column("workflow_id", _ID, nullable=False),
        Column("step_id", Integer, nullable=False),
        Column("execution_pointer_id", _ID, nullable=False),
        Column("event_name", _NAME, nullable=False),
        Column("event_key", _NAME, nullable=False),
        Column("subscribe_as_of", _Micros, nullable=False),
        Column("subscription_data", Text),
        Column("external_token", String(400)),
        Column("external_worker_id", String(400)),
        Column("external_token_expiry", _Micros),
    )
    # Live event subscriptions (a terminated subscription is deleted).

    Index(
        p + "ix_subscriptions_topic",
        subscriptions.c.event_name,
        subscriptions.c.event_key,
        subscriptions.c.subscribe_as_of,
        subscriptions.c.seq,
    )
    Index(
        p + "ix_subscriptions_workflow",
        subscriptions.c.workflow_id,
        subscriptions.c.execution_pointer_id,
    )

    scheduled_commands = Table(
        p + "scheduled_commands",
        md,
        Column("command_name", String(100), primary_key=True),
        Column("data", _NAME, primary_key=True),
        Column("execute_time", _Micros, nullable=False),
        Column("claim_token", String(100)),
        Column("claimed_until", _Micros),
    )
    # Commands to run later; a processor claims a due command with a lease before running it.

    Index(p + "ix_commands_due", scheduled_commands.c.execute_time)

    execution_errors = Table(
        p + "execution_errors",
        md,
        Column("seq", _Serial, primary_key=True, autoincrement=True),
        Column("id", _ID, nullable=False),
        Column("workflow_id", _ID, nullable=False),
        Column("execution_pointer_id", _ID),
        Column("error_time", _Micros, nullable=False),
        Column("message", Text, nullable=False),
        Column("error_type", Text),
        Column("traceback", Text),
    )
    # The append-only execution-error log; ``seq`` keeps persist order among equal times.

    Index(
        p + "ix_errors_workflow",
        execution_errors.c.workflow_id,
        execution_errors.c.error_time,
        execution_errors.c.seq,
    )

    locks = Table(
        p + "locks",
        md,
        Column("resource", String(400), primary_key=True),
        Column("owner", String(100), nullable=False),
        Column("expires_at", _Micros, nullable=False),
    )
    # Lock leases: a row is held by ``owner`` until ``expires_at`` (wall clock, microseconds).

    queue_items = Table(
        p + "queue",
        md,
        Column("seq", _Serial, primary_key=True, autoincrement=True),
        Column("queue", String(32), nullable=False),
        Column("item", _ID, nullable=False),
        UniqueConstraint("queue", "item", name=p + "uq_queue_item"),
    )
    # Work-queue entries: FIFO by ``seq`` per queue; an id waits at most once per queue.

    Index(p + "ix_queue_order", queue_items.c.queue, queue_items.c.seq)

    schedules = Table(
        p + "schedules",
        md,
        Column("id", _ID, primary_key=True),
        Column("definition_id", _NAME, nullable=False),
        Column("version", Integer),
        Column("data", Text),
        Column("cron", String(200)),
        Column("every_micros", BigInteger),
        Column("timezone", String(100), nullable=False),
        Column("overlap", String(16), nullable=False),
        Column("catchup", String(16), nullable=False),
        Column("start_at", _Micros),
        Column("end_at", _Micros),
        Column("paused", Boolean(create_constraint=False), nullable=False),
        Column("next_fire_time", _Micros),
        Column("last_fire_time", _Micros),
        Column("last_instance_id", _ID),
        Column("create_time", _Micros, nullable=False),
    )
    # Schedules (schema version 4); a fire is claimed by a compare-and-set on
    # ``next_fire_time``.

    Index(p + "ix_schedules_due", schedules.c.next_fire_time)

    definitions = Table(
        p + "definitions",
        md,
        Column("definition_id", _NAME, primary_key=True),
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("format", String(16), nullable=False),
        Column("text", Text, nullable=False),
        Column("create_time", _Micros, nullable=False),
    )
    # Definition documents loaded from data (schema version 6), one row per id and version.

    schema_version = Table(
        p + "schema_version",
        md,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", Text, nullable=False),
        Column("applied_at", _Micros, nullable=False),
    )
    # One row per schema version applied to the store (the highest is the current one).

    return SqlTables(
        namespace=namespace,
        prefix=p,
        metadata=md,
        workflows=workflows,
        execution_pointers=execution_pointers,
        events=events,
        subscriptions=subscriptions,
        scheduled_commands=scheduled_commands,
        execution_errors=execution_errors,
        locks=locks,
        queue_items=queue_items,
        schedules=schedules,
        definitions=definitions,
        schema_version=schema_version,
    )


_DEFAULT = tables_for(DEFAULT_NAMESPACE)
metadata = _DEFAULT.metadata
"""All wfe tables of the default namespace."""
workflows = _DEFAULT.workflows
"""The default namespace's ``wfe_workflows`` (see :class:`SqlTables`)."""
execution_pointers = _DEFAULT.execution_pointers
"""The default namespace's ``wfe_execution_pointers``."""
events = _DEFAULT.events
"""The default namespace's ``wfe_events``."""
subscriptions = _DEFAULT.subscriptions
"""The default namespace's ``wfe_subscriptions``."""
scheduled_commands = _DEFAULT.scheduled_commands
"""The default namespace's ``wfe_scheduled_commands``."""
execution_errors = _DEFAULT.execution_errors
"""The default namespace's ``wfe_execution_errors``."""
locks = _DEFAULT.locks
"""The default namespace's ``wfe_locks``."""
queue_items = _DEFAULT.queue_items
"""The default namespace's ``wfe_queue``."""
schedules = _DEFAULT.schedules
"""The default namespace's ``wfe_schedules``."""
definitions = _DEFAULT.definitions
"""The default namespace's ``wfe_definitions``."""
schema_version = _DEFAULT.schema_version
"""The default namespace's ``wfe_schema_version``."""
