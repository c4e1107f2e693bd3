"""The provider registry: from a store URL to the components that serve it.

Packages plug stores in through the ``wfe.providers`` entry-point group: the entry
point's name is the URL scheme (``sqlite``, ``postgresql``, ``memory``, ...) and its
value a factory ``(url, **options)`` returning a
:class:`~wfe_core.persistence.PersistenceProvider` or a :class:`StoreComponents` (a
store that also brings its own lock, queue or lifecycle publisher)::

    [project.entry-points."wfe.providers"]
    mystore = "wfe_mystore:provider_from_url"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from wfe_core.errors import ProviderNotFound
from wfe_core.lifecycle import LifecyclePublisher
from wfe_core.locks import DistributedLockProvider
from wfe_core.persistence import PersistenceProvider
from wfe_core.queues import QueueProvider

__all__ = [
    "ENTRY_POINT_GROUP",
    "StoreComponents",
    "available_schemes",
    "open_store",
    "redact_url",
    "url_scheme",
]

ENTRY_POINT_GROUP = "wfe.providers"
"""The entry-point group providers register their URL factories in."""

_ALIASES: dict[str, str] = {"postgres": "postgresql"}
_PACKAGES: dict[str, str] = {
    "sqlite": "wfe-sqlite",
    "postgresql": "wfe-postgres",
    "redis": "wfe-redis",
    "memory": "wfe-memory",
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


@dataclass
class StoreComponents:
    """What a store URL opens: the persistence provider and, when the store brings
    them, its own lock provider, queue provider and lifecycle publisher (None means
    "use the in-process default")."""

    persistence: PersistenceProvider | None
    """None for a service that brings only coordination (e.g. ``redis://``)."""
    lock_provider: DistributedLockProvider | None = None
    queue_provider: QueueProvider | None = None
    lifecycle: LifecyclePublisher | None = None


def redact_url(url: str) -> str:
    """``url`` with any password (in the authority or a ``password=`` query
    parameter) replaced by ``***``, fit for messages and logs."""
    redacted = re.sub(r"(://[^/@:?#]*:)[^@/?#]*@", r"\1***@", url)
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&#]*", r"\1***", redacted)


def url_scheme(url: str) -> str:
    """The canonical scheme of a store URL: lower case, driver suffix (``+asyncpg``)
    dropped, aliases resolved (``postgres`` → ``postgresql``).

    Raises ``ValueError`` when ``url`` has no scheme.
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL must be a string, not {type(url).__name__}")
    match = _SCHEME.match(url)
    if match is None or len(match.group(1)) == 1:  # one letter: a Windows drive, not a scheme
        raise ValueError(
            f"{redact_url(url)!r} is not a store URL: expected '<scheme>://...', e.g. "
            "'sqlite:///wfe.db', 'postgresql://user@host/db' or 'memory://'"
        )
    base = match.group(1).lower().split("+", 1)[0]
    return _ALIASES.get(base, base)


def _entry_points() -> list[EntryPoint]:
    """The installed ``wfe.providers`` entry points (a seam for tests)."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


def available_schemes() -> list[str]:
    """The URL schemes installed providers serve, sorted."""
    return sorted({ep.name for ep in _entry_points()})


def _install_hint(scheme: str) -> str:
    package = _PACKAGES.get(scheme)
    if package is not None:
        return f"install it: pip install {package}"
    return f"install the wfe-{scheme} package that provides it"


def open_store(url: str, **options: Any) -> StoreComponents:
    """Open the store at ``url`` through the provider installed for its scheme.

    ``options`` go to the provider's factory. Raises ``ValueError`` for a URL without
    a scheme and :class:`~wfe_core.errors.ProviderNotFound` when no installed package
    serves the scheme (or its entry point cannot be loaded).
    """
    scheme = url_scheme(url)
    explicit = url.split(":", 1)[0].lower()
    candidates = {ep.name: ep for ep in reversed(_entry_points())}
    ep = candidates.get(explicit) or candidates.get(scheme)
    if ep is None:
        installed = ", ".join(sorted(candidates)) or "none"
        raise ProviderNotFound(
            f"no wfe provider is installed for URL scheme {scheme!r} (from "
            f"{redact_url(url)!r}); {_install_hint(scheme)} (installed schemes: {installed})"
        )
    try:
        factory: Callable[..., object] = ep.load()
    except Exception as exc:
        raise ProviderNotFound(
            f"the wfe provider for URL scheme {scheme!r} ({ep.value}) is installed but "
            f"could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    result = factory(url, **options)
    if isinstance(result, StoreComponents):
        return result
    if not isinstance(result, PersistenceProvider):
        raise TypeError(
            f"the wfe provider factory {ep.value} returned {type(result).__name__}, not a "
            "PersistenceProvider or StoreComponents"
        )
    return StoreComponents(persistence=result)
