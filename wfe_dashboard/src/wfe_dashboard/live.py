"""Live updates: server-sent events telling a page that what it shows has changed.

A page carries the fingerprint of what it shows (``data-version``) and opens an
``EventSource`` on ``/live/list?<its filters>&v=<fingerprint>`` or
``/live/instances/<id>?v=<fingerprint>``. The server looks at the store every
``poll_interval`` seconds (through the client, so it works on every store) and sends
``event: change`` with the new fingerprint whenever it differs; the page then fetches
its live part again (``X-Partial: 1``) and swaps it in. A comment line every ~15
seconds keeps proxies from closing an idle stream. ``once=1`` ends the stream after
the first look (for scripts and tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import StreamingResponse
from wfe_core.errors import WorkflowNotFound

from wfe_dashboard.paging import Cursor, FilterError, Filters, read_page
from wfe_dashboard.views import dashboard, instance_version, list_version

__all__ = ["instance_stream", "list_stream", "stream"]

_log = logging.getLogger(__name__)

_KEEPALIVE_SECONDS = 15.0


def stream(
    request: Request, look: Callable[[], Awaitable[str]], version: str | None
) -> StreamingResponse:
    """An event stream sending ``change`` whenever ``look()`` returns another
    fingerprint than the last one (the first is compared with ``version``)."""
    interval: float = dashboard(request).poll_interval
    once = request.query_params.get("once") == "1"

    async def events() -> AsyncIterator[bytes]:
        last: str | None = version
        quiet = 0.0
        yield b"retry: 2000\n\n"
        while True:
            try:
                now = await look()
            except Exception as exc:  # a store hiccup: say so, keep the stream
                _log.warning("live update: cannot read the store: %s", exc)
                now = last or ""
            if now != last:
                last = now
                quiet = 0.0
                yield f"event: change\ndata: {now}\n\n".encode()
            elif once:
                yield f"event: same\ndata: {now}\n\n".encode()
            elif quiet >= _KEEPALIVE_SECONDS:
                quiet = 0.0
                yield b": keep-alive\n\n"
            if once or await request.is_disconnected():
                return
            await asyncio.sleep(interval)
            quiet += interval

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def list_stream(request: Request) -> StreamingResponse:
    """``GET /live/list?<filters>&v=...``: changes of the list page with these filters."""
    d = dashboard(request)
    params = dict(request.query_params)
    try:
        filters: Filters | None = Filters.from_query(params)
        after = Cursor.decode(params["before"]) if params.get("before") else None
    except FilterError:
        filters, after = None, None

    async def look() -> str:
        if filters is None:
            return list_version([])
        page = await read_page(d.client, filters, after, d.page_size)
        return list_version(page.rows)

    return stream(request, look, params.get("v"))


async def instance_stream(request: Request) -> StreamingResponse:
    """``GET /live/instances/{id}?v=...``: changes of one instance."""
    client = dashboard(request).client
    workflow_id = request.path_params["workflow_id"]

    async def look() -> str:
        try:
            return instance_version(await client.get_workflow_instance(workflow_id))
        except WorkflowNotFound:
            return instance_version(None)

    return stream(request, look, request.query_params.get("v"))
