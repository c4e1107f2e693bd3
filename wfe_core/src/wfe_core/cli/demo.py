"""``wfe demo``: the event-driven order example of :mod:`wfe_core.demo`, end to end
with a worker restart, on the store of ``--url``."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console

from wfe_core.cli.options import (
    DEFAULT_URL,
    FiniteFloatRange,
    json_option,
    run,
    store_namespace,
    store_url,
    url_option,
)
from wfe_core.cli.output import emit_json
from wfe_core.registry import redact_url, url_scheme

__all__ = ["demo"]


@click.command()
@url_option
@click.option(
    "--orders",
    type=click.IntRange(3, 50),
    default=5,
    show_default=True,
    help="How many orders to place (the last one is never paid).",
)
@click.option(
    "--payment-window",
    type=FiniteFloatRange(0.5, 60),
    default=4.0,
    show_default=True,
    help="Seconds an order waits for its payment.",
)
@json_option
def demo(url: str | None, orders: int, payment_window: float, as_json: bool) -> None:
    """Run the event-driven order example end to end, with a worker restart.

    Orders wait for a payment event with a timeout; most are paid (some while no worker
    runs), one times out and is cancelled, and a second worker picks up where the
    first stopped. Uses the store of --url (default sqlite:///wfe.db).
    """
    from wfe_core.demo import run_demo, summary_table

    store = store_url(url)
    try:
        url_scheme(store)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from exc
    console = Console(stderr=as_json, highlight=False)
    started = time.monotonic()

    async def go() -> Any:
        try:
            return await run_demo(
                store,
                orders=orders,
                payment_window=payment_window,
                console=console,
                namespace=store_namespace(store),
            )
        except TimeoutError as exc:
            raise click.ClickException(str(exc)) from exc

    results = run(go())
    elapsed = time.monotonic() - started
    if as_json:
        emit_json(
            {
                "url": redact_url(store),
                "seconds": round(elapsed, 2),
                "orders": [o.to_json() for o in results],
            }
        )
        return
    console.print(summary_table(results))
    if url_scheme(store) == "memory":
        console.print(f"done in {elapsed:.1f}s (memory:// keeps nothing once the demo ends)")
    else:
        where = "" if store == DEFAULT_URL else f" --url {redact_url(store)}"
        console.print(f"done in {elapsed:.1f}s; look around: wfe list{where}, then wfe show <id>")
