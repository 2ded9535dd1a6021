"""Store inventory rules: all-or-nothing orders, conservation of stock, restocks, the
windowed reorder point, one supplier reorder per crossing, and the ValueState shape."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pizzastream import reference_data
from pizzastream.catalog import Catalog
from pizzastream.inventory import (
    MAX_RESTOCK_QUANTITY,
    POLICY_COLUMNS,
    IngredientPolicy,
    InvalidRestock,
    StoreStock,
    SupplierOrder,
    check_restock_key,
    due_reorders,
    lead_time_use,
    parse_restock,
    place_order,
    policies_from_reference_data,
    policies_from_rows,
    reorder_point,
    requirements,
    restock,
    store_of_partition_key,
)
from pizzastream.orders import EnrichedOrder, OrderLine, OrderStatus, epoch_ms

CATALOG = Catalog.from_reference_data()
POLICIES = policies_from_reference_data()
INGREDIENTS = sorted(POLICIES)
ACTIVE = [p for p in CATALOG.products() if p.active]
STORE = 42
T0 = epoch_ms(datetime.fromisoformat("2026-11-24T18:00:00Z"))
MINUTE = 60_000
DOUGH, PEPPERONI, PIZZA_BOX, CAN = 1, 4, 10, 12
GARLIC_BREAD, PEPPERONI_LARGE, COLA = 13, 6, 16

_counter = iter(range(10**9))


def order(lines, ts_ms: int = T0, store_id: int = STORE) -> EnrichedOrder:
    """An enriched order of ``(product_id, quantity)`` lines, priced from the catalog."""
    n = next(_counter)
    priced = []
    for product_id, quantity in lines:
        product = CATALOG.product(product_id)
        assert product is not None
        priced.append(OrderLine(product_id, quantity, product.unit_price_cents))
    return EnrichedOrder(
        f"e{n}", f"o{n}", store_id, "online", "pickup", ts_ms, None, None, tuple(priced)
    )


def full_stock(**changes) -> StoreStock:
    levels = {i: 1_000_000 for i in INGREDIENTS}
    levels.update({int(k[1:]): v for k, v in changes.items()})
    return StoreStock.initial(STORE, levels)


# --------------------------------------------------------------------------- strategies

lines_st = st.lists(
    st.tuples(st.sampled_from([p.product_id for p in ACTIVE]), st.integers(1, 4)),
    min_size=1,
    max_size=4,
    unique_by=lambda line: line[0],
)
initial_st = st.dictionaries(
    st.sampled_from(INGREDIENTS), st.integers(0, 3_000), min_size=len(INGREDIENTS) - 2
)
# Operations: orders, anonymous restocks, and restocks answering the outstanding reorder.
# Each carries a time step in minutes (0..20), so windows fill, roll and empty.
op_st = st.one_of(
    st.tuples(st.just("order"), lines_st, st.integers(0, 20)),
    st.tuples(
        st.just("restock"), st.sampled_from(INGREDIENTS), st.integers(1, 2_000), st.integers(0, 20)
    ),
    st.tuples(
        st.just("close"), st.sampled_from(INGREDIENTS), st.integers(1, 60_000), st.integers(0, 20)
    ),
)
ops_st = st.lists(op_st, max_size=60)


def run(stock: StoreStock, ops, start_ms: int = T0):
    """Applies ``ops`` as the operator would (reorders checked after every event) and
    returns a log of everything that came out."""
    now = start_ms
    log: list[tuple[object, ...]] = []
    for op in ops:
        now += op[-1] * MINUTE
        if op[0] == "order":
            decision = place_order(stock, order(op[1], now), CATALOG)
            log.append(("decision", decision))
        else:
            _, ingredient_id, quantity, _ = op
            so_id = stock.outstanding.get(ingredient_id) if op[0] == "close" else None
            closed = restock(stock, ingredient_id, quantity, so_id, now, known=POLICIES)
            log.append(("restock", ingredient_id, quantity, closed))
        log.append(("reorders", due_reorders(stock, POLICIES, stock.clock_ms)))
    return log


def is_plain(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(is_plain(k) and is_plain(v) for k, v in value.items())
    return type(value) in (int, str)


# --------------------------------------------------------------------------- orders


def test_requirements_sum_recipes_over_lines():
    got = requirements(order([(PEPPERONI_LARGE, 2), (GARLIC_BREAD, 1), (COLA, 3)]), CATALOG)
    assert got == {
        DOUGH: 2 * 350 + 150,
        2: 2 * 120,
        3: 2 * 170,
        PEPPERONI: 2 * 80,
        PIZZA_BOX: 2,
        11: 1,
        CAN: 3,
    }


@given(initial_st, lines_st)
def test_order_is_all_or_nothing(initial, lines):
    stock = StoreStock.initial(STORE, initial)
    before = stock.to_state()
    the_order = order(lines)
    need = requirements(the_order, CATALOG)
    decision = place_order(stock, the_order, CATALOG)
    expected_short = {i: (q, initial.get(i, 0)) for i, q in need.items() if q > initial.get(i, 0)}
    assert dict(decision.short) == expected_short
    assert decision.accepted == (not expected_short)
    if decision.accepted:
        assert decision.status == OrderStatus.ACCEPTED
        assert dict(decision.consumed) == need
        assert stock.on_hand == {
            i: initial.get(i, 0) - need.get(i, 0) for i in set(initial) | set(need)
        }
    else:
        assert decision.status == "rejected:insufficient_inventory"
        assert decision.reason == "insufficient_inventory"
        assert decision.consumed == {}
        assert stock.to_state() == before  # a rejection changes nothing at all


def test_multi_line_order_short_on_one_line_takes_nothing():
    # Enough for the pizza, one can short for the colas.
    stock = full_stock(i12=2)
    before = stock.to_state()
    decision = place_order(stock, order([(PEPPERONI_LARGE, 1), (COLA, 3)]), CATALOG)
    assert not decision.accepted
    assert decision.short == {CAN: (3, 2)}
    assert "ingredient 12 needs 3, has 2" in decision.detail
    assert stock.to_state() == before
    # Without the colas the same stock accepts it.
    assert place_order(stock, order([(PEPPERONI_LARGE, 1)]), CATALOG).accepted
    assert stock.on_hand[CAN] == 2


def test_order_of_another_store_is_refused():
    with pytest.raises(ValueError):
        place_order(full_stock(), order([(COLA, 1)], store_id=STORE + 1), CATALOG)


@settings(max_examples=150)
@given(initial_st, ops_st)
def test_stock_is_conserved_and_never_negative(initial, ops):
    stock = StoreStock.initial(STORE, initial)
    added, used = Counter(), Counter()
    for entry in run(stock, ops):
        if entry[0] == "decision" and entry[1].accepted:
            used.update(entry[1].consumed)
        elif entry[0] == "restock":
            added[entry[1]] += entry[2]
        assert all(q >= 0 for q in stock.on_hand.values())
    for i in set(initial) | set(added) | set(used) | set(stock.on_hand):
        assert initial.get(i, 0) + added[i] - used[i] == stock.on_hand.get(i, 0)


# --------------------------------------------------------------------------- state


@settings(max_examples=100)
@given(initial_st, ops_st)
def test_state_round_trips_exactly_and_is_plain(initial, ops):
    stock = StoreStock.initial(STORE, initial)
    run(stock, ops)
    state = stock.to_state()
    assert is_plain(state)
    assert StoreStock.from_state(state) == stock
    assert StoreStock.from_state(state).to_state() == state
    assert pickle.loads(pickle.dumps(state)) == state
    # No aliasing either way: the operator may hold on to the state object.
    StoreStock.from_state(state).on_hand[DOUGH] = -1
    restock(stock, DOUGH, 1, None, T0, known=POLICIES)
    assert state == StoreStock.from_state(state).to_state() != stock.to_state()


def test_from_state_of_nothing_is_nothing():
    assert StoreStock.from_state(None) is None


@settings(max_examples=100)
@given(initial_st, ops_st, st.data())
def test_rules_are_deterministic_across_a_checkpoint(initial, ops, data):
    """The same events give the same decisions, state and supplier orders (ids
    included), also when the state goes through ValueState half way."""
    straight = StoreStock.initial(STORE, initial)
    log = run(straight, ops)
    cut = data.draw(st.integers(0, len(ops)))
    resumed = StoreStock.initial(STORE, initial)
    first = run(resumed, ops[:cut])
    resumed = StoreStock.from_state(pickle.loads(pickle.dumps(resumed.to_state())))
    now = T0 + sum(op[-1] for op in ops[:cut]) * MINUTE
    assert first + run(resumed, ops[cut:], now) == log
    assert resumed.to_state() == straight.to_state()


def test_busy_store_state_stays_small():
    stock = full_stock()
    for minute in range(0, 24 * 60, 1):  # an order a minute for a day
        place_order(
            stock,
            order([(PEPPERONI_LARGE, 1), (GARLIC_BREAD, 1), (COLA, 2)], T0 + minute * MINUTE),
            CATALOG,
        )
        due_reorders(stock, POLICIES, stock.clock_ms)
    assert len(stock.buckets) <= stock.window_buckets + 1
    assert len(pickle.dumps(stock.to_state(), protocol=pickle.HIGHEST_PROTOCOL)) < 1500


# --------------------------------------------------------------------------- restocks


def test_restock_adds_and_closes_only_the_outstanding_reorder():
    stock = full_stock(i1=0)
    (so,) = [s for s in due_reorders(stock, POLICIES, T0) if s.ingredient_id == DOUGH]
    assert restock(stock, DOUGH, 100, None, T0) is None  # no id: stock only
    assert restock(stock, DOUGH, 100, "SO-42-1-999", T0) is None  # not ours
    assert restock(stock, PEPPERONI, 5, so.supplier_order_id, T0) is None  # other ingredient
    assert stock.outstanding[DOUGH] == so.supplier_order_id
    assert restock(stock, DOUGH, 60_000, so.supplier_order_id, T0) == so.supplier_order_id
    assert DOUGH not in stock.outstanding
    assert stock.on_hand[DOUGH] == 60_200
    # A second delivery on the same (now closed) id just adds stock.
    assert restock(stock, DOUGH, 1, so.supplier_order_id, T0) is None
    assert stock.on_hand[DOUGH] == 60_201


@pytest.mark.parametrize(
    "ingredient_id, quantity, reason",
    [
        (DOUGH, 0, "invalid_quantity"),
        (DOUGH, -5, "invalid_quantity"),
        (DOUGH, True, "invalid_quantity"),
        (DOUGH, 2.5, "invalid_quantity"),
        (99, 10, "unknown_ingredient"),
        ("1", 10, "unknown_ingredient"),
    ],
)
def test_invalid_restock_raises_and_changes_nothing(ingredient_id, quantity, reason):
    stock = full_stock()
    before = stock.to_state()
    with pytest.raises(InvalidRestock) as raised:
        restock(stock, ingredient_id, quantity, None, T0)
    assert isinstance(raised.value, ValueError)
    assert raised.value.reason == reason
    assert stock.to_state() == before


def test_restock_of_an_ingredient_new_to_the_store_needs_it_known():
    stock = StoreStock.initial(STORE, {DOUGH: 10})
    with pytest.raises(InvalidRestock):
        restock(stock, CAN, 24, None, T0)
    restock(stock, CAN, 24, None, T0, known=POLICIES)
    assert stock.on_hand[CAN] == 24


def test_parse_restock():
    record = {
        "event_id": "r1",
        "store_id": 42,
        "ingredient_id": 1,
        "quantity": 500,
        "ts": "2026-11-24T18:00:00.000Z",
        "supplier_order_id": "SO-42-1-3",
    }
    parsed = parse_restock(json.dumps(record).encode())
    assert (
        parsed.event_id,
        parsed.store_id,
        parsed.ingredient_id,
        parsed.quantity,
        parsed.ts_ms,
        parsed.supplier_order_id,
    ) == ("r1", 42, 1, 500, T0, "SO-42-1-3")
    assert (
        parse_restock(json.dumps({**record, "supplier_order_id": None})).supplier_order_id is None
    )
    for bad, reason in [
        (b"{", "malformed_json"),
        (b"[]", "not_an_object"),
        ({**record, "quantity": 0}, "invalid_quantity"),
        ({**record, "quantity": 10**20}, "invalid_quantity"),  # past BIGINT: a poison pill
        ({**record, "quantity": MAX_RESTOCK_QUANTITY + 1}, "invalid_quantity"),
        ({**record, "quantity": "5"}, "wrong_type"),
        ({**record, "store_id": 0}, "unknown_store"),
        ({**record, "ts": "yesterday"}, "invalid_timestamp"),
        ({k: v for k, v in record.items() if k != "ingredient_id"}, "missing_field"),
    ]:
        raw = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
        with pytest.raises(InvalidRestock) as raised:
            parse_restock(raw)
        assert raised.value.reason == reason


@pytest.mark.parametrize(
    "key, store_id",
    [
        ("42", 42),
        ("1", 1),
        ("2000", 2000),
        ("007", None),
        ("abc", None),
        ("0", None),
        ("2001", None),
        ("", None),
        ("-5", None),
        (" 42", None),
        ("４２", None),  # noqa: RUF001 - fullwidth digits on purpose
        ("1e3", None),
        (None, None),
        (42, None),
    ],
)
def test_store_of_partition_key_accepts_only_the_contracts_form(key, store_id):
    assert store_of_partition_key(key) == store_id


def test_a_restock_must_arrive_on_its_own_stores_key():
    record = {
        "event_id": "r1",
        "store_id": 7,
        "ingredient_id": 1,
        "quantity": 3,
        "ts": "2026-11-24T18:00:00.000Z",
    }
    delivery = parse_restock(json.dumps(record))
    check_restock_key(delivery, "7")
    for key in ("007", "abc", "8"):
        with pytest.raises(InvalidRestock) as raised:
            check_restock_key(delivery, key)
        assert raised.value.reason == "partition_key_mismatch"


# --------------------------------------------------------------------------- reorder point


def consumed(count: int, ts_ms: int = T0) -> StoreStock:
    """A store that sold ``count`` garlic breads (150 g dough each) at ``ts_ms``."""
    stock = full_stock()
    if count:
        assert place_order(stock, order([(GARLIC_BREAD, count)], ts_ms), CATALOG).accepted
    return stock


def test_reorder_point_without_history_is_safety_stock():
    stock = full_stock()
    for policy in POLICIES.values():
        assert reorder_point(stock, policy, T0) == policy.safety_stock


def test_reorder_point_is_rate_times_lead_time_plus_safety_stock():
    dough = POLICIES[DOUGH]  # lead time 240 min, safety stock 10 kg
    stock = consumed(20, T0)  # 3,000 g at 18:00
    # At 18:00 sharp the window spans exactly 60 minutes: 3,000 g/h * 4 h.
    assert reorder_point(stock, dough, T0) == 12_000 + 10_000
    # At 18:02:30 it spans 62.5 minutes: ceil(3000 * 240 / 62.5) = 11,520.
    assert reorder_point(stock, dough, T0 + 150_000) == 11_520 + 10_000
    # 65 minutes later the 18:00 bucket has left the window: back to the fallback.
    assert reorder_point(stock, dough, T0 + 64 * MINUTE) > dough.safety_stock
    assert reorder_point(stock, dough, T0 + 65 * MINUTE) == dough.safety_stock


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 4 * 60 * MINUTE))
def test_reorder_point_grows_with_consumption_rate(low, extra, later):
    now = T0 + later
    slow, fast = consumed(low, now), consumed(low + extra, now)
    for policy in POLICIES.values():
        assert reorder_point(slow, policy, now) <= reorder_point(fast, policy, now)
    assert (
        reorder_point(fast, POLICIES[DOUGH], now) > reorder_point(slow, POLICIES[DOUGH], now)
    ) == (extra > 0)


def test_late_order_takes_stock_but_not_the_rate():
    stock = consumed(1, T0 + 3 * 60 * MINUTE)  # clock at 21:00
    dough_before = stock.on_hand[DOUGH]
    point_before = reorder_point(stock, POLICIES[DOUGH], stock.clock_ms)
    assert place_order(stock, order([(GARLIC_BREAD, 10)], T0), CATALOG).accepted  # 18:00
    assert stock.on_hand[DOUGH] == dough_before - 1_500
    assert stock.clock_ms == T0 + 3 * 60 * MINUTE
    assert reorder_point(stock, POLICIES[DOUGH], stock.clock_ms) == point_before


# --------------------------------------------------------------------------- reorders


def test_one_reorder_per_crossing():
    dough = POLICIES[DOUGH]
    stock = full_stock(i1=dough.safety_stock + 1_000)
    emitted = []
    for n in range(30):  # 30 garlic breads over 30 minutes
        assert place_order(stock, order([(GARLIC_BREAD, 1)], T0 + n * MINUTE), CATALOG).accepted
        emitted += due_reorders(stock, POLICIES, stock.clock_ms)
    (first,) = emitted  # crossed once: one reorder, not one per order
    assert first.ingredient_id == DOUGH
    assert first.supplier_order_id == f"SO-{STORE}-{DOUGH}-1"
    assert first.supplier_id == dough.supplier_id
    assert first.on_hand < first.reorder_point
    # Asking again changes nothing: it is outstanding.
    assert due_reorders(stock, POLICIES, stock.clock_ms) == []
    assert stock.outstanding == {DOUGH: first.supplier_order_id}

    # The supplier delivers; stock is back above the reorder point: nothing due.
    restock(stock, DOUGH, first.quantity, first.supplier_order_id, T0 + 300 * MINUTE)
    assert stock.outstanding == {}
    assert due_reorders(stock, POLICIES, stock.clock_ms) == []

    # Stock falls again: exactly one new reorder, with the next id.
    start = stock.clock_ms + MINUTE
    for n in range(400):
        if not place_order(
            stock, order([(GARLIC_BREAD, 1)], start + n * MINUTE // 10), CATALOG
        ).accepted:
            break
        emitted += due_reorders(stock, POLICIES, stock.clock_ms)
    assert [s.supplier_order_id for s in emitted] == [
        f"SO-{STORE}-{DOUGH}-1",
        f"SO-{STORE}-{DOUGH}-2",
    ]


def test_still_low_after_the_restock_orders_again():
    stock = full_stock(i1=0)
    (so,) = [s for s in due_reorders(stock, POLICIES, T0) if s.ingredient_id == DOUGH]
    restock(stock, DOUGH, 10, so.supplier_order_id, T0)  # a short delivery
    (again,) = [s for s in due_reorders(stock, POLICIES, T0) if s.ingredient_id == DOUGH]
    assert again.supplier_order_id != so.supplier_order_id


def test_empty_ingredient_is_reordered_even_without_safety_stock():
    policy = IngredientPolicy(DOUGH, 1, 60, 0, 100)
    stock = StoreStock.initial(STORE, {DOUGH: 0})
    (so,) = due_reorders(stock, {DOUGH: policy}, T0)
    assert so.quantity == 100 and so.reorder_point == 0


@given(st.integers(0, 200), st.integers(0, 30_000), st.sampled_from(INGREDIENTS))
def test_reorder_quantity_covers_lead_time_use_and_safety_stock(sold, on_hand, ingredient):
    stock = consumed(sold)
    stock.on_hand[ingredient] = on_hand
    policy = POLICIES[ingredient]
    due = [s for s in due_reorders(stock, POLICIES, T0) if s.ingredient_id == ingredient]
    point = reorder_point(stock, policy, T0)
    assert bool(due) == (on_hand < point or on_hand == 0)
    if due:
        (so,) = due
        use = lead_time_use(stock, policy, T0)
        assert (so.on_hand, so.reorder_point, so.ts_ms) == (on_hand, point, T0)
        assert so.quantity >= policy.reorder_quantity
        # At the current rate the delivery lands with stock at the reorder point or above.
        assert on_hand - use + so.quantity >= point


@settings(max_examples=150)
@given(initial_st, ops_st)
def test_reorders_are_unique_and_one_outstanding_per_ingredient(initial, ops):
    stock = StoreStock.initial(STORE, initial)
    open_ids: dict[int, str] = {}
    seen: set[str] = set()
    for entry in run(stock, ops):
        if entry[0] == "restock" and entry[3] is not None:
            assert open_ids.pop(entry[1]) == entry[3]
        if entry[0] == "reorders":
            for so in entry[1]:
                assert so.supplier_order_id not in seen
                assert so.ingredient_id not in open_ids  # none while outstanding
                seen.add(so.supplier_order_id)
                open_ids[so.ingredient_id] = so.supplier_order_id
    assert stock.outstanding == open_ids
    # Asking again finds nothing new: each reorder is emitted once.
    if not ops:
        due_reorders(stock, POLICIES, T0)  # run() asks after each event; there were none
    assert due_reorders(stock, POLICIES, stock.clock_ms) == []


def test_supplier_order_json():
    so = SupplierOrder("SO-42-1-7", 42, 1, 1, 50_000, T0, 9_000, 22_000)
    assert json.loads(so.to_json()) == {
        "supplier_order_id": "SO-42-1-7",
        "store_id": 42,
        "ingredient_id": 1,
        "supplier_id": 1,
        "quantity": 50_000,
        "ts": "2026-11-24T18:00:00.000Z",
        "on_hand": 9_000,
        "reorder_point": 22_000,
    }


def test_policies():
    assert set(POLICIES) == {i.ingredient_id for i in reference_data.ingredients()}
    assert POLICIES[DOUGH] == IngredientPolicy(DOUGH, 1, 240, 10_000, 50_000)
    rows = [dict(zip(POLICY_COLUMNS, (7, 3, 180, 500, 2_500)))]
    assert policies_from_rows(rows) == {7: IngredientPolicy(7, 3, 180, 500, 2_500)}
    with pytest.raises(ValueError):
        policies_from_rows([(7, 3, 0, 500, 2_500)])


def test_initial_validates():
    with pytest.raises(ValueError):
        StoreStock.initial(STORE, {DOUGH: -1})
    with pytest.raises(ValueError):
        StoreStock.initial(STORE, {DOUGH: 1}, window_minutes=60, bucket_minutes=7)
    levels = [s for s in reference_data.initial_inventory() if s.store_id == STORE]
    stock = StoreStock.initial(STORE, {s.ingredient_id: s.on_hand for s in levels})
    assert stock.on_hand == {s.ingredient_id: s.on_hand for s in levels}
    assert due_reorders(stock, POLICIES, T0) == []  # no store opens below its reorder point
