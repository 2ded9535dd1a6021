"""Order validation and enrichment: one concrete record per rejection reason, catalog
pricing of valid orders, and fuzzing that ``enrich`` never raises."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pizzastream.catalog import Catalog
from pizzastream.orders import (
    PRICE_FIELDS,
    REQUIRED_FIELDS,
    EnrichedOrder,
    OrderRules,
    OrderStatus,
    Reason,
    Rejection,
    accept,
    enrich,
    epoch_ms,
    format_event_time,
    parse_event_time,
)

RULES = OrderRules(
    max_quantity=20, max_lines=25, max_record_bytes=8192, max_future_seconds=300, max_age_hours=48
)
NOW_MS = epoch_ms(datetime.fromisoformat("2026-11-24T20:00:00Z"))
CATALOG = Catalog.from_reference_data()
INACTIVE_ID = next(p.product_id for p in CATALOG.products() if not p.active)
UNKNOWN_ID = 9999


def valid_order(**changes) -> dict:
    order = {
        "event_id": "2f1c7e1e-4d0c-4a55-9f54-3f6f0c8e2b11",
        "order_id": "S0042-000123",
        "store_id": 42,
        "channel": "online",
        "fulfillment": "delivery",
        "ts": "2026-11-24T18:05:31.123Z",
        "customer": {"lat": 40.71, "lon": -74.0},
        "items": [{"product_id": 7, "quantity": 2}, {"product_id": 16, "quantity": 1}],
    }
    order.update(changes)
    return order


def with_item(index: int = 0, **changes) -> dict:
    order = valid_order()
    order["items"][index].update(changes)
    return order


def without(*path: str | int) -> dict:
    order = valid_order()
    parent = order
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return order


def encode(order: object) -> bytes:
    return json.dumps(order).encode()


def run(record: object, now_ms: int = NOW_MS) -> EnrichedOrder | Rejection:
    raw = bytes(record) if isinstance(record, (bytes, bytearray)) else encode(record)
    return enrich(raw, CATALOG, RULES, now_ms)


def ts(offset_ms: int) -> str:
    return format_event_time(NOW_MS + offset_ms)


HOUR_MS = 3_600_000

# (reason, record, a word the detail must contain)
CASES = [
    (Reason.OVERSIZE, valid_order(note="x" * 8192), "8192"),
    (Reason.NOT_UTF8, b'{"event_id": "caf\xe9"}', "UTF-8"),
    (Reason.NOT_UTF8, bytearray(b"\xff\xfe"), "UTF-8"),
    (Reason.NOT_UTF8, b"\xf3\x89\x9a\xc2" + b"\x00" * 20, "KPL aggregated record"),
    (Reason.MALFORMED_JSON, b'{"event_id": "e1", ', ""),
    (Reason.MALFORMED_JSON, b"", ""),
    (Reason.MALFORMED_JSON, encode(valid_order())[:-1], ""),
    (
        Reason.MALFORMED_JSON,
        encode(valid_order(customer={"lat": 1, "lon": 2})).replace(b"2}", b"NaN}"),
        "NaN",
    ),
    (Reason.MALFORMED_JSON, b"[" * 4000 + b"]" * 4000, "recursion"),
    (Reason.NOT_AN_OBJECT, b"[1, 2]", "array"),
    (Reason.NOT_AN_OBJECT, b'"order"', "string"),
    (Reason.NOT_AN_OBJECT, b"null", "null"),
    *((Reason.MISSING_FIELD, without(name), name) for name in REQUIRED_FIELDS),
    (Reason.MISSING_FIELD, valid_order(store_id=None), "store_id"),
    (Reason.MISSING_FIELD, without("items", 1, "quantity"), "items[1].quantity"),
    (Reason.MISSING_FIELD, without("items", 0, "product_id"), "items[0].product_id"),
    (Reason.MISSING_LOCATION, without("customer"), "customer"),
    (Reason.MISSING_LOCATION, valid_order(customer=None), "customer"),
    (Reason.WRONG_TYPE, valid_order(store_id="42"), "store_id"),
    (Reason.WRONG_TYPE, valid_order(store_id=True), "store_id"),
    (Reason.WRONG_TYPE, valid_order(store_id=42.0), "store_id"),
    (Reason.WRONG_TYPE, valid_order(event_id=""), "event_id"),
    (Reason.WRONG_TYPE, valid_order(event_id="e" * 65), "event_id"),
    (Reason.WRONG_TYPE, valid_order(order_id=123), "order_id"),
    (Reason.WRONG_TYPE, valid_order(channel=1), "channel"),
    (Reason.WRONG_TYPE, valid_order(ts=1795543531123), "ts"),
    (Reason.WRONG_TYPE, valid_order(items={"product_id": 7, "quantity": 1}), "items"),
    (Reason.WRONG_TYPE, valid_order(items=[7]), "items[0]"),
    (Reason.WRONG_TYPE, with_item(quantity="2"), "items[0].quantity"),
    (Reason.WRONG_TYPE, with_item(1, quantity=2.0), "items[1].quantity"),
    (Reason.WRONG_TYPE, with_item(product_id=False), "items[0].product_id"),
    (Reason.UNKNOWN_STORE, valid_order(store_id=0), "0"),
    (Reason.UNKNOWN_STORE, valid_order(store_id=2001), "2001"),
    (Reason.UNKNOWN_STORE, valid_order(store_id=-42), "-42"),
    (Reason.INVALID_CHANNEL, valid_order(channel="phone"), "phone"),
    (Reason.INVALID_CHANNEL, valid_order(channel="Online"), "Online"),
    (Reason.INVALID_FULFILLMENT, valid_order(fulfillment="drone"), "drone"),
    (Reason.INVALID_TIMESTAMP, valid_order(ts="yesterday"), "yesterday"),
    (Reason.INVALID_TIMESTAMP, valid_order(ts="2026-11-24T18:05:31"), "2026"),
    (Reason.INVALID_TIMESTAMP, valid_order(ts="2026-11-24T18:05:31+01:00"), "2026"),
    (Reason.INVALID_TIMESTAMP, valid_order(ts="2026-13-01T00:00:00Z"), "2026"),
    (Reason.FUTURE_EVENT_TIME, valid_order(ts=ts(300_001)), "300s"),
    (Reason.STALE_EVENT_TIME, valid_order(ts=ts(-48 * HOUR_MS - 1)), "48h"),
    (Reason.NO_ITEMS, valid_order(items=[]), "0 lines"),
    (Reason.NO_ITEMS, valid_order(items=[{"product_id": 7, "quantity": 1}] * 26), "26 lines"),
    (Reason.INVALID_QUANTITY, with_item(quantity=0), "items[0].quantity"),
    (Reason.INVALID_QUANTITY, with_item(1, quantity=-1), "items[1].quantity"),
    (Reason.INVALID_QUANTITY, with_item(quantity=21), "21"),
    (Reason.INVALID_QUANTITY, with_item(quantity=10**30), "items[0].quantity"),
    *((Reason.CLIENT_PRICE, valid_order(**{name: 0.01}), name) for name in sorted(PRICE_FIELDS)),
    *((Reason.CLIENT_PRICE, with_item(1, **{name: 0}), name) for name in sorted(PRICE_FIELDS)),
    (Reason.UNKNOWN_PRODUCT, with_item(1, product_id=UNKNOWN_ID), str(UNKNOWN_ID)),
    (Reason.UNKNOWN_PRODUCT, with_item(product_id=-7), "-7"),
    (Reason.INACTIVE_PRODUCT, with_item(product_id=INACTIVE_ID), str(INACTIVE_ID)),
    (Reason.DUPLICATE_PRODUCT, with_item(1, product_id=7), "7"),
    (Reason.INVALID_LOCATION, valid_order(customer={"lat": 90.5, "lon": -74.0}), "90.5"),
    (Reason.INVALID_LOCATION, valid_order(customer={"lat": 40.7, "lon": -180.5}), "-180.5"),
    (Reason.INVALID_LOCATION, valid_order(customer={"lat": "40.7", "lon": -74.0}), "40.7"),
    (Reason.INVALID_LOCATION, valid_order(customer={"lat": True, "lon": -74.0}), "true"),
    (Reason.INVALID_LOCATION, valid_order(customer={"lon": -74.0}), "null"),
    (Reason.INVALID_LOCATION, valid_order(customer="12 Main St"), "null"),
    (
        Reason.INVALID_LOCATION,
        encode(valid_order(customer={"lat": 1, "lon": 0})).replace(b'"lat": 1,', b'"lat": 1e400,'),
        "Infinity",
    ),
]


@pytest.mark.parametrize(
    ("reason", "record", "detail_word"),
    CASES,
    ids=[f"{case[0].value}-{i}" for i, case in enumerate(CASES)],
)
def test_each_defect_is_rejected_with_its_reason(reason, record, detail_word):
    result = run(record)
    assert isinstance(result, Rejection), result
    assert (result.reason, type(result.reason)) == (reason.value, str)
    assert detail_word in result.detail and result.detail


def test_every_reason_has_a_concrete_case():
    assert {case[0] for case in CASES} == set(Reason)


@pytest.mark.parametrize("record", [None, "a str", 42, ["list"]])
def test_records_that_are_not_bytes_are_rejected_not_raised(record):
    assert enrich(record, CATALOG, RULES, NOW_MS).reason == Reason.NOT_UTF8


def test_limits_themselves_are_allowed():
    at_limits = valid_order(ts=ts(300_000), items=[{"product_id": 7, "quantity": 20}])
    assert isinstance(run(at_limits), EnrichedOrder)
    assert isinstance(run(valid_order(ts=ts(-48 * HOUR_MS))), EnrichedOrder)
    many_lines = [
        {"product_id": p.product_id, "quantity": 1} for p in CATALOG.products() if p.active
    ]
    assert isinstance(run(valid_order(items=many_lines)), EnrichedOrder)
    padded = encode(valid_order(note=""))
    exact = padded.replace(b'"note": ""', b'"note": "' + b"x" * (8192 - len(padded)) + b'"')
    assert len(exact) == 8192 and isinstance(run(exact), EnrichedOrder)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (valid_order(store_id=0, channel="phone"), Reason.UNKNOWN_STORE),
        (valid_order(store_id="42", items=[]), Reason.WRONG_TYPE),
        (valid_order(ts="soon", items=[]), Reason.INVALID_TIMESTAMP),
        (valid_order(total=1, items=[{"product_id": 7, "quantity": 0}]), Reason.INVALID_QUANTITY),
        (
            valid_order(
                items=[
                    {"product_id": 7, "quantity": 1},
                    {"product_id": 7, "quantity": 1},
                    {"product_id": UNKNOWN_ID, "quantity": 1},
                ]
            ),
            Reason.UNKNOWN_PRODUCT,
        ),
        (valid_order(fulfillment="drone", customer=None), Reason.INVALID_FULFILLMENT),
    ],
)
def test_the_first_broken_rule_wins(record, reason):
    assert run(record).reason == reason


def test_rejection_keeps_the_ids_it_can_read():
    rejected = run(valid_order(channel="phone"))
    assert (rejected.event_id, rejected.order_id, rejected.store_id) == (
        "2f1c7e1e-4d0c-4a55-9f54-3f6f0c8e2b11",
        "S0042-000123",
        42,
    )
    wrong_ids = run(valid_order(event_id=7, order_id="", store_id="42"))
    assert (wrong_ids.event_id, wrong_ids.order_id, wrong_ids.store_id) == (None, None, None)
    assert run(b"not json").order_id is None


@pytest.mark.parametrize("reason", list(Reason))
def test_rejection_status_follows_the_contract(reason):
    expected = (
        OrderStatus.REJECTED_UNKNOWN_PRODUCT
        if reason in (Reason.UNKNOWN_PRODUCT, Reason.INACTIVE_PRODUCT)
        else OrderStatus.REJECTED_INVALID
    )
    assert Rejection(reason.value, "detail").status() == expected.value


def test_valid_delivery_is_priced_from_the_catalog():
    result = run(valid_order())
    assert result == EnrichedOrder(
        event_id="2f1c7e1e-4d0c-4a55-9f54-3f6f0c8e2b11",
        order_id="S0042-000123",
        store_id=42,
        channel="online",
        fulfillment="delivery",
        ts_ms=NOW_MS - 6_868_877,
        customer_lat=40.71,
        customer_lon=-74.0,
        lines=result.lines,
    )
    assert [
        (ln.product_id, ln.quantity, ln.unit_price_cents, ln.amount_cents) for ln in result.lines
    ] == [(7, 2, 1249, 2498), (16, 1, 199, 199)]
    assert result.total_cents == 2697


def test_price_comes_only_from_the_catalog_given():
    repriced = Catalog.from_rows([(7, "Funghi Medium", 1000, True), (16, "Cola", 150, True)], [])
    result = enrich(encode(valid_order()), repriced, RULES, NOW_MS)
    assert [line.unit_price_cents for line in result.lines] == [1000, 150]
    assert result.total_cents == 2150


def test_location_is_kept_for_deliveries_only_and_extra_fields_are_ignored():
    pickup = run(valid_order(fulfillment="pickup", coupon="XMAS", customer={"lat": "?"}))
    assert (pickup.customer_lat, pickup.customer_lon) == (None, None)
    in_store = run(without("customer") | {"channel": "in_store", "fulfillment": "dine_in"})
    assert isinstance(in_store, EnrichedOrder)


@pytest.mark.parametrize("record", [valid_order(), valid_order(fulfillment="pickup")])
def test_enriched_json_is_compact_and_round_trips(record):
    result = run(record)
    text = result.to_json()
    assert " " not in text and len(text) < len(encode(record))
    assert EnrichedOrder.from_json(text) == result
    assert EnrichedOrder.from_json(text.encode()) == result


def test_rules_come_from_the_property_group_ignoring_other_keys(props):
    group = {**props["OrderRules"], "catalog_refresh_seconds": "30"}
    assert OrderRules.from_properties(group) == OrderRules(
        **{f.name: int(group[f.name]) for f in fields(OrderRules)}
    )


def test_event_time_round_trip_and_utc_only():
    assert format_event_time(parse_event_time("2026-11-24T18:05:31.123Z")) == (
        "2026-11-24T18:05:31.123Z"
    )
    assert parse_event_time("2026-11-24T18:05:31.123+00:00") == parse_event_time(
        "2026-11-24T18:05:31.123Z"
    )
    assert parse_event_time("2026-11-24T19:05:31.123+01:00") is None


# --- fuzzing: whatever arrives, enrich answers with one of its two types -------------------

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_PATHS = [(name,) for name in (*REQUIRED_FIELDS, "customer", *sorted(PRICE_FIELDS))] + [
    ("items", 0, "product_id"),
    ("items", 1, "quantity"),
    ("items", 0, "price"),
    ("customer", "lat"),
    ("customer", "lon"),
]
DELETE = object()


def assert_well_formed(result: object) -> None:
    assert isinstance(result, (EnrichedOrder, Rejection))
    if isinstance(result, Rejection):
        assert result.reason in set(Reason) and isinstance(result.detail, str)
        assert len(result.detail) < 300
        assert result.status() in {s.value for s in OrderStatus}
    else:
        assert EnrichedOrder.from_json(result.to_json()) == result
        for line in result.lines:
            product = CATALOG.product(line.product_id)
            assert product is not None
            assert line.unit_price_cents == product.unit_price_cents
        assert result.total_cents == sum(line.amount_cents for line in result.lines)


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(raw):
    assert_well_formed(run(raw))


@settings(max_examples=500)
@given(JSON_VALUES)
def test_fuzz_arbitrary_json(value):
    assert_well_formed(run(encode(value)))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(FIELD_PATHS), JSON_VALUES | st.just(DELETE)),
        min_size=1,
        max_size=3,
    ),
    st.integers(-72 * HOUR_MS, 72 * HOUR_MS),
)
def test_fuzz_mutated_valid_orders(mutations, clock_skew_ms):
    order = valid_order()
    for path, value in mutations:
        parent = reach(order, path[:-1])
        if isinstance(parent, dict) and value is DELETE:
            parent.pop(path[-1], None)
        elif isinstance(parent, dict):
            parent[path[-1]] = value
    assert_well_formed(run(encode(order), NOW_MS + clock_skew_ms))


def reach(order: dict, path: tuple) -> object:
    """The value at ``path``, or None where an earlier mutation removed the way there."""
    node: object = order
    for key in path:
        if (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and key < len(node)
        ):
            node = node[key]
        else:
            return None
    return node


@settings(max_examples=500)
@given(st.data())
def test_fuzz_corrupted_bytes_of_a_valid_order(data):
    raw = bytearray(encode(valid_order()))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position : position + 1] = data.draw(st.binary(min_size=0, max_size=3))
    assert_well_formed(run(bytes(raw)))


# --------------------------------------------------------------------------- the fast path


def assert_fast_path_agrees(raw: bytes, now_ms: int = NOW_MS) -> None:
    """``accept`` never accepts what ``enrich`` refuses and, when it accepts, gives exactly
    ``enrich``'s record."""
    fast = accept(raw, CATALOG, RULES, now_ms)
    slow = enrich(raw, CATALOG, RULES, now_ms)
    if fast is not None:
        assert isinstance(slow, EnrichedOrder), (raw, slow)
        assert fast == (slow.store_id, slow.to_json())


