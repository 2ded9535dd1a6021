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
    LANDING_PREFIX,
    MANIFEST_SUFFIX,
    MAX_INTEGER,
    MAX_TOTAL_CENTS,
    MAX_UNIT_PRICE_CENTS,
    BadBatch,
    BatchDigest,
    Fault,
    Manifest,
    RefusedLine,
    SettledLine,
    batch_id,
    batch_key,
    line_dead_letter,
    orders_from_lines,
    parse_line,
    parse_manifest_key,
    sale_event_id,
    settle,
    store_system,
)
from pizzastream.sales import sale_json

SYSTEMS = 20
ACTIVE = [p for p in Catalog.from_reference_data().products() if p.active]

in_store_orders = st.builds(
    lambda n, store, fulfillment, ts, lines: EnrichedOrder(
        sale_event_id(f"S{store:04d}-{n:06d}"),
        f"S{store:04d}-{n:06d}",
        store,
        "in_store",
        fulfillment,
        ts,
        None,
        None,
        tuple(OrderLine(p.product_id, q, p.unit_price_cents) for p, q in lines),
    ),
    st.integers(0, 999_999),
    st.integers(1, 100),
    st.sampled_from(["pickup", "dine_in"]),
    st.integers(1_700_000_000_000, 1_900_000_000_000),
    st.lists(
        st.tuples(st.sampled_from(ACTIVE), st.integers(1, 20)),
        min_size=1,
        max_size=25,
        unique_by=lambda line: line[0].product_id,
    ),
)


def raw(line: SettledLine) -> bytes:
    return line.to_json().encode() + b"\n"


def digest_of(lines: list[SettledLine], system: int = 1) -> BatchDigest:
    digest = BatchDigest(system, SYSTEMS)
    for line in lines:
        digest.add(raw(line))
    return digest


def line(order_id="S0001-000001", product_id=1, quantity=2, price=899, **overrides) -> dict:
    doc = {
        "store_id": 1,
        "order_id": order_id,
        "product_id": product_id,
        "transaction_ts": "2026-11-24T18:05:31.123Z",
        "quantity": quantity,
        "unit_price": price / 100,
        "total_transaction_amt": quantity * price / 100,
        "delivery_id": None,
        "delivery_type": "dine_in",
        "channel": "in_store",
    }
    return {**doc, **overrides}


@given(in_store_orders)
def test_a_settled_order_round_trips_through_line_json_into_the_same_sale(order):
    lines = [parse_line(raw(item)) for item in settle(order)]
    assert lines == settle(order)
    assert [sale_json(o) for o in orders_from_lines(lines)] == [sale_json(order)]


def test_line_json_has_exactly_the_order_fct_columns():
    order = EnrichedOrder(
        "e",
        "S0001-1",
        1,
        "in_store",
        "pickup",
        1_764_007_531_123,
        None,
        None,
        (OrderLine(7, 3, 1099),),
    )
    doc = json.loads(settle(order)[0].to_json())
    assert doc == {
        "store_id": 1,
        "order_id": "S0001-1",
        "product_id": 7,
        "transaction_ts": "2025-11-24T18:05:31.123Z",
        "quantity": 3,
        "unit_price": 10.99,
        "total_transaction_amt": 32.97,
        "delivery_id": None,
        "delivery_type": "pickup",
        "channel": "in_store",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": 0},
        {"quantity": 1.5},
        {"store_id": 2001},
        {"store_id": True},
        {"transaction_ts": "2026-11-24T18:05:31"},
        {"transaction_ts": 1764007531},
        {"unit_price": 8.995},
        {"total_transaction_amt": 17.99},
        {"unit_price": "8.99"},
        {"channel": "online"},
        {"delivery_type": "drone"},
        {"delivery_id": "D-1"},
        {"order_id": ""},
        {"order_id": "S1\ud800"},
        {"order_id": "S1\x00"},
    ],
)
def test_a_line_breaking_a_rule_is_a_bad_line(change):
    with pytest.raises(BadBatch) as error:
        parse_line(json.dumps(line(**change)).encode())
    assert error.value.fault == Fault.BAD_LINE


@pytest.mark.parametrize("text", [b"", b"[1]", b"{", b"\xff\n", b'{"store_id": 1}'])
def test_unreadable_lines_are_bad_lines(text):
    with pytest.raises(BadBatch) as error:
        parse_line(text)
    assert error.value.fault == Fault.BAD_LINE


