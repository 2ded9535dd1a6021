"""Store inventory and the consumption-window reorder rule.

The ``inventory_windowing`` job keeps one ``StoreStock`` per store (with its
``pizzastream.replenishment.StoreReplenishment``, in its store shard's keyed state:
``pizzastream.order_batches``) and decides each order with ``take``: all or nothing, only
``on_hand`` changes. Restocks go through ``restock``. What to order from suppliers is the
replenishment plan's decision (docs/replenishment.md).

The rest of this module is the rule the job used before, kept as the baseline
``simulation.simulate`` compares the plan with, and tested as such::

    stock = StoreStock.initial(...)
    order:   decision = place_order(stock, order, catalog)    -> status (+ sale if accepted)
    restock: restock(stock, ingredient_id, quantity, supplier_order_id, ts_ms)
    then:    for so in due_reorders(stock, policies, stock.clock_ms or event_ts_ms, changed):
                 emit so.to_json()

Rules
-----
* An order is accepted only if every ingredient of every line is on hand (all or
  nothing); then its ingredients are taken out of stock. Otherwise it is rejected
  ``insufficient_inventory`` naming each short ingredient, and the stock is untouched.
* A restock adds stock. If it carries the ``supplier_order_id`` outstanding for its
  ingredient it closes that reorder; any other restock just adds stock.
* Consumption is counted in event-time buckets (``bucket_minutes``, 5 by default) per
  ingredient. The *consumption window* is the ``window_minutes`` (60) of complete
  buckets before the bucket of ``now_ms`` plus that current, partial bucket; the rate is
  the consumption in the window divided by its exact span (``window + now - start of
  the current bucket``). The reorder point of an ingredient is

      lead_time_use + safety_stock,   lead_time_use = ceil(window use * lead time / span)

  in integer arithmetic. With no consumption in the window (a fresh store, a quiet hour)
  it falls back to ``safety_stock``. During its first hour a store's rate is understated
  (its window is not yet full); the safety stock covers that warm-up.
* ``due_reorders`` orders an ingredient when it has no reorder outstanding and its stock
  is below its reorder point (or empty). The new reorder is marked outstanding at once,
  so the same crossing never orders twice; the next reorder for that ingredient can only
  come after a restock closes this one, when the stock is (still or again) low. It is
  asked after every event about the ingredients that event changed (an accepted order's,
  a restock's; all of them on a store's first event; none after a refused order): stock
  only falls below its reorder point when it is taken.
* Reorder quantity: ``max(reorder_quantity, reorder_point - on_hand + lead_time_use)``,
  i.e. at least the policy's order size, and enough that, if consumption keeps its
  current rate, the delivery lands with stock back at the reorder point (lead-time use
  plus safety stock): it covers the shortfall below the reorder point plus what the
  lead time consumes.
* The consumption clock (``clock_ms``) is the latest event time of an accepted order. Only
  orders move it: a supplier's clock cannot wipe the window. Orders too late to fall in
  the window of that clock still take stock but do not count towards the rate.

Idempotency
-----------
The rules are deterministic functions of (state, event): the same state and the same
event always give the same decision, state and supplier orders (ids included:
``SO-{store_id}-{ingredient_id}-{seq}`` from a per-store counter). Applying an event twice
is *not* a no-op (a restock would add stock twice), so the operator must drop replayed
``event_id`` values before calling them (its MapState with TTL); everything else is
replay-safe: a rejection changes nothing, ``due_reorders`` called twice emits nothing
the second time, a restock naming an already closed reorder closes nothing (it only
adds its stock), and after a restore
from a checkpoint the re-processed events regenerate the same supplier order ids, so a
consumer can deduplicate on ``supplier_order_id``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard, cast

from pizzastream.catalog import Catalog, Row, _columns
from pizzastream.orders import (
    STORE_IDS,
    EnrichedOrder,
    OrderStatus,
    Reason,
    format_event_time,
    is_id,
    parse_event_time,
)

STATE_VERSION = 2
DEFAULT_WINDOW_MINUTES = 60
DEFAULT_BUCKET_MINUTES = 5
INSUFFICIENT_INVENTORY = "insufficient_inventory"
UNKNOWN_INGREDIENT = "unknown_ingredient"
POLICY_COLUMNS = (
    "ingredient_id",
    "supplier_id",
    "lead_time_minutes",
    "safety_stock",
    "reorder_quantity",
)
RESTOCK_FIELDS = ("event_id", "store_id", "ingredient_id", "quantity", "ts")
# The most units one supplier delivery can carry. Far above any real delivery, far below
# what a 64-bit stock level, Flink's LONG fields and Aurora's BIGINT hold, so no sum of
# accepted restocks can overflow any of them.
MAX_RESTOCK_QUANTITY = 10_000_000
PARTITION_KEY_MISMATCH = "partition_key_mismatch"
_MINUTE_MS = 60_000


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class StoreStock:
    """One store's stock, reorders and recent consumption. Mutable: ``place_order``,
    ``restock`` and ``due_reorders`` update it in place. Fields are plain ints, strs and
    dicts so ``to_state`` is a cheap copy."""

    store_id: int
    on_hand: dict[int, int]  # ingredient -> units
    outstanding: dict[int, str] = field(default_factory=dict)  # ingredient -> supplier order id
    # bucket index (ts_ms // bucket_ms) -> {ingredient: units consumed in that bucket};
    # by bucket first, so expiring a bucket is one deletion whatever it holds
    buckets: dict[int, dict[int, int]] = field(default_factory=dict)
    seq: int = 0  # supplier orders issued by this store so far
    clock_ms: int = 0  # latest event time of an accepted order (0: none yet)
    bucket_ms: int = DEFAULT_BUCKET_MINUTES * _MINUTE_MS
    window_buckets: int = DEFAULT_WINDOW_MINUTES // DEFAULT_BUCKET_MINUTES
    # ingredient -> units in all kept buckets: derived from ``buckets`` (not stored), an
    # upper bound of any window's use that lets ``due_reorders`` skip the exact sum
    kept: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        kept: dict[int, int] = {}
        for counts in self.buckets.values():
            for ingredient_id, quantity in counts.items():
                kept[ingredient_id] = kept.get(ingredient_id, 0) + quantity
        self.kept = kept

    @classmethod
    def initial(
        cls,
        store_id: int,
        on_hand: Mapping[int, int],
        *,
        window_minutes: int = DEFAULT_WINDOW_MINUTES,
        bucket_minutes: int = DEFAULT_BUCKET_MINUTES,
    ) -> StoreStock:
        """Opening stock of a store with no history (e.g. from the ``inventory`` table)."""
        if bucket_minutes <= 0 or window_minutes <= 0 or window_minutes % bucket_minutes:
            raise ValueError(
                f"window {window_minutes} min must be a positive multiple of "
                f"the bucket {bucket_minutes} min"
            )
        levels = {int(i): int(q) for i, q in on_hand.items()}
        negative = sorted(i for i, q in levels.items() if q < 0)
        if negative:
            raise ValueError(f"store {store_id}: negative opening stock of {negative}")
        return cls(
            int(store_id),
            levels,
            bucket_ms=bucket_minutes * _MINUTE_MS,
            window_buckets=window_minutes // bucket_minutes,
        )

    def to_state(self) -> list[Any]:
        """A compact copy for Flink ValueState: a list of ints and dicts of ints/strs,
        ``[version, store_id, clock_ms, seq, bucket_ms, window_buckets, on_hand,
        outstanding, buckets]``. Nothing in it is shared with ``self``."""
        return [
            STATE_VERSION,
            self.store_id,
            self.clock_ms,
            self.seq,
            self.bucket_ms,
            self.window_buckets,
            dict(self.on_hand),
            dict(self.outstanding),
            {i: dict(b) for i, b in self.buckets.items()},
        ]

    @classmethod
    def from_state(cls, state: Any) -> StoreStock | None:
        """Inverse of ``to_state`` (None for None: a store with no state yet). Copies, so
        mutating the result never touches a value a state backend may have cached."""
        if state is None:
            return None
        (
            version,
            store_id,
            clock_ms,
            seq,
            bucket_ms,
            window_buckets,
            on_hand,
            outstanding,
            buckets,
        ) = state
        if version != STATE_VERSION:
            raise ValueError(f"unsupported StoreStock state version {version!r}")
        return cls(
            store_id,
            dict(on_hand),
            dict(outstanding),
            {i: dict(b) for i, b in buckets.items()},
            seq,
            clock_ms,
            bucket_ms,
            window_buckets,
        )

    def to_bytes(self) -> bytes:
        """``to_state`` as bytes, for a state backend that stores bytes."""
        return pickle.dumps(self.to_state(), protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreStock:
        return cast(StoreStock, cls.from_state(pickle.loads(data)))  # bytes of a stock, never None

    @property
    def window_minutes(self) -> int:
        return self.window_buckets * self.bucket_ms // _MINUTE_MS

    def window_use(self, ingredient_id: int, now_ms: int) -> tuple[int, int]:
        """``(units consumed, span_ms)`` of the consumption window ending at ``now_ms``."""
        now_bucket = now_ms // self.bucket_ms
        first = now_bucket - self.window_buckets
        used = sum(
            counts.get(ingredient_id, 0)
            for b, counts in self.buckets.items()
            if first <= b <= now_bucket
        )
        return used, now_ms - first * self.bucket_ms

    def _consume(self, demand: Mapping[int, int], ts_ms: int) -> None:
        on_hand, bucket_ms = self.on_hand, self.bucket_ms
        for ingredient_id, quantity in demand.items():
            on_hand[ingredient_id] -= quantity
        old_bucket = self.clock_ms // bucket_ms
        if ts_ms > self.clock_ms:
            self.clock_ms = ts_ms
        oldest = self.clock_ms // bucket_ms - self.window_buckets
        bucket = ts_ms // bucket_ms
        if bucket >= oldest:
            counts = self.buckets.get(bucket)
            if counts is None:
                counts = self.buckets[bucket] = {}
            kept = self.kept
            for ingredient_id, quantity in demand.items():
                counts[ingredient_id] = counts.get(ingredient_id, 0) + quantity
                kept[ingredient_id] = kept.get(ingredient_id, 0) + quantity
        if self.clock_ms // bucket_ms != old_bucket:
            self._prune(oldest)

    def _prune(self, oldest: int) -> None:
        """Drops buckets that no window at or after the clock can reach."""
        for bucket in [b for b in self.buckets if b < oldest]:
            for ingredient_id, quantity in self.buckets.pop(bucket).items():
                left = self.kept[ingredient_id] - quantity
                if left:
                    self.kept[ingredient_id] = left
                else:
                    del self.kept[ingredient_id]


# --------------------------------------------------------------------------- orders


@dataclass(frozen=True)
class Decision:
    """The outcome of one order: ``consumed`` (accepted) or ``short``
    ``{ingredient_id: (needed, on_hand)}`` (rejected), and a human ``detail``."""

    accepted: bool
    consumed: Mapping[int, int]
    short: Mapping[int, tuple[int, int]]
    detail: str

    @property
    def reason(self) -> str | None:
        return None if self.accepted else INSUFFICIENT_INVENTORY

    @property
    def status(self) -> str:
        """The contract's final order status for this decision."""
        return (
            OrderStatus.ACCEPTED if self.accepted else OrderStatus.REJECTED_INSUFFICIENT_INVENTORY
        ).value


