"""The order path's rules applied a batch at a time: what order_enrichment and
inventory_windowing decide for each batch the JVM hands them (``pizzastream.batches``).

Deciding a batch is exactly deciding its records one by one, in order, with
``pizzastream.orders``, ``pizzastream.inventory`` and ``pizzastream.replenishment``; only the bookkeeping around the rules
is arranged so that an event costs a few microseconds of Python:

* the common case of each rule has a lean form that gives the same answer
  (``orders.accept``; ``replenishment.serve_order``, which is ``inventory.take``,
  ``record_demand`` and ``review`` in one pass over the order's ingredients) and falls
  back to the full rules for everything else;
* a store's stock and replenishment plan stay in memory between batches and are written
  to Flink state only when a checkpoint follows (``ShardDesk._persist``), together with the
  stock levels it publishes;
* every output is a text line of the batch's single result (``batches.result_line``); a
  line stands for two outputs where they share what they carry (``DECISION_ROUTES``: a status and
  its Redis status, a delivered sale and its delivery).

tests/pizzastream/test_order_batches.py holds the batch rules to the one-by-one rules.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Generic, NamedTuple, TypeVar, cast

import orjson

from pizzastream.batches import LineRoutes, batch_epoch, raw_records, store_records
from pizzastream.catalog import Catalog, Row
from pizzastream.dead_letters import DeadLetter, dead_letter, storable_store_id
from pizzastream.inventory import (
    PARTITION_KEY_MISMATCH,
    InvalidRestock,
    StoreStock,
    accepted_detail,
    check_restock_key,
    order_demand,
    parse_restock,
    restock,
    shortage_detail,
    store_of_partition_key,
)
from pizzastream.orders import (
    CHANNELS,
    FULFILLMENTS,
    MAX_ID_LENGTH,
    EnrichedOrder,
    OrderRules,
    OrderStatus,
    Rejection,
    accept,
    enrich,
    is_id,
)
from pizzastream.replenishment import (
    HOUR_MS,
    HistoryWindow,
    OverdueAlert,
    Record,
    ReplenishmentOrder,
    ReplenishmentPolicy,
    StockoutWarning,
    StoreReplenishment,
    hourly_demand,
    serve_order,
)
from pizzastream.sales import (
    FACT_COLUMNS,
    decided_status_json,
    fact_lines,
    rejection_status_json,
    sale_of_enriched,
)
from pizzastream.ticks import InvalidTick, parse_tick

# A store's saved state, by store id (None: never saved).
SavedState = Callable[[int], bytes | None]

# Output tags: one character per output of the jobs (pizzastream.flink.BatchOutputs), each
# also the tag of its result lines but for ``STATUS_CACHE`` and ``DELIVERY``, which ride on
# other lines (``DECISION_ROUTES``).
ENRICHED = "E"  # orders-enriched, keyed by store
# order-status, keyed by store (by order when the store is unknown); each line carries the
# order's Redis status ahead of the record: ``S<key>\t<order id>\t<status>\t<record>``
STATUS = "S"
STATUS_CACHE = "C"  # Redis order status: key order id, payload the status
SALE = "A"  # sales: accepted online sales
POS_ORDER = "P"  # pos-orders: accepted in-store sales
DELIVERY = "D"  # deliveries: accepted delivery orders
DELIVERED_SALE = "a"  # line tag: a sale that is also a delivery (sales and deliveries)
DELIVERED_POS_ORDER = "p"  # line tag: ... an in-store one (pos-orders and deliveries)
FACT = "F"  # order_fct rows (sales.fact_line)
SUPPLIER_ORDER = "R"  # supplier-orders records
SUPPLIER_ORDER_ROW = "Q"  # supplier_order rows, one per order line
ALERT = "W"  # replenishment_alert rows: overdue orders, expected stock-outs
STOCK_LEVEL = "L"  # inventory rows: store, ingredient, on hand
# The lines that stand for two output records, per job: a status and its Redis status, a
# delivered sale for its sales or pos-orders output and deliveries (written, crossed and
# decoded once).
ENRICHMENT_ROUTES = LineRoutes(cached={STATUS: STATUS_CACHE})
DECISION_ROUTES = LineRoutes(
    copies={DELIVERED_SALE: SALE + DELIVERY, DELIVERED_POS_ORDER: POS_ORDER + DELIVERY},
    cached={STATUS: STATUS_CACHE},
)

ENRICHMENT_JOB = "order_enrichment"
INVENTORY_JOB = "inventory_windowing"
ORDER, RESTOCK = "o", "r"
# The id that makes two records the same event (pizzastream.flink.StoreBatcher).
EVENT_ID_FIELDS = {ORDER: "o", RESTOCK: "event_id"}
MALFORMED_ENRICHED_ORDER = "malformed_enriched_order"
UNKNOWN_RECORD_KIND = "unknown_record_kind"
OVERDUE, STOCKOUT = "supplier_order_overdue", "expected_stockout"  # alert kinds
# A store's entry in the job's state: [version, StoreStock state, StoreReplenishment bytes].
# StoreStock.to_bytes alone (its own version, 2) is the format before plans.
STORE_STATE_VERSION = 3
_ACCEPTED = OrderStatus.ACCEPTED.value
_REJECTED_INVENTORY = OrderStatus.REJECTED_INSUFFICIENT_INVENTORY.value


class DelimitedLayout(NamedTuple):
    """The row the JVM parses from a tab-separated result line
    (``pizzastream.flink.DelimitedRows``): its field names and a letter per field,
    ``I`` int, ``L`` long, ``S`` string."""

    fields: tuple[str, ...]
    kinds: str


# The table rows of inventory_windowing, by result line tag.
ROW_LAYOUTS = {
    FACT: DelimitedLayout(FACT_COLUMNS, "ISILILLSS"),  # sales.fact_line, field by field
    SUPPLIER_ORDER_ROW: DelimitedLayout(
        (
            "supplier_order_id",
            "store_id",
            "ingredient_id",
            "supplier_id",
            "quantity",
            "ordered_ts_ms",
            "on_hand",
            "reorder_point",
        ),
        "SIIIILLL",
    ),
    ALERT: DelimitedLayout(  # alert_row
        (
            "alert_id",
            "kind",
            "store_id",
            "ingredient_id",
            "supplier_id",
            "supplier_order_id",
            "ts_ms",
            "record",
        ),
        "SSIIISLS",
    ),
    STOCK_LEVEL: DelimitedLayout(("store_id", "ingredient_id", "on_hand"), "IIL"),
}

# What carries each output: a Flink ``DataStream`` in the jobs, a list in ``jobs.testing``.
Output = TypeVar("Output")


class Enrichment(NamedTuple, Generic[Output]):
    """What order_enrichment's logic puts out, each ready for its sink."""

    enriched: Output  # (store, orders-enriched record)
    statuses: Output  # (key, order-status record) of rejected orders
    status_commands: Output  # Redis SET order:<id> <status> of rejected orders
    dead_letters: Output  # dead letters (DEAD_LETTER_ROW) of unusable records