# Lines that passed the old rules and then failed on insert (or in the parser itself),
# stopping the store system's later batches.
POISON_LINES = {
    "deeply nested JSON": b'{"store_id": ' + b"[" * 30_000 + b"]" * 30_000 + b"}\n",
    "deeply nested value": json.dumps(line())
    .encode()
    .replace(b'"delivery_id": null', b'"delivery_id": ' + b"[" * 25_000 + b"]" * 25_000),
    "unit price past numeric(10,2)": json.dumps(line(price=10**10, quantity=1)).encode(),
    "total past numeric(12,2)": json.dumps(line(price=10**9, quantity=1000)).encode(),
    "amount with a huge exponent": json.dumps(line())
    .encode()
    .replace(b'"unit_price": 8.99', b'"unit_price": 1E+999999999'),
    "amount NaN": json.dumps(line()).encode().replace(b'"unit_price": 8.99', b'"unit_price": NaN'),
    "amount Infinity": json.dumps(line())
    .encode()
    .replace(b'"unit_price": 8.99', b'"unit_price": Infinity'),
    "product id past integer": json.dumps(line(product_id=2**40)).encode(),
    "product id zero": json.dumps(line(product_id=0)).encode(),
    "quantity past integer": json.dumps(line(quantity=2**31, price=1)).encode(),
    "an integer of 5000 digits": json.dumps(line())
    .encode()
    .replace(b'"product_id": 1', b'"product_id": ' + b"9" * 5000),
}


@pytest.mark.parametrize("raw_line", POISON_LINES.values(), ids=POISON_LINES.keys())
def test_a_line_that_would_fail_on_insert_is_a_bad_line(raw_line):
    with pytest.raises(BadBatch) as error:
        parse_line(raw_line)
    assert error.value.fault == Fault.BAD_LINE
    assert len(error.value.detail) <= 500


def test_the_largest_values_the_columns_hold_are_accepted():
    biggest = parse_line(
        json.dumps(
            line(product_id=MAX_INTEGER, quantity=100, price=MAX_TOTAL_CENTS // 100)
        ).encode()
    )
    assert biggest.total_cents <= MAX_TOTAL_CENTS and biggest.product_id == MAX_INTEGER
    assert parse_line(json.dumps(line(quantity=1, price=MAX_UNIT_PRICE_CENTS)).encode())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.decimals() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@given(
    st.one_of(
        st.binary(),
        st.dictionaries(st.sampled_from(sorted(line())), JSON_VALUES).map(
            lambda changes: json.dumps({**line(), **changes}, default=str).encode()
        ),
        st.tuples(st.sampled_from(sorted(line())), st.integers(1, 60_000)).map(
            lambda nested: (
                json.dumps({**line(), nested[0]: "@"})
                .encode()
                .replace(b'"@"', b"[" * nested[1] + b"]" * nested[1])
            )
        ),
        st.tuples(
            st.sampled_from(["unit_price", "total_transaction_amt", "quantity", "product_id"]),
            st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,12})?", fullmatch=True),
        ).map(
            lambda number: (
                json.dumps({**line(), number[0]: "@"}).encode().replace(b'"@"', number[1].encode())
            )
        ),
    )
)
def test_any_line_is_either_a_line_every_column_holds_or_a_bad_line(raw_line):
    """Fuzz: ``parse_line`` raises nothing but ``BadBatch``, and what it accepts fits
    ``order_fct``'s columns, so no line can fail on insert."""
    try:
        parsed = parse_line(raw_line)
    except BadBatch as error:
        assert error.fault == Fault.BAD_LINE
        return
    assert 0 < parsed.product_id <= MAX_INTEGER and 0 < parsed.quantity <= MAX_INTEGER
    assert 0 < parsed.unit_price_cents <= MAX_UNIT_PRICE_CENTS
    assert parsed.total_cents == parsed.quantity * parsed.unit_price_cents <= MAX_TOTAL_CENTS
    assert parsed.order_id.isprintable() and parsed.channel == "in_store"


