"""Who may use the dashboard: the bind rule, the access token and form protection.

* The dashboard binds ``127.0.0.1`` by default. :func:`check_bind` refuses any address
  that is not a loopback address unless a token is set: it would otherwise serve the
  store's workflows, and the actions that change them, to anyone on the network.
* With a token, every request but the login page and the static files must carry it:
  an ``Authorization: Bearer <token>`` header, the HttpOnly cookie the login form sets,
  or ``?token=<token>`` once (it sets the cookie and redirects to the same address
  without the token, so the token does not stay in the address bar or in the history).
  Tokens are compared in constant time (:func:`hmac.compare_digest`).
* Without a token (loopback only) a request must name a loopback host in its ``Host``
  header, so that a web page on another site cannot reach the dashboard through DNS
  rebinding.
* Every action is a POST carrying the page's form secret (``csrf``), so another site
  cannot submit one in the user's browser; and every response forbids framing and
  scripts or styles from anywhere but the dashboard itself.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

__all__ = [
    "COOKIE",
    "SECURITY_HEADERS",
    "BindRefused",
    "TokenGate",
    "check_bind",
    "cookie_value",
    "is_loopback",
    "same_secret",
]

COOKIE = "wfe_dashboard_token"
"""The name of the HttpOnly cookie holding the token after a login."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
"""Headers added to every response (no framing, no third-party scripts or styles)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BindRefused(ValueError):
    """Binding a non-loopback address without a token."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine only: ``localhost`` or a loopback address."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Raise :class:`BindRefused` when ``host`` is not a loopback address and no token
    is set (an empty token is refused too)."""
    if token is not None and not token.strip():
        raise BindRefused("the dashboard token is empty: give a long random --token, or none")
    if token is None and not is_loopback(host):
        raise BindRefused(
            f"refusing to bind the dashboard to {host} without a token: anyone who can "
            "reach it could read every workflow and suspend, resume or terminate them. "
            "Pass --token T (or set WFE_DASHBOARD_TOKEN; use a long random value) and sign "
            "in with it, or bind 127.0.0.1 (the default)."
        )


def same_secret(given: str | None, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, compared in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def cookie_value(token: str) -> str:
    """What the cookie holds for ``token``: a keyed digest, never the token itself (so
    any token text fits in a cookie)."""
    return hmac.new(token.encode("utf-8"), b"wfe-dashboard-cookie", hashlib.sha256).hexdigest()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _host_name(host_header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class TokenGate:
    """ASGI middleware applying the rules of this module to every HTTP request.

    ``token`` None: only requests to a loopback ``Host`` pass. Otherwise a request
    needs the token (header, cookie, or ``?token=`` once), except ``/login`` and
    ``/static/...``; a browser without it is sent to the login page, anything else
    gets 401.
    """

    def __init__(self, app: ASGIApp, token: str | None, *, secure_cookie: bool = False) -> None:
        self.app = app
        self.token = token
        self.secure_cookie = secure_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        path: str = scope.get("path", "/")
        if self.token is None:
            host = _host_name(_header(scope, b"host") or "")
            if host and not is_loopback(host):
                await _plain(send_with_headers, 403, f"host {host!r} is not allowed")
                return
            await self.app(scope, receive, send_with_headers)
            return
        if path == "/login" or path.startswith("/static/"):
            await self.app(scope, receive, send_with_headers)
            return
        query = parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), True)
        given = dict(query).get("token")
        if given is not None and scope.get("method") == "GET":
            if not same_secret(given, self.token):
                await _plain(send_with_headers, 401, "wrong token")
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            await _redirect(
                send_with_headers,
                path + (f"?{rest}" if rest else ""),
                cookie=self.cookie_header(cookie_value(self.token)),
            )
            return
        bearer = _header(scope, b"authorization")
        if bearer is not None and bearer.lower().startswith("bearer "):
            ok = same_secret(bearer[7:].strip(), self.token)
        else:
            ok = same_secret(_cookie(scope, COOKIE), cookie_value(self.token))
        if ok:
            await self.app(scope, receive, send_with_headers)
            return
        accept = _header(scope, b"accept") or ""
        if scope.get("method") == "GET" and "text/html" in accept:
            target = path + (f"?{scope['query_string'].decode('latin-1')}" if query else "")
            await _redirect(send_with_headers, "/login?next=" + quote(target, safe=""))
            return
        await _plain(send_with_headers, 401, "this dashboard needs its token: sign in at /login")

    def cookie_header(self, value: str, *, max_age: int | None = None) -> str:
        """The ``Set-Cookie`` value storing ``value`` (HttpOnly, SameSite=Strict)."""
        parts = [f"{COOKIE}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure_cookie:
            parts.append("Secure")
        return "; ".join(parts)


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, *, cookie: str | None = None) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
