"""``postgresql://`` store URLs.

Accepted forms (user, password, host, port and database as libpq spells them)::

    postgresql://user:password@host:5432/database?schema=wfe&max_size=20
    postgres://user@host/database            (the same)
    postgresql+asyncpg://user@host/database  (SQLAlchemy's spelling; the same)
    postgresql:///database?host=/var/run/postgresql   (a Unix socket)

The query string carries wfe's options (:data:`URL_OPTIONS`: the schema, the pool, the
timeouts, the queue's poll interval ...) and the libpq connection parameters asyncpg
understands (:data:`LIBPQ_PARAMETERS`: ``sslmode``, ``application_name``, ...). Anything
else is refused with the list of what is known: a misspelt option fails at once instead
of being ignored. Keyword arguments given in code win over the URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from wfe_core.registry import check_url_credentials, redact_url

__all__ = [
    "DEFAULT_PORT",
    "LIBPQ_PARAMETERS",
    "SCHEMES",
    "URL_OPTIONS",
    "PostgresUrl",
    "parse_postgres_url",
]

DEFAULT_PORT = 5432
"""PostgreSQL's port when the URL names none."""

SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "postgres+asyncpg")
"""The URL schemes this package serves."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


URL_OPTIONS: dict[str, Any] = {
    "schema": str,
    "namespace": str,
    "min_size": int,
    "max_size": int,
    "connect_timeout": float,
    "command_timeout": float,
    "acquire_timeout": float,
    "max_inactive_lifetime": float,
    "statement_cache_size": int,
    "listen_keepalive": float,
    "hint_pool_size": int,
    "write_groups": int,
    "poll_interval": float,
    "command_lease": float,
}
"""wfe's options that a URL's query string may carry, with their types."""

LIBPQ_PARAMETERS = frozenset(
    {
        "host",
        "port",
        "user",
        "password",
        "dbname",
        "database",
        "passfile",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "sslnegotiation",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "application_name",
    }
)
"""libpq connection parameters passed through to asyncpg unchanged."""

_FORMS = (
    "use 'postgresql://user:password@host:5432/database' (postgres:// and "
    "postgresql+asyncpg:// work too)"
)


@dataclass(frozen=True)
class PostgresUrl:
    """A parsed store URL: what to connect to (``dsn``, for asyncpg), what to call it
    in messages, and wfe's options found in its query string."""

    dsn: str = field(repr=False)
    """The URL for asyncpg: scheme ``postgresql``, wfe's options removed (it carries the
    password: never shown in a repr or a message; use :attr:`display`)."""
    host: str
    """The first host (``localhost`` when none is given; a socket folder for Unix sockets)."""
    port: int
    """The first host's port."""
    database: str
    """The database name (libpq's default, the user name, when the URL has none)."""
    user: str
    """The user name ('' when the URL names none: asyncpg then uses the OS user)."""
    has_password: bool
    """Whether the URL carries a password."""
    options: dict[str, Any] = field(default_factory=dict)
    """wfe's options from the query string, converted to their types."""

    @property
    def unix_socket(self) -> bool:
        """Whether the first host is a Unix-socket folder."""
        return self.host.startswith("/")

    @property
    def where(self) -> str:
        """``host:port`` (or the socket path), for messages."""
        if self.unix_socket:
            return f"{self.host.rstrip('/')}/.s.PGSQL.{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def display(self) -> str:
        """``postgresql://user@host:port/database``: no password, no options."""
        user = f"{self.user}@" if self.user else ""
        return f"postgresql://{user}{self.where}/{self.database}"


def parse_postgres_url(url: str) -> PostgresUrl:
    """Split a PostgreSQL URL into the asyncpg DSN, the names used in messages and
    wfe's options (converted to their types). Raises ``ValueError`` naming the problem."""
    if not isinstance(url, str):
        raise TypeError(f"a PostgreSQL URL must be a string, not {type(url).__name__}")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL ({exc}); {_FORMS}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {shown!r}; {_FORMS}")
    # Before anything else looks at the parts: a password holding an unencoded '/', '?',
    # '#' or '@' would otherwise be split into a host, port, database or option name
    # that messages then show.
    check_url_credentials(url, _FORMS)
    if parts.fragment:
        raise ValueError(f"{shown!r} has a '#' fragment; {_FORMS}")
    options: dict[str, Any] = {}
    passthrough: list[tuple[str, str]] = []
    query_host = query_port = query_user = query_db = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = URL_OPTIONS.get(key)
        if kind is not None:
            try:
                options[key] = kind(value)
            except ValueError:
                raise ValueError(
                    f"option {key}={value!r} in {shown!r} is not a valid {kind.__name__}"
                ) from None
            continue
        if key not in LIBPQ_PARAMETERS:
            known = ", ".join(sorted(URL_OPTIONS))
            raise ValueError(
                f"unknown option {key!r} in {shown!r}; wfe's options are {known}, and the "
                "libpq connection parameters asyncpg understands (sslmode, "
                "application_name, ...) pass through"
            )
        passthrough.append((key, value))
        if key == "host":
            query_host = value
        elif key == "port":
            query_port = value
        elif key == "user":
            query_user = value
        elif key in ("dbname", "database"):
            query_db = value

    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user_part, has_colon, password_part = userinfo.partition(":")
    user = unquote(user_part) or (query_user or "")
    first = hostlist.split(",", 1)[0]
    if first.startswith("["):  # IPv6 literal
        close = first.find("]")
        if close < 0:
            raise ValueError(f"{shown!r} has an unclosed '[' in its host; {_FORMS}")
        host, port_text = first[1:close], first[close + 1 :].lstrip(":")
    else:
        host, _, port_text = first.partition(":")
    host = unquote(host) or (query_host.split(",", 1)[0] if query_host else "") or "localhost"
    port_text = port_text or (query_port.split(",", 1)[0] if query_port else "")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"the port {port_text!r} in {shown!r} is not a number; {_FORMS}") from None
    if not 0 < port < 65536:
        raise ValueError(f"the port {port} in {shown!r} is out of range (1-65535)")
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if "/" in database:
        raise ValueError(f"{shown!r}: the database name {database!r} contains '/'; {_FORMS}")
    database = database or query_db or user or "postgres"
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(passthrough), ""))
    return PostgresUrl(
        dsn=dsn,
        host=host,
        port=port,
        database=database,
        user=user,
        has_password=bool(has_colon and password_part),
        options=options,
    )
