"""The instance list's filters and keyset paging.

Pages are read newest first. The next page does not skip rows (a large offset gets
slower the deeper one pages); it starts after the last row shown, a
:class:`Cursor` of that row's ``create_time`` and id: the rows created at exactly that
time with a smaller id (ties are ordered by id, descending), then the rows created
before it (``created_to`` = that time, exclusive). Both are range reads on the
store's creation-time order, so page 10,000 costs what page 1 costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from wfe_core.client import WorkflowClient
from wfe_core.models import WorkflowInstance, WorkflowStatus

__all__ = ["Cursor", "FilterError", "Filters", "Page", "parse_time", "read_page"]

_TICK = timedelta(microseconds=1)


class FilterError(ValueError):
    """A filter value the list cannot use (the message says which and why)."""


def parse_time(text: str, what: str) -> datetime | None:
    """An aware datetime from ``2024-05-01T12:00`` (a browser's datetime-local input,
    read as UTC) or any ISO 8601 text; None for empty text."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise FilterError(
            f"{what}: {text!r} is not a date and time like 2024-05-01T12:00"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class Filters:
    """What the list shows: every filter given must match."""

    status: WorkflowStatus | None = None
    definition_id: str | None = None
    reference: str | None = None
    idempotency_key: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        """Filters from the list's query string (``status``, ``definition``,
        ``reference``, ``key``, ``from``, ``to``); empty values mean no filter.
        Raises :class:`FilterError`."""

        def text(name: str) -> str | None:
            value = query.get(name, "").strip()
            return value or None

        status = text("status")
        try:
            parsed = WorkflowStatus(status.lower()) if status else None
        except ValueError:
            names = ", ".join(s.value for s in WorkflowStatus)
            raise FilterError(f"status: {status!r} is not one of {names}") from None
        filters = cls(
            status=parsed,
            definition_id=text("definition"),
            reference=text("reference"),
            idempotency_key=text("key"),
            created_from=parse_time(query.get("from", ""), "created from"),
            created_to=parse_time(query.get("to", ""), "created before"),
        )
        if filters.idempotency_key is not None and filters.definition_id is None:
            raise FilterError(
                "idempotency key: choose a definition too (a key is unique per definition, "
                "so with one it is a direct lookup; without one the whole store would be "
                "scanned)"
            )
        return filters

    def query(self) -> dict[str, Any]:
        """Keyword arguments for ``count_workflows`` / ``query_workflows``."""
        found: dict[str, Any] = {
            "status": self.status,
            "definition_id": self.definition_id,
            "reference": self.reference,
            "created_from": self.created_from,
            "created_to": self.created_to,
        }
        if self.idempotency_key is not None:
            found["idempotency_key"] = self.idempotency_key
        return found

    def without_status(self) -> Filters:
        """These filters but any status (for the counts by status)."""
        return replace(self, status=None)


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after the row created at ``create_time`` with id ``id``."""

    create_time: datetime
    id: str

    def encode(self) -> str:
        """The text form used in the page's address."""
        return f"{self.create_time.astimezone(UTC).isoformat()}|{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor written by :meth:`encode` (:class:`FilterError` when malformed)."""
        when, sep, row_id = text.partition("|")
        moment = parse_time(when, "page") if sep else None
        if moment is None or not row_id:
            raise FilterError(f"page: {text!r} is not a page position; start from the newest")
        return cls(moment, row_id)


@dataclass
class Page:
    """One page of the list, newest first."""

    rows: list[WorkflowInstance]
    next: Cursor | None
    """Where the next page starts, None on the last page."""


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _earlier(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


async def read_page(
    client: WorkflowClient, filters: Filters, after: Cursor | None, size: int
) -> Page:
    """Read ``size`` rows matching ``filters``, newest first, after ``after`` (from the
    newest when None), and where the next page starts."""
    want = size + 1  # one more than shown tells whether there is a next page
    rows: list[WorkflowInstance] = []
    base = filters.query()
    if after is None:
        rows = await client.query_workflows(**base, take=want, newest_first=True)
    else:
        moment = after.create_time
        low = _later(filters.created_from, moment)
        high = _earlier(filters.created_to, moment + _TICK)
        skip = 0
        while low < high and len(rows) < want:
            tied = await client.query_workflows(
                **{**base, "created_from": low, "created_to": high},
                skip=skip,
                take=want,
                newest_first=True,
            )
            rows.extend(r for r in tied if r.id < after.id)
            if len(tied) < want:
                break
            skip += len(tied)
        rows = rows[:want]
        if len(rows) < want:
            before = _earlier(filters.created_to, moment)
            if filters.created_from is None or filters.created_from < before:
                rows.extend(
                    await client.query_workflows(
                        **{**base, "created_to": before},
                        take=want - len(rows),
                        newest_first=True,
                    )
                )
    shown = rows[:size]
    more = len(rows) > size and bool(shown)
    return Page(shown, Cursor(shown[-1].create_time, shown[-1].id) if more else None)