class Decisions(NamedTuple, Generic[Output]):
    """What inventory_windowing's logic puts out, each ready for its sink."""

    statuses: Output  # (store, order-status record)
    status_commands: Output  # Redis SET order:<id> <status>
    sales: Output  # (store, sale record) of accepted online orders
    pos_orders: Output  # ... of accepted in-store orders
    deliveries: Output  # ... of accepted delivery orders
    supplier_orders: Output  # (store, supplier-orders record)
    facts: Output  # ROW_LAYOUTS[FACT] rows of accepted online orders
    supplier_order_rows: Output  # ROW_LAYOUTS[SUPPLIER_ORDER_ROW], one per order line
    alerts: Output  # ROW_LAYOUTS[ALERT]: overdue supplier orders, expected stock-outs
    levels: Output  # ROW_LAYOUTS[STOCK_LEVEL] of changed stock, once per checkpoint
    dead_letters: Output  # dead letters (DEAD_LETTER_ROW): unusable records and repeats


def enrich_batch(
    batch: bytes, catalog: Catalog, rules: OrderRules, now_ms: int
) -> tuple[str, list[DeadLetter]]:
    """order_enrichment for an ``OrderBatcher`` batch: the result lines (``ENRICHED`` for
    valid orders; ``STATUS``, with its ``STATUS_CACHE`` entry, for rejected orders that name
    their id)
    and a dead letter for each record that is no usable order."""
    out: list[str] = []
    letters: list[DeadLetter] = []
    for raw in raw_records(batch):
        fast = accept(raw, catalog, rules, now_ms)
        if fast is not None:
            out.append(f"E{fast[0]}\t{fast[1]}\n")
            continue
        result = enrich(raw, catalog, rules, now_ms)
        if isinstance(result, EnrichedOrder):
            out.append(f"E{result.store_id}\t{result.to_json()}\n")
            continue
        letters.append(
            dead_letter(
                ENRICHMENT_JOB,
                raw,
                result.reason,
                result.detail,
                result.event_id,
                result.order_id,
                store_id=result.store_id,
            )
        )
        out.extend(rejection_lines(result, now_ms))
    return "".join(out), letters


