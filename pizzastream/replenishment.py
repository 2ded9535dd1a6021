"""Replenishment a busy store can live with: forecast-driven supplier orders.

``pizzastream.inventory`` decides each order against the stock; this module decides what
to order from the suppliers so that stock is there when the orders come. It keeps, per
store, a ``StoreReplenishment``: a demand forecast per ingredient and hour of the week,
the store's open supplier orders, and which ingredients it has already warned about.

Why it is built this way
------------------------
* **Demand, not sales.** A refused order's ingredients count as demand exactly like an
  accepted one's: a store that ran out must learn what it could have sold, or its
  forecast shrinks with every stock-out and the next day starves again.
* **Hour of the week.** Demand at 12:00 on a Saturday has little to do with demand at
  03:00 on a Tuesday; a rate from the last hour (today's rule) is empty every morning
  just before the lunch peak. Each of the 168 hours of the week has its own exponentially
  weighted level (``SMOOTHING``) and mean absolute error; a slot is first set by its first
  observation (its error starts at ``FIRST_SIGHT_ERROR`` of it, so one week of history
  does not claim certainty), and then learns by one fold a week.
* **Seeded from history.** ``hourly_demand`` turns a store's past sales (``order_fct``
  rows with the recipes) into hourly ingredient demand, and ``StoreReplenishment.seeded``
  folds it in, so day 1 of a store the job meets is planned from its past weeks. Past
  sales understate demand where the store ran out; live operation then counts refusals.
* **Reorder point and order-up-to level.** At the start of each hour, per ingredient:
  ``reorder point = forecast over (lead time + 1 h) + safety``, ``order-up-to = forecast
  over (lead time + 1 h + review period) + safety``, where ``safety = max(safety_stock,
  z × σ)`` with ``z`` from the ingredient's service level and ``σ`` the square root of the
  summed hourly variances (``σ_h = MAD_TO_SIGMA × mean absolute error``). The extra hour
  is the review tick: the next chance to order may be an hour away, so stock must last
  until an order placed then could arrive.
* **One open order per supplier and store.** When an ingredient's position (on hand +
  on order) is below its reorder point and its supplier has no open order for the store,
  one order goes out for every ingredient of that supplier below its order-up-to level,
  each line ``max(reorder_quantity, order-up-to - position)``: the seed's
  ``reorder_quantity`` is the least one line carries. Fewer, larger orders than one per
  ingredient per crossing.
* **Orders that never come.** An order not delivered in full within lead time +
  ``grace_minutes`` is re-issued for its undelivered lines under a new id whose record
  names the one it ``replaces``, and an ``OverdueAlert`` says so. A late delivery of the
  old order still adds its stock (``inventory.restock``); it is just no longer awaited.
* **Warnings before refusals.** An ingredient whose on-hand is below the forecast demand
  until its next delivery (its open order's due time, or an order placed at the next
  tick) gets one ``StockoutWarning`` until it recovers, so staff can act first.

Cost and size
-------------
``record_demand`` is the per-order hook: a dict addition per ingredient, and a fold of
the finished hour when an order opens a new one (~0.45 µs for a 5-ingredient order in
CPython 3.11 on the project's machine, ~1.3 µs with its ``review``; docs/replenishment.md). ``review`` looks only at
the ingredients it is given (an order's, a restock's) against limits computed once per
hour. The state is bounded by ingredients × 168 hours whatever the traffic, and
``to_bytes`` stores the forecast as fixed-point integers (levels and errors are kept on a
1/16-unit grid, so the bytes hold them exactly), compressed.

Determinism
-----------
Everything is a function of (state, policies, events): no wall clock, no randomness, ids
from a per-store counter (``PO-{store}-{supplier}-{seq}``). A job restored from a
checkpoint that replays the same events regenerates the same orders with the same ids.
As with ``inventory``, applying an event twice is not a no-op (demand would count twice):
the caller drops repeated event ids first.
"""

from __future__ import annotations

import json
import math
import pickle
import zlib
from array import array
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist
from typing import Any, cast, final

from pizzastream.catalog import Row, _columns
from pizzastream.inventory import POLICY_COLUMNS as INVENTORY_POLICY_COLUMNS
from pizzastream.inventory import IngredientPolicy, StoreStock, shortages
from pizzastream.orders import epoch_ms, format_event_time

