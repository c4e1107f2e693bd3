"""``wfe dashboard``: serve the web dashboard (the ``wfe-dashboard`` package) on a store.

The dashboard is an optional package: this command imports it only when it runs and
says how to install it when it is missing. It uses the store as every client command
does (``--url`` here, else the group's ``--url`` / ``WFE_URL``; the group's
``--namespace``), and runs no workflow itself.
"""

from __future__ import annotations

from typing import Any

import click

from wfe_core.cli.options import DATA_TYPES_HELP, app_option, store_url, url_option
from wfe_core.client import WorkflowClient

__all__ = ["dashboard"]

INSTALL_HINT = "wfe dashboard needs the wfe-dashboard package: pip install wfe-dashboard"
"""What ``wfe dashboard`` says when the package is not installed."""


@click.command()
@url_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but a loopback address needs --token.",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--token",
    envvar="WFE_DASHBOARD_TOKEN",
    default=None,
    metavar="TOKEN",
    help="Require this token on every request (sign in once per browser; scripts send "
    "'Authorization: Bearer TOKEN'). Needed to bind a non-loopback address "
    "(env: WFE_DASHBOARD_TOKEN).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05, max=60.0),
    default=1.0,
    show_default=True,
    help="Seconds between two looks at the store for live updates.",
)
@app_option(DATA_TYPES_HELP)
def dashboard(
    url: str | None,
    host: str,
    port: int,
    token: str | None,
    poll_interval: float,
    app: str | None,
) -> None:
    """Serve the web dashboard: instances, step timelines, errors, schedules, live
    updates, and suspend / resume / terminate / publish actions (each confirmed).

    It binds 127.0.0.1 by default and refuses any other address unless --token is
    given.
    """
    try:
        import wfe_dashboard
    except ImportError as exc:
        raise click.ClickException(f"{INSTALL_HINT} ({exc})") from exc
    try:
        wfe_dashboard.check_bind(host, token)
    except wfe_dashboard.BindRefused as exc:
        raise click.UsageError(str(exc)) from exc
    from wfe_core.cli.session import open_client

    client = open_client(store_url(url))

    async def prepare(opened: WorkflowClient) -> Any:
        """Register the demo's types and ``--app``'s, so their data reads decoded."""
        from wfe_core.cli.app import apply_app
        from wfe_core.demo import OrderData, Payment

        opened.register_type(OrderData, Payment)
        return await apply_app(opened, app) if app is not None else None

    click.echo(
        f"wfe dashboard on http://{host}:{port}/"
        + (" (sign in with your token)" if token else "")
        + "; Ctrl-C stops it",
        err=True,
    )
    wfe_dashboard.serve(
        client, host=host, port=port, token=token, prepare=prepare, poll_interval=poll_interval
    )
