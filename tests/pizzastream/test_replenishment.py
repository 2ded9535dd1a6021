"""The replenishment rules (pizzastream.replenishment) and a short run of the week's
simulation (simulation.simulate).

Cost of the per-order hook, measured on the project's machine (CPython 3.11)::

    .venv/bin/python -m timeit -s "from pizzastream.replenishment import StoreReplenishment
    s = StoreReplenishment(1); d = {1: 350, 2: 120, 3: 170, 4: 80, 10: 1}
    s.record_demand(d, 1_795_400_000_000)" "s.record_demand(d, 1_795_400_000_000)"
    500000 loops, best of 5: 446 nsec per loop       (docs/replenishment.md)

and with ``review`` of those five ingredients (nothing due) after it, 1.3 µs.
"""

from __future__ import annotations

import math
import timeit
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pizzastream.catalog import Catalog
from pizzastream.inventory import StoreStock, restock, take, take_stock
from pizzastream.orders import epoch_ms
from pizzastream.replenishment import (
    FIRST_SIGHT_ERROR,
    HOUR_MS,
    HOURS_PER_WEEK,
    MAD_TO_SIGMA,
    POLICY_COLUMNS,
    SMOOTHING,
    OverdueAlert,
    ReplenishmentOrder,
    ReplenishmentPolicy,
    StockoutWarning,
    StoreReplenishment,
    hour_of_week,
    hourly_demand,
    policies_from_reference_data,
    policies_from_rows,
    serve_order,
)

POLICIES = policies_from_reference_data()
MONDAY = epoch_ms(datetime(2026, 11, 23, tzinfo=UTC))
MONDAY_HOUR = MONDAY // HOUR_MS
DOUGH, SAUCE, CHEESE, PEPPERONI, BOX = 1, 2, 3, 4, 10
# One supplier, one ingredient, round numbers: the arithmetic of a test can be done by hand.
SIMPLE = {
    1: ReplenishmentPolicy(
        1, 1, 120, 0, 10, review_period_minutes=240, grace_minutes=60, service_level=0.5
    )
}


def _steady(state: StoreReplenishment, per_hour: dict[int, int], weeks: int = 1) -> None:
    """The same demand every hour for whole weeks, ending at MONDAY."""
    start = MONDAY_HOUR - weeks * HOURS_PER_WEEK
    history = {hour: dict(per_hour) for hour in range(start, MONDAY_HOUR)}
    seeded = StoreReplenishment.seeded(state.store_id, history, MONDAY_HOUR)
    for name in ("hour", "current", "level", "error", "seen"):
        setattr(state, name, getattr(seeded, name))


# --------------------------------------------------------------------------- policies


def test_policies_extend_todays_with_review_grace_and_service_level():
    dough = POLICIES[DOUGH]
    assert (
        dough.supplier_id,
        dough.lead_time_minutes,
        dough.review_period_minutes,
        dough.grace_minutes,
        dough.service_level,
    ) == (1, 240, 1440, 120, 0.99)
    assert dough.z == pytest.approx(2.326, abs=1e-3)
    assert POLICIES[BOX].review_period_minutes == 4320


def test_policies_from_rows_read_the_new_columns_and_refuse_bad_ones():
    row = dict(zip(POLICY_COLUMNS, (7, 3, 180, 500, 2_500, 1440, 60, "0.95")))
    assert policies_from_rows([row])[7].z == pytest.approx(1.645, abs=1e-3)
    with pytest.raises(ValueError, match="service level"):
        policies_from_rows([(7, 3, 180, 500, 2_500, 1440, 60, 1.0)])
    with pytest.raises(ValueError, match="review period"):
        policies_from_rows([(7, 3, 180, 500, 2_500, 0, 60, 0.9)])


# --------------------------------------------------------------------------- forecast


def test_hour_of_week_starts_on_monday_midnight_utc():
    assert hour_of_week(MONDAY_HOUR) == 0
    assert hour_of_week(MONDAY_HOUR + 12) == 12
    assert hour_of_week(MONDAY_HOUR - 1) == 167


def test_refused_demand_counts_like_accepted_demand():
    """The store's stock decides nothing here: whatever an order asked for is demand."""
    stock = StoreStock.initial(1, {DOUGH: 100})
    state = StoreReplenishment(1)
    for demand in ({DOUGH: 80}, {DOUGH: 80}):  # the second is refused
        take_stock(stock, demand, MONDAY + 1)
        state.record_demand(demand, MONDAY + 1)
    assert stock.on_hand[DOUGH] == 20
    assert state.current == {DOUGH: 160}