HOUR_MS = 3_600_000
HOURS_PER_WEEK = 168
# 1970-01-01, hour 0 of epoch time, was a Thursday: slot 0 is Monday 00:00-01:00 UTC.
_EPOCH_HOUR_OF_WEEK = 72
SMOOTHING = 0.25  # weight of this week's observation in an hour's forecast
FIRST_SIGHT_ERROR = 0.25  # error assumed for a slot's first observation, as a share of it
MAD_TO_SIGMA = 1.25  # σ ≈ 1.25 × mean absolute deviation for normal errors
_GRID = 16  # levels and errors are kept in 1/16 units: exact in to_bytes
STATE_VERSION = 1
POLICY_COLUMNS = INVENTORY_POLICY_COLUMNS + (
    "review_period_minutes",
    "grace_minutes",
    "service_level",
)


def hour_of_week(epoch_hour: int) -> int:
    """Slot 0..167 of an epoch hour, Monday 00:00 UTC first."""
    return (epoch_hour + _EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK


def _hours(minutes: int) -> int:
    return -(-minutes // 60)


def _on_grid(value: float) -> float:
    return round(value * _GRID) / _GRID


def _grace_ms(lines: Mapping[int, int], policies: Mapping[int, ReplenishmentPolicy]) -> int:
    """How late an order with these lines may be before it is re-issued."""
    return 60_000 * max((policies[i].grace_minutes for i in lines if i in policies), default=0)


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class ReplenishmentPolicy(IngredientPolicy):
    """``IngredientPolicy`` plus what the forecast-driven rules need: how far an order
    covers beyond the lead time, how late a delivery may be, and the service level. The
    defaults are those of the schema, so today's rows still make a policy."""

    review_period_minutes: int = 1440
    grace_minutes: int = 120
    service_level: float = 0.99
    z: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.review_period_minutes <= 0 or self.grace_minutes < 0:
            raise ValueError(
                f"ingredient {self.ingredient_id}: review period must be "
                f"positive, grace not negative"
            )
        if not 0.5 <= self.service_level < 1:
            raise ValueError(
                f"ingredient {self.ingredient_id}: service level "
                f"{self.service_level} must be in [0.5, 1)"
            )
        object.__setattr__(self, "z", NormalDist().inv_cdf(self.service_level))


def policies_from_rows(rows: Iterable[Row]) -> dict[int, ReplenishmentPolicy]:
    """From ``POLICY_COLUMNS`` rows (tuples or mappings), e.g. ``ingredient JOIN
    supplier``. Bad rows raise: a job must not start planning with a broken policy."""
    policies = {}
    for row in rows:
        values = _columns(row, POLICY_COLUMNS)
        policy = ReplenishmentPolicy(
            *(int(v) for v in values[:-1]),  # type: ignore[call-arg]
            float(values[-1]),
        )  # the ints, then service_level
        policies[policy.ingredient_id] = policy
    return policies


def policies_from_reference_data() -> dict[int, ReplenishmentPolicy]:
    """The seeded policies, for tests, the simulation and the local stack."""
    from pizzastream import reference_data

    suppliers = {s.supplier_id: s for s in reference_data.suppliers()}
    return policies_from_rows(
        (
            i.ingredient_id,
            i.supplier_id,
            suppliers[i.supplier_id].lead_time_minutes,
            i.safety_stock,
            i.reorder_quantity,
            suppliers[i.supplier_id].review_period_minutes,
            suppliers[i.supplier_id].grace_minutes,
            i.service_level,
        )
        for i in reference_data.ingredients()
    )


# --------------------------------------------------------------------------- records


@final
@dataclass(frozen=True)
class ReplenishmentOrder:
    """One supplier order of one store, consolidating that supplier's ingredients.
    ``lines`` are ``(ingredient_id, quantity)`` by ingredient; ``replaces`` names the
    overdue order this one re-issues."""

    supplier_order_id: str
    store_id: int
    supplier_id: int
    lines: tuple[tuple[int, int], ...]
    ts_ms: int
    due_ms: int
    replaces: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "supplier_order_id": self.supplier_order_id,
                "store_id": self.store_id,
                "supplier_id": self.supplier_id,
                "lines": [{"ingredient_id": i, "quantity": q} for i, q in self.lines],
                "ts": format_event_time(self.ts_ms),
                "due": format_event_time(self.due_ms),
                "replaces": self.replaces,
            },
            separators=(",", ":"),
        )


