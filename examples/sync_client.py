"""Starting and paying for a checkout from synchronous code (a Django or Flask view, a
script, a management command) with ``WorkflowClient.connect_sync``.

A worker runs the workflows: ``wfe worker --app examples.checkout:workflows --url URL``.
Run this with ``python -m examples.sync_client URL ORDER_ID``.
"""

from __future__ import annotations

import sys

from examples.checkout import Checkout, CheckoutWorkflow
from wfe_core import WorkflowClient


def checkout_and_pay(url: str, order_id: str, cents: int) -> Checkout:
    """Start a checkout, pay for it, and wait for the worker to confirm it."""
    with WorkflowClient.connect_sync(url) as client:  # open it once per process in an app
        handle = client.start_instance(CheckoutWorkflow, Checkout(order_id, cents))
        client.publish_event("payment", order_id, cents)
        return handle.result(timeout=60)  # Checkout, typed


if __name__ == "__main__":
    done = checkout_and_pay(sys.argv[1], sys.argv[2], 1250)
    print(done.order_id, done.status, done.paid_cents)
