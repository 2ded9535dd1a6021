"""An order placed through the API reaches its final status through the real order jobs:
order_enrichment and inventory_windowing run from their entry points (as ``make demo``
runs them), the customer's long poll sees ``accepted``, and the sale lands in
``order_fct`` at the catalog's price."""

from __future__ import annotations

import time

import httpx
import pytest

from api import auth
from connectors import aurora
from stack.jobs import JobProcess
from tests.api_support import token

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_order_placed_through_the_api_is_accepted_by_the_jobs(api_server, props):
    headers = token(props, auth.INTAKE)
    with aurora.connect(props) as conn:
        product, price = conn.execute(
            "SELECT product_id, unit_price FROM product WHERE active ORDER BY product_id LIMIT 1"
        ).fetchone()
    jobs = [JobProcess(job) for job in ("order_enrichment", "inventory_windowing")]
    try:
        with httpx.Client(base_url=api_server, headers=headers, timeout=30) as http:
            placed = http.post(
                "/orders",
                json={
                    "store_id": 77,
                    "channel": "online",
                    "fulfillment": "pickup",
                    "items": [{"product_id": product, "quantity": 2}],
                },
            )
            assert placed.status_code == 202, placed.text
            order_id = placed.json()["order_id"]
            deadline = time.monotonic() + 300
            status = {"status": "pending"}
            while status["status"] == "pending" and time.monotonic() < deadline:
                for job in jobs:
                    assert job.running(), job.log_tail()
                status = http.get(f"/orders/{order_id}", params={"wait": 10}).json()
        assert (status["status"], status["reason"]) == ("accepted", None), status

        def sale():
            with aurora.connect(props) as conn:
                return conn.execute(
                    "SELECT product_id, quantity, total_transaction_amt"
                    " FROM order_fct WHERE order_id = %s",
                    (order_id,),
                ).fetchall()

        deadline = time.monotonic() + 60  # order_fct is flushed on checkpoints
        while not sale() and time.monotonic() < deadline:
            time.sleep(1)
        assert sale() == [(product, 2, 2 * price)]
    finally:
        for job in jobs:
            job.stop()