@final
@dataclass(frozen=True)
class OverdueAlert:
    """A supplier order not delivered within lead time + grace, and its re-issue."""

    store_id: int
    supplier_id: int
    supplier_order_id: str
    reissued_as: str
    ordered_ms: int
    due_ms: int
    ts_ms: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "alert": "supplier_order_overdue",
                "store_id": self.store_id,
                "supplier_id": self.supplier_id,
                "supplier_order_id": self.supplier_order_id,
                "reissued_as": self.reissued_as,
                "ordered": format_event_time(self.ordered_ms),
                "due": format_event_time(self.due_ms),
                "ts": format_event_time(self.ts_ms),
            },
            separators=(",", ":"),
        )


@final
@dataclass(frozen=True)
class StockoutWarning:
    """On-hand below the forecast demand until the ingredient's next delivery."""

    store_id: int
    ingredient_id: int
    on_hand: int
    expected_demand: int
    next_delivery_ms: int
    ts_ms: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "alert": "expected_stockout",
                "store_id": self.store_id,
                "ingredient_id": self.ingredient_id,
                "on_hand": self.on_hand,
                "expected_demand": self.expected_demand,
                "next_delivery": format_event_time(self.next_delivery_ms),
                "ts": format_event_time(self.ts_ms),
            },
            separators=(",", ":"),
        )


Record = ReplenishmentOrder | OverdueAlert | StockoutWarning


# --------------------------------------------------------------------------- history


def hourly_demand(
    sales: Iterable[Row], recipe_pairs: Mapping[int, tuple[tuple[int, int], ...]]
) -> dict[int, dict[int, int]]:
    """``{epoch hour: {ingredient: units}}`` from one store's sales rows
    ``(transaction_ts, product_id, quantity)`` (``order_fct`` columns; ``transaction_ts``
    an aware datetime or epoch ms) and ``Catalog.recipe_pairs``."""
    hours: dict[int, dict[int, int]] = {}
    for row in sales:
        ts, product_id, quantity = _columns(row, ("transaction_ts", "product_id", "quantity"))
        ts_ms = epoch_ms(ts) if isinstance(ts, datetime) else int(ts)
        counts = hours.setdefault(ts_ms // HOUR_MS, {})
        for ingredient_id, per_unit in recipe_pairs.get(int(product_id), ()):
            counts[ingredient_id] = counts.get(ingredient_id, 0) + per_unit * int(quantity)
    return hours


@dataclass(frozen=True)
class HistoryWindow:
    """Which past sales seed a store the job meets for the first time: at most ``weeks``
    weeks, all older than ``gap_hours`` before the hour of the store's first event.

    The gap is what makes the seed replayable: sales of the last hours may still be
    written (by this very job, whose order_fct rows of the store's first events land
    after them; by the POS, whose batches can be hours late), so a job restored from a
    checkpoint and meeting the store again must not see more history than the first time,
    or it would forecast, and order, differently."""

    gap_hours: int = 48
    weeks: int = 4

    def __post_init__(self) -> None:
        if self.gap_hours < 0 or self.weeks <= 0:
            raise ValueError(
                f"history gap {self.gap_hours} h must not be negative, "
                f"weeks {self.weeks} must be positive"
            )

    def hours(self, first_event_ms: int) -> tuple[int, int]:
        """``(first, end)`` epoch hours of the sales to read (``end`` exclusive)."""
        end = first_event_ms // HOUR_MS - self.gap_hours
        return end - self.weeks * HOURS_PER_WEEK, end

    @classmethod
    def from_properties(cls, group: Mapping[str, str]) -> HistoryWindow:
        """From the ``Inventory`` property group; a missing or unreadable key raises
        naming it, so the job fails at start and not at its first store."""
        return cls(
            gap_hours=_whole_number(group, "history_gap_hours"),
            weeks=_whole_number(group, "history_weeks"),
        )


def _whole_number(group: Mapping[str, str], key: str) -> int:
    try:
        text = str(group[key]).strip()
    except KeyError:
        text = ""
    if not text:
        raise ValueError(f"Inventory.{key} is missing from the configuration")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"Inventory.{key} = {text!r} is not a whole number") from None


# --------------------------------------------------------------------------- state


