"""The read side's plain logic, no server: query ranges, live minutes, day roll-ups and
rankings, tokens and rate limits, order preparation at intake, the closed-hour cache."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from api import auth
from api.figures import (
    LIVE,
    NO_SALES,
    WAREHOUSE,
    BadRange,
    Figures,
    HourFigures,
    from_warehouse,
    hour_range,
    parse_live_hash,
    rank,
    series,
    totals,
)
from api.insights import ClosedHours
from api.intake import OrderRefused, prepare, status_document
from pizzastream.catalog import Catalog
from pizzastream.orders import EnrichedOrder, OrderRules, enrich, parse_event_time

RULES = OrderRules(
    max_quantity=20, max_lines=25, max_record_bytes=8192, max_future_seconds=300, max_age_hours=48
)
CATALOG = Catalog.from_reference_data()
NOW_MS = parse_event_time("2026-11-24T20:00:00Z")
SECRET = "a-test-secret-of-at-least-32-bytes!"


# -- ranges ---------------------------------------------------------------------------------
def test_hour_range_rounds_to_whole_periods_and_reads_dates_and_offsets():
    assert hour_range("2026-11-24", "2026-11-25", "hour") == (
        datetime(2026, 11, 24),
        datetime(2026, 11, 25),
    )
    assert hour_range("2026-11-24T10:30:00Z", "2026-11-24T12:10", "hour") == (
        datetime(2026, 11, 24, 10),
        datetime(2026, 11, 24, 13),
    )
    assert hour_range("2026-11-24T10:00:00+02:00", "2026-11-24T09:00:00Z", "hour") == (
        datetime(2026, 11, 24, 8),
        datetime(2026, 11, 24, 9),
    )
    assert hour_range("2026-11-24T10:00", "2026-11-25T01:00", "day") == (
        datetime(2026, 11, 24),
        datetime(2026, 11, 26),
    )


@pytest.mark.parametrize(
    "start, end, granularity, message",
    [
        ("yesterday", "2026-11-25", "hour", "from='yesterday'"),
        ("2026-11-24", "2026-13-01", "hour", "to="),
        ("2026-11-25", "2026-11-24", "hour", "after"),
        ("2026-11-24", "2026-11-24", "day", "after"),
        ("2026-01-01", "2026-03-01", "hour", "at most 31 days"),
        ("2024-01-01", "2026-03-01", "day", "at most 366 days"),
        ("2026-11-24", "2026-11-25", "minute", "granularity"),
    ],
)
def test_bad_ranges_are_refused_with_a_reason(start, end, granularity, message):
    with pytest.raises(BadRange, match=message):
        hour_range(start, end, granularity)


# -- figures --------------------------------------------------------------------------------
def test_live_hash_sums_minutes_and_skips_fields_the_job_never_writes():
    live = parse_live_hash(
        {"00": "2/25.50", "07": "1/9.99", "99": "1/1.00", "x": "1/1", "08": "garbage"}
    )
    assert live.minutes == {0: (2, 2550), 7: (1, 999)}
    assert live.figures == Figures(3, 3549, None, None, None, None)
    assert parse_live_hash({}).figures == NO_SALES


def test_day_series_sums_hours_and_marks_a_day_with_a_live_hour():
    h = datetime(2026, 11, 24, 22)
    row = from_warehouse(4, 9, Decimal("40.00"), 3, 1, 2)
    hours = [
        HourFigures(h, row, WAREHOUSE),
        HourFigures(h + timedelta(hours=1), row, WAREHOUSE),
        HourFigures(h + timedelta(hours=2), Figures(1, 500, None, None, None, None), LIVE),
    ]
    days = series(hours, "day")
    assert [
        (d["period_start"], d["orders"], d["revenue"], d["items"], d["source"]) for d in days
    ] == [
        ("2026-11-24T00:00:00Z", 8, "80.00", 18, WAREHOUSE),
        ("2026-11-25T00:00:00Z", 1, "5.00", None, LIVE),
    ]
    assert days[0]["avg_order_value"] == "10.00"
    assert totals(hours).revenue_cents == 8500


def test_ranking_is_by_the_chosen_figure_with_shared_ranks_for_ties():
    ranking = rank({3: Figures(5, 1000), 1: Figures(2, 3000), 2: Figures(5, 1000)}, "orders")
    assert [(r["rank"], r["store_id"]) for r in ranking] == [(1, 2), (1, 3), (3, 1)]
    assert [r["store_id"] for r in rank({3: Figures(5, 1000), 1: Figures(2, 3000)}, "revenue")] == [
        1,
        3,
    ]
    with pytest.raises(BadRange):
        rank({}, "items")


# -- the closed-hour cache ------------------------------------------------------------------
def test_a_reload_of_an_hour_drops_it_and_a_read_that_raced_it_is_not_cached():
    cache = ClosedHours(max_entries=10)
    hour = datetime(2026, 11, 24, 10)
    cache.loaded(hour)
    cache.put(hour, 1, Figures(1, 100), cache.generation(hour))
    assert cache.get(hour, 1) == Figures(1, 100)
    before = cache.generation(hour)
    cache.loaded(hour)  # a correction
    assert cache.get(hour, 1) is None
    cache.put(hour, 1, Figures(1, 100), before)  # read before the correction: dropped
    assert cache.get(hour, 1) is None


def test_the_cache_is_bounded_by_dropping_the_oldest_hours():
    cache = ClosedHours(max_entries=3)
    hours = [datetime(2026, 11, 24, h) for h in range(3)]
    for hour in hours:
        cache.loaded(hour)
        cache.put(hour, 1, Figures(1, 1), 0)
        cache.put(hour, 2, Figures(1, 1), 0)
    assert cache.get(hours[0], 1) is None and cache.get(hours[2], 2) is not None


# -- tokens and limits ----------------------------------------------------------------------
def test_a_merchant_token_carries_its_stores_and_only_them():
    verifier = auth.Verifier(SECRET)
    principal = verifier.principal("Bearer " + auth.issue(SECRET, "m1", auth.MERCHANT, [3, 1]))
    assert principal.stores == {1, 3} and principal.role == auth.MERCHANT
    principal.require_store(3)
    with pytest.raises(auth.Forbidden, match="store 2"):
        principal.require_store(2)
    with pytest.raises(auth.Forbidden, match="intake token"):
        principal.require_role(auth.INTAKE)


def test_an_intake_token_reads_no_store():
    verifier = auth.Verifier(SECRET)
    principal = verifier.principal("Bearer " + auth.issue(SECRET, "app", auth.INTAKE))
    with pytest.raises(auth.Forbidden, match="merchant token"):
        principal.require_store(1)


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "missing"),
        ("Basic abc", "Bearer"),
        ("Bearer not.a.jwt", "invalid token"),
        (
            "Bearer " + auth.issue("another-secret-of-at-least-32-bytes", "m1", auth.MERCHANT, [1]),
            "invalid token",
        ),
        (
            "Bearer "
            + auth.issue(SECRET, "m1", auth.MERCHANT, [1], ttl_s=10, now=time.time() - 60),
            "expired",
        ),
    ],
)
def test_unusable_credentials_are_refused(header, message):
    with pytest.raises(auth.Unauthorized, match=message):
        auth.Verifier(SECRET).principal(header)


def test_a_token_cannot_be_widened_without_the_secret():
    token = auth.issue(SECRET, "m1", auth.MERCHANT, [1])
    header, payload, signature = token.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["stores"] = [1, 2, 3]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(auth.Unauthorized):
        auth.Verifier(SECRET).principal(f"Bearer {header}.{forged}.{signature}")


def test_rate_limit_is_a_token_bucket_per_token():
    limiter = auth.RateLimiter(rate=10, burst=3)
    assert [limiter.admit("a", now=0.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.admit("a", now=0.0) == pytest.approx(0.1)
    assert limiter.admit("b", now=0.0) == 0  # another token has its own bucket
    assert limiter.admit("a", now=0.1) == 0  # refilled by rate x elapsed


# -- intake ---------------------------------------------------------------------------------
def order_body(**changes) -> bytes:
    order = {
        "store_id": 42,
        "channel": "online",
        "fulfillment": "delivery",
        "customer": {"lat": 40.71, "lon": -74.0},
        "items": [{"product_id": 7, "quantity": 2}],
    }
    order.update(changes)
    return json.dumps(order).encode()


def test_intake_sends_exactly_what_the_job_accepts():
    raw, order = prepare(order_body(), CATALOG, RULES, NOW_MS)
    record = json.loads(raw)
    assert record["ts"] == "2026-11-24T20:00:00.000Z" and record["order_id"] == order.order_id
    again = enrich(raw, CATALOG, RULES, NOW_MS)  # what order_enrichment will do with it
    assert isinstance(again, EnrichedOrder) and again == order
    assert order.total_cents == 2 * CATALOG.product(7).unit_price_cents


@pytest.mark.parametrize(
    "body, status, reason",
    [
        (order_body(items=[{"product_id": 9999, "quantity": 1}]), 422, "unknown_product"),
        (order_body(items=[{"product_id": 7, "quantity": 1, "price": 1}]), 422, "client_price"),
        (order_body(items=[]), 422, "no_items"),
        (order_body(store_id=0), 422, "unknown_store"),
        (order_body(customer=None), 422, "missing_location"),
        (order_body(order_id="mine"), 400, "service_field"),
        (b"{not json", 400, "malformed_json"),
        (b"[1, 2]", 400, "not_an_object"),
        (b"\xff\xfe", 400, "not_utf8"),
        (b" " * 9000, 400, "oversize"),
    ],
)
def test_intake_refuses_with_the_rules_reason(body, status, reason):
    with pytest.raises(OrderRefused) as refused:
        prepare(body, CATALOG, RULES, NOW_MS)
    assert (refused.value.http_status, refused.value.rejection.reason) == (status, reason)


def test_status_document_says_what_to_show_the_customer():
    assert status_document("o1", None, None)["status"] == "pending"
    rejected = status_document("o1", "rejected:insufficient_inventory", None)
    assert (rejected["status"], rejected["reason"]) == ("rejected", "insufficient_inventory")
    assert "choose another pizza" in rejected["message"]
    delivered = status_document("o1", "accepted", json.dumps({"status": "assigned"}))
    assert delivered["delivery"] == {"status": "assigned"}


@pytest.mark.parametrize("cents", [0, 1, 9, 10, 99, 100, 1250, 123456789, -5, -1250])
def test_money_is_exactly_the_numeric_two_decimal_text(cents):
    from api.figures import money
    from pizzastream.catalog import from_cents

    assert money(cents) == str(from_cents(cents))