def requirements(order: EnrichedOrder, catalog: Catalog) -> dict[int, int]:
    """Units of each ingredient the whole order takes (a product without a recipe in
    ``catalog`` takes nothing)."""
    try:
        return order_demand(
            [[line.product_id, line.quantity, line.unit_price_cents] for line in order.lines],
            catalog.recipe_units,
        )
    except ValueError as error:
        raise ValueError(f"order {order.order_id}: {error}") from None


def order_demand(lines: list[Any], recipe_units: Mapping[int, Mapping[int, int]]) -> dict[int, int]:
    """``requirements`` from lines ``[product_id, quantity, unit_price_cents]`` as the
    ``orders-enriched`` record carries them (``Catalog.recipe_units``). Raises
    ``ValueError`` for a line of another shape or a quantity that is not a positive
    integer, before anything is taken.

    The first line's demand is its recipe copied (one unit) or scaled by one comprehension,
    not summed ingredient by ingredient: most orders have one line of one unit, and a
    dict copy costs a fraction of the loop. Later lines add to it. Either way the
    ingredients come in the same order, first appearance first."""
    demand: dict[int, int] | None = None
    for line in lines:
        if type(line) is not list or len(line) != 3:
            raise ValueError(f"line {line!r:.60} is not [product_id, quantity, unit_price]")
        product_id, quantity, unit_price_cents = line
        if (
            type(product_id) is not int
            or type(quantity) is not int
            or quantity <= 0
            or type(unit_price_cents) is not int
        ):
            raise ValueError(f"line {line!r:.60}: integers and a positive quantity needed")
        try:  # a subscript: ``get`` of a MappingProxyType is a method call on its dict
            recipe = recipe_units[product_id]
        except KeyError:
            recipe = _NO_RECIPE
        if demand is None:
            demand = (
                dict(recipe)
                if quantity == 1
                else {
                    ingredient_id: per_unit * quantity for ingredient_id, per_unit in recipe.items()
                }
            )
        else:
            for ingredient_id, per_unit in recipe.items():
                demand[ingredient_id] = demand.get(ingredient_id, 0) + per_unit * quantity
    return {} if demand is None else demand


