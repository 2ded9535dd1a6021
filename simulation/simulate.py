"""A week of store traffic through the real stock rules, under today's reorder policy and
under ``pizzastream.replenishment``: ``python -m simulation.simulate``.

Why a simulation and not the stack: a week of a busy store's orders and its suppliers'
lead times takes seconds here and days on the pipeline. The stock decision is the job's
own (``inventory.take_stock``, ``inventory.restock``); today's reorders are
``inventory.due_reorders`` called as ``ShardDesk`` calls it (after each accepted order on
its ingredients, after each restock, on all ingredients at the store's first event); the
new policy is ``StoreReplenishment`` with a review at every hour and after every event.
A supplier delivers each order line in full ``lead_time_minutes`` after the order (or,
with ``--lost-share``, never: those orders are the ones the new policy re-issues).

Traffic: each store's expected daily orders are its ``traffic_weight`` share of
``reference_data.ASSUMED_CHAIN_ORDERS_PER_DAY`` (the 80/20 skew), times a day-of-week
factor (``DAY_FACTORS``: Friday to Sunday busier), spread over the opening hours by
``HOUR_SHARES`` (a lunch and a dinner peak), with Poisson arrivals; lines and quantities
as ``simulation.traffic`` draws them. Stores open with ``reference_data.initial_inventory``
(a business day of their expected use): realistic stock, not the demo's stress factor.
The new policy's forecast is seeded from ``--history-weeks`` weeks of the same traffic
before the first day (unconstrained demand: as if the store had sold all of it).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from pizzastream import reference_data
from pizzastream.catalog import Catalog
from pizzastream.inventory import (
    StoreStock,
    due_reorders,
    restock,
    take_stock,
)
from pizzastream.inventory import policies_from_reference_data as todays_policies
from pizzastream.orders import epoch_ms
from pizzastream.replenishment import (
    HOUR_MS,
    ReplenishmentOrder,
    StoreReplenishment,
    policies_from_reference_data,
)
from simulation.traffic import LINE_COUNT_WEIGHTS, QUANTITY_WEIGHTS

DAY_MS = 24 * HOUR_MS
# A Monday, so day 1 is a weekday and days 5-7 carry the weekend uplift.
START = datetime(2026, 11, 23, tzinfo=UTC)
DAY_FACTORS = (0.9, 0.9, 0.9, 0.95, 1.1, 1.25, 1.15)  # Monday .. Sunday
_HOUR_WEIGHTS = {
    10: 1,
    11: 5,
    12: 10,
    13: 8,
    14: 4,
    15: 3,
    16: 3,
    17: 6,
    18: 10,
    19: 10,
    20: 7,
    21: 4,
    22: 2,
}
HOUR_SHARES = {h: w / sum(_HOUR_WEIGHTS.values()) for h, w in _HOUR_WEIGHTS.items()}
DOUGH = 1
OLD, NEW = "today", "forecast"


# --------------------------------------------------------------------------- traffic


class Traffic:
    """Order demand per store: ``(ts_ms, {ingredient: units})`` in time order."""

    def __init__(self, catalog: Catalog, seed: int):
        self._seed = seed
        self._recipes = catalog.recipe_pairs
        self._products = [p.product_id for p in catalog.products() if p.active]
        self._lines, self._line_cum = (
            list(LINE_COUNT_WEIGHTS),
            list(accumulate(LINE_COUNT_WEIGHTS.values())),
        )
        self._qty, self._qty_cum = (
            list(QUANTITY_WEIGHTS),
            list(accumulate(QUANTITY_WEIGHTS.values())),
        )

    def orders(
        self, store: reference_data.Store, first_day_ms: int, days: int, stream: str
    ) -> list[tuple[int, dict[int, int]]]:
        rng = random.Random(f"{self._seed}:{stream}:{store.store_id}")
        daily = store.traffic_weight * reference_data.ASSUMED_CHAIN_ORDERS_PER_DAY
        out: list[tuple[int, dict[int, int]]] = []
        for day in range(days):
            day_ms = first_day_ms + day * DAY_MS
            weekday = (day_ms // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday
            for hour, share in HOUR_SHARES.items():
                start = day_ms + hour * HOUR_MS
                times = sorted(
                    start + rng.randrange(HOUR_MS)
                    for _ in range(_poisson(rng, daily * DAY_FACTORS[weekday] * share))
                )
                out.extend((ts, self._demand(rng)) for ts in times)
        return out

    def _demand(self, rng: random.Random) -> dict[int, int]:
        lines = rng.choices(self._lines, cum_weights=self._line_cum)[0]
        demand: dict[int, int] = {}
        for product_id in rng.sample(self._products, lines):
            quantity = rng.choices(self._qty, cum_weights=self._qty_cum)[0]
            for ingredient_id, per_unit in self._recipes[product_id]:
                demand[ingredient_id] = demand.get(ingredient_id, 0) + per_unit * quantity
        return demand


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal for large ones."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


# --------------------------------------------------------------------------- runs


@dataclass
class DayFigures:
    orders: int = 0
    refused: int = 0
    supplier_orders: int = 0
    stock_samples: list[float] = field(default_factory=list)  # days of cover, hourly

    @property
    def refused_share(self) -> float:
        return self.refused / self.orders if self.orders else 0.0

    @property
    def stock_days(self) -> float:
        return sum(self.stock_samples) / len(self.stock_samples) if self.stock_samples else 0.0


@dataclass
class StoreRun:
    store_id: int
    policy: str
    days: list[DayFigures]
    trace: list[tuple[int, int, int | None]]  # (ts_ms, dough on hand, dough reorder point)
    reissued: int = 0
    warnings: int = 0


def _cover(on_hand: Mapping[int, int], daily_use: Mapping[int, float]) -> float:
    """Average days of cover over the ingredients the store uses."""
    used = [i for i, use in daily_use.items() if use > 0]
    return sum(on_hand.get(i, 0) / daily_use[i] for i in used) / len(used)


def run_store(
    store: reference_data.Store,
    orders: Sequence[tuple[int, dict[int, int]]],
    opening: Mapping[int, int],
    policy: str,
    first_day_ms: int,
    days: int,
    history: Mapping[int, Mapping[int, int]] | None = None,
    lost_share: float = 0.0,
    seed: int = 0,
) -> StoreRun:
    """One store's week under one policy. Events in time order: supplier deliveries due,
    then the hourly tick (the new policy's review), then the orders."""
    stock = StoreStock.initial(store.store_id, opening)
    lost = random.Random(f"{seed}:lost:{store.store_id}:{policy}")
    daily_use: dict[int, float] = defaultdict(float)
    for _, demand in orders:
        for ingredient_id, units in demand.items():
            daily_use[ingredient_id] += units / days
    figures = [DayFigures() for _ in range(days)]
    trace: list[tuple[int, int, int | None]] = []
    deliveries: list[tuple[int, int, str, int, int]] = []  # (due, seq, order id, ingr, qty)
    tie = 0
    old_policies = todays_policies()
    new_policies = policies_from_reference_data()
    planner = None
    if policy == NEW:
        planner = StoreReplenishment.seeded(
            store.store_id, history or {}, until_hour=first_day_ms // HOUR_MS
        )
    run = StoreRun(store.store_id, policy, figures, trace)

    def day_of(ts_ms: int) -> DayFigures | None:
        index = (ts_ms - first_day_ms) // DAY_MS
        return figures[index] if 0 <= index < days else None

    def ship(records: Iterable[Any], ts_ms: int) -> None:
        nonlocal tie
        for record in records:
            if policy == OLD:
                day = day_of(ts_ms)
                if day:
                    day.supplier_orders += 1
                if lost.random() >= lost_share:
                    tie += 1
                    lead = old_policies[record.ingredient_id].lead_time_minutes
                    heapq.heappush(
                        deliveries,
                        (
                            ts_ms + lead * 60_000,
                            tie,
                            record.supplier_order_id,
                            record.ingredient_id,
                            record.quantity,
                        ),
                    )
            elif isinstance(record, ReplenishmentOrder):
                day = day_of(ts_ms)
                if day:
                    day.supplier_orders += 1
                run.reissued += record.replaces is not None
                if lost.random() >= lost_share:
                    for ingredient_id, quantity in record.lines:
                        tie += 1
                        heapq.heappush(
                            deliveries,
                            (record.due_ms, tie, record.supplier_order_id, ingredient_id, quantity),
                        )
            else:
                run.warnings += 1

    def deliver_until(ts_ms: int) -> None:
        while deliveries and deliveries[0][0] <= ts_ms:
            due, _, order_id, ingredient_id, quantity = heapq.heappop(deliveries)
            restock(stock, ingredient_id, quantity, order_id, due)
            if policy == OLD:
                ship(
                    due_reorders(stock, old_policies, stock.clock_ms or due, (ingredient_id,)), due
                )
            else:
                # The new policy runs with a planner.
                planner.receive(order_id, ingredient_id, new_policies)  # type: ignore[union-attr]
                ship(
                    planner.review(  # type: ignore[union-attr]
                        new_policies,
                        stock.on_hand,
                        due,
                        (ingredient_id,),
                    ),
                    due,
                )
            trace.append((due, stock.on_hand.get(DOUGH, 0), _point(planner)))

    end_ms = first_day_ms + days * DAY_MS
    next_hour = first_day_ms
    index = 0
    first = True
    while next_hour < end_ms:
        deliver_until(next_hour)
        day = day_of(next_hour)
        if planner is not None:
            ship(planner.review(new_policies, stock.on_hand, next_hour, None), next_hour)
        elif first:
            ship(due_reorders(stock, old_policies, next_hour, None), next_hour)
        first = False
        day.stock_samples.append(_cover(stock.on_hand, daily_use))  # type: ignore[union-attr]  # in range
        trace.append((next_hour, stock.on_hand.get(DOUGH, 0), _point(planner)))
        hour_end = next_hour + HOUR_MS
        while index < len(orders) and orders[index][0] < hour_end:
            ts_ms, demand = orders[index]
            index += 1
            deliver_until(ts_ms)
            short = take_stock(stock, demand, ts_ms)
            day = day_of(ts_ms)
            day.orders += 1  # type: ignore[union-attr]  # an order of the simulated days
            day.refused += bool(short)  # type: ignore[union-attr]
            if planner is not None:
                planner.record_demand(demand, ts_ms)
                ship(planner.review(new_policies, stock.on_hand, ts_ms, demand), ts_ms)
            elif not short:
                ship(due_reorders(stock, old_policies, stock.clock_ms or ts_ms, demand), ts_ms)
            trace.append((ts_ms, stock.on_hand.get(DOUGH, 0), _point(planner)))
        next_hour = hour_end
    return run


def _point(planner: StoreReplenishment | None) -> int | None:
    return None if planner is None else planner.reorder_point(DOUGH)


# --------------------------------------------------------------------------- the week


def chosen_stores(
    count: int, seed: int = reference_data.DEFAULT_SEED
) -> list[reference_data.Store]:
    """The busiest store first, then ``count - 1`` stores spread evenly over the ranking
    by traffic, so quiet stores are in it too."""
    ranked = sorted(reference_data.stores(seed), key=lambda s: (-s.traffic_weight, s.store_id))
    if count >= len(ranked):
        return ranked
    picks = {0} | {round(k * (len(ranked) - 1) / max(count - 1, 1)) for k in range(1, count)}
    step = 1
    while len(picks) < count:  # rounding collided: fill from the top
        picks.add(step)
        step += 1
    return [ranked[i] for i in sorted(picks)]


@dataclass
class Week:
    stores: list[reference_data.Store]
    runs: dict[str, dict[int, StoreRun]]
    days: int
    seconds: float


def simulate(
    store_count: int = 100,
    days: int = 7,
    history_weeks: int = 4,
    seed: int = 1,
    lost_share: float = 0.0,
) -> Week:
    started = time.perf_counter()
    catalog = Catalog.from_reference_data()
    traffic = Traffic(catalog, seed)
    stores = chosen_stores(store_count)
    opening: dict[int, dict[int, int]] = defaultdict(dict)
    wanted = {s.store_id for s in stores}
    for level in reference_data.initial_inventory():
        if level.store_id in wanted:
            opening[level.store_id][level.ingredient_id] = level.on_hand
    first_day_ms = epoch_ms(START)
    runs: dict[str, dict[int, StoreRun]] = {OLD: {}, NEW: {}}
    for store in stores:
        orders = traffic.orders(store, first_day_ms, days, "week")
        past = traffic.orders(
            store, first_day_ms - history_weeks * 7 * DAY_MS, history_weeks * 7, "history"
        )
        history = _history(past)
        for policy in (OLD, NEW):
            runs[policy][store.store_id] = run_store(
                store,
                orders,
                opening[store.store_id],
                policy,
                first_day_ms,
                days,
                history if policy == NEW else None,
                lost_share,
                seed,
            )
    return Week(stores, runs, days, time.perf_counter() - started)


def _history(orders: Sequence[tuple[int, dict[int, int]]]) -> dict[int, dict[int, int]]:
    """Past orders as ``hourly_demand`` makes them from ``order_fct`` rows."""
    hours: dict[int, dict[int, int]] = {}
    for ts_ms, demand in orders:
        counts = hours.setdefault(ts_ms // HOUR_MS, {})
        for ingredient_id, units in demand.items():
            counts[ingredient_id] = counts.get(ingredient_id, 0) + units
    return hours


# --------------------------------------------------------------------------- report


def busiest_table(week: Week) -> str:
    store = week.stores[0]
    old, new = week.runs[OLD][store.store_id], week.runs[NEW][store.store_id]
    rows = [
        "| day | orders | refused today | refused forecast | supplier orders today "
        "| supplier orders forecast | stock days today | stock days forecast |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for day in range(week.days):
        o, n = old.days[day], new.days[day]
        weekday = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[day % 7]
        rows.append(
            f"| {day + 1} ({weekday}) | {o.orders} | {100 * o.refused_share:.2f}% | "
            f"{100 * n.refused_share:.2f}% | {o.supplier_orders} | "
            f"{n.supplier_orders} | {o.stock_days:.2f} | {n.stock_days:.2f} |"
        )
    return "\n".join(rows)


def stores_table(week: Week) -> str:
    rows = [
        "| store | orders/day | worst day refused today | worst day refused forecast "
        "| refused today (week) | refused forecast (week) | supplier orders/day today "
        "| supplier orders/day forecast | stock days today | stock days forecast |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for store in week.stores:
        cells = [
            f"{store.store_id}{' (busiest)' if store is week.stores[0] else ''}",
            f"{sum(d.orders for d in week.runs[OLD][store.store_id].days) / week.days:.0f}",
        ]
        per = {p: week.runs[p][store.store_id].days for p in (OLD, NEW)}
        cells += [f"{100 * max(d.refused_share for d in per[p]):.2f}%" for p in (OLD, NEW)]
        cells += [f"{100 * _share(per[p]):.2f}%" for p in (OLD, NEW)]
        cells += [f"{sum(d.supplier_orders for d in per[p]) / week.days:.2f}" for p in (OLD, NEW)]
        cells += [f"{sum(d.stock_days for d in per[p]) / week.days:.2f}" for p in (OLD, NEW)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _share(days: Sequence[DayFigures]) -> float:
    orders = sum(d.orders for d in days)
    return sum(d.refused for d in days) / orders if orders else 0.0


def totals(week: Week) -> dict[str, dict[str, float]]:
    """Per policy over all simulated stores: refused share, supplier orders per store-day,
    days of cover, and the busiest store's worst day."""
    out = {}
    busiest = week.stores[0].store_id
    for policy, runs in week.runs.items():
        days = [d for run in runs.values() for d in run.days]
        out[policy] = {
            "refused_share": _share(days),
            "supplier_orders_per_store_day": sum(d.supplier_orders for d in days) / len(days),
            "stock_days": sum(d.stock_days for d in days) / len(days),
            "busiest_worst_day_refused": max(d.refused_share for d in runs[busiest].days),
            "reissued": sum(run.reissued for run in runs.values()),
            "warnings": sum(run.warnings for run in runs.values()),
        }
    return out


def plot(week: Week, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = week.stores[0]
    start = epoch_ms(START)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for policy, style in ((OLD, {"color": "tab:gray", "alpha": 0.7}), (NEW, {"color": "tab:blue"})):
        trace = week.runs[policy][store.store_id].trace
        ax.step(
            [(t - start) / DAY_MS for t, _, _ in trace],
            [v / 1000 for _, v, _ in trace],
            where="post",
            label=f"dough on hand, {policy} policy",
            linewidth=1,
            **style,
        )
    trace = week.runs[NEW][store.store_id].trace
    ax.step(
        [(t - start) / DAY_MS for t, _, p in trace if p is not None],
        [p / 1000 for _, _, p in trace if p is not None],
        where="post",
        label="reorder point, forecast policy",
        color="tab:orange",
        linewidth=1,
    )
    ax.set_xlabel("day of the simulated week (day 1 = Monday 00:00 UTC)")
    ax.set_ylabel("dough (kg)")
    ax.set_title(f"Store {store.store_id} (busiest): dough on hand vs reorder point")
    ax.set_xlim(0, week.days)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stores",
        type=int,
        default=100,
        help="stores simulated: the busiest and others spread over the ranking",
    )
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--history-weeks", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--lost-share", type=float, default=0.0, help="share of supplier orders never delivered"
    )
    parser.add_argument("--plot", help="PNG of the busiest store's dough")
    args = parser.parse_args(argv)
    week = simulate(args.stores, args.days, args.history_weeks, args.seed, args.lost_share)
    print(
        f"{len(week.stores)} stores x {week.days} days, realistic opening stock, "
        f"{args.history_weeks} weeks of history, lost supplier orders "
        f"{100 * args.lost_share:g}% ({week.seconds:.1f} s)\n"
    )
    print(f"busiest store {week.stores[0].store_id}, by day:\n{busiest_table(week)}\n")
    print(f"per store:\n{stores_table(week)}\n")
    summary = totals(week)
    print("all simulated stores:")
    for policy, values in summary.items():
        print(
            f"  {policy:<9} refused {100 * values['refused_share']:.2f}%, supplier orders "
            f"per store-day {values['supplier_orders_per_store_day']:.2f}, stock "
            f"{values['stock_days']:.2f} days of use, busiest store's worst day "
            f"{100 * values['busiest_worst_day_refused']:.2f}%, re-issued "
            f"{values['reissued']}, stock-out warnings {values['warnings']}"
        )
    if args.plot:
        plot(week, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