def test_first_sight_sets_a_slot_then_it_learns_exponentially():
    state = StoreReplenishment(1)
    state.record_demand({DOUGH: 1000}, MONDAY)
    state.record_demand({DOUGH: 1}, MONDAY + HOUR_MS)  # closes Monday 00:00
    assert state.forecast(DOUGH, MONDAY_HOUR) == 1000
    assert state.error[DOUGH][0] == 1000 * FIRST_SIGHT_ERROR
    state.record_demand({DOUGH: 2000}, MONDAY + HOURS_PER_WEEK * HOUR_MS)
    state.record_demand({DOUGH: 1}, MONDAY + (HOURS_PER_WEEK + 1) * HOUR_MS)
    assert state.forecast(DOUGH, MONDAY_HOUR) == 1000 + SMOOTHING * 1000
    assert state.error[DOUGH][0] == 250 + SMOOTHING * (1000 - 250)
    # every hour in between had no demand: folded as zero, first sight of those slots
    assert state.forecast(DOUGH, MONDAY_HOUR + 5) == 0 and state.seen[DOUGH] == (1 << 168) - 1


def test_a_late_order_counts_in_the_current_hour():
    state = StoreReplenishment(1)
    state.record_demand({DOUGH: 5}, MONDAY + 2 * HOUR_MS)
    state.record_demand({DOUGH: 7}, MONDAY)
    assert state.hour == MONDAY_HOUR + 2 and state.current == {DOUGH: 12}


def test_forecast_is_seeded_from_order_fct_rows_and_recipes():
    catalog = Catalog.from_reference_data()
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    rows = [
        (monday + timedelta(minutes=5), 3, 2),  # 2 Margherita Large
        {
            "transaction_ts": monday + timedelta(minutes=50),
            "product_id": 13,
            "quantity": 1,
        },  # garlic bread
        (epoch_ms(monday + timedelta(hours=12)), 16, 4),
    ]  # 4 colas, ts in ms
    hours = hourly_demand(rows, catalog.recipe_pairs)
    assert hours[MONDAY_HOUR] == {
        DOUGH: 2 * 350 + 150,
        SAUCE: 240,
        CHEESE: 340,
        8: 10,
        BOX: 2,
        11: 1,
    }
    assert hours[MONDAY_HOUR + 12] == {12: 4}
    state = StoreReplenishment.seeded(5, hours)
    assert state.forecast(DOUGH, MONDAY_HOUR) == 850
    assert state.forecast(DOUGH, MONDAY_HOUR + 1) == 0
    assert state.forecast(12, MONDAY_HOUR + 12) == 4
    assert state.hour == MONDAY_HOUR + 13 and state.current == {}


# --------------------------------------------------------------------------- limits


def test_reorder_point_covers_lead_time_and_a_tick_with_a_service_level_safety_stock():
    state = StoreReplenishment(1)
    _steady(state, {DOUGH: 1000}, weeks=1)  # error at first sight: 250 per hour
    dough = ReplenishmentPolicy(DOUGH, 1, 240, 0, 50_000, 1440, 120, 0.99)
    state.review({DOUGH: dough}, {DOUGH: 10**9}, MONDAY)
    hours = dough.lead_time_minutes // 60 + 1
    sigma = math.sqrt(hours) * MAD_TO_SIGMA * 250
    assert state.reorder_point(DOUGH) == math.ceil(hours * 1000 + dough.z * sigma)
    hours += dough.review_period_minutes // 60
    sigma = math.sqrt(hours) * MAD_TO_SIGMA * 250
    assert state.order_up_to(DOUGH) == math.ceil(hours * 1000 + dough.z * sigma)


def test_safety_stock_never_below_the_ingredients_floor():
    state = StoreReplenishment(1)
    state.review(POLICIES, {}, MONDAY)  # no forecast at all
    assert state.reorder_point(DOUGH) == POLICIES[DOUGH].safety_stock


def test_the_reorder_point_looks_ahead_to_the_lunch_peak():
    """At 08:00 on an empty-looking morning the point already holds the lunch hours that
    an order placed now must cover: what today's last-hour rate cannot see."""
    history = {MONDAY_HOUR - HOURS_PER_WEEK + h: {DOUGH: 10_000} for h in (12, 13)}
    state = StoreReplenishment.seeded(1, history, MONDAY_HOUR)
    state.review(POLICIES, {DOUGH: 10**9}, MONDAY + 7 * HOUR_MS)
    at_seven = state.reorder_point(DOUGH)
    state.review(POLICIES, {DOUGH: 10**9}, MONDAY + 8 * HOUR_MS)
    assert at_seven < 20_000 <= state.reorder_point(DOUGH)


