"""The provider registry: from a store URL to the components that serve it.

Packages plug stores in through the ``wfe.providers`` entry-point group: the entry
point's name is the URL scheme (``sqlite``, ``postgresql``, ``memory``, ...) and its
value a factory ``(url, **options)`` returning a
:class:`~wfe_core.persistence.PersistenceProvider` or a :class:`StoreComponents` (a
store that also brings its own lock, queue or lifecycle publisher)::

    [project.entry-points."wfe.providers"]
    mystore = "wfe_mystore:provider_from_url"

Read-only opens: ``open_store(url, read_only=True)`` (and so
``WorkflowHost.from_url(url, read_only=True)``) asks for a store that never writes --
no schema creation or migration, no write locks -- for commands that only read (``wfe
list``, ``wfe show``). It is passed on to factories whose signature names a
``read_only`` parameter (``wfe_sqlite``'s does); other providers are opened as usual,
since reading works there too.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from wfe_core.errors import ProviderNotFound
from wfe_core.lifecycle import LifecyclePublisher
from wfe_core.locks import DistributedLockProvider
from wfe_core.namespaces import DEFAULT_NAMESPACE, check_namespace
from wfe_core.persistence import PersistenceProvider
from wfe_core.queues import QueueProvider

__all__ = [
    "ENTRY_POINT_GROUP",
    "StoreComponents",
    "accepts_read_only",
    "available_schemes",
    "check_url_credentials",
    "open_store",
    "redact_url",
    "supports_read_only",
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


_AUTHORITY_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_NAME = r"[^\s&;=#?/:]*(?:pass|pwd|secret|token|credential|auth|api[_-]?key)[^\s&;=#?/:]*"
# A secret parameter: ``name=value`` at the start, after ``?``, ``&``, ``;`` or white
# space (a libpq key=value string), whose name looks like a secret (password,
# sslpassword, passphrase, token, ...). Its value runs to the next ``name=`` (so an
# unencoded ``&``, ``#`` or space inside it is hidden too) or to the end.
_SECRET_PARAM = re.compile(
    rf"(?i)(^|[?&;\s])({_SECRET_NAME}=)(.*?)(?=[&;\s][^\s&;=#?]+=|$)", re.DOTALL
)


def redact_url(url: str) -> str:
    """``url`` fit for messages, reprs and logs: every password replaced by ``***``.

    Hidden are the password of the authority (``scheme://user:PASSWORD@host``) and the
    value of every query parameter whose name looks like a secret (``password``,
    ``sslpassword``, ``passphrase``, ``token``, ``secret``, ``api_key``, ...), for any
    scheme. A password holding an unencoded ``/``, ``?``, ``#`` or ``@`` makes a URL
    ambiguous; the password is then taken to run from the first ``:`` of the authority
    to the *last* ``@`` of the URL, so no part of it ever shows (at worst some of what
    follows it is hidden too).
    """
    redacted = url
    start = _AUTHORITY_START.match(url)
    if start is not None:
        rest = url[start.end() :]
        at = rest.rfind("@")
        colon = rest.find(":", 0, at) if at > 0 else -1
        if colon >= 0:
            redacted = url[: start.end()] + rest[: colon + 1] + "***" + rest[at:]
    return _SECRET_PARAM.sub(r"\1\2***", redacted)


def check_url_credentials(url: str, forms: str = "") -> None:
    """Refuse a URL whose user name or password holds a character that must be
    percent-encoded (``/``, ``?``, ``#``, ``@``): such a URL cannot be split into its
    parts without guessing, and a wrong guess would connect with part of the password
    as a host, a port or a database name (and print it in messages). The message never
    shows the password; ``forms`` is appended to it.

    Raises ``ValueError``. A URL without an authority (``sqlite:///...``) always passes.
    """
    start = _AUTHORITY_START.match(url)
    if start is None:
        return
    rest = url[start.end() :]
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority, after = rest[:end], rest[end:]

    def refuse(what: str) -> ValueError:
        message = (
            f"{redact_url(url)!r}: the user name or password holds an unencoded {what}; "
            "percent-encode it ('/' as %2F, '?' as %3F, '#' as %23, '@' as %40, ':' as "
            "%3A), e.g. with urllib.parse.quote(password, safe='')"
        )
        return ValueError(f"{message}; {forms}" if forms else message)

    if authority.count("@") > 1:
        raise refuse("'@'")
    if "@" not in authority and ":" in authority and "@" in after:
        raise refuse("'/', '?' or '#' (or an '@' after the host is not encoded as %40)")
    if "@" not in authority and ":" in authority and not authority.startswith("["):
        port = authority.rsplit(":", 1)[1]
        if port and not port.isdigit():
            # ``host:port`` whose "port" is no number: the remains of a password cut short
            # at an unencoded '/', '?' or '#' (``user:pa/ss`` with nothing after it).
            raise refuse("'/', '?' or '#' (or the port is not a number)")


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


def accepts_read_only(factory: Callable[..., object]) -> bool:
    """Whether a provider factory takes a ``read_only`` keyword (see the module docstring)."""
    try:
        parameter = inspect.signature(factory).parameters.get("read_only")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def supports_read_only(url: str) -> bool:
    """Whether ``open_store(url, read_only=True)`` opens the store read-only (its
    provider's factory takes ``read_only``). Raises like :func:`open_store`."""
    return accepts_read_only(_factory(url)[0])


def _accepts_keyword(factory: Callable[..., object], keyword: str) -> bool:
    """Whether ``factory`` takes ``keyword`` (by name or through ``**options``)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    found = parameters.get(keyword)
    if found is not None:
        return found.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def open_store(
    url: str, *, read_only: bool = False, namespace: str | None = None, **options: Any
) -> StoreComponents:
    """Open the store at ``url`` through the provider installed for its scheme.

    ``options`` go to the provider's factory; ``read_only=True`` goes to it only when it
    takes a ``read_only`` keyword (:func:`accepts_read_only`), else the store opens as
    usual. ``namespace`` (:mod:`wfe_core.namespaces`; None: the URL's ``?namespace=``,
    else ``WFE_NAMESPACE``, else ``default``) goes to the factory as a keyword; a
    factory that takes none gets it only when it is not the default, and then
    ``ValueError`` says its store has no namespaces. Raises ``ValueError`` for a URL
    without a scheme and :class:`~wfe_core.errors.ProviderNotFound` when no installed
    package serves the scheme (or its entry point cannot be loaded).
    """
    factory, name = _factory(url)
    if read_only and accepts_read_only(factory):
        options["read_only"] = True
    if namespace is not None:
        check_namespace(namespace)
        if _accepts_keyword(factory, "namespace"):
            options["namespace"] = namespace
        elif namespace != DEFAULT_NAMESPACE:
            raise ValueError(
                f"the wfe provider {name} for {redact_url(url)!r} takes no namespace, so "
                f"it cannot open namespace {namespace!r}; use a store that supports "
                "namespaces or leave the namespace out"
            )
    result = factory(url, **options)
    if isinstance(result, StoreComponents):
        return result
    if not isinstance(result, PersistenceProvider):
        raise TypeError(
            f"the wfe provider factory {name} returned {type(result).__name__}, not a "
            "PersistenceProvider or StoreComponents"
        )
    return StoreComponents(persistence=result)


def _factory(url: str) -> tuple[Callable[..., object], str]:
    """The factory of the provider installed for ``url``'s scheme, and its entry point."""
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
    return factory, ep.value