_NO_RECIPE: Mapping[int, int] = {}  # a product without a recipe takes nothing


def shortages(stock: StoreStock, demand: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """``{ingredient_id: (needed, on_hand)}`` of what ``demand`` lacks, by ingredient."""
    on_hand = stock.on_hand
    short = {}
    for ingredient_id, needed in demand.items():
        have = on_hand.get(ingredient_id, 0)
        if needed > have:
            short[ingredient_id] = (needed, have)
    return dict(sorted(short.items())) if len(short) > 1 else short


def accepted_detail(demand: Mapping[int, int]) -> str:
    count = len(demand)
    if count < len(_ACCEPTED_DETAILS):  # the order path's: one per accepted order
        return _ACCEPTED_DETAILS[count]
    return f"accepted: {count} ingredients taken from stock"


_ACCEPTED_DETAILS = tuple(f"accepted: {count} ingredients taken from stock" for count in range(64))


def shortage_detail(short: Mapping[int, tuple[int, int]]) -> str:
    return "insufficient inventory: " + "; ".join(
        f"ingredient {i} needs {needed}, has {have}" for i, (needed, have) in short.items()
    )


def take_stock(stock: StoreStock, demand: dict[int, int], ts_ms: int) -> dict[int, tuple[int, int]]:
    """The all-or-nothing rule: takes ``demand`` out of ``stock`` at event time ``ts_ms``
    when every ingredient suffices and returns ``{}``; otherwise changes nothing and returns
    the shortages."""
    short = shortages(stock, demand)
    if not short:
        stock._consume(demand, ts_ms)
    return short


def take(stock: StoreStock, demand: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """``take_stock`` for a store planned by ``pizzastream.replenishment``: the same
    all-or-nothing decision, but only ``on_hand`` changes. The consumption window and
    ``outstanding`` serve ``due_reorders`` alone; the forecast counts demand itself
    (``StoreReplenishment.record_demand``), so the job skips the window's bookkeeping."""
    on_hand = stock.on_hand
    have = on_hand.get  # bound once: looked up per ingredient of every order
    for ingredient_id, needed in demand.items():
        if needed > have(ingredient_id, 0):
            return shortages(stock, demand)
    for ingredient_id, needed in demand.items():
        on_hand[ingredient_id] -= needed
    return {}


def place_order(stock: StoreStock, order: EnrichedOrder, catalog: Catalog) -> Decision:
    """Accepts the order and takes its ingredients out of ``stock`` if every one of them
    suffices; otherwise rejects it and leaves ``stock`` exactly as it was."""
    if order.store_id != stock.store_id:
        raise ValueError(
            f"order {order.order_id} of store {order.store_id} given to store {stock.store_id}"
        )
    demand = requirements(order, catalog)
    short = take_stock(stock, demand, order.ts_ms)
    if short:
        return Decision(False, {}, short, shortage_detail(short))
    return Decision(True, demand, {}, accepted_detail(demand))


# --------------------------------------------------------------------------- restocks


class InvalidRestock(ValueError):
    """A restock that cannot be applied; ``reason`` names the rule for the dead letter."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Restock:
    """A ``restocks`` record (contract), its ``ts`` as epoch milliseconds."""

    event_id: str
    store_id: int
    ingredient_id: int
    quantity: int
    ts_ms: int
    supplier_order_id: str | None


def parse_restock(raw: bytes | str) -> Restock:
    """Checks the shape of one ``restocks`` record; raises ``InvalidRestock``. Whether
    the ingredient exists is ``restock``'s check, against the store's stock."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise InvalidRestock(Reason.MALFORMED_JSON.value, str(error)[:120]) from None
    if not isinstance(doc, dict):
        raise InvalidRestock(Reason.NOT_AN_OBJECT.value, "top level is not a JSON object")
    for name in RESTOCK_FIELDS:
        if doc.get(name) is None:
            raise InvalidRestock(Reason.MISSING_FIELD.value, f"{name} is missing")
    event_id, store_id, ts = doc["event_id"], doc["store_id"], doc["ts"]
    # Printable, as an order's ids (orders.is_id): a NUL or a lone surrogate would reach
    # the dead-letter table and the job's string coder with the record, and fail both.
    if not is_id(event_id):
        raise InvalidRestock(Reason.WRONG_TYPE.value, "event_id must be a short printable string")
    for name in ("store_id", "ingredient_id", "quantity"):
        if not _is_int(doc[name]):
            raise InvalidRestock(Reason.WRONG_TYPE.value, f"{name} must be an integer")
    if store_id not in STORE_IDS:
        raise InvalidRestock(Reason.UNKNOWN_STORE.value, f"store_id {store_id}")
    ts_ms = parse_event_time(ts) if isinstance(ts, str) else None
    if ts_ms is None:
        raise InvalidRestock(Reason.INVALID_TIMESTAMP.value, "ts is not ISO-8601 UTC")
    supplier_order_id = doc.get("supplier_order_id")
    if supplier_order_id not in (None, "") and not is_id(supplier_order_id):
        raise InvalidRestock(
            Reason.WRONG_TYPE.value, "supplier_order_id must be a short printable string"
        )
    _check_quantity(doc["quantity"])
    return Restock(
        event_id, store_id, doc["ingredient_id"], doc["quantity"], ts_ms, supplier_order_id or None
    )


def _check_quantity(quantity: object) -> None:
    if not _is_int(quantity) or not 0 < quantity <= MAX_RESTOCK_QUANTITY:
        shown = quantity if len(repr(quantity)) <= 40 else f"{repr(quantity)[:40]}…"
        raise InvalidRestock(
            Reason.INVALID_QUANTITY.value,
            f"quantity {shown} must be an integer 1..{MAX_RESTOCK_QUANTITY}",
        )


def store_of_partition_key(key: object) -> int | None:
    """The store a record's partition key names, or None unless it is the contract's
    ``str(store_id)`` of a known store: ``"007"`` or ``"abc"`` must not open a second,
    separate stock (or crash the operator) for a store."""
    return _STORE_OF_KEY.get(key) if type(key) is str else None


_STORE_OF_KEY = {str(store_id): store_id for store_id in STORE_IDS}


def check_restock_key(restock_record: Restock, key: object) -> None:
    """Raises ``InvalidRestock`` unless the record was sent on its own store's partition
    key: the key decides which store's stock it reaches."""
    if store_of_partition_key(key) != restock_record.store_id:
        raise InvalidRestock(
            PARTITION_KEY_MISMATCH,
            f"store {restock_record.store_id} sent on partition key "
            f"{str(key)[:40]!r}, expected {str(restock_record.store_id)!r}",
        )


def restock(
    stock: StoreStock,
    ingredient_id: object,
    quantity: object,
    supplier_order_id: str | None,
    ts_ms: object,
    *,
    known: Container[int] = (),
) -> str | None:
    """Adds ``quantity`` units to the store's stock; returns the supplier order id it
    closes, if it carries the one outstanding for this ingredient (else None).

    An ingredient is known if the store stocks it or it is in ``known`` (e.g. the
    policies, for an ingredient added after the store's state was created). Raises
    ``InvalidRestock`` (nothing changed) for a non-positive quantity or unknown
    ingredient. ``ts_ms`` is checked but does not move the consumption clock. The numbers are
    typed ``object``: whatever a record carried is refused with its reason (compiled, an
    ``int`` type here would raise ``TypeError`` instead: deploy.compiled_core)."""
    _check_quantity(quantity)
    if not _is_int(ts_ms):
        raise InvalidRestock(Reason.INVALID_TIMESTAMP.value, f"ts_ms {ts_ms!r}")
    if not _is_int(ingredient_id) or (
        ingredient_id not in stock.on_hand and ingredient_id not in known
    ):
        raise InvalidRestock(
            UNKNOWN_INGREDIENT, f"store {stock.store_id} has no ingredient {ingredient_id!r}"
        )
    stock.on_hand[ingredient_id] = stock.on_hand.get(ingredient_id, 0) + cast(int, quantity)
    if supplier_order_id and stock.outstanding.get(ingredient_id) == supplier_order_id:
        del stock.outstanding[ingredient_id]
        return supplier_order_id
    return None


# --------------------------------------------------------------------------- reorders


@dataclass(frozen=True)
class IngredientPolicy:
    """How one ingredient is replenished: its supplier, their lead time, and the floor
    and order size from the ``ingredient`` table."""

    ingredient_id: int
    supplier_id: int
    lead_time_minutes: int
    safety_stock: int
    reorder_quantity: int

    def __post_init__(self) -> None:
        if self.lead_time_minutes <= 0 or self.safety_stock < 0 or self.reorder_quantity <= 0:
            raise ValueError(
                f"ingredient {self.ingredient_id}: lead time and reorder "
                f"quantity must be positive, safety stock not negative"
            )


def policies_from_rows(rows: Iterable[Row]) -> dict[int, IngredientPolicy]:
    """From ``POLICY_COLUMNS`` rows (tuples or mappings), e.g. ``ingredient JOIN
    supplier``. Bad rows raise, as for the catalog."""
    policies = {}
    for row in rows:
        policy = IngredientPolicy(*(int(value) for value in _columns(row, POLICY_COLUMNS)))
        policies[policy.ingredient_id] = policy
    return policies


def policies_from_reference_data() -> dict[int, IngredientPolicy]:
    """The seeded policies, for tests and the local stack."""
    from pizzastream import reference_data

    lead = {s.supplier_id: s.lead_time_minutes for s in reference_data.suppliers()}
    return policies_from_rows(
        (i.ingredient_id, i.supplier_id, lead[i.supplier_id], i.safety_stock, i.reorder_quantity)
        for i in reference_data.ingredients()
    )


@dataclass(frozen=True)
class SupplierOrder:
    supplier_order_id: str
    store_id: int
    ingredient_id: int
    supplier_id: int
    quantity: int
    ts_ms: int
    on_hand: int
    reorder_point: int

    def to_json(self) -> str:
        """The ``supplier-orders`` record (docs/streams.md); ``ts`` in the contract's
        ISO-8601 format, as suppliers are outside the pipeline."""
        return json.dumps(
            {
                "supplier_order_id": self.supplier_order_id,
                "store_id": self.store_id,
                "ingredient_id": self.ingredient_id,
                "supplier_id": self.supplier_id,
                "quantity": self.quantity,
                "ts": format_event_time(self.ts_ms),
                "on_hand": self.on_hand,
                "reorder_point": self.reorder_point,
            },
            separators=(",", ":"),
        )


def lead_time_use(stock: StoreStock, policy: IngredientPolicy, now_ms: int) -> int:
    """Units expected to be consumed during the supplier's lead time at the rate of the
    consumption window ending at ``now_ms`` (rounded up)."""
    used, span_ms = stock.window_use(policy.ingredient_id, now_ms)
    return -(-used * policy.lead_time_minutes * _MINUTE_MS // span_ms)


def reorder_point(stock: StoreStock, policy: IngredientPolicy, now_ms: int) -> int:
    """``lead_time_use + safety_stock``; just ``safety_stock`` without recent use."""
    return lead_time_use(stock, policy, now_ms) + policy.safety_stock


def due_reorders(
    stock: StoreStock,
    ingredients: Mapping[int, IngredientPolicy],
    now_ms: int,
    changed: Collection[int] | None = None,
) -> list[SupplierOrder]:
    """Supplier orders to emit now, by ingredient id, each marked outstanding in
    ``stock`` so it is emitted once. ``now_ms`` should be event time, so a replay gives
    the same result: the store's clock ``stock.clock_ms``, or the current event's own
    time while the store has accepted no order yet (clock 0).

    ``changed`` limits the check to the ingredients an event changed (None: all of them,
    as when a store opens): stock only falls below its reorder point when it is taken, and
    a restock that closes a reorder may leave it low. An ingredient whose stock is at or
    above the highest reorder point its kept consumption allows is skipped without
    summing its window, which is most of them on most events."""
    window_ms = stock.window_buckets * stock.bucket_ms
    outstanding, levels, kept = stock.outstanding, stock.on_hand, stock.kept
    low = []
    for ingredient_id in ingredients if changed is None else changed:
        policy = ingredients.get(ingredient_id)
        if policy is None or ingredient_id in outstanding:
            continue
        on_hand = levels.get(ingredient_id, 0)
        if on_hand <= 0 or on_hand < policy.safety_stock + -(
            -kept.get(ingredient_id, 0) * policy.lead_time_minutes * _MINUTE_MS // window_ms
        ):
            low.append(ingredient_id)
    orders = []
    for ingredient_id in sorted(low):
        policy = ingredients[ingredient_id]
        on_hand = levels.get(ingredient_id, 0)
        use = lead_time_use(stock, policy, now_ms)
        point = use + policy.safety_stock
        if on_hand >= point and on_hand > 0:
            continue
        stock.seq += 1
        order_id = f"SO-{stock.store_id}-{ingredient_id}-{stock.seq}"
        outstanding[ingredient_id] = order_id
        orders.append(
            SupplierOrder(
                order_id,
                stock.store_id,
                ingredient_id,
                policy.supplier_id,
                max(policy.reorder_quantity, point - on_hand + use),
                now_ms,
                on_hand,
                point,
            )
        )
    return orders
