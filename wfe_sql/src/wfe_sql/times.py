"""Times as stored: ``BIGINT`` microseconds since the Unix epoch, UTC.

Exact (no float rounding), sortable, and the same on every dialect. Conversion happens
at the provider boundary: aware datetimes in, aware UTC datetimes out; a naive datetime
is refused with ``ValueError``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "from_micros", "from_micros_opt", "now_micros", "to_micros", "to_micros_opt"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The Unix epoch as an aware UTC datetime."""

_US = 1_000_000
_DAY_US = 86_400 * _US


def to_micros(value: datetime, what: str) -> int:
    """Microseconds since the epoch of an aware datetime; ``ValueError`` when naive.

    ``what`` names the field or argument in the error message.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime (UTC), got the naive {value!r}")
    d = value - EPOCH
    return d.days * _DAY_US + d.seconds * _US + d.microseconds


def to_micros_opt(value: datetime | None, what: str) -> int | None:
    """:func:`to_micros`, passing ``None`` through."""
    return None if value is None else to_micros(value, what)


def from_micros(value: int) -> datetime:
    """The aware UTC datetime ``value`` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=value)


def from_micros_opt(value: int | None) -> datetime | None:
    """:func:`from_micros`, passing ``None`` through."""
    return None if value is None else EPOCH + timedelta(microseconds=value)


def now_micros(clock: datetime) -> int:
    """Microseconds since the epoch of a clock reading (an aware datetime)."""
    return to_micros(clock, "clock()")