def rejection_lines(rejection: Rejection, now_ms: int) -> list[str]:
    """The final status of an order ``enrich`` rejected, when the record names the order:
    keyed by store like every stream, by order when the store was unreadable."""
    status = rejection_status_json(rejection, now_ms)
    if status is None:
        return []
    key = rejection.order_id if rejection.store_id is None else str(rejection.store_id)
    return [f"S{key}\t{rejection.order_id}\t{rejection.status()}\t{status}\n"]


class ShardDesk:
    """inventory_windowing's rules for the store shards of one operator instance.

    ``decide(shard, batch, saved_state)`` applies a ``StoreBatcher`` batch and returns its
    result lines, dead letters and, when the batch asks to persist, the ``(store_id,
    state)`` of each store it changed since the shard's last persist, for the caller to
    write to Flink state (``store_to_bytes``). Stores stay in memory in between: the
    instance is created afresh with every (re)start of the operator, and then reads each
    store from state the first time it meets it (``saved_state``), or opens it: stock from
    ``opening_stock``, replenishment plan seeded from ``sales_history(store_id, first ms,
    end ms)`` (``order_fct`` rows ``(transaction_ts, product_id, quantity)``) over the
    ``history`` window before the store's first event.

    Per event, as ``simulation.simulate`` runs the policy: an order is decided by
    ``inventory.take``, counted as demand whether accepted or refused, then reviewed on its
    ingredients; a restock adds stock, closes its order line (``receive``) and is reviewed
    on its ingredient; a tick (``pizzastream.ticks``) reviews every ingredient, as does a
    store's first event."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        policies: Callable[[], Mapping[int, ReplenishmentPolicy]],
        opening_stock: Callable[[int], Mapping[int, int]],
        sales_history: Callable[[int, int, int], Iterable[Row]],
        history: HistoryWindow,
    ):
        self._catalog = catalog
        self._policies = policies
        self._opening_stock = opening_stock
        self._sales_history = sales_history
        self._history = history
        self._stores: dict[int, tuple[StoreStock, StoreReplenishment]] = {}
        # shard -> store -> ingredients whose level changed since the last persist (None:
        # all of them, the store was just opened); every store listed is persisted
        self._changed: dict[str, dict[int, set[int] | None]] = {}
        self._epoch: bytes | None = None

    def decide(
        self, shard: str, batch: bytes, saved_state: Callable[[int], bytes | None]
    ) -> tuple[str, list[DeadLetter], list[tuple[int, bytes]]]:
        epoch = batch_epoch(batch)
        if epoch != self._epoch:
            # The job was (re)started: stores kept in memory may be ahead of the state it was
            # restored from; read them from state again.
            self._stores.clear()
            self._changed.clear()
            self._epoch = epoch
        persist, records = store_records(batch)
        out: list[str] = []
        letters: list[DeadLetter] = []
        changed = self._changed.setdefault(shard, {})
        catalog, policies = self._catalog(), self._policies()
        order = self._order  # bound once: called for most records
        for kind, key, data in records:
            store_id = store_of_partition_key(key)
            if kind == ORDER:
                order(store_id, key, data, catalog, policies, changed, saved_state, out, letters)
            elif kind == RESTOCK:
                if b'"tick"' in data and self._tick(
                    store_id, key, data, catalog, policies, changed, saved_state, out, letters
                ):
                    continue
                self._restock(
                    store_id, key, data, catalog, policies, changed, saved_state, out, letters
                )
            else:
                letters.append(
                    dead_letter(
                        INVENTORY_JOB,
                        data,
                        UNKNOWN_RECORD_KIND,
                        f"record kind {kind!r} is neither order nor restock",
                        store_id=store_id,
                    )
                )
        saved = self._persist(changed, out) if persist else []
        return "".join(out), letters, saved

    def _store(
        self,
        store_id: int,
        event_ms: int,
        catalog: Catalog,
        changed: dict[int, set[int] | None],
        saved_state: SavedState,
    ) -> tuple[StoreStock, StoreReplenishment, bool]:
        """The store's stock and plan, and whether the plan is new (the store was just
        opened, or restored from a state saved before plans were: its first event
        reviews every ingredient)."""
        store = self._stores.get(store_id)
        if store is not None:
            return store[0], store[1], False
        saved = saved_state(store_id)
        if saved is not None:
            stock, planner = store_from_bytes(saved)
        else:
            stock = StoreStock.initial(store_id, self._opening_stock(store_id))
            planner = None
            changed[store_id] = None
        fresh = planner is None
        if planner is None:
            first, end = self._history.hours(event_ms)
            planner = StoreReplenishment.seeded(
                store_id,
                hourly_demand(
                    self._sales_history(store_id, first * HOUR_MS, end * HOUR_MS),
                    catalog.recipe_pairs,
                ),
                until_hour=end,
                start_hour=event_ms // HOUR_MS,
            )
        self._stores[store_id] = (stock, planner)
        return stock, planner, fresh

    def _order(
        self,
        store_id: int | None,
        key: str,
        data: bytes,
        catalog: Catalog,
        policies: Mapping[int, ReplenishmentPolicy],
        changed: dict[int, set[int] | None],
        saved_state: SavedState,
        out: list[str],
        letters: list[DeadLetter],
    ) -> None:
        try:
            text = data.decode()
            order = orjson.loads(text)
            order_id, event_id, ts_ms, lines = order["o"], order["e"], order["t"], order["l"]
            channel, fulfillment = order["c"], order["f"]
            if store_id is None or order["s"] != store_id:
                raise ValueError(f"store {order['s']!r} sent on partition key {key[:40]!r}")
            # Everything an output line or the stock will take is checked before either is
            # touched (order_demand checks the lines): a record that fails half-way must
            # change nothing.
            # is_id written out for the two ids (orjson only makes exact str): two calls fewer
            if not (
                type(order_id) is str
                and 0 < len(order_id) <= MAX_ID_LENGTH
                and order_id.isprintable()
                and type(event_id) is str
                and 0 < len(event_id) <= MAX_ID_LENGTH
                and event_id.isprintable()
                and type(ts_ms) is int
                and channel in CHANNELS
                and fulfillment in FULFILLMENTS
                and type(lines) is list
                and lines
            ):
                raise ValueError("ids, event time, channel, fulfillment or lines malformed")
            demand = order_demand(lines, catalog.recipe_units)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            order_id, event_id, named_store = record_ids(ORDER, data)
            letters.append(
                dead_letter(
                    INVENTORY_JOB,
                    data,
                    MALFORMED_ENRICHED_ORDER,
                    f"not an orders-enriched record: {error}"[:200],
                    event_id,
                    order_id,
                    store_id=named_store or store_id,
                )
            )
            return
        store = self._stores.get(store_id)  # a store met before: most events, no call
        if store is None:
            stock, planner, fresh = self._store(store_id, ts_ms, catalog, changed, saved_state)
        else:
            (stock, planner), fresh = store, False
        # take, record_demand and review in one pass (replenishment.serve_order)
        short, records = serve_order(stock, planner, demand, ts_ms, policies, fresh)
        if short:
            status = decided_status_json(
                order_id, event_id, store_id, ts_ms, _REJECTED_INVENTORY, shortage_detail(short)
            )
            out.append(f"S{key}\t{order_id}\t{_REJECTED_INVENTORY}\t{status}\n")
        else:
            status = decided_status_json(
                order_id, event_id, store_id, ts_ms, _ACCEPTED, accepted_detail(demand)
            )
            items = revenue = 0
            for _, quantity, unit_price_cents in lines:
                items += quantity
                revenue += quantity * unit_price_cents
            sale = sale_of_enriched(text, items, revenue)
            # An accepted order's lines as one text: status with its cache entry, order_fct
            # rows (online sales), sale (a delivery's once, for both outputs: DECISION_ROUTES).
            delivered = fulfillment == "delivery"
            if channel == "online":
                facts = fact_lines(
                    FACT, key, store_id, order_id, ts_ms, lines, fulfillment, channel
                )
                sale_tag = DELIVERED_SALE if delivered else SALE
            else:
                facts = ""
                sale_tag = DELIVERED_POS_ORDER if delivered else POS_ORDER
            out.append(
                f"S{key}\t{order_id}\t{_ACCEPTED}\t{status}\n{facts}{sale_tag}{key}\t{sale}\n"
            )
        # _mark_changed written out (one call fewer per order)
        levels = changed.get(store_id, _UNMARKED)
        if levels is _UNMARKED:
            changed[store_id] = set() if short else set(demand)
        elif levels is not None and not short:
            levels.update(demand)
        # Refused demand is demand (serve_order counted it): the forecast learns what the
        # store could have sold.
        if records:
            _record_lines(records, planner, stock, key, out)

    def _restock(
        self,
        store_id: int | None,
        key: str,
        data: bytes,
        catalog: Catalog,
        policies: Mapping[int, ReplenishmentPolicy],
        changed: dict[int, set[int] | None],
        saved_state: SavedState,
        out: list[str],
        letters: list[DeadLetter],
    ) -> None:
        try:
            delivery = parse_restock(data)
            check_restock_key(delivery, key)
        except InvalidRestock as invalid:
            _, event_id, named_store = record_ids(RESTOCK, data)
            letters.append(
                dead_letter(
                    INVENTORY_JOB,
                    data,
                    invalid.reason,
                    invalid.detail,
                    event_id,
                    store_id=named_store or store_id,
                )
            )
            return
        store_id = delivery.store_id  # the same: check_restock_key held the key to it
        known = store_id in self._stores
        stock, planner, fresh = self._store(store_id, delivery.ts_ms, catalog, changed, saved_state)
        try:
            restock(
                stock,
                delivery.ingredient_id,
                delivery.quantity,
                delivery.supplier_order_id,
                delivery.ts_ms,
                known=policies,
            )
        except InvalidRestock as invalid:
            if not known:  # as if never met: the store is read or opened with its next event
                del self._stores[store_id]
                if changed.get(store_id, ()) is None:
                    del changed[store_id]
            letters.append(
                dead_letter(
                    INVENTORY_JOB,
                    data,
                    invalid.reason,
                    invalid.detail,
                    delivery.event_id,
                    store_id=delivery.store_id,
                )
            )
            return
        _mark_changed(changed, store_id, (delivery.ingredient_id,))
        planner.receive(delivery.supplier_order_id, delivery.ingredient_id, policies)
        _review(
            planner,
            stock,
            policies,
            delivery.ts_ms,
            None if fresh else (delivery.ingredient_id,),
            key,
            out,
        )

    def _tick(
        self,
        store_id: int | None,
        key: str,
        data: bytes,
        catalog: Catalog,
        policies: Mapping[int, ReplenishmentPolicy],
        changed: dict[int, set[int] | None],
        saved_state: SavedState,
        out: list[str],
        letters: list[DeadLetter],
    ) -> bool:
        """Reviews every ingredient of the store at the tick's hour; False if the record
        is no tick after all (a restock that only mentions one)."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if type(doc) is not dict or "tick" not in doc:
            return False
        try:
            tick = parse_tick(doc)
            if store_id != tick.store_id:
                raise InvalidTick(
                    PARTITION_KEY_MISMATCH,
                    f"store {tick.store_id} sent on partition key {key[:40]!r}",
                )
        except InvalidTick as invalid:
            _, event_id, named_store = record_ids(RESTOCK, data)
            letters.append(
                dead_letter(
                    INVENTORY_JOB,
                    data,
                    invalid.reason,
                    invalid.detail,
                    event_id,
                    store_id=named_store or store_id,
                )
            )
            return True
        stock, planner, _ = self._store(store_id, tick.ts_ms, catalog, changed, saved_state)
        _mark_changed(changed, store_id, ())
        _review(planner, stock, policies, tick.ts_ms, None, key, out)
        return True

    def _persist(
        self, changed: dict[int, set[int] | None], out: list[str]
    ) -> list[tuple[int, bytes]]:
        """The state of each store changed since the last persist, and its changed stock
        levels (all of them for a store just opened) as ``STOCK_LEVEL`` lines: published
        once per store and checkpoint, not once per order."""
        saved = []
        for store_id in sorted(changed):
            stock, planner = self._stores[store_id]
            ingredients = changed[store_id]
            for ingredient_id in sorted(stock.on_hand if ingredients is None else ingredients):
                out.append(
                    f"L{store_id}\t{store_id}\t{ingredient_id}\t{stock.on_hand[ingredient_id]}\n"
                )
            saved.append((store_id, store_to_bytes(stock, planner)))
        changed.clear()
        return saved


