"""inventory_windowing: per-store stock in keyed state decides every order.

orders-enriched + restocks and hourly ticks (Kinesis, keyed by store) -> repeats dropped and the rest grouped
into one batch per store shard (JVM: StoreShardKey, StoreBatcher) -> the rules decide the
batch, store by store in arrival order (one Python call per batch:
pizzastream.order_batches.ShardDesk) -> one result per batch, fanned out in the JVM to:
  order-status (Kinesis) and Redis           exactly one final status per order (in Redis
                                              only forward: pizzastream.order_status)
  sales (Kinesis) + order_fct (Aurora)        accepted online sales
  pos-orders (Kinesis)                        accepted in-store sales, for the POS
  deliveries (Kinesis)                        accepted delivery orders, for the delivery service
  supplier-orders (Kinesis) + supplier_order  the replenishment plan's supplier orders
                                              (pizzastream.replenishment; a row per line)
  replenishment_alert (Aurora) + Redis        overdue supplier orders, expected stock-outs
  inventory (Aurora) and Redis                stock levels a store changed, once per checkpoint
  dead_letter (Aurora)                        repeats and unusable records, with the reason;
                                              refused status writes (status_conflict)

Run locally with ``python jobs/inventory_windowing.py``; the same file is the ``python``
run option of the Managed Service for Apache Flink application.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Row, Types
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    StreamExecutionEnvironment,
)
from pyflink.datastream.state import MapStateDescriptor

from connectors import aurora, kinesis, redis_store
from jobs import operators, runtime
from pizzastream.catalog import Catalog
from pizzastream.config import Props
from pizzastream.order_batches import (
    ALERT,
    DECISION_ROUTES,
    DELIVERY,
    EVENT_ID_FIELDS,
    FACT,
    INVENTORY_JOB,
    ORDER,
    POS_ORDER,
    RESTOCK,
    ROW_LAYOUTS,
    SALE,
    STATUS,
    STATUS_CACHE,
    STOCK_LEVEL,
    STOCKOUT,
    SUPPLIER_ORDER,
    SUPPLIER_ORDER_ROW,
    Decisions,
    ShardDesk,
    repeat_letter,
)
from pizzastream.replenishment import HistoryWindow, policies_from_rows
from pizzastream.schemas import ORDER_FCT
from pizzastream.settings import InventorySettings, OrderPathSettings, OrderRulesSettings

JOB_NAME = INVENTORY_JOB

# The table rows parsed in the JVM from result lines (order_batches.ROW_LAYOUTS).
FACT_ROW = operators.delimited_row_type(ROW_LAYOUTS[FACT])
FACT_KINDS = ROW_LAYOUTS[FACT].kinds
SUPPLIER_ORDER_ROW_TYPE = operators.delimited_row_type(ROW_LAYOUTS[SUPPLIER_ORDER_ROW])
ALERT_ROW = operators.delimited_row_type(ROW_LAYOUTS[ALERT])
INVENTORY_ROW = operators.delimited_row_type(ROW_LAYOUTS[STOCK_LEVEL])
# The Aurora columns each row type fills (connectors.aurora.copy_upsert_sink's ``target``):
# times from epoch ms, 0 and '' of the fields an alert kind leaves empty as NULL, and the
# stock level's time as the write's.
SUPPLIER_ORDER_TARGET = [
    ("ordered_ts", aurora.from_epoch_ms(name)) if name == "ordered_ts_ms" else (name, name)
    for name in SUPPLIER_ORDER_ROW_TYPE.get_field_names()
]
ALERT_TARGET = [
    ("alert_id", "alert_id"),
    ("kind", "kind"),
    ("store_id", "store_id"),
    ("ingredient_id", "NULLIF(ingredient_id, 0)"),
    ("supplier_id", "NULLIF(supplier_id, 0)"),
    ("supplier_order_id", "NULLIF(supplier_order_id, '')"),
    ("alert_ts", aurora.from_epoch_ms("ts_ms")),
    ("record", "record"),
]
INVENTORY_TARGET = [
    ("store_id", "store_id"),
    ("ingredient_id", "ingredient_id"),
    ("on_hand", "on_hand"),
    ("updated_at", "now()"),
]
DEAD_LETTERS = OutputTag("dead-letters", aurora.DEAD_LETTER_ROW)
SIDE_TAGS = (
    STATUS_CACHE
    + SALE
    + POS_ORDER
    + DELIVERY
    + FACT
    + SUPPLIER_ORDER
    + SUPPLIER_ORDER_ROW
    + ALERT
    + STOCK_LEVEL
)


class DecideStoreBatches(KeyedProcessFunction):
    """Adapts ``pizzastream.order_batches.ShardDesk`` to keyed state: keyed by store shard,
    each store's stock and replenishment plan are one entry of the shard's ``MapState``
    (``order_batches.store_to_bytes``; an entry saved before plans still restores), read
    the first time this instance meets the store and written when a batch asks to persist
    (before every checkpoint). Dead letters (rare) leave through a side output of their
    own."""

    def __init__(self, props: Props):
        self._props = props
        # Read here, where the job is built: a missing key stops it before it runs. Only
        # plain values are kept for the workers: the history window is built in ``open``,
        # from the class the workers import (compiled: deploy.compiled_core, whose frozen
        # dataclasses cannot be unpickled from the client's plain ones).
        InventorySettings.from_group(props["Inventory"])
        self._catalog_refresh_s = OrderRulesSettings.from_group(
            props["OrderRules"]
        ).catalog_refresh_seconds

    def open(self, runtime_context):
        self._history: HistoryWindow = InventorySettings.from_group(
            self._props["Inventory"]
        ).history
        period = self._catalog_refresh_s
        catalog = aurora.Refreshing(
            lambda: Catalog.from_rows(*aurora.catalog_rows(self._props)), period
        )
        policies = aurora.Refreshing(
            lambda: policies_from_rows(aurora.ingredient_policy_rows(self._props)), period
        )
        self._db = aurora.connect(self._props)
        self._stores = StoreStockState(
            runtime_context.get_map_state(
                MapStateDescriptor("store-stock", Types.INT(), Types.PRIMITIVE_ARRAY(Types.BYTE()))
            )
        )
        self._desk = ShardDesk(
            catalog.get, policies.get, self._opening_stock, self._store_sales, self._history
        )

    def _opening_stock(self, store_id: int):
        """A store's stock the first time the job meets it: ``opening_inventory``, which no
        job writes (the ``inventory`` table is this job's output: a job restored from a
        checkpoint that predates a store would otherwise open it with stock it had
        already consumed)."""
        return aurora.store_inventory(self._db, store_id)

    def _store_sales(self, store_id: int, first_ms: int, end_ms: int):
        """The sales that seed a store's plan the first time the job meets it (bounds from
        ``HistoryWindow``: old enough that a replay reads the same rows)."""
        return aurora.store_sales(self._db, store_id, first_ms, end_ms)

    def close(self):
        self._db.close()

    def process_element(self, batch, ctx):
        # The key is the shard's name itself (PyFlink's keyed operator hands over the first
        # field of the batch), not a Row: indexing it took its first letter, one for every
        # shard, and a persist wrote other shards' stores under its own key, where a
        # restored job did not find them.
        shard = ctx.get_current_key()
        result, letters, saved = self._desk.decide(shard, bytes(batch), self._saved_state)
        for store_id, state in saved:
            self._stores.put(store_id, state)
        for letter in letters:
            yield DEAD_LETTERS, Row(*letter.as_tuple())
        if result:
            yield result.encode()

    def _saved_state(self, store_id: int):
        return self._stores.get(store_id)


class StoreStockState:
    """The shard's ``store-stock`` map (store id -> ``order_batches.store_to_bytes``) read and
    written as ``bytes`` in either of PyFlink's Python execution modes. In thread mode
    (``python.execution-mode: thread``, the interpreter embedded in the TaskManager) PyFlink
    1.20's map state converts a byte-array value element by element (``ArrayDataConverter``
    in ``pyflink/fn_execution/embedded/converters.py``: a tuple of ints out, none of it back to
    ``byte[]``) and fails on a key it does not hold; the Java state it wraps takes and gives
    ``byte[]`` as ``bytes``, so there it is used directly. Same descriptor, same serializer,
    same checkpoints in both modes."""

    def __init__(self, state):
        embedded = type(state).__module__.endswith(".embedded.state_impl")
        self._java = state._state if embedded else None
        self._state = state

    def get(self, store_id: int) -> bytes | None:
        saved = self._java.get(store_id) if self._java is not None else self._state.get(store_id)
        return None if saved is None else bytes(saved)

    def put(self, store_id: int, saved: bytes) -> None:
        if self._java is not None:
            self._java.put(store_id, saved)
        else:
            self._state.put(store_id, saved)


def repeat_dead_letter(record):
    """``Row(partition_key, kind, data, repeat)`` of ``StoreBatcher``'s repeats as its
    dead-letter row (``order_batches.repeat_letter``)."""
    key, kind, data, repeat = record
    return Row(*repeat_letter(key, kind, bytes(data), repeat).as_tuple())


# The Redis hash field of each published stock level, keyed as ``redis_store.inventory_key``.
LEVELS = "inventory_levels"
INVENTORY_CACHE_SQL = f"""
SELECT 'HSET' AS command,
       {redis_store.inventory_key_sql("store_id")} AS key,
       CAST(ingredient_id AS STRING) AS field, CAST(on_hand AS STRING) AS `value`