def test_the_fast_path_takes_every_everyday_order():
    for order in (
        valid_order(),
        valid_order(fulfillment="pickup", customer=None),
        valid_order(channel="in_store", fulfillment="dine_in"),
        valid_order(order_id="Bäckerei-1", customer={"lat": 40, "lon": -74}),
        valid_order(note="fields the rules do not know are ignored"),
    ):
        raw = encode(order)
        slow = enrich(raw, CATALOG, RULES, NOW_MS)
        assert accept(raw, CATALOG, RULES, NOW_MS) == (slow.store_id, slow.to_json())


def test_the_fast_path_leaves_unusual_but_valid_forms_to_the_full_rules():
    for order in (
        valid_order(ts="2026-11-24T18:05:31Z"),
        valid_order(ts="2026-11-24T18:05:31.123+00:00"),
    ):
        raw = encode(order)
        assert accept(raw, CATALOG, RULES, NOW_MS) is None
        assert isinstance(enrich(raw, CATALOG, RULES, NOW_MS), EnrichedOrder)


def test_the_fast_path_agrees_with_the_rules_on_every_generated_kind_of_record():

    from simulation.traffic import OrderTraffic

    traffic = OrderTraffic(
        RULES, datetime(2026, 11, 24, tzinfo=UTC), seed=3, bad_share=0.5, catalog=CATALOG
    )
    now_ms = traffic.processing_window()[0]
    accepted = 0
    for record in traffic.records(3000):
        assert_fast_path_agrees(record.data, now_ms)
        accepted += accept(record.data, CATALOG, RULES, now_ms) is not None
    assert accepted == traffic.report.by_kind["valid"]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=70)
    | st.sampled_from(
        ["online", "in_store", "delivery", "pickup", "dine_in", "2026-11-24T18:05:31.123Z"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = st.sampled_from(
    [*REQUIRED_FIELDS, "customer", "price", "note", "lat", "lon", "product_id", "quantity"]
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.lists(
        st.tuples(
            st.sampled_from(["order", "item", "customer"]),
            FIELDS,
            st.one_of(st.just("<drop>"), JSON_VALUES),
        ),
        max_size=3,
    ),
    fulfillment=st.sampled_from(["delivery", "pickup", "dine_in"]),
)
def test_the_fast_path_never_accepts_what_the_rules_refuse(changes, fulfillment):
    order = valid_order(fulfillment=fulfillment)
    targets = {"order": order, "item": order["items"][0], "customer": order["customer"]}
    for where, name, value in changes:
        target = targets[where]
        if value == "<drop>":
            target.pop(name, None)
        else:
            target[name] = value
    assert_fast_path_agrees(json.dumps(order).encode())


@settings(max_examples=200)
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_the_fast_path_agrees_on_arbitrary_bytes(raw):
    assert_fast_path_agrees(raw)


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-24T18:05:31.123Z",
        "2026-02-28T23:59:59.999Z",
        "2024-02-29T00:00:00.000Z",
        "2026-02-29T00:00:00.000Z",
        "2026-13-01T00:00:00.000Z",
        "2026-11-24T24:00:00.000Z",
        "2026-11-24T18:60:00.000Z",
        "2026-11-24T18:05:60.000Z",
        "2026-11-24T18:05:31.123z",
        "2026-11-24 18:05:31.123Z",
        "2026-11-24T18:05:31.12Z",
        "２026-11-24T18:05:31.123Z",  # noqa: RUF001 - a fullwidth digit on purpose
        "1970-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "0000-01-01T00:00:00.000Z",
    ],
)
def test_the_fast_event_time_reads_the_canonical_form_as_the_rules_do(ts):
    from pizzastream.orders import _canonical_event_time

    fast = _canonical_event_time(ts)
    assert fast is None or fast == parse_event_time(ts)
    if len(ts) == 24 and ts[10] == "T" and ts.endswith("Z") and ts.isascii():
        assert fast == parse_event_time(ts)
