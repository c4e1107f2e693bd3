"""Namespaces: several isolated environments or tenants in one store.

Every store takes a ``namespace`` (a keyword argument, ``?namespace=`` in its URL, or the
``WFE_NAMESPACE`` environment variable, in that order of precedence; default
:data:`DEFAULT_NAMESPACE`). Two providers on one database in different namespaces never
see each other's data: instances, pointers, events, subscriptions, scheduled commands,
execution errors, schedules, locks, queue items and idempotency keys are all kept apart,
and the same workflow id, idempotency key, event id or lock name may be used in each.

How a store isolates them is its own business (the SQL stores keep each namespace in
tables of its own, the Redis components under a key prefix of its own, the memory store
in a partition of its own); the conformance suite (``NamespaceTests``) proves that they
do. The :data:`DEFAULT_NAMESPACE` is where everything lived before namespaces existed, so
a store written by an older wfe is the default namespace of the new one.

A namespace name is 1 to :data:`MAX_NAMESPACE_LENGTH` characters: lower-case letters,
digits and single underscores, starting with a letter (``prod``, ``staging``,
``tenant_42``): it becomes part of table names and keys, so it must be valid in every
store as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = [
    "DEFAULT_NAMESPACE",
    "MAX_NAMESPACE_LENGTH",
    "NAMESPACE_ENV",
    "check_namespace",
    "resolve_namespace",
]

DEFAULT_NAMESPACE = "default"
"""The namespace a store uses when none is given (where pre-namespace data lives)."""

NAMESPACE_ENV = "WFE_NAMESPACE"
"""The environment variable read when neither a keyword nor the URL names a namespace."""

MAX_NAMESPACE_LENGTH = 24
"""The longest namespace name (it becomes part of SQL identifiers of at most 63 bytes)."""

_NAME = re.compile(r"[a-z](?:_?[a-z0-9])*")


def check_namespace(value: object, *, source: str = "namespace") -> str:
    """``value`` if it is a valid namespace name, else a ``TypeError`` / ``ValueError``
    naming the problem (``source`` says where the value came from, e.g. ``"WFE_NAMESPACE"``
    or ``"?namespace= in the URL"``)."""
    if not isinstance(value, str):
        raise TypeError(f"{source} must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError(
            f"{source} is empty; give a name such as 'staging' or leave it out for "
            f"{DEFAULT_NAMESPACE!r}"
        )
    if len(value) > MAX_NAMESPACE_LENGTH or _NAME.fullmatch(value) is None:
        raise ValueError(
            f"{source} {value!r} is not a valid namespace: use 1 to {MAX_NAMESPACE_LENGTH} "
            "lower-case letters, digits and single underscores, starting with a letter "
            "(e.g. 'staging' or 'tenant_42')"
        )
    return value


def resolve_namespace(
    explicit: str | None = None,
    *,
    from_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The namespace a store opens: ``explicit`` (a keyword argument) if given, else
    ``from_url`` (``?namespace=`` of its URL), else the :data:`NAMESPACE_ENV` environment
    variable when set and not empty, else :data:`DEFAULT_NAMESPACE`. Each is checked
    with :func:`check_namespace`."""
    if explicit is not None:
        return check_namespace(explicit)
    if from_url is not None:
        return check_namespace(from_url, source="?namespace= in the store URL")
    env = os.environ if environ is None else environ
    value = env.get(NAMESPACE_ENV, "")
    if value:
        return check_namespace(value, source=NAMESPACE_ENV)
    return DEFAULT_NAMESPACE
