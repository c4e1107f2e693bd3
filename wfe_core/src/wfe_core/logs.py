"""Structured logs: every record of the engine (and of your steps) carries the ids of
the workflow and step it is about.

**Which ids.** Inside a pass the engine sets ``workflow_id``, ``definition`` and
``version``, inside a step also ``step`` (its display name), ``step_id``,
``pointer_id`` and ``attempt`` (see :func:`wfe_core.telemetry.current_ids`); your step's
own ``logging`` calls, also from a thread (``run_in_thread``), are inside them. Records
the engine makes outside a pass about one instance, event or schedule (event delivery,
the poller, lease renewal, schedules firing, poison data, control requests) pass them
with ``extra=`` (``workflow_id``, ``event_id``, ``schedule_id``, ...).

**How they reach a record.** :class:`ContextFilter` copies the current ids onto each
record (a value given with ``extra=`` wins); put it on a handler. :class:`JsonFormatter`
writes one JSON object per line; :class:`TextFormatter` appends the ids compactly
(``[wf=... def=... step=... ptr=...]``). :func:`configure_logging` sets both up on the
root logger, as ``wfe worker --log-format json|text`` does::

    from wfe_core.logs import configure_logging

    configure_logging("json", level="INFO")

A JSON line looks like::

    {"time": "2026-12-03T14:05:01.123456+00:00", "level": "WARNING",
     "logger": "myapp", "message": "card declined", "workflow_id": "8f0c...",
     "definition": "checkout", "version": 1, "step": "step 2 (charge)", "step_id": 2,
     "pointer_id": "a41e...", "attempt": 1}

Besides wfe_core itself it uses the standard library only.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from wfe_core.models import QueueType
from wfe_core.telemetry import current_ids

__all__ = [
    "ID_FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_ids",
    "queued_ids",
]

ID_FIELDS: tuple[str, ...] = (
    "workflow_id",
    "definition",
    "version",
    "step",
    "step_id",
    "pointer_id",
    "attempt",
    "event_id",
    "schedule_id",
)
"""The id attributes a record may carry, in the order they are written."""
_ID_SET = frozenset(ID_FIELDS)

_SHORT = {
    "workflow_id": "wf",
    "definition": "def",
    "step": "step",
    "pointer_id": "ptr",
    "attempt": "attempt",
    "event_id": "event",
    "schedule_id": "schedule",
}
# Attributes every LogRecord has (not ``extra`` fields), plus what formatters add.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def log_ids(**fields: Any) -> dict[str, Any]:
    """The ``fields`` that are not None, for ``extra=``:
    ``log.warning("...", extra=log_ids(workflow_id=wid, event_id=event.id))``."""
    return {key: value for key, value in fields.items() if value is not None}


def queued_ids(queue: QueueType, item: str) -> dict[str, str]:
    """``extra=`` for an item of ``queue``: ``{"event_id": item}`` for the event queue,
    else ``{"workflow_id": item}``."""
    return {"event_id": item} if queue is QueueType.EVENT else {"workflow_id": item}


class ContextFilter(logging.Filter):
    """Adds the ids of the pass and step running now
    (:func:`~wfe_core.telemetry.current_ids`) to each record as attributes, unless the
    record has them already (given with ``extra=``, not None). Never drops a record.

    Attach it to a handler (``handler.addFilter(ContextFilter())``) so that records of
    every logger reaching that handler get the ids; the filter runs in the thread and
    context that made the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the missing ids to ``record``; always True."""
        fields = record.__dict__
        for key, value in current_ids().items():
            if fields.get(key) is None:
                setattr(record, key, value)
        return True


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, the ids the record carries (:data:`ID_FIELDS`), every
    other ``extra=`` field (its ``repr`` when it is not JSON-able), and for an
    exception ``exc_type``, ``exc_message`` and ``traceback`` (``stack`` for
    ``stack_info``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in ID_FIELDS:
            if fields.get(key) is not None:
                doc[key] = _jsonable(fields[key])
        for key, value in fields.items():
            if key not in _RECORD_ATTRS and key not in _ID_SET and not key.startswith("_"):
                doc[key] = _jsonable(value)
        if record.exc_info and record.exc_info[0] is not None:
            kind, exc, tb = record.exc_info
            doc["exc_type"] = f"{kind.__module__}.{kind.__qualname__}"
            doc["exc_message"] = str(exc)
            doc["traceback"] = "".join(traceback.format_exception(kind, exc, tb))
        elif record.exc_text:
            doc["traceback"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False)


def _word(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or " " in text else text


def id_suffix(record: logging.LogRecord) -> str:
    """The ids ``record`` carries, compactly: ``" [wf=... step=...]"`` (empty when none)."""
    fields = record.__dict__
    parts = [f"{short}={_word(fields[key])}" for key, short in _SHORT.items() if fields.get(key)]
    return f" [{' '.join(parts)}]" if parts else ""


class TextFormatter(logging.Formatter):
    """A plain :class:`logging.Formatter` (``fmt``, ``datefmt`` as usual) that appends
    the ids the record carries: ``... message [wf=<id> def=<definition> step=<name>
    ptr=<pointer id>]``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The formatted line with the ids appended."""
        return super().formatMessage(record) + id_suffix(record)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is at each record (not as it was when the handler
    was made), like :data:`logging.lastResort`."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # no stream of its own: see ``stream``

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        """``sys.stderr`` now."""
        return sys.stderr


LogFormat = Literal["text", "json"]


def configure_logging(
    format: LogFormat = "text",
    level: int | str = logging.WARNING,
    *,
    handler: logging.Handler | None = None,
) -> logging.Handler:
    """Send log records to stderr as ``"text"`` or ``"json"`` (one object per line),
    each with the ids of its workflow and step (see the module docstring).

    Installs one handler on the root logger, so your steps' records are written too,
    and sets ``level`` (``"INFO"``, ``logging.DEBUG``, ...) on the root logger and on
    the ``wfe`` logger. ``handler``: write through this one instead of a plain stderr
    handler (its formatter is kept for ``"text"``, with the ids appended). Calling it
    again replaces the handler it installed before. Returns the installed handler."""
    if format not in ("text", "json"):
        raise ValueError(f"unknown log format {format!r}: use 'text' or 'json'")
    if isinstance(level, str):
        name = level.upper()
        if not isinstance(logging.getLevelName(name), int):
            raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
        level = name
    if handler is None:
        handler = _StderrHandler()
    if format == "json":
        handler.setFormatter(JsonFormatter())
    elif handler.formatter is None:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_SuffixFormatter(handler.formatter))
    handler.addFilter(ContextFilter())
    setattr(handler, "_wfe_configured", True)  # noqa: B010
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_wfe_configured", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    engine = logging.getLogger("wfe")
    engine.setLevel(level)
    engine.propagate = True
    return handler


class _SuffixFormatter(logging.Formatter):
    """Wraps another formatter and appends the ids (for handlers that bring their own,
    such as rich's)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        """``inner``'s text with the ids appended."""
        return self.inner.format(record) + id_suffix(record)
