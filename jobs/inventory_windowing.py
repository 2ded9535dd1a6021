"""inventory_windowing: per-store stock in keyed state decides every order.

orders-enriched + restocks (Kinesis, keyed by store) -> first sighting of each order id /
restock event id (JVM) -> StoreInventory (keyed by store, one Python call per event) ->
  order-status (Kinesis) and Redis           exactly one final status per order
  sales (Kinesis) + order_fct (Aurora)        accepted online sales
  pos-orders (Kinesis)                        accepted in-store sales, for the POS
  deliveries (Kinesis)                        accepted delivery orders, for the delivery service
  supplier-orders (Kinesis) + supplier_order  reorders when stock runs low
  inventory (Aurora) and Redis                current stock per store, with every change
  dead_letter (Aurora)                        repeats and unusable restocks, with the reason

Run locally with ``python jobs/inventory_windowing.py``; the same file is the ``python``
run option of the Managed Service for Apache Flink application.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Row, Types  # noqa: E402
from pyflink.datastream import (  # noqa: E402
    DataStream, KeyedProcessFunction, OutputTag, StreamExecutionEnvironment,
)
from pyflink.datastream.state import ValueStateDescriptor  # noqa: E402

from connectors import aurora, kinesis, redis_store  # noqa: E402
from jobs import runtime  # noqa: E402
from pizzastream.catalog import Catalog  # noqa: E402
from pizzastream.dead_letters import dead_letter  # noqa: E402
from pizzastream.inventory import (  # noqa: E402
    PARTITION_KEY_MISMATCH, InvalidRestock, StoreStock, check_restock_key, due_reorders,
    parse_restock, place_order, policies_from_rows, restock, store_of_partition_key,
)
from pizzastream.orders import Channel, EnrichedOrder, Fulfillment  # noqa: E402
from pizzastream.sales import enriched_status_json, fact_rows, sale_json  # noqa: E402

JOB_NAME = "inventory_windowing"
ORDER, RESTOCK = "o", "r"
# The id that makes two records the same event: an order's id, a restock's event id.
DEDUP_ID_FIELDS = {ORDER: "o", RESTOCK: "event_id"}

FACT_ROW = Types.ROW_NAMED(
    ["store_id", "order_id", "product_id", "transaction_ts_ms", "quantity", "unit_price_cents",
     "total_cents", "delivery_type", "channel"],
    [Types.INT(), Types.STRING(), Types.INT(), Types.LONG(), Types.INT(), Types.LONG(),
     Types.LONG(), Types.STRING(), Types.STRING()],
)
SUPPLIER_ORDER_ROW = Types.ROW_NAMED(
    ["supplier_order_id", "store_id", "ingredient_id", "supplier_id", "quantity", "ordered_ts_ms",
     "on_hand", "reorder_point"],
    [Types.STRING(), Types.INT(), Types.INT(), Types.INT(), Types.INT(), Types.LONG(),
     Types.LONG(), Types.LONG()],
)
INVENTORY_ROW = Types.ROW_NAMED(
    ["store_id", "ingredient_id", "on_hand"], [Types.INT(), Types.INT(), Types.LONG()]
)

SALES = OutputTag("sales", kinesis.KEYED_RECORD)
POS_ORDERS = OutputTag("pos-orders", kinesis.KEYED_RECORD)
DELIVERIES = OutputTag("deliveries", kinesis.KEYED_RECORD)
SUPPLIER_ORDERS = OutputTag("supplier-orders", kinesis.KEYED_RECORD)
STATUS_CACHE = OutputTag("order-status-cache", redis_store.REDIS_COMMAND)
FACTS = OutputTag("order-fct", FACT_ROW)
SUPPLIER_ORDER_ROWS = OutputTag("supplier-order-rows", SUPPLIER_ORDER_ROW)
INVENTORY_LEVELS = OutputTag("inventory-levels", INVENTORY_ROW)
DEAD_LETTERS = OutputTag("dead-letters", aurora.DEAD_LETTER_ROW)


class StoreInventory(KeyedProcessFunction):
    """Adapts ``pizzastream.inventory`` to keyed state: one ``StoreStock`` per store, read
    and written once per event. The main output is the order status; everything else
    leaves through side outputs, the changed stock levels included."""

    def __init__(self, props: dict[str, dict[str, str]]):
        self._props = props
        settings = props["Inventory"]
        self._window_minutes = int(settings.get("consumption_window_minutes", "60"))
        self._bucket_minutes = int(settings.get("consumption_bucket_minutes", "5"))

    def open(self, runtime_context):
        period = float(self._props["OrderRules"].get("catalog_refresh_seconds", "30"))
        self._catalog = aurora.Refreshing(
            lambda: Catalog.from_rows(*aurora.catalog_rows(self._props)), period)
        self._policies = aurora.Refreshing(
            lambda: policies_from_rows(aurora.ingredient_policy_rows(self._props)), period)
        self._db = aurora.connect(self._props)
        self._stock_state = runtime_context.get_state(
            ValueStateDescriptor("stock", Types.PICKLED_BYTE_ARRAY()))

    def close(self):
        self._db.close()

    def _stock(self, store_id: int) -> tuple[StoreStock, bool]:
        """The store's stock, and whether it was just opened: the first time a store is
        seen, its opening stock is read from ``opening_inventory``, which no job writes (the
        ``inventory`` table is this job's output: a job restored from a checkpoint that
        predates a store would otherwise open it with stock it had already consumed)."""
        state = self._stock_state.value()
        if state is not None:
            return StoreStock.from_state(state), False
        return StoreStock.initial(store_id, aurora.store_inventory(self._db, store_id),
                                  window_minutes=self._window_minutes,
                                  bucket_minutes=self._bucket_minutes), True

    def process_element(self, value, ctx):
        kind, data = value
        data = bytes(data)
        key = ctx.get_current_key()
        if kind == RESTOCK:
            # Checked before any state is touched: a restock is outside input, and one whose
            # key or body cannot be used must not reach (or crash) any store's stock.
            try:
                delivery = parse_restock(data)
                check_restock_key(delivery, key)
            except InvalidRestock as invalid:
                letter = dead_letter(JOB_NAME, data, invalid.reason, invalid.detail)
                yield DEAD_LETTERS, Row(*letter.as_tuple())
                return
        store_id = store_of_partition_key(key)
        if store_id is None:
            letter = dead_letter(JOB_NAME, data, PARTITION_KEY_MISMATCH,
                                 f"partition key {str(key)[:40]!r} names no store")
            yield DEAD_LETTERS, Row(*letter.as_tuple())
            return
        stock, opened = self._stock(store_id)
        if kind == ORDER:
            order = EnrichedOrder.from_json(data)
            changed = yield from self._place(stock, order, key)
            event_ms = order.ts_ms
        else:
            try:
                restock(stock, delivery.ingredient_id, delivery.quantity,
                        delivery.supplier_order_id, delivery.ts_ms, known=self._policies.get())
            except InvalidRestock as invalid:
                letter = dead_letter(JOB_NAME, data, invalid.reason, invalid.detail)
                yield DEAD_LETTERS, Row(*letter.as_tuple())
                return
            event_ms, changed = delivery.ts_ms, {delivery.ingredient_id}
        for supplier_order in due_reorders(stock, self._policies.get(),
                                           stock.clock_ms or event_ms):
            yield SUPPLIER_ORDERS, Row(key, supplier_order.to_json())
            yield SUPPLIER_ORDER_ROWS, Row(
                supplier_order.supplier_order_id, store_id, supplier_order.ingredient_id,
                supplier_order.supplier_id, supplier_order.quantity, supplier_order.ts_ms,
                supplier_order.on_hand, supplier_order.reorder_point)
        self._stock_state.update(stock.to_state())
        yield from self._publish(stock, stock.on_hand if opened else changed)

    @staticmethod
    def _publish(stock: StoreStock, ingredients):
        """The stock of the ingredients an event changed (all of them when the store was
        just opened), for the ``inventory`` table and, through ``inventory_cache_commands``
        in the JVM, Redis. Published with the event's own outputs, not later from a timer:
        a restored job replays exactly the events after its checkpoint and with them their
        publications, while a processing-time timer registered just before a checkpoint can
        be missing from it (PyFlink 1.20 applies Python timer registrations through the
        mailbox, after the snapshot)."""
        for ingredient_id in sorted(ingredients):
            yield INVENTORY_LEVELS, Row(stock.store_id, ingredient_id,
                                        stock.on_hand[ingredient_id])

    def _place(self, stock: StoreStock, order: EnrichedOrder, key: str):
        decision = place_order(stock, order, self._catalog.get())
        yield Row(key, enriched_status_json(order, decision.status, decision.detail))
        yield STATUS_CACHE, Row(
            "SET", redis_store.order_status_key(order.order_id), "", decision.status)
        if not decision.accepted:
            return set()
        sale = Row(key, sale_json(order))
        if order.channel == Channel.ONLINE:
            yield SALES, sale
            for fact in fact_rows(order):
                yield FACTS, Row(*fact)
        else:
            yield POS_ORDERS, sale
        if order.fulfillment == Fulfillment.DELIVERY:
            yield DELIVERIES, sale
        return set(decision.consumed)


def repeat_dead_letter(record):
    """A repeated order id or restock event id: recorded, never applied twice."""
    _, (kind, data) = record
    data = bytes(data)
    reason = "duplicate_order" if kind == ORDER else "duplicate_restock"
    letter = dead_letter(JOB_NAME, data, reason, "already processed; ignored")
    return Row(*letter.as_tuple())


# The Redis hash field of each published stock level, keyed as ``redis_store.inventory_key``.
LEVELS = "inventory_levels"
INVENTORY_CACHE_SQL = f"""
SELECT 'HSET' AS command,
       CONCAT('{redis_store.inventory_key("")}', CAST(store_id AS STRING)) AS key,
       CAST(ingredient_id AS STRING) AS field, CAST(on_hand AS STRING) AS `value`