class StoreReplenishment:
    """One store's forecast, open supplier orders and warnings. Mutable; the limits
    derived from it (reorder points, order-up-to levels, demand until the next delivery)
    are recomputed from it once per hour and are not part of the saved state."""

    __slots__ = (
        "store_id",
        "hour",
        "current",
        "level",
        "error",
        "seen",
        "seq",
        "open",
        "warned",
        "on_order",
        "_limits_hour",
        "_reorder_point",
        "_order_up_to",
        "_until_delivery",
        "_next_delivery",
        "_supplier_of",
        "_deadline_ms",
        "_calm",
        "_packed",
    )

    def __init__(self, store_id: int):
        self.store_id = int(store_id)
        self.hour = -1  # epoch hour that ``current`` counts
        self.current: dict[int, int] = {}  # ingredient -> demand so far this hour
        self.level: dict[int, list[float]] = {}  # ingredient -> 168 hourly forecasts
        self.error: dict[int, list[float]] = {}  # ingredient -> 168 mean absolute errors
        self.seen: dict[int, int] = {}  # ingredient -> bitmask of observed slots
        self.seq = 0  # supplier orders issued so far
        # supplier -> [order id, ordered ms, due ms, {ingredient: units not delivered}]
        self.open: dict[int, list[Any]] = {}
        self.warned: set[int] = set()  # ingredients with a standing warning
        self.on_order: dict[int, int] = {}  # derived from ``open``
        self._limits_hour: int | None = None  # hour the limits below were computed for
        self._reorder_point: dict[int, int] = {}
        self._order_up_to: dict[int, int] = {}
        self._until_delivery: dict[int, int] = {}
        # ingredient -> the on-hand at or above which ``review`` has nothing to do for it:
        # max(reorder point, demand until delivery, 1), as on order is never negative
        self._calm: dict[int, int] = {}
        self._next_delivery: dict[int, int] = {}
        self._supplier_of: dict[int, int] = {}
        self._deadline_ms = math.inf
        self._packed: tuple[int, bytes] | None = None  # (hour, forecast as in to_bytes)

    # -- the per-order hook -----------------------------------------------------------

    def record_demand(self, demand: Mapping[int, int], ts_ms: int) -> None:
        """Counts what an order took or was refused. An order of an earlier hour than the
        store's current one counts in the current hour: its slot is already folded."""
        if ts_ms // HOUR_MS > self.hour:
            self._roll(ts_ms // HOUR_MS)
        current = self.current
        for ingredient_id, units in demand.items():
            # ``+=`` on a key already counted (all but the hour's first orders) is cheaper
            # than ``get`` and a store
            try:
                current[ingredient_id] += units
            except KeyError:
                current[ingredient_id] = units

    # -- forecast ---------------------------------------------------------------------

    def _roll(self, hour: int) -> None:
        """Folds the finished hour, and zero demand for each hour after it without any
        (at most a week of them: after that every slot has been folded once)."""
        old = self.hour
        if old >= 0:
            current = self.current
            ingredients = sorted(set(self.level) | set(current))
            for step in range(min(hour - old, HOURS_PER_WEEK)):
                slot = hour_of_week(old + step)
                for ingredient_id in ingredients:
                    self._fold(
                        ingredient_id, slot, current.get(ingredient_id, 0) if step == 0 else 0
                    )
        self.current = {}
        self.hour = hour

    def _fold(self, ingredient_id: int, slot: int, actual: int) -> None:
        level = self.level.get(ingredient_id)
        if level is None:
            level = self.level[ingredient_id] = [0.0] * HOURS_PER_WEEK
            self.error[ingredient_id] = [0.0] * HOURS_PER_WEEK
            self.seen[ingredient_id] = 0
        error = self.error[ingredient_id]
        bit = 1 << slot
        if not self.seen[ingredient_id] & bit:
            level[slot] = _on_grid(actual)
            error[slot] = _on_grid(actual * FIRST_SIGHT_ERROR)
            self.seen[ingredient_id] |= bit
            return
        miss = actual - level[slot]
        level[slot] = _on_grid(level[slot] + SMOOTHING * miss)
        error[slot] = _on_grid(error[slot] + SMOOTHING * (abs(miss) - error[slot]))

    @classmethod
    def seeded(
        cls,
        store_id: int,
        history: Mapping[int, Mapping[int, int]],
        until_hour: int | None = None,
        start_hour: int | None = None,
    ) -> StoreReplenishment:
        """A store's state with its forecast learnt from ``history`` (``hourly_demand``),
        every hour from the first one in it up to ``until_hour`` (exclusive; default: the
        hour after the last one) folded in order, hours without sales as zero demand.

        ``start_hour`` (later than ``until_hour``) is where live counting starts when the
        caller deliberately read no history after ``until_hour`` (the job leaves a gap for
        sales still being written): the hours in between are unknown, not zero, so they
        are not folded and their slots keep what the weeks before taught them."""
        state = cls(store_id)
        if not history:
            return state
        first = min(history)
        end = max(history) + 1 if until_hour is None else until_hour
        state.hour = first
        state.current = dict(history[first])
        for hour in range(first + 1, end):
            state._roll(hour)
            state.current = dict(history.get(hour, {}))
        state._roll(end)
        if start_hour is not None and start_hour > state.hour:
            state.hour = start_hour
        return state

    def forecast(self, ingredient_id: int, epoch_hour: int) -> float:
        """Expected demand of an ingredient in an hour (by its hour of the week)."""
        level = self.level.get(ingredient_id)
        return level[hour_of_week(epoch_hour)] if level else 0.0

    def _expected(self, ingredient_id: int, first_hour: int, hours: int) -> tuple[float, float]:
        """(forecast demand, variance) over ``hours`` hours from ``first_hour``."""
        level = self.level.get(ingredient_id)
        if not level:
            return 0.0, 0.0
        error = self.error[ingredient_id]
        mean = variance = 0.0
        slot = hour_of_week(first_hour)
        for _ in range(hours):
            mean += level[slot]
            sigma = MAD_TO_SIGMA * error[slot]
            variance += sigma * sigma
            slot = slot + 1 if slot < HOURS_PER_WEEK - 1 else 0
        return mean, variance

    # -- limits -------------------------------------------------------------------------

    def _limits(self, policies: Mapping[int, ReplenishmentPolicy]) -> None:
        """Reorder points, order-up-to levels and demand until the next delivery for the
        current hour: the only place the forecast is summed."""
        hour = self.hour
        self._reorder_point.clear()
        self._order_up_to.clear()
        self._supplier_of.clear()
        for ingredient_id in sorted(policies):
            policy = policies[ingredient_id]
            cover = _hours(policy.lead_time_minutes) + 1
            mean, variance = self._expected(ingredient_id, hour, cover)
            safety = max(policy.safety_stock, policy.z * math.sqrt(variance))
            self._reorder_point[ingredient_id] = math.ceil(mean + safety)
            mean, variance = self._expected(
                ingredient_id, hour, cover + _hours(policy.review_period_minutes)
            )
            safety = max(policy.safety_stock, policy.z * math.sqrt(variance))
            self._order_up_to[ingredient_id] = math.ceil(mean + safety)
            self._supplier_of[ingredient_id] = policy.supplier_id
        self._deliveries(policies)
        self._limits_hour = hour

    def _deliveries(self, policies: Mapping[int, ReplenishmentPolicy]) -> None:
        """Demand expected until each ingredient's next delivery: its open order's due
        time, else what an order placed at the next tick would take to come."""
        hour_start = self.hour * HOUR_MS
        self._until_delivery.clear()
        self._next_delivery.clear()
        self._calm.clear()
        self._deadline_ms = math.inf
        due_of: dict[int, int] = {}
        for supplier_id, (_, _, due_ms, lines) in self.open.items():
            due_of[supplier_id] = due_ms
            self._deadline_ms = min(self._deadline_ms, due_ms + _grace_ms(lines, policies))
        for ingredient_id in sorted(policies):
            policy = policies[ingredient_id]
            due = due_of.get(policy.supplier_id)
            if due is None:
                due = hour_start + HOUR_MS + policy.lead_time_minutes * 60_000
            hours = max(0, -(-(due - hour_start) // HOUR_MS))
            mean, _ = self._expected(ingredient_id, self.hour, hours)
            until = self._until_delivery[ingredient_id] = math.ceil(mean)
            self._next_delivery[ingredient_id] = due
            point = self._reorder_point.get(ingredient_id)
            if point is not None:
                self._calm[ingredient_id] = max(point, until, 1)

    def reorder_point(self, ingredient_id: int) -> int | None:
        """The reorder point of the current hour (None before the first ``review``)."""
        return self._reorder_point.get(ingredient_id)

    def order_up_to(self, ingredient_id: int) -> int | None:
        return self._order_up_to.get(ingredient_id)

    # -- decisions ----------------------------------------------------------------------

    def review(
        self,
        policies: Mapping[int, ReplenishmentPolicy],
        on_hand: Mapping[int, int],
        now_ms: int,
        changed: Collection[int] | None = None,
    ) -> list[Record]:
        """Supplier orders, overdue re-issues and stock-out warnings due at event time
        ``now_ms``, looking at the ingredients in ``changed`` (None: all of them, as the
        hourly tick and a store's first event do). ``on_hand`` is the store's stock
        (``StoreStock.on_hand``)."""
        if now_ms // HOUR_MS > self.hour:
            self._roll(now_ms // HOUR_MS)
        if self._limits_hour != self.hour:
            self._limits(policies)
        out: list[Record] = []
        if now_ms >= self._deadline_ms:
            self._reissue_overdue(policies, now_ms, out)
        calm = self._calm
        if changed is not None:
            # Most orders find every ingredient stocked at or above its calm level: one
            # comparison each, and nothing else to look at.
            for ingredient_id in changed:
                level = calm.get(ingredient_id)
                if level is None or on_hand.get(ingredient_id, 0) < level:
                    break
            else:
                return out
        reorder_point, supplier_of, on_order = (
            self._reorder_point,
            self._supplier_of,
            self.on_order,
        )
        until_delivery, open_orders = self._until_delivery, self.open
        due = short = None
        for ingredient_id in reorder_point if changed is None else changed:
            level = calm.get(ingredient_id)  # well stocked: skipped, as above
            if level is not None and on_hand.get(ingredient_id, 0) >= level:
                continue
            point = reorder_point.get(ingredient_id)
            if point is None:
                continue
            have = on_hand.get(ingredient_id, 0)
            position = have + on_order.get(ingredient_id, 0)
            if (position < point or position <= 0) and supplier_of[
                ingredient_id
            ] not in open_orders:
                if due is None:
                    due = set()
                due.add(supplier_of[ingredient_id])
            if have < until_delivery[ingredient_id]:  # an upper bound: look closer
                if short is None:
                    short = []
                short.append(ingredient_id)
        if due:
            for supplier_id in sorted(due):
                lines = self._lines(supplier_id, policies, on_hand)
                if lines:
                    out.append(self._issue(supplier_id, lines, policies, now_ms, None))
        if short or (changed is None and self.warned):
            self._warn(short or (), on_hand, now_ms, changed is None, out)
        return out

    def _warn(
        self,
        short: Iterable[int],
        on_hand: Mapping[int, int],
        now_ms: int,
        hourly: bool,
        out: list[Record],
    ) -> None:
        """One warning per ingredient whose on-hand is below the forecast demand from
        ``now_ms`` to its next delivery. A warning stands until the ingredient is
        delivered or an hourly review finds it covered again: warnings follow the
        forecast hour by hour, not every order's wobble around the line."""
        for ingredient_id in short:
            if ingredient_id in self.warned:
                continue
            have = on_hand.get(ingredient_id, 0)
            next_delivery = self._next_delivery[ingredient_id]
            expected = math.ceil(self._demand_between(ingredient_id, now_ms, next_delivery))
            if have < expected:
                self.warned.add(ingredient_id)
                out.append(
                    StockoutWarning(
                        self.store_id, ingredient_id, have, expected, next_delivery, now_ms
                    )
                )
        if hourly:
            for ingredient_id in sorted(self.warned):
                next_delivery = self._next_delivery.get(ingredient_id, now_ms)
                if on_hand.get(ingredient_id, 0) >= self._demand_between(
                    ingredient_id, now_ms, next_delivery
                ):
                    self.warned.discard(ingredient_id)

    def _demand_between(self, ingredient_id: int, start_ms: int, end_ms: int) -> float:
        """Forecast demand from ``start_ms`` to ``end_ms``, hours pro rata."""
        level = self.level.get(ingredient_id)
        total = 0.0
        while level and start_ms < end_ms:
            hour_end = (start_ms // HOUR_MS + 1) * HOUR_MS
            part = min(hour_end, end_ms) - start_ms
            total += level[hour_of_week(start_ms // HOUR_MS)] * part / HOUR_MS
            start_ms += part
        return total

    def _lines(
        self,
        supplier_id: int,
        policies: Mapping[int, ReplenishmentPolicy],
        on_hand: Mapping[int, int],
    ) -> dict[int, int]:
        """Every ingredient of the supplier below its order-up-to level, topped up to it
        (at least the policy's ``reorder_quantity``)."""
        lines = {}
        for ingredient_id in sorted(policies):
            policy = policies[ingredient_id]
            if policy.supplier_id != supplier_id:
                continue
            position = on_hand.get(ingredient_id, 0) + self.on_order.get(ingredient_id, 0)
            target = self._order_up_to[ingredient_id]
            if position < target or position <= 0:
                lines[ingredient_id] = max(policy.reorder_quantity, target - position)
        return lines

    def _issue(
        self,
        supplier_id: int,
        lines: Mapping[int, int],
        policies: Mapping[int, ReplenishmentPolicy],
        now_ms: int,
        replaces: str | None,
    ) -> ReplenishmentOrder:
        lead = max(policies[i].lead_time_minutes for i in lines if i in policies)
        self.seq += 1
        order_id = f"PO-{self.store_id}-{supplier_id}-{self.seq}"
        due_ms = now_ms + lead * 60_000
        self.open[supplier_id] = [order_id, now_ms, due_ms, dict(lines)]
        for ingredient_id, units in lines.items():
            self.on_order[ingredient_id] = self.on_order.get(ingredient_id, 0) + units
        self._deliveries(policies)
        return ReplenishmentOrder(
            order_id,
            self.store_id,
            supplier_id,
            tuple(sorted(lines.items())),
            now_ms,
            due_ms,
            replaces,
        )

    def _reissue_overdue(
        self, policies: Mapping[int, ReplenishmentPolicy], now_ms: int, out: list[Record]
    ) -> None:
        for supplier_id in sorted(self.open):
            order_id, ordered_ms, due_ms, lines = self.open[supplier_id]
            if now_ms < due_ms + _grace_ms(lines, policies):
                continue
            self._forget(supplier_id)
            order = self._issue(supplier_id, lines, policies, now_ms, order_id)
            out.append(
                OverdueAlert(
                    self.store_id,
                    supplier_id,
                    order_id,
                    order.supplier_order_id,
                    ordered_ms,
                    due_ms,
                    now_ms,
                )
            )
            out.append(order)

    def _forget(self, supplier_id: int) -> None:
        _, _, _, lines = self.open.pop(supplier_id)
        for ingredient_id, units in lines.items():
            left = self.on_order[ingredient_id] - units
            if left:
                self.on_order[ingredient_id] = left
            else:
                del self.on_order[ingredient_id]

    def receive(
        self,
        supplier_order_id: str | None,
        ingredient_id: int,
        policies: Mapping[int, ReplenishmentPolicy],
    ) -> bool:
        """A restock arrived (after ``inventory.restock`` added its units): closes the
        line it answers if it carries an open order's id; True if it did. A delivery that
        is short still closes its line (the supplier sent what it had; the next review
        sees the stock); a replaced order's delivery closes nothing."""
        if not supplier_order_id:
            return False
        for supplier_id, (order_id, _, _, lines) in self.open.items():
            if order_id == supplier_order_id and ingredient_id in lines:
                units = lines.pop(ingredient_id)
                left = self.on_order[ingredient_id] - units
                if left:
                    self.on_order[ingredient_id] = left
                else:
                    del self.on_order[ingredient_id]
                if not lines:
                    del self.open[supplier_id]
                self.warned.discard(ingredient_id)
                if self._limits_hour == self.hour:
                    self._deliveries(policies)
                return True
        return False

    # -- state ----------------------------------------------------------------------------

    def to_state(self) -> list[Any]:
        """Plain structure: ``[version, store_id, hour, seq, current, forecast, open,
        warned]``, the forecast as ``{ingredient: (seen bitmask, levels, errors)}`` with
        levels and errors as int64 bytes in 1/16 units."""
        return self._state(self._forecast())

    def _forecast(self) -> dict[int, tuple[int, bytes, bytes]]:
        return {
            i: (
                self.seen[i],
                array("q", (int(v * _GRID) for v in self.level[i])).tobytes(),
                array("q", (int(v * _GRID) for v in self.error[i])).tobytes(),
            )
            for i in sorted(self.level)
        }

    def _state(self, forecast: Any) -> list[Any]:
        return [
            STATE_VERSION,
            self.store_id,
            self.hour,
            self.seq,
            dict(self.current),
            forecast,
            {s: [o[0], o[1], o[2], dict(o[3])] for s, o in self.open.items()},
            sorted(self.warned),
        ]

    @classmethod
    def from_state(cls, state: Any) -> StoreReplenishment | None:
        if state is None:
            return None
        version, store_id, hour, seq, current, forecast, open_orders, warned = state
        if version != STATE_VERSION:
            raise ValueError(f"unsupported StoreReplenishment state version {version!r}")
        self = cls(store_id)
        self.hour, self.seq, self.current = hour, seq, dict(current)
        for ingredient_id, (seen, levels, errors) in forecast.items():
            self.seen[ingredient_id] = seen
            self.level[ingredient_id] = [v / _GRID for v in array("q", levels)]
            self.error[ingredient_id] = [v / _GRID for v in array("q", errors)]
        self.open = {s: [o[0], o[1], o[2], dict(o[3])] for s, o in open_orders.items()}
        for _, _, _, lines in self.open.values():
            for ingredient_id, units in lines.items():
                self.on_order[ingredient_id] = self.on_order.get(ingredient_id, 0) + units
        self.warned = set(warned)
        return self

    def to_bytes(self) -> bytes:
        """``to_state`` as bytes, its forecast compressed. The forecast only changes when
        an hour is folded, so its compressed form is kept until the next one: a store
        saved at every checkpoint pays the compression once an hour (~2 ms for 12
        ingredients), the rest of its state (~µs) each time."""
        packed = self._packed
        if packed is None or packed[0] != self.hour:
            packed = self._packed = (
                self.hour,
                zlib.compress(pickle.dumps(self._forecast(), protocol=5), 6),
            )
        return pickle.dumps(self._state(packed[1]), protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreReplenishment:
        state = pickle.loads(data)
        packed = state[5]
        state[5] = pickle.loads(zlib.decompress(packed))
        self = cast(StoreReplenishment, cls.from_state(state))  # bytes of a plan, never None
        self._packed = (self.hour, packed)
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreReplenishment) and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]  # unhashable: equal by its mutable state


# --------------------------------------------------------------------------- the order path


def serve_order(
    stock: StoreStock,
    planner: StoreReplenishment,
    demand: Mapping[int, int],
    ts_ms: int,
    policies: Mapping[int, ReplenishmentPolicy],
    review_all: bool = False,
) -> tuple[dict[int, tuple[int, int]], list[Record]]:
    """An order's whole effect on a planned store, in one pass over its ingredients:
    ``inventory.take(stock, demand)`` (the shortages, ``{}`` when taken), then
    ``planner.record_demand(demand, ts_ms)``, then the records of ``planner.review(policies,
    stock.on_hand, ts_ms, None if review_all else demand)``, exactly as those three calls
    give them (tests/pizzastream/test_replenishment.py holds it to them).

    Why one pass: the order path calls these for every order, and most orders are taken
    whole and leave every ingredient at or above its calm level (``review`` then has
    nothing to do). Taking, counting and that check are one loop here instead of three,
    and ``review`` is called only when an ingredient falls below its calm level, the
    hour's limits are not computed yet, or an open order may be overdue."""
    on_hand = stock.on_hand
    hour = ts_ms // HOUR_MS
    # review's own early exit (every ingredient left at or above its calm level) is looked
    # for while taking, when the hour's limits stand and no open order may be overdue
    quiet = (
        not review_all
        and hour <= planner.hour
        and planner._limits_hour == planner.hour
        and ts_ms < planner._deadline_ms
    )
    calm = planner._calm
    # Subscripts, not ``get``: a store stocks every ingredient of its recipes, and every
    # planned ingredient has a calm level; a missing one (KeyError) only sends the order
    # the long way, through ``shortages`` and ``review``.
    stocked = True
    try:
        for ingredient_id, needed in demand.items():
            have = on_hand[ingredient_id]
            if needed > have:
                stocked = False
                break
            if quiet and have - needed < calm[ingredient_id]:
                quiet = False
    except KeyError:
        stocked = quiet = False
    if stocked:
        short = {}
    else:
        short = shortages(stock, demand)
        if not short:  # taken as ``take`` takes it, though some ingredient has no entry
            for ingredient_id, units in demand.items():
                on_hand[ingredient_id] -= units
    if hour > planner.hour:
        planner._roll(hour)
    current = planner.current
    if stocked:
        for ingredient_id, units in demand.items():
            on_hand[ingredient_id] -= units
            try:
                current[ingredient_id] += units
            except KeyError:
                current[ingredient_id] = units
        if quiet:
            return short, []
    else:
        for ingredient_id, units in demand.items():
            try:
                current[ingredient_id] += units
            except KeyError:
                current[ingredient_id] = units
    if not review_all and planner._limits_hour == planner.hour and ts_ms < planner._deadline_ms:
        try:  # review's own check, as the order left the stock
            for ingredient_id in demand:
                if on_hand[ingredient_id] < calm[ingredient_id]:
                    break
            else:
                return short, []
        except KeyError:
            pass
    return short, planner.review(policies, on_hand, ts_ms, None if review_all else demand)
