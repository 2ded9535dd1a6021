"""The API's part of ``make demo`` (called from ``stack/demo.py``): start it beside the jobs,
place one order through it while the jobs run and show the decision coming back, and at
the end print its URL, tokens and what to try. The API stays up after the demo
(``make stack-down`` or ``python -m api stop`` stops it)."""

from __future__ import annotations

import time

import httpx

from api import __main__ as cli
from api import auth
from connectors import aurora
from pizzastream.settings import ApiSettings

DEMO_MERCHANT_STORES = 20


class ReadSide:
    def __init__(self, props: dict, base_url: str):
        self._props = props
        self.base_url = base_url
        secret = ApiSettings.from_group(props["Api"]).token_secret
        self.intake_token = auth.issue(secret, "demo-app", auth.INTAKE)
        self._secret = secret

    @classmethod
    def start(cls, props: dict) -> ReadSide:
        cli.stop()  # a server from an earlier demo holds caches of data reset since
        base_url = cli.start(props)
        print(f"demo: API up on {base_url} (log in .stack/logs/api.log)")
        return cls(props, base_url)

    def place_sample_order(self) -> None:
        """One pickup order through ``POST /orders``, then its status by long poll."""
        with aurora.connect(self._props) as conn:
            product = conn.execute(
                "SELECT product_id FROM product WHERE active"  # type: ignore[index]  # the demo's catalog has active products
                " ORDER BY product_id LIMIT 1"
            ).fetchone()[0]
        headers = {"Authorization": f"Bearer {self.intake_token}"}
        order = {
            "store_id": 1,
            "channel": "online",
            "fulfillment": "pickup",
            "items": [{"product_id": product, "quantity": 1}],
        }
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30) as http:
            placed = http.post("/orders", json=order)
            placed.raise_for_status()
            order_id = placed.json()["order_id"]
            deadline = time.monotonic() + 60
            status = {"status": "pending"}
            while status["status"] == "pending" and time.monotonic() < deadline:
                status = http.get(f"/orders/{order_id}", params={"wait": 10}).json()
        print(
            f"demo: order {order_id} placed through the API -> {status['status']}"
            f"{':' + status['reason'] if status.get('reason') else ''}: {status['message']}"
        )

    def print_access(self, store_id: int | None = None) -> None:
        """URL, a merchant token for the busiest store and its neighbours, the intake
        token, and the commands to try."""
        with aurora.connect(self._props, "Warehouse") as conn:
            row = conn.execute(
                "SELECT store_id, window_start::date FROM hourly_store_metrics"
                " GROUP BY 1, 2 ORDER BY sum(revenue) DESC LIMIT 1"
            ).fetchone()
        store_id, day = row if row else (store_id or 1, None)
        first = max(1, store_id - DEMO_MERCHANT_STORES // 2)
        stores = range(first, min(2001, first + DEMO_MERCHANT_STORES))
        merchant = auth.issue(self._secret, "demo-merchant", auth.MERCHANT, stores)
        day_text = day.isoformat() if day else time.strftime("%Y-%m-%d", time.gmtime())
        url = self.base_url
        print(f"""
== the API (python -m api; docs/read_side.md) ==
  URL        {url}   (OpenAPI: {url}/schema/openapi.json, Swagger UI: {url}/schema/swagger)
  dashboard  {url}/dashboard#token={merchant}&store={store_id}&day={day_text}
  tokens (a merchant owning stores {stores.start}-{stores.stop - 1}; the order-taking app):
    export MERCHANT={merchant}
    export INTAKE={self.intake_token}
  try:
    curl -s -X POST {url}/orders -H "Authorization: Bearer $INTAKE" \\
      -d '{{"store_id": 1, "channel": "online", "fulfillment": "pickup", "items": [{{"product_id": 1, "quantity": 1}}]}}'
    curl -s "{url}/orders/<order_id>?wait=5" -H "Authorization: Bearer $INTAKE"
    curl -s "{url}/stores/{store_id}/metrics?from={day_text}&to={day_text}T23:59:59Z" -H "Authorization: Bearer $MERCHANT"
    curl -s "{url}/rankings?from={day_text}&to={day_text}T23:59:59Z" -H "Authorization: Bearer $MERCHANT"
  (the jobs stop with the demo: an order placed now stays "pending" until order_enrichment
  and inventory_windowing run again)""")
