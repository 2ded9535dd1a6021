"""The POS batch rules without servers: line items, manifests, the digest that catches a
cut-short batch, and regrouping line items into sale records."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pizzastream.catalog import Catalog
from pizzastream.orders import EnrichedOrder, OrderLine
from pizzastream.pos_batches import (
    LANDING_PREFIX, MANIFEST_SUFFIX, BadBatch, BatchDigest, Fault, Manifest, SettledLine,
    batch_id, batch_key, orders_from_lines, parse_line, parse_manifest_key, sale_event_id,
    settle, store_system,
)
from pizzastream.sales import sale_json

SYSTEMS = 20
ACTIVE = [p for p in Catalog.from_reference_data().products() if p.active]

in_store_orders = st.builds(
    lambda n, store, fulfillment, ts, lines: EnrichedOrder(
        sale_event_id(f"S{store:04d}-{n:06d}"), f"S{store:04d}-{n:06d}", store, "in_store",
        fulfillment, ts, None, None,
        tuple(OrderLine(p.product_id, q, p.unit_price_cents) for p, q in lines)),
    st.integers(0, 999_999), st.integers(1, 100), st.sampled_from(["pickup", "dine_in"]),
    st.integers(1_700_000_000_000, 1_900_000_000_000),
    st.lists(st.tuples(st.sampled_from(ACTIVE), st.integers(1, 20)), min_size=1, max_size=25,
             unique_by=lambda line: line[0].product_id),
)


def raw(line: SettledLine) -> bytes:
    return line.to_json().encode() + b"\n"


def digest_of(lines: list[SettledLine], system: int = 1) -> BatchDigest:
    digest = BatchDigest(system, SYSTEMS)
    for line in lines:
        digest.add(raw(line))
    return digest


def line(order_id="S0001-000001", product_id=1, quantity=2, price=899, **overrides) -> dict:
    doc = {"store_id": 1, "order_id": order_id, "product_id": product_id,
           "transaction_ts": "2026-11-24T18:05:31.123Z", "quantity": quantity,
           "unit_price": price / 100, "total_transaction_amt": quantity * price / 100,
           "delivery_id": None, "delivery_type": "dine_in", "channel": "in_store"}
    return {**doc, **overrides}


@given(in_store_orders)
def test_a_settled_order_round_trips_through_line_json_into_the_same_sale(order):
    lines = [parse_line(raw(item)) for item in settle(order)]
    assert lines == settle(order)
    assert [sale_json(o) for o in orders_from_lines(lines)] == [sale_json(order)]


def test_line_json_has_exactly_the_order_fct_columns():
    order = EnrichedOrder("e", "S0001-1", 1, "in_store", "pickup", 1_764_007_531_123, None,
                          None, (OrderLine(7, 3, 1099),))
    doc = json.loads(settle(order)[0].to_json())
    assert doc == {"store_id": 1, "order_id": "S0001-1", "product_id": 7,
                   "transaction_ts": "2025-11-24T18:05:31.123Z", "quantity": 3,
                   "unit_price": 10.99, "total_transaction_amt": 32.97, "delivery_id": None,
                   "delivery_type": "pickup", "channel": "in_store"}


@pytest.mark.parametrize("change", [
    {"quantity": 0}, {"quantity": 1.5}, {"store_id": 2001}, {"store_id": True},
    {"transaction_ts": "2026-11-24T18:05:31"}, {"transaction_ts": 1764007531},
    {"unit_price": 8.995}, {"total_transaction_amt": 17.99}, {"unit_price": "8.99"},
    {"channel": "online"}, {"delivery_type": "drone"}, {"delivery_id": "D-1"},
    {"order_id": ""}, {"order_id": "S1\ud800"}, {"order_id": "S1\x00"},
])
def test_a_line_breaking_a_rule_is_a_bad_line(change):
    with pytest.raises(BadBatch) as error:
        parse_line(json.dumps(line(**change)).encode())
    assert error.value.fault == Fault.BAD_LINE


@pytest.mark.parametrize("text", [b"", b"[1]", b"{", b"\xff\n", b'{"store_id": 1}'])
def test_unreadable_lines_are_bad_lines(text):
    with pytest.raises(BadBatch) as error:
        parse_line(text)
    assert error.value.fault == Fault.BAD_LINE


def test_money_is_read_exactly():
    parsed = parse_line(json.dumps(line(quantity=3, price=1999)).encode())
    assert (parsed.unit_price_cents, parsed.total_cents) == (1999, 5997)


def lines_of(n: int, store: int = 1) -> list[SettledLine]:
    return [SettledLine(store, f"S{store:04d}-{i:06d}", 1, 1_764_000_000_000 + i * 1000, 1, 899,
                        899, "dine_in", "in_store") for i in range(n)]


def test_the_manifest_of_the_lines_verifies_and_survives_json():
    lines = lines_of(5)
    manifest = Manifest.from_json(digest_of(lines).manifest("ss01-x").to_json())
    assert (manifest.record_count, manifest.min_ts, manifest.max_ts) == (
        5, "2025-11-24T16:00:00.000Z", "2025-11-24T16:00:04.000Z")
    digest_of(lines).verify(manifest)


def test_an_empty_batch_has_a_manifest_too():
    manifest = digest_of([]).manifest("ss01-x")
    assert (manifest.record_count, manifest.min_ts, manifest.max_ts) == (0, None, None)
    digest_of([]).verify(Manifest.from_json(manifest.to_json()))


@pytest.mark.parametrize("read, fault", [
    (lambda lines: lines[:-1], Fault.COUNT_MISMATCH),          # cut short
    (lambda lines: lines[:-1] + lines[:1], Fault.CHECKSUM_MISMATCH),  # same count, other lines
])
def test_a_batch_that_differs_from_its_manifest_is_refused(read, fault):
    lines = lines_of(5)
    manifest = digest_of(lines).manifest("ss01-x")
    with pytest.raises(BadBatch) as error:
        digest_of(read(lines)).verify(manifest)
    assert error.value.fault == fault


def test_a_manifest_with_another_time_range_is_refused():
    lines = lines_of(3)
    manifest = digest_of(lines).manifest("ss01-x")
    shifted = Manifest(**{**manifest.__dict__, "max_ts": "2025-11-24T17:00:00Z"})
    with pytest.raises(BadBatch) as error:
        digest_of(lines).verify(shifted)
    assert error.value.fault == Fault.TS_RANGE_MISMATCH


def test_an_equal_instant_in_another_spelling_is_the_same_range():
    lines = lines_of(1)
    manifest = digest_of(lines).manifest("ss01-x")
    spelled = Manifest(**{**manifest.__dict__, "min_ts": "2025-11-24T16:00:00+00:00",
                          "max_ts": "2025-11-24T16:00:00.000000Z"})
    digest_of(lines).verify(spelled)


def test_a_store_of_another_store_system_is_refused():
    with pytest.raises(BadBatch) as error:
        digest_of(lines_of(1, store=1999), system=1)
    assert error.value.fault == Fault.WRONG_STORE_SYSTEM


@pytest.mark.parametrize("text", [
    b"not json", b"[]", b'{"batch_id": "x"}',
    Manifest("../x", 1, 0, "0" * 64, None, None).to_json().encode(),
    Manifest("ss01-x", 1, -1, "0" * 64, None, None).to_json().encode(),
    Manifest("ss01-x", 1, True, "0" * 64, None, None).to_json().encode(),
    Manifest("ss01-x", 1, 0, "abc", None, None).to_json().encode(),
    Manifest("ss01-x", 1, 0, "0" * 64, "yesterday", None).to_json().encode(),
])
def test_a_broken_manifest_is_refused(text):
    with pytest.raises(BadBatch) as error:
        Manifest.from_json(text)
    assert error.value.fault == Fault.BAD_MANIFEST


def test_store_systems_cover_all_stores_in_equal_contiguous_ranges():
    systems = [store_system(store, SYSTEMS) for store in range(1, 2001)]
    assert systems == sorted(systems)
    assert set(systems) == set(range(1, SYSTEMS + 1))
    assert {systems.count(s) for s in set(systems)} == {100}


def test_keys_round_trip_and_only_landing_manifests_parse():
    batch = batch_id(7, 1_764_007_531_123)
    assert batch == "ss07-20251124T180531123Z"
    key = batch_key(LANDING_PREFIX, 7, batch, MANIFEST_SUFFIX)
    assert key == f"pos/landing/store_system=07/{batch}.manifest.json"
    assert parse_manifest_key(key) == (7, batch)
    assert parse_manifest_key(key.replace(MANIFEST_SUFFIX, ".jsonl.gz")) is None
    assert parse_manifest_key(key.replace("landing", "quarantine")) is None


def test_lines_regroup_into_one_sale_per_order_with_a_stable_event_id():
    a = settle(EnrichedOrder("e1", "A", 1, "in_store", "pickup", 5, None, None,
                             (OrderLine(1, 1, 100), OrderLine(2, 2, 250))))
    b = settle(EnrichedOrder("e2", "B", 1, "in_store", "dine_in", 9, None, None,
                             (OrderLine(3, 1, 700),)))
    orders = list(orders_from_lines(a + b))
    assert [(o.event_id, o.order_id, o.total_cents) for o in orders] == [
        ("pos:A", "A", 600), ("pos:B", "B", 700)]


def test_lines_of_one_order_that_disagree_are_a_bug_not_a_sale():
    a, b = lines_of(2)
    with pytest.raises(ValueError):
        list(orders_from_lines([a, SettledLine(*{**b.__dict__, "order_id": a.order_id}.values())]))