FROM {LEVELS}"""


def inventory_cache_commands(t_env, levels: DataStream) -> DataStream:
    """Redis ``HSET`` commands of the ``INVENTORY_ROW`` levels, built in the JVM: emitting
    them from Python as well would double the records each event sends back across the
    JVM-Python boundary (docs/benchmarks.md)."""
    t_env.create_temporary_view(LEVELS, t_env.from_data_stream(levels))
    return t_env.to_data_stream(t_env.sql_query(INVENTORY_CACHE_SQL))


def decide_orders(
    records: DataStream, props: dict[str, dict[str, str]]
) -> tuple[DataStream, DataStream]:
    """The job's logic without its edges: tagged orders and restocks in; order statuses out
    (side outputs for everything else), and the repeats that were not applied.
    Benchmarks feed it directly."""
    ttl_ms = int(float(props["Inventory"].get("dedup_ttl_hours", "50")) * 3600 * 1000)
    first, repeats = runtime.first_seen(records, DEDUP_ID_FIELDS, ttl_ms)
    statuses = (
        runtime.key_by_store(first, kinesis.TAGGED_RECORD)
        .process(StoreInventory(props), output_type=kinesis.KEYED_RECORD)
        .name("store-inventory")
        .uid("store-inventory")
    )
    return statuses, repeats


def build(env: StreamExecutionEnvironment, props: dict[str, dict[str, str]]) -> None:
    """Adds the job's dataflow, with its sources and sinks, to ``env``."""
    t_env = runtime.table_environment(env)
    records = kinesis.tagged_records(env, props, {"orders_enriched": ORDER, "restocks": RESTOCK})
    statuses, repeats = decide_orders(records, props)
    kinesis.sink_to_stream(statuses, props, "order_status")
    for tag, stream in ((SALES, "sales"), (POS_ORDERS, "pos_orders"),
                        (DELIVERIES, "deliveries"), (SUPPLIER_ORDERS, "supplier_orders")):
        kinesis.sink_to_stream(runtime.side_output(statuses, tag), props, stream)
    runtime.side_output(statuses, STATUS_CACHE).sink_to(
        redis_store.sink(props, redis_store.ORDER_STATUS_TTL_S)
    ).name("redis:order-status").uid("sink-redis-order-status")
    levels = runtime.side_output(statuses, INVENTORY_LEVELS)
    inventory_cache_commands(t_env, levels).sink_to(redis_store.sink(props)).name(
        "redis:inventory").uid("sink-redis-inventory")

    statements = t_env.create_statement_set()
    # order_fct: COPY into a staging table + one INSERT per batch (flushed on every
    # checkpoint), several times the JDBC upsert's rows/s (docs/benchmarks.md)
    runtime.side_output(statuses, FACTS).sink_to(aurora.copy_upsert_sink(
        props, "order_fct", aurora.ORDER_FCT_STAGE, aurora.ORDER_FCT_TARGET,
        ["order_id", "product_id"])).name("aurora:order_fct").uid("sink-aurora-order-fct")
    aurora.upsert_rows(
        t_env, statements, props, runtime.side_output(statuses, SUPPLIER_ORDER_ROWS),
        "supplier_order",
        [("supplier_order_id", "STRING"), ("store_id", "INT"), ("ingredient_id", "INT"),
         ("supplier_id", "INT"), ("quantity", "INT"), ("ordered_ts", "TIMESTAMP(3)"),
         ("on_hand", "BIGINT"), ("reorder_point", "BIGINT")],
        ["supplier_order_id"],
        select="supplier_order_id, store_id, ingredient_id, supplier_id, quantity,"
               " CAST(TO_TIMESTAMP_LTZ(ordered_ts_ms, 3) AS TIMESTAMP(3)), on_hand, reorder_point",
    )
    aurora.upsert_rows(
        t_env, statements, props, levels, "inventory",
        [("store_id", "INT"), ("ingredient_id", "INT"), ("on_hand", "BIGINT"),
         ("updated_at", "TIMESTAMP(3)")],
        ["store_id", "ingredient_id"],
        select="store_id, ingredient_id, on_hand, CAST(LOCALTIMESTAMP AS TIMESTAMP(3))",
    )
    dead_letters = runtime.side_output(statuses, DEAD_LETTERS).union(
        repeats.map(repeat_dead_letter, output_type=aurora.DEAD_LETTER_ROW).name("repeats"))
    aurora.sink_dead_letters(t_env, statements, props, dead_letters)
    statements.attach_as_datastream()


if __name__ == "__main__":
    runtime.run_job(build, JOB_NAME)
