"""Redis URLs, clients, and the translation of redis-py errors into wfe errors.

Every public call of the Redis providers runs inside :meth:`RedisComponent._translate`,
so callers only ever see :class:`~wfe_core.errors.ProviderUnavailable` (naming the
redacted URL and what to fix), never a redis-py exception. Clients use bounded
connect and socket timeouts and retry a broken connection once, at once, on a fresh
connection: a call fails promptly while the server is down and works again as soon as
it is back.

Namespaces (:mod:`wfe_core.namespaces`): every key and pub/sub channel of a component
lives under its :attr:`RedisSettings.key_prefix`. In the default namespace that is the
``prefix`` itself, so keys and channels are exactly those of a wfe without namespaces
(``wfe:lock:<resource>``, ``wfe:queue:<q>:...``, channels ``wfe:db<N>:...``); in
namespace ``ns`` it is ``<prefix>ns:<ns>:`` (``wfe:ns:staging:lock:<resource>``). No
default-namespace key or channel starts with ``<prefix>ns:`` (their families are
``lock:``, ``queue:`` and ``db<N>:``), and a namespace name holds no ``:``, so two
namespaces never share a key or a channel, nor one with the default namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from wfe_core.errors import ProviderUnavailable
from wfe_core.namespaces import DEFAULT_NAMESPACE, resolve_namespace
from wfe_core.registry import check_url_credentials, redact_url

__all__ = [
    "DEFAULT_PREFIX",
    "RedisComponent",
    "RedisSettings",
    "cancel_and_wait",
    "raise_if_cancel_requested",
]

DEFAULT_PREFIX = "wfe:"
"""The key prefix used when none is given."""

_SCHEMES = ("redis", "rediss", "unix")
_FLOAT_OPTIONS = ("visibility_timeout", "connect_timeout", "socket_timeout")
_WFE_OPTIONS = ("prefix", "namespace", *_FLOAT_OPTIONS)
_NAMESPACE_FAMILY = "ns:"
"""The key family under which every non-default namespace lives (``<prefix>ns:<ns>:``);
no default-namespace key family (``lock:``, ``queue:``, ``db<N>:``) starts with it."""
_CLIENT_OPTIONS = (
    "db",
    "client_name",
    "max_connections",
    "health_check_interval",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)


@dataclass(frozen=True)
class RedisSettings:
    """Where a Redis component connects and how (parsed from a URL plus options).

    URL form: ``redis://[[user]:password@]host[:port][/db][?option=value&...]``
    (``rediss://`` for TLS, ``unix:///path/to/socket?db=N`` for a socket). The wfe
    options ``prefix``, ``namespace``, ``visibility_timeout``, ``connect_timeout`` and
    ``socket_timeout`` may appear in the query or as keyword arguments (keywords
    win); the query may also carry redis-py's ``client_name``, ``max_connections``,
    ``health_check_interval`` and ``ssl_*`` options. The namespace is resolved by
    :func:`~wfe_core.namespaces.resolve_namespace`: keyword, else ``?namespace=``,
    else the ``WFE_NAMESPACE`` environment variable, else ``"default"``.
    """

    url: str = field(repr=False)
    """The URL handed to redis-py (the wfe options removed; it carries the password:
    never shown in a repr or a message, use :attr:`display`)."""
    display: str
    """The URL with any password redacted, for messages."""
    db: int
    prefix: str = DEFAULT_PREFIX
    """The configured key prefix (see :attr:`key_prefix` for the one keys live under)."""
    namespace: str = DEFAULT_NAMESPACE
    """The namespace (:mod:`wfe_core.namespaces`) whose keys and channels are used."""
    connect_timeout: float = 3.0
    """Seconds to establish a connection."""
    socket_timeout: float = 5.0
    """Seconds any single command may take to answer."""
    visibility_timeout: float = 30.0
    """Queue only: seconds after which an item taken by a silent consumer returns."""
    credentials: bool = False
    """Whether the URL carries a user name or password."""

    @classmethod
    def parse(cls, url: str, **options: Any) -> RedisSettings:
        """Parse ``url`` and ``options``; ValueError names anything not understood."""
        if not isinstance(url, str):
            raise TypeError(f"a Redis URL must be a string, not {type(url).__name__}")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(
                f"{redact_url(url)!r} is not a Redis URL: expected redis://host:port/db "
                "(or rediss:// for TLS, unix:///path for a socket)"
            )
        # A password holding an unencoded '/', '?', '#' or '@' would be split into a
        # host, port, database or option name that messages then show.
        check_url_credentials(url, "e.g. redis://:password@host:6379/0")
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in _WFE_OPTIONS and key not in _CLIENT_OPTIONS:
                raise ValueError(
                    f"unknown option {key!r} in Redis URL {redact_url(url)!r}; known: "
                    + ", ".join(sorted((*_WFE_OPTIONS, *_CLIENT_OPTIONS)))
                )
            query[key] = value
        for key in options:
            if key not in _WFE_OPTIONS:
                raise TypeError(
                    f"unknown Redis provider option {key!r}; known: " + ", ".join(_WFE_OPTIONS)
                )
        namespace = resolve_namespace(options.get("namespace"), from_url=query.get("namespace"))
        merged: dict[str, Any] = {k: v for k, v in query.items() if k in _WFE_OPTIONS}
        merged.update({k: v for k, v in options.items() if v is not None})
        values: dict[str, Any] = {}
        for key in _FLOAT_OPTIONS:
            if key in merged:
                values[key] = _positive(key, merged[key], url)
        prefix = merged.get("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str):
            raise TypeError(f"the Redis key prefix must be a string, not {prefix!r}")
        client_query = [(k, v) for k, v in query.items() if k in _CLIENT_OPTIONS]
        client_url = urlunsplit(parts._replace(query=urlencode(client_query)))
        return cls(
            url=client_url,
            display=redact_url(url),
            db=_db_index(parts.path if scheme != "unix" else "", query.get("db"), url),
            prefix=prefix,
            namespace=namespace,
            credentials=bool(parts.username or parts.password),
            **values,
        )

    def client(self) -> aredis.Redis:
        """A new client (no connection is opened until the first command)."""
        return aredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), 1, (rex.ConnectionError,)),
            decode_responses=True,
        )

    @property
    def key_prefix(self) -> str:
        """The prefix of every key and channel: :attr:`prefix` in the default namespace
        (the keys of a wfe without namespaces), ``<prefix>ns:<namespace>:`` in any other."""
        if self.namespace == DEFAULT_NAMESPACE:
            return self.prefix
        return f"{self.prefix}{_NAMESPACE_FAMILY}{self.namespace}:"

    def key(self, *parts: str) -> str:
        """A key: :attr:`key_prefix` then ``parts`` joined by ``:``."""
        return self.key_prefix + ":".join(parts)

    def channel(self, name: str) -> str:
        """A pub/sub channel name: under :attr:`key_prefix` and (since pub/sub ignores
        the database number) qualified by the database, so separate databases do not
        cross-talk."""
        return f"{self.key_prefix}db{self.db}:{name}"


def _positive(key: str, value: Any, url: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"option {key}={value!r} for {redact_url(url)!r} is not a number of seconds"
        ) from None
    if not number > 0 or math.isinf(number):
        raise ValueError(
            f"option {key}={value!r} for {redact_url(url)!r} must be a positive, finite "
            "number of seconds"
        )
    return number


def _db_index(path: str, query_db: str | None, url: str) -> int:
    raw = query_db if query_db is not None else path.strip("/") or "0"
    try:
        db = int(raw)
    except ValueError:
        raise ValueError(
            f"{redact_url(url)!r}: the database must be a number, e.g. redis://host:6379/0"
        ) from None
    if db < 0:
        raise ValueError(f"{redact_url(url)!r}: the database number must not be negative")
    return db


def translate(exc: BaseException, display: str, credentials: bool) -> ProviderUnavailable:
    """A :class:`ProviderUnavailable` that says what went wrong with the Redis at
    ``display`` (whose URL carries ``credentials`` or not) and what to fix."""
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    at = f"Redis at {display}"
    auth_failed = (
        isinstance(exc, rex.AuthenticationError)
        or "wrongpass" in lowered
        or "noauth" in lowered
        or "authentication required" in lowered
    )
    if auth_failed and not credentials:
        why = (
            f"{at} requires a password ({text}): put it in the URL, "
            "e.g. redis://:password@host:6379/0"
        )
    elif auth_failed:
        why = f"{at} rejected the credentials ({text}): fix the user name or password in the URL"
    elif "db index" in lowered or "invalid db" in lowered:
        why = (
            f"{at} has no such database ({text}): use a database number below the "
            "server's `databases` setting (0 to 15 by default)"
        )
    elif isinstance(exc, rex.BusyLoadingError):
        why = f"{at} is still loading its data set ({text}); try again shortly"
    elif isinstance(exc, rex.ReadOnlyError):
        why = f"{at} is a read-only replica ({text}): point the URL at the primary"
    elif isinstance(exc, rex.InvalidResponse) or "closed by server" in lowered:
        why = (
            f"the server at {display} does not answer like a Redis server ({text}): "
            "check the host and port (is it another service, e.g. PostgreSQL on 5432?)"
        )
    elif isinstance(exc, (rex.TimeoutError, TimeoutError)):
        why = (
            f"{at} did not answer in time ({text}): check that the server runs, is "
            "reachable from here and is not overloaded"
        )
    elif isinstance(exc, (rex.ConnectionError, OSError)):
        why = (
            f"{at} cannot be reached ({text}): start the server or fix the host and port in the URL"
        )
    elif isinstance(exc, rex.ResponseError):
        why = (
            f"{at} refused a command ({text}): another application may use keys under "
            "this key prefix; choose another prefix"
        )
    else:
        why = f"{at} failed ({type(exc).__name__}: {text})"
    return ProviderUnavailable(why)


class RedisComponent:
    """Shared plumbing of the Redis providers: settings, client, error translation."""

    def __init__(self, url: str, **options: Any) -> None:
        self.settings = RedisSettings.parse(url, **options)
        self._client: aredis.Redis = self.settings.client()

    @property
    def url(self) -> str:
        """The Redis URL (password redacted)."""
        return self.settings.display

    @property
    def prefix(self) -> str:
        """The configured key prefix (``prefix`` option; default ``"wfe:"``)."""
        return self.settings.prefix

    @property
    def namespace(self) -> str:
        """The namespace (:mod:`wfe_core.namespaces`) this component works in."""
        return self.settings.namespace

    @property
    def key_prefix(self) -> str:
        """The prefix of every key and channel this component uses: :attr:`prefix` in
        the default namespace, ``<prefix>ns:<namespace>:`` in any other."""
        return self.settings.key_prefix

    def key(self, *parts: str) -> str:
        """A key under this component's :attr:`key_prefix`."""
        return self.settings.key(*parts)

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn redis-py and socket errors raised inside into ProviderUnavailable."""
        try:
            yield
        except (rex.RedisError, OSError) as exc:
            raise translate(exc, self.settings.display, self.settings.credentials) from exc

    async def _close_client(self) -> None:
        """Close the client's connections (a later command opens new ones)."""
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def __repr__(self) -> str:
        extra = "" if self.namespace == DEFAULT_NAMESPACE else f", namespace={self.namespace!r}"
        return f"{type(self).__name__}({self.settings.display!r}, prefix={self.prefix!r}{extra})"


# On Python 3.11, asyncio.wait_for (which redis-py uses around socket writes) can
# swallow a cancellation that arrives just as the awaited operation completes: the
# task carries on with ``cancelling() > 0`` but never sees CancelledError. These two
# helpers keep such a lost cancellation from stalling a stop or a blocking dequeue.


def raise_if_cancel_requested(baseline: int) -> None:
    """Raise CancelledError if the current task received a cancellation request after
    it had ``baseline`` pending ones (one a driver call may have swallowed)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > baseline:
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it ended, cancelling again should a cancellation
    be lost; never raises the task's own outcome."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