# --------------------------------------------------------------------------- orders


def test_one_consolidated_order_per_supplier_with_a_minimum_line():
    state = StoreReplenishment(9)
    _steady(state, {DOUGH: 10_000, SAUCE: 300, CHEESE: 10, PEPPERONI: 50})
    on_hand = {DOUGH: 100, SAUCE: 100_000, CHEESE: 0, PEPPERONI: 10**6}
    out = state.review(POLICIES, on_hand, MONDAY + 60_000, [DOUGH])
    (order,) = [o for o in out if isinstance(o, ReplenishmentOrder)]
    assert (order.supplier_order_id, order.supplier_id, order.replaces) == ("PO-9-1-1", 1, None)
    lines = dict(order.lines)
    assert set(lines) == {DOUGH, CHEESE}  # sauce is above its order-up-to level
    assert lines[DOUGH] == state.order_up_to(DOUGH) - 100
    assert lines[CHEESE] == POLICIES[CHEESE].reorder_quantity  # the minimum line
    assert order.due_ms == MONDAY + 60_000 + 240 * 60_000
    assert state.on_order == lines
    # while it is open: nothing more from that supplier, whatever runs low
    assert [
        o
        for o in state.review(
            POLICIES, {**on_hand, SAUCE: 0}, MONDAY + 120_000, [DOUGH, SAUCE, CHEESE]
        )
        if isinstance(o, ReplenishmentOrder)
    ] == []


def test_review_looks_only_at_the_ingredients_it_is_given():
    state = StoreReplenishment(1)
    _steady(state, {DOUGH: 1000, PEPPERONI: 100})
    on_hand = {DOUGH: 10**6, PEPPERONI: 0}
    assert state.review(POLICIES, on_hand, MONDAY, [DOUGH]) == []
    orders = [
        o
        for o in state.review(POLICIES, on_hand, MONDAY, [PEPPERONI])
        if isinstance(o, ReplenishmentOrder)
    ]
    assert [o.supplier_id for o in orders] == [2]


def test_delivery_closes_lines_and_a_closed_order_lets_the_next_one_go():
    state = StoreReplenishment(1)
    (order,) = state.review(SIMPLE, {1: 0}, MONDAY)
    assert dict(order.lines) == {1: 10}
    assert not state.receive("PO-1-1-999", 1, SIMPLE)
    assert state.receive(order.supplier_order_id, 1, SIMPLE)
    assert state.open == {} and state.on_order == {}
    assert not state.receive(order.supplier_order_id, 1, SIMPLE)  # a repeat: nothing
    (again,) = state.review(SIMPLE, {1: 0}, MONDAY + 60_000)
    assert again.supplier_order_id == "PO-1-1-2"


def test_an_overdue_order_is_reissued_once_with_a_linked_id_and_an_alert():
    state = StoreReplenishment(3)
    (first,) = state.review(SIMPLE, {1: 0}, MONDAY)
    deadline = first.due_ms + 60 * 60_000
    assert state.review(SIMPLE, {1: 0}, deadline - 1) == []
    alert, reissue = state.review(SIMPLE, {1: 0}, deadline)
    assert alert == OverdueAlert(3, 1, "PO-3-1-1", "PO-3-1-2", MONDAY, first.due_ms, deadline)
    assert (reissue.supplier_order_id, reissue.replaces, reissue.lines) == (
        "PO-3-1-2",
        "PO-3-1-1",
        first.lines,
    )
    assert state.on_order == {1: 10}  # the re-issue replaces, never adds
    assert state.review(SIMPLE, {1: 0}, deadline + 1) == []
    assert not state.receive("PO-3-1-1", 1, SIMPLE)  # the old one's late delivery
    assert state.receive("PO-3-1-2", 1, SIMPLE)


