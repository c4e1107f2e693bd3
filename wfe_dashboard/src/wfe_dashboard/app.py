"""The Starlette application and the server: :func:`create_app` and :func:`serve`.

The dashboard works through a :class:`~wfe_core.client.WorkflowClient`, so it reads
any store wfe has a provider for; it runs no workflow itself. Pages are rendered on
the server from the Jinja2 templates in ``templates/``; ``static/`` holds its own small
stylesheet and script (no framework, nothing fetched from elsewhere).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from wfe_core.client import WorkflowClient

from wfe_dashboard import live, views
from wfe_dashboard.present import duration, show_value, utc
from wfe_dashboard.security import TokenGate, check_bind

__all__ = ["Dashboard", "Prepare", "create_app", "serve"]

_HERE = Path(__file__).parent

Prepare = Callable[[WorkflowClient], Awaitable[object]]
"""A coroutine function run on the client once it is open (e.g. registering the
application's data types so that their values are shown decoded)."""


@dataclass
class Dashboard:
    """What the request handlers share (``request.app.state.dashboard``)."""

    client: WorkflowClient
    templates: Jinja2Templates
    token: str | None
    csrf: str
    """The form secret every action must send back (see :mod:`wfe_dashboard.security`)."""
    poll_interval: float
    """Seconds between two looks at the store for live updates."""
    page_size: int
    """Rows per list page (at most 500)."""


def create_app(
    client: WorkflowClient,
    *,
    token: str | None = None,
    own_client: bool = True,
    prepare: Prepare | None = None,
    poll_interval: float = 1.0,
    page_size: int = 50,
    secure_cookie: bool = False,
) -> Starlette:
    """The dashboard on ``client``.

    With ``own_client`` (the default) the app opens the client when it starts and
    closes it when it stops; otherwise the caller keeps it open while the app runs.
    ``prepare`` runs on the open client before the first request. ``token``: every
    request must carry it (see :mod:`wfe_dashboard.security`); None serves loopback
    ``Host`` names only. ``secure_cookie`` marks the login cookie ``Secure`` (serve
    over HTTPS, e.g. behind a TLS proxy)."""
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, not {poll_interval!r}")
    if not 1 <= page_size <= 500:
        raise ValueError(f"page_size must be between 1 and 500, not {page_size!r}")
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.filters["utc"] = utc
    templates.env.globals["duration"] = duration
    templates.env.globals["show_value"] = show_value
    templates.env.globals["namespace"] = getattr(client.persistence, "namespace", "default")
    state = Dashboard(
        client=client,
        templates=templates,
        token=token,
        csrf=secrets.token_urlsafe(32),
        poll_interval=poll_interval,
        page_size=page_size,
    )
    templates.env.globals["csrf"] = state.csrf
    templates.env.globals["login_required"] = token is not None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if own_client:
            await client.open()
        try:
            if prepare is not None:
                await prepare(client)
            yield
        finally:
            if own_client:
                await client.close()

    routes = [
        Route("/", views.instance_list, name="list"),
        Route("/instances/{workflow_id:str}", views.instance_page, name="instance"),
        Route(
            "/instances/{workflow_id:str}/publish",
            views.publish,
            methods=["POST"],
            name="publish",
        ),
        Route(
            "/instances/{workflow_id:str}/{action:str}",
            views.control,
            methods=["POST"],
            name="control",
        ),
        Route("/schedules", views.schedules, name="schedules"),
        Route("/live/list", live.list_stream, name="live_list"),
        Route("/live/instances/{workflow_id:str}", live.instance_stream, name="live_instance"),
        Route("/login", views.login, methods=["GET", "POST"], name="login"),
        Route("/logout", views.logout, methods=["POST"], name="logout"),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(TokenGate, token=token, secure_cookie=secure_cookie)],
        exception_handlers={HTTPException: views.http_error},
    )
    app.state.dashboard = state
    app.state.secure_cookie = secure_cookie
    return app


def serve(
    client: WorkflowClient,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    prepare: Prepare | None = None,
    poll_interval: float = 1.0,
    log_level: str = "info",
) -> None:
    """Serve the dashboard on ``client`` with uvicorn until interrupted (Ctrl-C).

    Refuses (:class:`~wfe_dashboard.security.BindRefused`) a ``host`` that is not a
    loopback address when no ``token`` is set."""
    import uvicorn

    check_bind(host, token)
    app = create_app(client, token=token, prepare=prepare, poll_interval=poll_interval)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=2,
        proxy_headers=False,
    )
    uvicorn.Server(config).run()