def _review(
    planner: StoreReplenishment,
    stock: StoreStock,
    policies: Mapping[int, ReplenishmentPolicy],
    now_ms: int,
    ingredients: Collection[int] | None,
    key: str,
    out: list[str],
) -> None:
    """The plan's review as result lines (``_record_lines``)."""
    records = planner.review(policies, stock.on_hand, now_ms, ingredients)
    if records:
        _record_lines(records, planner, stock, key, out)


def _record_lines(
    records: list[Record], planner: StoreReplenishment, stock: StoreStock, key: str, out: list[str]
) -> None:
    """The plan's records as result lines: a supplier order's record (``R``) and a
    ``supplier_order`` row per line (``Q``, with the line's on-hand and reorder point at
    issue), an alert's ``replenishment_alert`` row (``W``)."""
    on_hand = stock.on_hand
    for record in records:
        if type(record) is ReplenishmentOrder:
            order_id, store_id, supplier_id = (
                record.supplier_order_id,
                record.store_id,
                record.supplier_id,
            )
            out.append(f"R{key}\t{record.to_json()}\n")
            for ingredient_id, quantity in record.lines:
                out.append(
                    f"Q{key}\t{order_id}\t{store_id}\t{ingredient_id}\t{supplier_id}\t"
                    f"{quantity}\t{record.ts_ms}\t{on_hand.get(ingredient_id, 0)}\t"
                    f"{planner.reorder_point(ingredient_id) or 0}\n"
                )
        else:
            out.append(f"W{key}\t{alert_row(record)}\n")