def test_a_refused_lines_dead_letter_is_its_file_and_line():
    key = "pos/landing/store_system=01/ss01-x.jsonl.gz"
    bad = RefusedLine(3, json.dumps(line(quantity=0)).encode(), Fault.BAD_LINE, "quantity 0")
    letter = line_dead_letter(key, bad)
    assert (letter.job, letter.reason, letter.order_id, letter.store_id) == (
        "pos_ingestion",
        "bad_line",
        "S0001-000001",
        line()["store_id"],
    )
    assert letter.detail == f"{key} line 3: quantity 0"
    assert letter.payload == bad.raw.decode()
    # the same line of the same file again (a re-run): the same row
    assert (
        line_dead_letter(key, RefusedLine(3, b"other", Fault.BAD_LINE, "x")).dead_letter_id
        == letter.dead_letter_id
    )
    assert (
        len(
            {
                line_dead_letter(k, RefusedLine(n, bad.raw, Fault.BAD_LINE, "")).dead_letter_id
                for k in (key, key.replace("ss01-x", "ss01-y"))
                for n in (3, 4)
            }
        )
        == 4
    )
    assert (
        line_dead_letter(key, RefusedLine(1, b"[" * 100_000, Fault.BAD_LINE, "")).order_id is None
    )


def test_money_is_read_exactly():
    parsed = parse_line(json.dumps(line(quantity=3, price=1999)).encode())
    assert (parsed.unit_price_cents, parsed.total_cents) == (1999, 5997)


def lines_of(n: int, store: int = 1) -> list[SettledLine]:
    return [
        SettledLine(
            store,
            f"S{store:04d}-{i:06d}",
            1,
            1_764_000_000_000 + i * 1000,
            1,
            899,
            899,
            "dine_in",
            "in_store",
        )
        for i in range(n)
    ]


def test_the_manifest_of_the_lines_verifies_and_survives_json():
    lines = lines_of(5)
    manifest = Manifest.from_json(digest_of(lines).manifest("ss01-x").to_json())
    assert (manifest.record_count, manifest.min_ts, manifest.max_ts) == (
        5,
        "2025-11-24T16:00:00.000Z",
        "2025-11-24T16:00:04.000Z",
    )
    digest_of(lines).verify(manifest)


def test_an_empty_batch_has_a_manifest_too():
    manifest = digest_of([]).manifest("ss01-x")
    assert (manifest.record_count, manifest.min_ts, manifest.max_ts) == (0, None, None)
    digest_of([]).verify(Manifest.from_json(manifest.to_json()))


@pytest.mark.parametrize(
    "read, fault",
    [
        (lambda lines: lines[:-1], Fault.COUNT_MISMATCH),  # cut short
        (lambda lines: lines[:-1] + lines[:1], Fault.CHECKSUM_MISMATCH),  # same count, other lines
    ],
)
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
    spelled = Manifest(
        **{
            **manifest.__dict__,
            "min_ts": "2025-11-24T16:00:00+00:00",
            "max_ts": "2025-11-24T16:00:00.000000Z",
        }
    )
    digest_of(lines).verify(spelled)


def test_a_store_of_another_store_system_is_refused():
    with pytest.raises(BadBatch) as error:
        digest_of(lines_of(1, store=1999), system=1)
    assert error.value.fault == Fault.WRONG_STORE_SYSTEM


@pytest.mark.parametrize(
    "text",
    [
        b"not json",
        b"[]",
        b'{"batch_id": "x"}',
        Manifest("../x", 1, 0, "0" * 64, None, None).to_json().encode(),
        Manifest("ss01-x", 1, -1, "0" * 64, None, None).to_json().encode(),
        Manifest("ss01-x", 1, True, "0" * 64, None, None).to_json().encode(),
        Manifest("ss01-x", 1, 0, "abc", None, None).to_json().encode(),
        Manifest("ss01-x", 1, 0, "0" * 64, "yesterday", None).to_json().encode(),
    ],
)
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
    a = settle(
        EnrichedOrder(
            "e1",
            "A",
            1,
            "in_store",
            "pickup",
            5,
            None,
            None,
            (OrderLine(1, 1, 100), OrderLine(2, 2, 250)),
        )
    )
    b = settle(
        EnrichedOrder("e2", "B", 1, "in_store", "dine_in", 9, None, None, (OrderLine(3, 1, 700),))
    )
    orders = list(orders_from_lines(a + b))
    assert [(o.event_id, o.order_id, o.total_cents) for o in orders] == [
        ("pos:A", "A", 600),
        ("pos:B", "B", 700),
    ]


def test_lines_of_one_order_that_disagree_are_a_bug_not_a_sale():
    a, b = lines_of(2)
    with pytest.raises(ValueError):
        list(orders_from_lines([a, SettledLine(*{**b.__dict__, "order_id": a.order_id}.values())]))
