"""The API's load mix for locust (run by ``python -m bench.api_load``, never on its own
against anything but this machine's loopback).

90% merchant metric reads (today by hour), skewed 80/20 over stores as the chain's traffic
is: 80% of them go to the 20% busy stores (``store.busy``); 9% order status reads; 1%
orders placed. Each user keeps to a fixed rate (``API_LOAD_RATE_PER_USER``), so the offered
load is users x rate and latency is measured at that load, not at saturation.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta

from locust import FastHttpUser, constant_throughput, task

with open(os.environ["API_LOAD_PLAN_FILE"]) as plan_file:  # written by bench.api_load
    PLAN = json.load(plan_file)
RATE_PER_USER = float(os.environ.get("API_LOAD_RATE_PER_USER", "25"))
TODAY = datetime.now(UTC).date()
METRICS_QUERY = (
    f"from={TODAY.isoformat()}&to={(TODAY + timedelta(days=1)).isoformat()}&granularity=hour"
)


class Merchant(FastHttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    def on_start(self):
        self.rng = random.Random()
        self.busy, self.quiet = PLAN["busy_stores"], PLAN["quiet_stores"]
        self.tokens = PLAN["merchant_tokens"]  # store -> its merchant's token
        self.intake = {"Authorization": f"Bearer {PLAN['intake_token']}"}
        self.orders = list(PLAN["order_ids"])

    def store(self) -> int:
        return self.rng.choice(self.busy if self.rng.random() < 0.8 else self.quiet)

    @task(90)
    def metrics(self):
        store = self.store()
        self.client.get(
            f"/stores/{store}/metrics?{METRICS_QUERY}",
            headers={"Authorization": f"Bearer {self.tokens[str(store)]}"},
            name="/stores/[id]/metrics",
        )

    @task(9)
    def status(self):
        self.client.get(
            f"/orders/{self.rng.choice(self.orders)}", headers=self.intake, name="/orders/[id]"
        )

    @task(1)
    def place(self):
        order = {
            "store_id": self.store(),
            "channel": "online",
            "fulfillment": "pickup",
            "items": [
                {
                    "product_id": self.rng.choice(PLAN["products"]),
                    "quantity": self.rng.randint(1, 3),
                }
            ],
        }
        with self.client.post(
            "/orders", json=order, headers=self.intake, name="/orders", catch_response=True
        ) as response:
            if response.status_code == 202:
                self.orders.append(response.json()["order_id"])
                response.success()
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")