def alert_row(record: OverdueAlert | StockoutWarning) -> str:
    """The ``replenishment_alert`` row of an alert, tab-separated: ``alert_id, kind,
    store_id, ingredient_id, supplier_id, supplier_order_id, ts_ms, record`` (0 and ""
    where the kind has no such id). The id is made of what the alert is about and when,
    so a replay writes the same row again, never a second one: an order is overdue once
    (it is re-issued under a new id), a warning is raised once per ingredient and time."""
    if type(record) is OverdueAlert:
        return (
            f"overdue-{record.supplier_order_id}\t{OVERDUE}\t{record.store_id}\t0\t"
            f"{record.supplier_id}\t{record.supplier_order_id}\t{record.ts_ms}\t"
            f"{record.to_json()}"
        )
    return (
        f"stockout-{record.store_id}-{record.ingredient_id}-{record.ts_ms}\t{STOCKOUT}\t"
        f"{record.store_id}\t{record.ingredient_id}\t0\t\t{record.ts_ms}\t"
        f"{record.to_json()}"
    )


def store_to_bytes(stock: StoreStock, planner: StoreReplenishment) -> bytes:
    """One store's entry of the shard's keyed state: its stock and its plan."""
    return pickle.dumps([STORE_STATE_VERSION, stock.to_state(), planner.to_bytes()], protocol=5)