FROM {LEVELS}"""
# Each expected stock-out warning as its ingredient's field of ``redis_store.stockout_key``.
ALERTS = "replenishment_alerts"
STOCKOUT_CACHE_SQL = f"""
SELECT 'HSET' AS command,
       {redis_store.stockout_key_sql("store_id")} AS key,
       CAST(ingredient_id AS STRING) AS field, record AS `value`
FROM {ALERTS} WHERE kind = '{STOCKOUT}'"""


def inventory_cache_commands(t_env, levels: DataStream) -> DataStream:
    """Redis ``HSET`` commands of the ``INVENTORY_ROW`` levels, built in the JVM."""
    t_env.create_temporary_view(LEVELS, t_env.from_data_stream(levels))
    return t_env.to_data_stream(t_env.sql_query(INVENTORY_CACHE_SQL))


def stockout_cache_commands(t_env, alerts: DataStream) -> DataStream:
    """Redis ``HSET`` commands of the ``ALERT_ROW`` stock-out warnings, built in the JVM."""
    t_env.create_temporary_view(ALERTS, t_env.from_data_stream(alerts))
    return t_env.to_data_stream(t_env.sql_query(STOCKOUT_CACHE_SQL))


def decide_orders(
    records: DataStream,
    props: Props,
    desk: KeyedProcessFunction | None = None,
    event_id_fields: dict[str, str] = EVENT_ID_FIELDS,
) -> Decisions[DataStream]:
    """The job's logic without its edges: tagged orders and restocks in, its outputs out.
    Benchmarks feed it directly, and may put another desk in (``bench.prototypes``)."""
    inventory = InventorySettings.from_group(props["Inventory"])
    path = OrderPathSettings.from_group(props.get("OrderPath", {}))
    operators.hand_records_on_by_reference(records)
    batches, repeats = operators.store_batches(
        records,
        event_id_fields,
        inventory.dedup_ttl_ms,
        path.store_shards,
        path.batch_max_records,
        path.batch_max_delay_ms,
    )
    results = (
        batches.process(desk or DecideStoreBatches(props), output_type=operators.BATCH)
        .name("store-inventory")
        .uid("store-inventory-batches")
    )
    outputs = operators.batch_outputs(results, STATUS, SIDE_TAGS, DECISION_ROUTES, ROW_LAYOUTS)

    def side(tag: str) -> DataStream:
        return operators.batch_output(outputs, tag)

    def rows(tag: str) -> DataStream:
        return operators.batch_rows(outputs, tag, ROW_LAYOUTS[tag])

    dead_letters = operators.side_output(results, DEAD_LETTERS).union(
        repeats.map(repeat_dead_letter, output_type=aurora.DEAD_LETTER_ROW).name("repeats")
    )
    return Decisions(
        outputs,
        operators.redis_set_commands(side(STATUS_CACHE), redis_store.order_status_key("")),
        side(SALE),
        side(POS_ORDER),
        side(DELIVERY),
        side(SUPPLIER_ORDER),
        rows(FACT),
        rows(SUPPLIER_ORDER_ROW),
        rows(ALERT),
        rows(STOCK_LEVEL),
        dead_letters,
    )


def build(env: StreamExecutionEnvironment, props: Props) -> None:
    """Adds the job's dataflow, with its sources and sinks, to ``env``."""
    t_env = runtime.table_environment(env)
    records = kinesis.tagged_records(env, props, {"orders_enriched": ORDER, "restocks": RESTOCK})
    out = decide_orders(records, props)
    for stream, name in (
        (out.statuses, "order_status"),
        (out.sales, "sales"),
        (out.pos_orders, "pos_orders"),
        (out.deliveries, "deliveries"),
        (out.supplier_orders, "supplier_orders"),
    ):
        kinesis.sink_to_stream(stream, props, name)
    # Statuses only move forward (pizzastream.order_status): a refused write is a dead letter.
    conflicts = redis_store.order_status_gate(out.status_commands, props, JOB_NAME)
    inventory_cache_commands(t_env, out.levels).sink_to(redis_store.sink(props)).name(
        "redis:inventory"
    ).uid("sink-redis-inventory")
    stockout_cache_commands(t_env, out.alerts).sink_to(
        redis_store.sink(props, redis_store.STOCKOUT_TTL_S)
    ).name("redis:stockouts").uid("sink-redis-stockouts")

    # Every Aurora table: COPY into a staging table + one INSERT per batch, flushed on every
    # checkpoint (connectors.aurora.copy_upsert_sink); conversions run in the database.
    for rows, table, stage, target, primary_key in (
        (
            out.facts,
            ORDER_FCT.name,
            aurora.ORDER_FCT_STAGE,
            aurora.ORDER_FCT_TARGET,
            list(ORDER_FCT.primary_key),
        ),
        (
            out.supplier_order_rows,
            "supplier_order",
            aurora.stage_columns(ROW_LAYOUTS[SUPPLIER_ORDER_ROW]),
            SUPPLIER_ORDER_TARGET,
            ["supplier_order_id", "ingredient_id"],
        ),
        (
            out.alerts,
            "replenishment_alert",
            aurora.stage_columns(ROW_LAYOUTS[ALERT]),
            ALERT_TARGET,
            ["alert_id"],
        ),
        (
            out.levels,
            "inventory",
            aurora.stage_columns(ROW_LAYOUTS[STOCK_LEVEL]),
            INVENTORY_TARGET,
            ["store_id", "ingredient_id"],
        ),
    ):
        # A stock level rewrites its store's and ingredient's row: merged at once, where the
        # plain insert would fail on nearly every batch.
        rewritten = table == "inventory"
        sink = aurora.copy_upsert_sink(
            props, table, stage, target, primary_key, updates_expected=rewritten
        )
        rows.sink_to(sink).name(f"aurora:{table}").uid(f"sink-aurora-{table.replace('_', '-')}")
    out.dead_letters.union(conflicts).sink_to(aurora.dead_letter_sink(props)).name(
        "aurora:dead_letter"
    ).uid("sink-aurora-dead-letter")


if __name__ == "__main__":
    runtime.run_job(build, JOB_NAME)
