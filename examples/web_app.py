"""A web app that starts and pays for checkouts through a :class:`WorkflowClient`.

The app runs no workflow: a worker does (``wfe worker --app examples.checkout:workflows
--url $WFE_URL``). Run the app with any ASGI server, e.g.
``WFE_URL=sqlite:///shop.db uvicorn examples.web_app:app``:

* ``POST /checkouts`` with ``{"order_id": "A-1", "amount_cents": 1250}`` starts one;
* ``POST /checkouts/A-1/payment`` with ``{"cents": 1250}`` publishes its payment;
* ``GET /checkouts/{workflow_id}`` shows its status and data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.checkout import Checkout, CheckoutWorkflow
from wfe_core import WorkflowClient, WorkflowNotFound


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """One client for the whole app: opened at start-up, closed at shutdown."""
    async with WorkflowClient.from_url(os.environ.get("WFE_URL", "sqlite:///wfe.db")) as client:
        app.state.wfe = client
        yield


def _client(request: Request) -> WorkflowClient:
    client: WorkflowClient = request.app.state.wfe
    return client


async def start_checkout(request: Request) -> JSONResponse:
    """Start a checkout workflow; 202 with its id."""
    body = await request.json()
    order = Checkout(order_id=str(body["order_id"]), amount_cents=int(body["amount_cents"]))
    handle = await _client(request).start_instance(
        CheckoutWorkflow, order, reference=order.order_id
    )
    return JSONResponse({"workflow_id": handle.id}, status_code=202)


async def pay(request: Request) -> JSONResponse:
    """Publish the ``payment`` event of an order; 202 with the event's id."""
    body = await request.json()
    event_id = await _client(request).publish_event(
        "payment", request.path_params["order_id"], int(body["cents"])
    )
    return JSONResponse({"event_id": event_id}, status_code=202)


async def show(request: Request) -> JSONResponse:
    """The workflow's status and data; 404 for an unknown id."""
    handle = _client(request).get_handle(request.path_params["workflow_id"], Checkout)
    try:
        instance = await handle.instance()
    except WorkflowNotFound:
        return JSONResponse({"error": "no such checkout"}, status_code=404)
    data: Checkout = instance.data
    return JSONResponse(
        {
            "status": instance.status.value,
            "order_id": data.order_id,
            "paid_cents": data.paid_cents,
            "checkout": data.status,
        }
    )


app = Starlette(
    routes=[
        Route("/checkouts", start_checkout, methods=["POST"]),
        Route("/checkouts/{order_id}/payment", pay, methods=["POST"]),
        Route("/checkouts/{workflow_id}", show, methods=["GET"]),
    ],
    lifespan=lifespan,
)