def store_from_bytes(data: bytes) -> tuple[StoreStock, StoreReplenishment | None]:
    """Inverse of ``store_to_bytes``; also reads a state saved before plans were (a
    ``StoreStock.to_bytes`` alone), whose plan is None: the caller seeds one as for a new
    store, so a savepoint of the old job restores into this one."""
    state = pickle.loads(data)
    if state[0] == STORE_STATE_VERSION:
        stock = StoreStock.from_state(state[1])
        return cast(StoreStock, stock), StoreReplenishment.from_bytes(state[2])  # saved: not None
    return cast(StoreStock, StoreStock.from_state(state)), None


def _mark_changed(
    changed: dict[int, set[int] | None], store_id: int, ingredients: Iterable[int]
) -> None:
    """Notes stock levels to publish at the next persist (a store just opened publishes
    all of them already)."""
    levels = changed.get(store_id, _UNMARKED)
    if levels is _UNMARKED:  # no empty set made and thrown away per event
        changed[store_id] = set(ingredients)
    elif levels is not None:
        levels.update(ingredients)


_UNMARKED: set[int] = set()  # a store not in ``changed`` (identity, never filled)


def repeat_letter(key: str, kind: str, data: bytes, repeat: int) -> DeadLetter:
    """The dead letter of the ``repeat``-th repeat of an order id or restock event id
    (``StoreBatcher`` counts them in state): one row per repeat, with the ids it repeats;
    the event is never applied twice."""
    order_id, event_id, store_id = record_ids(kind, data)
    reason = (
        "duplicate_order"
        if kind == ORDER
        else "duplicate_tick"
        if _is_tick(data)
        else "duplicate_restock"
    )
    return dead_letter(
        INVENTORY_JOB,
        data,
        reason,
        f"repeat {repeat} of an event already processed; ignored",
        event_id,
        order_id,
        occurrence=repeat,
        store_id=store_id or store_of_partition_key(key),
    )


def _is_tick(data: bytes) -> bool:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return type(doc) is dict and "tick" in doc


def record_ids(kind: str, data: bytes) -> tuple[str | None, str | None, int | None]:
    """``(order_id, event_id, store_id)`` a record names, for its dead letter, when it lets
    them be read: an orders-enriched record's ``o``, ``e`` and ``s``; a restock's
    ``event_id`` and ``store_id``."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(doc, dict):
        return None, None, None
    if kind == ORDER:
        order_id, event_id, store_id = doc.get("o"), doc.get("e"), doc.get("s")
    else:
        order_id, event_id, store_id = None, doc.get("event_id"), doc.get("store_id")
    return (
        order_id if is_id(order_id) else None,
        event_id if is_id(event_id) else None,
        storable_store_id(store_id),
    )