def test_expected_stockout_warns_once_until_delivered():
    state = StoreReplenishment(1)
    _steady(state, {DOUGH: 1000})
    on_hand = {DOUGH: 2_000}  # about two hours of dough
    out = state.review(POLICIES, on_hand, MONDAY, [DOUGH])
    (order,) = [o for o in out if isinstance(o, ReplenishmentOrder)]
    (warning,) = [o for o in out if isinstance(o, StockoutWarning)]
    assert warning == StockoutWarning(1, DOUGH, 2_000, 4_000, order.due_ms, MONDAY)
    on_hand[DOUGH] = 1_500
    assert state.review(POLICIES, on_hand, MONDAY + 60_000, [DOUGH]) == []
    assert state.receive(order.supplier_order_id, DOUGH, POLICIES)
    on_hand[DOUGH] = 100  # delivered, then short again: warns again
    assert any(
        isinstance(o, StockoutWarning)
        for o in state.review(POLICIES, on_hand, MONDAY + 120_000, [DOUGH])
    )


def test_records_are_json_for_the_streams():
    order = ReplenishmentOrder(
        "PO-1-2-3", 1, 2, ((4, 100), (6, 50)), MONDAY, MONDAY + 1, "PO-1-2-1"
    )
    assert order.to_json() == (
        '{"supplier_order_id":"PO-1-2-3","store_id":1,"supplier_id":2,"lines":'
        '[{"ingredient_id":4,"quantity":100},{"ingredient_id":6,"quantity":50}],'
        '"ts":"2026-11-23T00:00:00.000Z","due":"2026-11-23T00:00:00.001Z",'
        '"replaces":"PO-1-2-1"}'
    )
    assert '"alert":"expected_stockout"' in StockoutWarning(1, 2, 3, 4, 5, 6).to_json()
    assert '"alert":"supplier_order_overdue"' in OverdueAlert(1, 2, "a", "b", 3, 4, 5).to_json()


# --------------------------------------------------------------------------- state

events = st.lists(
    st.tuples(
        st.integers(0, 3 * HOURS_PER_WEEK * 60),  # minute after MONDAY (sorted below)
        st.sampled_from(["order", "restock", "tick"]),
        st.dictionaries(
            st.sampled_from(sorted(POLICIES)), st.integers(1, 900), min_size=1, max_size=6
        ),
    ),
    max_size=120,
)


def _play(state, stock, evs, deliveries):
    """Applies events; supplier order lines are delivered by the later restock events."""
    out = []
    for minute, kind, demand in evs:
        ts = MONDAY + minute * 60_000
        if kind == "order":
            take_stock(stock, demand, ts)
            state.record_demand(demand, ts)
            records = state.review(POLICIES, stock.on_hand, ts, demand)
        elif kind == "restock" and deliveries:
            order_id, ingredient_id, units = deliveries.pop(0)
            restock(stock, ingredient_id, units, order_id, ts)
            state.receive(order_id, ingredient_id, POLICIES)
            records = state.review(POLICIES, stock.on_hand, ts, [ingredient_id])
        else:
            records = state.review(POLICIES, stock.on_hand, ts)
        for record in records:
            if isinstance(record, ReplenishmentOrder):
                deliveries += [(record.supplier_order_id, i, q) for i, q in record.lines]
            out.append(record.to_json())
    return out


@settings(max_examples=40, deadline=None)
@given(events, st.integers(0, 120))
def test_a_restore_from_bytes_replays_to_the_same_records_and_state(evs, cut):
    """A job restored from a checkpoint re-processes the events after it: the same
    records, ids included, and the same state."""
    evs = sorted(evs, key=lambda e: e[0])
    cut = min(cut, len(evs))

    def fresh():
        state = StoreReplenishment(7)
        _steady(state, {DOUGH: 800, SAUCE: 200, BOX: 3, 12: 1})
        return state, StoreStock.initial(7, {i: 5_000 for i in POLICIES})

    state, stock = fresh()
    straight = _play(state, stock, evs, [])
    state2, stock2 = fresh()
    pending = []
    head = _play(state2, stock2, evs[:cut], pending)
    restored = StoreReplenishment.from_bytes(state2.to_bytes())
    stock3 = StoreStock.from_bytes(stock2.to_bytes())
    tail = _play(restored, stock3, evs[cut:], pending)
    assert head + tail == straight
    assert restored == state and restored.to_bytes() == state.to_bytes()


