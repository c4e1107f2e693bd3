"""``memory://`` URLs: the ``wfe.providers`` entry point of the in-memory store."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from wfe_core.namespaces import resolve_namespace

from wfe_memory.provider import MemoryPersistenceProvider

__all__ = ["URL_OPTIONS", "provider_from_url"]

URL_OPTIONS = frozenset({"namespace"})
"""The query options a ``memory://`` URL may carry."""


def _query_options(url: str, query: str) -> dict[str, str]:
    """The query options of ``url``, each given at most once; a ``ValueError`` naming an
    unknown or repeated one."""
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in URL_OPTIONS:
            raise ValueError(
                f"unknown option {key!r} in memory URL {url!r}; a memory URL takes only "
                + ", ".join(f"?{name}=" for name in sorted(URL_OPTIONS))
            )
        if key in options:
            raise ValueError(f"option {key!r} is given more than once in memory URL {url!r}")
        options[key] = value
    return options


def provider_from_url(url: str, **options: Any) -> MemoryPersistenceProvider:
    """Build a provider from a ``memory://`` URL (the ``wfe.providers`` entry point).

    Whatever follows ``memory://`` (up to ``?``) becomes the provider's ``name`` (for
    display only): every call returns a new, empty store. ``?namespace=NAME`` opens it
    in that namespace; a ``namespace`` keyword in ``options`` wins over the URL, and the
    ``WFE_NAMESPACE`` environment variable applies when neither gives one. Any other
    query option is a ``ValueError``. ``options`` go to the constructor.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "memory":
        raise ValueError(f"not a memory URL: {url!r}; expected 'memory://' or 'memory://<name>'")
    query = _query_options(url, parts.query)
    name = (parts.netloc + parts.path).strip("/")
    options.setdefault("name", name)
    options["namespace"] = resolve_namespace(
        options.get("namespace"), from_url=query.get("namespace")
    )
    return MemoryPersistenceProvider(**options)
