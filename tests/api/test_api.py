"""The API against the real local stack (Kinesis emulator, PostgreSQL warehouse and
Aurora, Redis) through HTTP: order intake onto the ``orders`` stream and status with a long
poll, merchant metrics from the warehouse and the live hash with the cache dropped on
correction, stock, rankings, token scope, rate limits, JSON errors, OpenAPI."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api import auth
from api.insights import STORE_HOURS_SQL
from connectors import aurora, aws, kinesis_agg, redis_store
from pizzastream.catalog import Catalog
from pizzastream.config import stream_name
from pizzastream.orders import EnrichedOrder, OrderRules, enrich
from tests.api_support import eventually, metric_row, past_day, publish, token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(api_server):
    with httpx.Client(base_url=api_server, timeout=15) as http:
        yield http


@pytest.fixture(scope="module")
def redis(local_stack):
    return redis_store.client(local_stack)


ORDER = {
    "store_id": 42,
    "channel": "online",
    "fulfillment": "delivery",
    "customer": {"lat": 40.71, "lon": -74.0},
    "items": [{"product_id": 7, "quantity": 2}, {"product_id": 16, "quantity": 1}],
}


# -- orders ---------------------------------------------------------------------------------
def test_an_order_goes_on_the_orders_stream_keyed_by_store_as_the_job_accepts_it(client, props):
    response = client.post("/orders", json=ORDER, headers=token(props, auth.INTAKE))
    assert response.status_code == 202, response.text
    placed = response.json()
    assert (
        placed["status"] == "pending"
        and response.headers["location"] == f"/orders/{placed['order_id']}"
    )
    kinesis = aws.client(props, "kinesis")
    records = [
        (key, data)
        for key, data in aws.read_stream(kinesis, stream_name(props, "orders"))
        if json.loads(data)["order_id"] == placed["order_id"]
    ]
    assert len(records) == 1 and records[0][0] == "42"
    catalog = Catalog.from_rows(*aurora.catalog_rows(props))
    enriched = enrich(
        records[0][1],
        catalog,
        OrderRules.from_properties(props["OrderRules"]),
        int(time.time() * 1000),
    )
    assert isinstance(enriched, EnrichedOrder)
    assert enriched.order_id == placed["order_id"] and enriched.event_id == placed["event_id"]
    assert f"{enriched.total_cents / 100:.2f}" == placed["total"]


def test_status_long_poll_answers_as_soon_as_the_pipeline_decides(client, props, redis):
    headers = token(props, auth.INTAKE)
    order_id = client.post("/orders", json=ORDER, headers=headers).json()["order_id"]
    assert client.get(f"/orders/{order_id}", headers=headers).json()["status"] == "pending"

    def decide():  # what inventory_windowing and the delivery service write
        time.sleep(0.6)
        redis.set(redis_store.order_status_key(order_id), "accepted")
        redis.set(f"delivery:{order_id}", json.dumps({"status": "assigned", "delivery_id": "D1"}))

    threading.Thread(target=decide).start()
    started = time.monotonic()
    response = client.get(f"/orders/{order_id}", params={"wait": 5}, headers=headers)
    waited = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "accepted" and 0.5 < waited < 4.5
    assert eventually(
        lambda: client.get(f"/orders/{order_id}", headers=headers).json()["delivery"]
    ) == {"status": "assigned", "delivery_id": "D1"}


def test_a_rejection_by_the_pipeline_tells_the_customer_to_choose_another_pizza(
    client, props, redis
):
    redis.set(redis_store.order_status_key("S0042-000777"), "rejected:insufficient_inventory")
    body = client.get("/orders/S0042-000777", headers=token(props, auth.INTAKE)).json()
    assert (body["status"], body["reason"]) == ("rejected", "insufficient_inventory")
    assert "choose another pizza" in body["message"]


def test_an_unknown_order_is_404_even_after_waiting(client, props):
    started = time.monotonic()
    response = client.get(
        "/orders/never-placed", params={"wait": 0.5}, headers=token(props, auth.INTAKE)
    )
    assert response.status_code == 404 and time.monotonic() - started >= 0.5
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({**ORDER, "items": [{"product_id": 9999, "quantity": 1}]}, 422, "unknown_product"),
        (
            {**ORDER, "items": [{"product_id": 7, "quantity": 1, "unit_price": 0.01}]},
            422,
            "client_price",
        ),
        ({**ORDER, "store_id": 2001}, 422, "unknown_store"),
        ({**ORDER, "store_id": "42"}, 422, "wrong_type"),
        ({**ORDER, "ts": "2026-01-01T00:00:00Z"}, 400, "service_field"),
        ([ORDER], 400, "not_an_object"),
    ],
)
def test_an_order_breaking_a_rule_is_refused_with_the_rule_and_not_sent(
    client, props, body, status, code
):
    response = client.post("/orders", json=body, headers=token(props, auth.INTAKE))
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_orders_need_the_intake_credential(client, props):
    assert client.post("/orders", json=ORDER).status_code == 401
    merchant = token(props, auth.MERCHANT, [42])
    assert client.post("/orders", json=ORDER, headers=merchant).status_code == 403
    assert client.get("/orders/x", headers=merchant).status_code == 403


# -- merchant insights ----------------------------------------------------------------------
def hourly(client, headers, store_id, start, end, granularity="hour"):
    response = client.get(
        f"/stores/{store_id}/metrics",
        headers=headers,
        params={"from": start.isoformat(), "to": end.isoformat(), "granularity": granularity},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_closed_hours_come_from_the_warehouse_and_days_sum_them(client, props):
    day = past_day(3)
    hours = [day + timedelta(hours=h) for h in (10, 11, 12)]
    publish(
        props,
        hours,
        [
            metric_row(101, hours[0], 3, "36.00", delivery=1),
            metric_row(101, hours[2], 2, "20.50"),
            metric_row(102, hours[0], 9, "99.00"),
        ],
    )
    headers = token(props, auth.MERCHANT, [101])
    body = eventually(
        lambda: (lambda b: b if b["totals"]["orders"] == 5 else None)(
            hourly(client, headers, 101, day, day + timedelta(days=1))
        )
    )
    assert body, "the published hours never showed"
    points = {p["period_start"]: p for p in body["points"]}
    assert len(points) == 24
    assert points[f"{hours[0].isoformat()}Z"] | {} == {
        "period_start": f"{hours[0].isoformat()}Z",
        "orders": 3,
        "revenue": "36.00",
        "items": 3,
        "online_orders": 3,
        "in_store_orders": 0,
        "delivery_orders": 1,
        "avg_order_value": "12.00",
        "source": "warehouse",
    }
    assert points[f"{hours[1].isoformat()}Z"]["orders"] == 0
    days = hourly(client, headers, 101, day, day + timedelta(days=2), "day")
    assert [(p["orders"], p["revenue"]) for p in days["points"]] == [(5, "56.50"), (0, "0.00")]


def test_a_closed_hour_is_served_from_cache_until_a_correction_is_published(client, props):
    day = past_day(4)
    hour = day + timedelta(hours=15)
    headers = token(props, auth.MERCHANT, [103])
    publish(props, [hour], [metric_row(103, hour, 4, "40.00")])

    def revenue():
        return hourly(client, headers, 103, hour, hour + timedelta(hours=1))["totals"]["revenue"]

    assert eventually(lambda: revenue() == "40.00")
    # A change without a load (never done by the pipeline) is not seen: the hour is cached.
    with aurora.connect(props, "Warehouse") as conn:
        conn.execute("UPDATE hourly_store_metrics SET revenue = 1 WHERE store_id = 103")
    time.sleep(1)
    assert revenue() == "40.00"
    # A correction (a load, logged in metrics_publication) replaces it.
    publish(props, [hour], [metric_row(103, hour, 5, "52.25")])
    assert eventually(lambda: revenue() == "52.25", timeout_s=5)


def test_the_open_hour_is_live_from_redis_minute_by_minute(client, props, redis):
    now = datetime.now(UTC).replace(tzinfo=None)
    hour = now.replace(minute=0, second=0, microsecond=0)
    redis.hset(redis_store.live_key(104, hour), mapping={"00": "2/25.00", "01": "1/12.50"})
    headers = token(props, auth.MERCHANT, [104])
    body = eventually(
        lambda: (lambda b: b if b["totals"]["orders"] == 3 else None)(
            hourly(client, headers, 104, hour - timedelta(hours=1), hour + timedelta(hours=1))
        )
    )
    assert body and body["points"][-1]["source"] == "live"
    assert body["points"][-1]["revenue"] == "37.50"
    live = client.get("/stores/104/live", headers=headers).json()
    assert live["minutes"] == [
        {"minute": 0, "orders": 2, "revenue": "25.00"},
        {"minute": 1, "orders": 1, "revenue": "12.50"},
    ]


def test_stock_names_each_ingredient_and_flags_low_ones(client, props, redis):
    with aurora.connect(props) as conn:
        (first, name, safety), (second, _, _) = conn.execute(
            "SELECT ingredient_id, name, safety_stock FROM ingredient"
            " ORDER BY ingredient_id LIMIT 2"
        ).fetchall()
    redis.hset(redis_store.inventory_key(105), mapping={first: safety, second: safety + 1000})
    body = client.get("/stores/105/stock", headers=token(props, auth.MERCHANT, [105])).json()
    assert [(i["ingredient_id"], i["on_hand"], i["low"]) for i in body["ingredients"]] == [
        (first, safety, True),
        (second, safety + 1000, False),
    ]
    assert body["ingredients"][0]["name"] == name


def test_rankings_cover_the_merchants_stores_only(client, props):
    day = past_day(5)
    hour = day + timedelta(hours=12)
    publish(
        props,
        [hour],
        [
            metric_row(106, hour, 1, "10.00"),
            metric_row(107, hour, 5, "30.00"),
            metric_row(108, hour, 9, "90.00"),
        ],
    )
    headers = token(props, auth.MERCHANT, [106, 107], subject="m-106")

    def ranking():
        response = client.get(
            "/rankings",
            headers=headers,
            params={
                "from": day.date().isoformat(),
                "to": (day + timedelta(days=1)).date().isoformat(),
            },
        )
        return response.json()["stores"]

    stores = eventually(lambda: (lambda r: r if r[0]["revenue"] != "0.00" else None)(ranking()))
    assert [(s["rank"], s["store_id"], s["revenue"]) for s in stores] == [
        (1, 107, "30.00"),
        (2, 106, "10.00"),
    ]
    by_orders = client.get(
        "/rankings",
        headers=headers,
        params={
            "from": day.date().isoformat(),
            "to": (day + timedelta(days=1)).date().isoformat(),
            "by": "orders",
        },
    ).json()
    assert [s["store_id"] for s in by_orders["stores"]] == [107, 106]


def test_the_warehouse_read_goes_through_the_store_hour_index(props):
    with aurora.connect(props, "Warehouse") as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute("EXPLAIN " + STORE_HOURS_SQL, ([101], past_day(3), past_day(2)))
        )
    assert "hourly_store_metrics_pkey" in plan and "Seq Scan" not in plan


# -- scope, limits, errors ------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/stores/{s}/metrics?from=2026-11-01&to=2026-11-02", "/stores/{s}/stock", "/stores/{s}/live"],
)
def test_a_merchant_never_reads_another_merchants_store(client, props, path):
    mine = token(props, auth.MERCHANT, [110, 111], subject="m-a")
    assert client.get(path.format(s=110), headers=mine).status_code == 200
    response = client.get(path.format(s=112), headers=mine)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "store 112 is not one of this merchant's stores"
    assert client.get(path.format(s=110), headers=token(props, auth.INTAKE)).status_code == 403
    assert client.get(path.format(s=110)).status_code == 401
    forged = {
        "Authorization": "Bearer "
        + auth.issue("not-the-servers-secret-but-32-bytes", "m-a", auth.MERCHANT, [112])
    }
    assert client.get(path.format(s=112), headers=forged).status_code == 401
    expired = token(props, auth.MERCHANT, [110], ttl_s=1, now=time.time() - 10)
    assert (
        client.get(path.format(s=110), headers=expired).json()["error"]["message"]
        == "token expired"
    )


def test_each_token_is_rate_limited_on_its_own(client, props):
    group = props["Api"]
    burst = int(float(group["merchant_burst"]))
    greedy = token(props, auth.MERCHANT, [113])
    codes = [client.get("/stores/113/stock", headers=greedy).status_code for _ in range(burst // 2)]
    assert codes == [200] * (burst // 2)
    # Then faster than the refill rate (several at once, so a slow machine cannot hide it).
    with ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            codes = list(
                pool.map(
                    lambda _: client.get("/stores/113/stock", headers=greedy).status_code,
                    range(burst),
                )
            )
            if 429 in codes:
                break
    assert 429 in codes and set(codes) <= {200, 429}
    limited = client.get("/stores/113/stock", headers=greedy)
    if limited.status_code == 429:
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
    assert (
        client.get("/stores/113/stock", headers=token(props, auth.MERCHANT, [113])).status_code
        == 200
    )


@pytest.mark.parametrize(
    "path, status",
    [
        ("/stores/114/metrics?from=nonsense&to=2026-11-02", 400),
        ("/stores/114/metrics?from=2026-11-02&to=2026-11-01", 400),
        ("/stores/114/metrics?from=2026-01-01&to=2026-06-01", 400),
        ("/stores/114/metrics?from=2026-11-01&to=2026-11-02&granularity=week", 400),
        ("/stores/114/metrics?to=2026-11-02", 400),
        ("/stores/114/metrics?from=%00%ff&to=%F0%9F%8D%95", 400),
        ("/stores/0/metrics?from=2026-11-01&to=2026-11-02", 404),
        ("/stores/99999999999999999999999/stock", 404),
        ("/stores/abc/stock", 404),
        ("/rankings?from=2026-11-01&to=2026-11-02&by=items", 400),
        ("/orders/x?wait=-1", 400),
        ("/orders/x?wait=lots", 400),
        ("/orders/x?wait=3600", 400),
        ("/nowhere", 404),
    ],
)
def test_bad_input_is_a_json_4xx_never_a_500(client, props, path, status):
    headers = token(
        props,
        auth.INTAKE if path.startswith("/orders") else auth.MERCHANT,
        [] if path.startswith("/orders") else [114],
    )
    response = client.get(path, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["message"]


def test_wrong_method_and_huge_body_are_json_4xx(client, props):
    response = client.delete("/orders/x", headers=token(props, auth.INTAKE))
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    huge = client.post(
        "/orders", content=b"{" + b" " * 100_000 + b"}", headers=token(props, auth.INTAKE)
    )
    assert huge.status_code == 400 and huge.json()["error"]["code"] == "oversize"


def test_openapi_schema_is_published(client):
    schema = client.get("/schema/openapi.json").json()
    assert {
        "/orders",
        "/orders/{order_id}",
        "/stores/{store_id}/metrics",
        "/stores/{store_id}/stock",
        "/stores/{store_id}/live",
        "/rankings",
    } <= set(schema["paths"])
    assert schema["info"]["title"] == "pizzastream API"


def test_a_ranking_too_large_to_add_up_is_refused(client, props):
    headers = token(props, auth.MERCHANT, range(1, 1001))
    response = client.get(
        "/rankings", headers=headers, params={"from": "2026-01-01", "to": "2026-01-31"}
    )
    assert response.status_code == 400 and "narrow the range" in response.json()["error"]["message"]


def _kinesis_records(kinesis, stream: str) -> list[list[tuple[str, bytes]]]:
    """The user records of each record Kinesis holds (an aggregate is one record)."""
    return [
        kinesis_agg.user_records(key, data)
        for key, data in aws.read_kinesis_records(kinesis, stream)
    ]


def test_orders_arriving_together_share_one_put_records_call(props):
    import asyncio

    from api.intake import OrdersStream, StreamRefused

    kinesis = aws.client(props, "kinesis")
    stream = OrdersStream(kinesis, stream_name(props, "orders"), max_in_flight=1)
    keys = [f"batch-test-{i}" for i in range(50)]

    async def put_all(target):
        return await asyncio.gather(
            *(
                target.put(json.dumps({"k": k}).encode(), str(i % 7 + 1))
                for i, k in enumerate(keys)
            ),
            return_exceptions=True,
        )

    shards = asyncio.run(put_all(stream))
    assert all(isinstance(shard, str) for shard in shards)
    assert stream.calls == 2  # the first alone, the 49 that queued meanwhile together
    on_stream = {
        json.loads(data).get("k")
        for _, data in aws.read_stream(kinesis, stream_name(props, "orders"))
    }
    assert set(keys) <= on_stream
    # The 49 of seven stores went as seven KPL aggregates: one store's orders share a shard.
    for store in range(1, 8):
        assert len({shard for i, shard in enumerate(shards) if i % 7 + 1 == store}) == 1
    carrying = [
        len(users)
        for users in _kinesis_records(kinesis, stream_name(props, "orders"))
        if any(json.loads(data).get("k") in keys for _, data in users)
    ]
    assert sorted(carrying) == [1] + [7] * 7
    missing = OrdersStream(kinesis, "no-such-stream")
    failures = asyncio.run(put_all(missing))
    assert all(isinstance(f, StreamRefused) for f in failures)