# Small limits, so that stock meets them exactly: ingredient i's calm level is its safety
# stock 5 * i until demand is forecast; 4 is planned but not stocked, 5 stocked but not
# planned, 99 neither.
SERVED = {
    i: ReplenishmentPolicy(
        i, i % 2 + 1, 60, 5 * i, 10, review_period_minutes=120, grace_minutes=30, service_level=0.5
    )
    for i in (1, 2, 3, 4)
}
served_events = st.lists(
    st.tuples(
        st.integers(0, 2 * 24 * 60),  # minute after MONDAY (sorted below)
        st.sampled_from(["order"] * 6 + ["fresh order", "restock", "restock", "tick"]),
        st.dictionaries(st.sampled_from([1, 2, 3, 4, 5, 99]), st.integers(1, 12), max_size=5),
    ),
    min_size=20,
    max_size=150,
)


@settings(max_examples=150, deadline=None)
@given(served_events, st.integers(0, 120))
def test_serving_an_order_is_take_then_record_demand_then_review(evs, opening):
    """``serve_order`` (the order path's one pass) gives the shortages, records, stock and
    plan that ``inventory.take``, ``record_demand`` and ``review`` give one after the
    other, whether the order is taken or refused, reviewed in full or not."""
    evs = sorted(evs, key=lambda e: e[0])

    def fresh():
        state = StoreReplenishment(7)
        _steady(state, {1: 3, 5: 1})
        return state, StoreStock.initial(7, {1: opening, 2: opening, 3: opening, 5: opening})

    served, served_stock = fresh()
    state, stock = fresh()
    deliveries: list[tuple[str, int, int]] = []  # lines of the supplier orders issued
    for minute, kind, demand in evs:
        ts = MONDAY + minute * 60_000
        if kind.endswith("order"):
            review_all = kind == "fresh order"
            short, records = serve_order(served_stock, served, demand, ts, SERVED, review_all)
            expected_short = take(stock, demand)
            state.record_demand(demand, ts)
            expected = state.review(SERVED, stock.on_hand, ts, None if review_all else demand)
            assert (short, records) == (expected_short, expected)
        else:
            delivery = deliveries.pop(0) if kind == "restock" and deliveries else None
            for plan, levels in ((served, served_stock), (state, stock)):
                if delivery:
                    order_id, ingredient_id, units = delivery
                    restock(levels, ingredient_id, units, order_id, ts, known=SERVED)
                    plan.receive(order_id, ingredient_id, SERVED)
                records = plan.review(
                    SERVED, levels.on_hand, ts, [delivery[1]] if delivery else None
                )
        for record in records:
            if isinstance(record, ReplenishmentOrder):
                deliveries += [(record.supplier_order_id, i, q) for i, q in record.lines]
        assert served_stock.on_hand == stock.on_hand
        assert served == state


def test_state_stays_bounded_by_ingredients_times_hours_of_the_week():
    state = StoreReplenishment(1)
    demand = {i: 10 for i in POLICIES}
    for hour in range(6 * HOURS_PER_WEEK):
        state.record_demand(demand, MONDAY + hour * HOUR_MS)
    assert all(len(levels) == HOURS_PER_WEEK for levels in state.level.values())
    size = len(state.to_bytes())
    for hour in range(6 * HOURS_PER_WEEK, 12 * HOURS_PER_WEEK):
        state.record_demand(demand, MONDAY + hour * HOUR_MS)
    assert len(state.to_bytes()) <= size + 64 < 12 * 2 * HOURS_PER_WEEK * 8


def test_the_per_order_hook_costs_microseconds():
    """Generous bound for a shared machine; the measured figure is in the docstring."""
    state = StoreReplenishment(1)
    demand = {DOUGH: 350, SAUCE: 120, CHEESE: 170, PEPPERONI: 80, BOX: 1}
    state.record_demand(demand, MONDAY)
    runs = 50_000
    best = (
        min(timeit.repeat(lambda: state.record_demand(demand, MONDAY), number=runs, repeat=5))
        / runs
    )
    assert best < 5e-6, f"{best * 1e6:.2f} µs per order"


# --------------------------------------------------------------------------- the week


def test_two_days_of_the_simulation_meet_the_target():
    """The busiest store refuses under 1% of orders on each day with the forecast policy,
    and needs fewer supplier orders per store-day than today's."""
    from simulation import simulate

    week = simulate.simulate(store_count=3, days=2, history_weeks=2)
    busiest = week.stores[0]
    assert (
        busiest.store_id
        == max(simulate.chosen_stores(2000), key=lambda s: s.traffic_weight).store_id
    )
    new = week.runs[simulate.NEW][busiest.store_id].days
    assert all(day.orders > 500 and day.refused_share < 0.01 for day in new)
    totals = simulate.totals(week)
    assert (
        totals[simulate.NEW]["supplier_orders_per_store_day"]
        < totals[simulate.OLD]["supplier_orders_per_store_day"]
    )
    # and today's policy does starve it by day 2: the comparison measures something
    assert week.runs[simulate.OLD][busiest.store_id].days[1].refused_share > 0.05


def test_hours_deliberately_not_read_are_not_learnt_as_zero_demand():
    """The job seeds a store from sales older than a gap before its first event: the gap's
    hours are unknown, not quiet, and keep what the weeks before taught their slots."""
    history = {MONDAY_HOUR - HOURS_PER_WEEK + h: {DOUGH: 100} for h in range(HOURS_PER_WEEK)}
    until = MONDAY_HOUR
    skipped = StoreReplenishment.seeded(1, history, until_hour=until, start_hour=until + 48)
    assert skipped.hour == until + 48 and skipped.current == {}
    assert all(skipped.forecast(DOUGH, until + h) == 100 for h in range(48))
    folded = StoreReplenishment.seeded(1, history, until_hour=until + 48)
    assert folded.forecast(DOUGH, until + 3) < 100


def _served_like_three_calls(state, stock, demand, ts) -> list:
    """``serve_order`` on copies of ``state`` and ``stock`` against ``take``,
    ``record_demand`` and ``review`` on other copies: same shortages, records, stock and
    plan. Returns the records."""
    served, served_stock = (
        StoreReplenishment.from_bytes(state.to_bytes()),
        StoreStock.from_bytes(stock.to_bytes()),
    )
    plan, levels = (
        StoreReplenishment.from_bytes(state.to_bytes()),
        StoreStock.from_bytes(stock.to_bytes()),
    )
    short, records = serve_order(served_stock, served, demand, ts, SERVED)
    expected_short = take(levels, demand)
    plan.record_demand(demand, ts)
    expected = plan.review(SERVED, levels.on_hand, ts, demand)
    assert (short, records) == (expected_short, expected)
    assert served_stock.on_hand == levels.on_hand and served == plan
    return records


@pytest.mark.parametrize("left_over", [-1, 0, 1])
def test_an_order_leaving_an_ingredient_at_its_calm_level_is_served_as_review_decides(left_over):
    """The one pass skips ``review`` only while every ingredient the order touched stays at
    or above its calm level: an order that leaves one exactly at it, one unit below or one
    above is served as the three calls serve it (the boundary a random run rarely hits)."""
    state = StoreReplenishment(7)
    _steady(state, {1: 3, 2: 3, 3: 3})
    stock = StoreStock.initial(7, {1: 500, 2: 500, 3: 500})
    # a first review fixes the hour's limits, so the next order may take the quiet path
    state.review(SERVED, stock.on_hand, MONDAY, None)
    plan_before = state.to_state()
    level = SERVED[2].safety_stock * 4  # comfortably above any calm level of ingredient 2
    stock.on_hand[2] = level
    records = _served_like_three_calls(state, stock, {2: 1}, MONDAY + 60_000)
    assert records == [] and state.to_state() == plan_before  # quiet: nothing to review
    calm_level = next(
        units
        for units in range(level, -1, -1)
        if _served_like_three_calls(state, _with(stock, 2, units + 1), {2: 1}, MONDAY + 60_000)
    )  # the highest stock from which taking one unit makes review act
    stock = _with(stock, 2, calm_level + 1 + left_over)
    _served_like_three_calls(state, stock, {2: 1}, MONDAY + 60_000)


def _with(stock: StoreStock, ingredient_id: int, units: int) -> StoreStock:
    copy = StoreStock.from_bytes(stock.to_bytes())
    copy.on_hand[ingredient_id] = units
    return copy


def test_an_order_in_a_later_hour_rolls_the_plan_before_it_is_served():
    """An order in an hour after the plan's rolls the plan over first (the hour's demand
    starts again, the hour's limits are computed anew), exactly as ``record_demand`` and
    ``review`` do, though the order leaves every ingredient far above its calm level."""
    state = StoreReplenishment(7)
    _steady(state, {1: 3, 2: 3, 3: 3})
    stock = StoreStock.initial(7, {1: 5_000, 2: 5_000, 3: 5_000})
    state.review(SERVED, stock.on_hand, MONDAY, None)
    _served_like_three_calls(state, stock, {1: 2}, MONDAY + 10 * 60_000)
    for hours_later in (1, 2, 25):
        _served_like_three_calls(state, stock, {1: 2, 3: 1}, MONDAY + hours_later * HOUR_MS)
