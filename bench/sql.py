"""Pure Flink SQL equivalents of the jobs' hot paths: the yardstick for "what would this
cost with no Python in the hot path".

They read the same generator records as the jobs. JSON is decoded once per record in the
JVM by Flink's JSON format (``operators.json_rows``), as a Kinesis table with
``'format' = 'json'`` would (``JSON_VALUE`` re-parses the document on every call). Then,
ending in ``blackhole`` tables:

* ``enrichment``: every check the rules make that a schema can express (size, ids, store
  range, channel, fulfillment, ISO-8601 time inside the allowed window, location of
  deliveries, no client prices, 1..25 lines, quantities 1..20, known active products),
  each line priced from the catalog; out: one priced line per row (the ``order_fct``
  shape). Not checked: duplicate products within an order, and JSON types (the format
  coerces).
* ``inventory``: first sighting of each order id (keyed dedup state, as
  ``StoreBatcher``), one status per order, and per-store, per-ingredient consumption
  in keyed state (lines x recipes, updated per event). Not the all-or-nothing rule with
  reorders, which SQL cannot express, but the same state traffic per event.
* ``chained``: both in one query.
* ``hourly_from_json``: a bare 1-hour event-time TUMBLE of the sales (no dedup, no live
  view): the aggregation's floor (hourly_metrics' own SQL is ``bench.hourly``).
"""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream import DataStream
from pyflink.table import Schema

from pizzastream import reference_data
from pizzastream.orders import CHANNELS, FULFILLMENTS, STORE_IDS

MAX_RECORD_BYTES = 8192
MAX_LINES = 25
MAX_QUANTITY = 20
MAX_AGE_HOURS = 48
MAX_FUTURE_MINUTES = 5

_PRICE_FIELDS = ["price", "unit_price", "total", "amount"]
RAW_ORDER = Types.ROW_NAMED(
    [
        "event_id",
        "order_id",
        "store_id",
        "channel",
        "fulfillment",
        "ts",
        "customer",
        "items",
        *_PRICE_FIELDS,
    ],
    [
        Types.STRING(),
        Types.STRING(),
        Types.INT(),
        Types.STRING(),
        Types.STRING(),
        Types.STRING(),
        Types.ROW_NAMED(["lat", "lon"], [Types.DOUBLE(), Types.DOUBLE()]),
        Types.OBJECT_ARRAY(
            Types.ROW_NAMED(
                ["product_id", "quantity", *_PRICE_FIELDS],
                [Types.INT(), Types.INT()] + [Types.DOUBLE()] * 4,
            )
        ),
        *[Types.DOUBLE()] * 4,
    ],
)
ENRICHED_ORDER = Types.ROW_NAMED(
    ["e", "o", "s", "c", "f", "t", "l"],
    [
        Types.STRING(),
        Types.STRING(),
        Types.INT(),
        Types.STRING(),
        Types.STRING(),
        Types.LONG(),
        Types.OBJECT_ARRAY(Types.BASIC_ARRAY(Types.LONG())),
    ],
)
SALE = Types.ROW_NAMED(
    ["s", "c", "f", "t", "n", "r"],
    [Types.INT(), Types.STRING(), Types.STRING(), Types.LONG(), Types.INT(), Types.LONG()],
)


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def price_case(column: str) -> str:
    """Catalog price in cents of ``column``'s product; NULL for unknown or retired ones."""
    whens = " ".join(
        f"WHEN {p.product_id} THEN {int(p.unit_price * 100)}"
        for p in reference_data.products()
        if p.active
    )
    return f"CASE {column} {whens} END"


def recipe_case(column: str) -> str:
    """The recipe of ``column``'s product as ``ARRAY<ROW<ingredient_id, per_unit>>``."""
    by_product: dict[int, list[tuple[int, int]]] = {}
    for line in reference_data.recipes():
        by_product.setdefault(line.product_id, []).append((line.ingredient_id, line.quantity))
    whens = " ".join(
        f"WHEN {pid} THEN ARRAY[{', '.join(f'ROW({i}, {q})' for i, q in lines)}]"
        for pid, lines in sorted(by_product.items())
    )
    return f"CASE {column} {whens} END"


def decoded(stream: DataStream, row_type) -> DataStream:
    """JSON bytes (or tagged records) decoded once in the JVM into ``row_type`` rows."""
    from jobs import operators

    return operators.json_rows(stream, row_type, MAX_RECORD_BYTES)


def _view(ctx, stream: DataStream, name: str, watermark: str | None = None) -> None:
    """Registers typed rows as ``name`` with a processing-time column ``pt`` (or an
    event-time ``rowtime`` from ``watermark``, an expression of epoch ms)."""
    builder = Schema.new_builder()
    if watermark:
        builder.column_by_expression("rowtime", f"TO_TIMESTAMP_LTZ({watermark}, 3)").watermark(
            "rowtime", "rowtime - INTERVAL '5' SECOND"
        )
    else:
        builder.column_by_expression("pt", "PROCTIME()")
    ctx.t_env.create_temporary_view(name, ctx.t_env.from_data_stream(stream, builder.build()))


def _blackhole(ctx, name: str, columns: str) -> None:
    ctx.t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {name} ({columns}) WITH ('connector' = 'blackhole')"
    )


FACT_COLUMNS = (
    "store_id INT, order_id STRING, product_id INT, ts TIMESTAMP(3), "
    "quantity INT, unit_price_cents INT, total_cents INT, fulfillment STRING, "
    "channel STRING"
)


def _valid_orders_views(ctx, source: str) -> None:
    """``valid_orders``: typed raw orders passing the order-level rules, with ``ts_ms``;
    ``valid_lines``: their lines, priced, passing the line rules."""
    t_env = ctx.t_env
    t_env.execute_sql(f"""
CREATE TEMPORARY VIEW timed_orders AS
SELECT *, TRY_CAST(REPLACE(REPLACE(ts, 'T', ' '), 'Z', '') AS TIMESTAMP(3)) AS ts3
FROM {source}""")
    t_env.execute_sql(f"""
CREATE TEMPORARY VIEW valid_orders AS
SELECT event_id, order_id, store_id, channel, fulfillment, ts3 AS ts, items, pt,
       CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', ts3) AS BIGINT) * 1000
         + EXTRACT(MILLISECOND FROM ts3) AS ts_ms
FROM timed_orders
WHERE CHAR_LENGTH(event_id) BETWEEN 1 AND 64 AND CHAR_LENGTH(order_id) BETWEEN 1 AND 64
  AND store_id BETWEEN {STORE_IDS.start} AND {STORE_IDS.stop - 1}
  AND channel IN ({_in(CHANNELS)}) AND fulfillment IN ({_in(FULFILLMENTS)})
  AND ts3 BETWEEN LOCALTIMESTAMP - INTERVAL '{MAX_AGE_HOURS}' HOUR
              AND LOCALTIMESTAMP + INTERVAL '{MAX_FUTURE_MINUTES}' MINUTE
  AND (fulfillment <> 'delivery' OR (customer.lat BETWEEN -90 AND 90
                                     AND customer.lon BETWEEN -180 AND 180))
  AND price IS NULL AND unit_price IS NULL AND total IS NULL AND amount IS NULL
  AND CARDINALITY(items) BETWEEN 1 AND {MAX_LINES}""")
    t_env.execute_sql(f"""
CREATE TEMPORARY VIEW valid_lines AS
SELECT store_id, order_id, event_id, product_id, ts, ts_ms, quantity, unit_price_cents,
       quantity * unit_price_cents AS total_cents, fulfillment, channel, pt
FROM (
  SELECT o.*, i.product_id, i.quantity, {price_case("i.product_id")} AS unit_price_cents,
         i.price AS p1, i.unit_price AS p2, i.total AS p3, i.amount AS p4
  FROM valid_orders AS o
  CROSS JOIN UNNEST(o.items) AS i(product_id, quantity, price, unit_price, total, amount)
)
WHERE quantity BETWEEN 1 AND {MAX_QUANTITY} AND unit_price_cents IS NOT NULL
  AND p1 IS NULL AND p2 IS NULL AND p3 IS NULL AND p4 IS NULL""")


def _priced_lines_insert(ctx, statements) -> None:
    _blackhole(ctx, "priced_lines", FACT_COLUMNS)
    statements.add_insert_sql(
        "INSERT INTO priced_lines SELECT store_id, order_id, product_id, ts, quantity, "
        "unit_price_cents, total_cents, fulfillment, channel FROM valid_lines"
    )


def enrichment(ctx, raw_stream) -> None:
    _view(ctx, decoded(raw_stream, RAW_ORDER), "raw_orders")
    _valid_orders_views(ctx, "raw_orders")
    statements = ctx.t_env.create_statement_set()
    _priced_lines_insert(ctx, statements)
    statements.attach_as_datastream()


def _stock_and_status(ctx, statements, orders_view: str, lines_sql: str) -> None:
    """Dedup by order id, a status per order, per-store per-ingredient consumption."""
    ctx.t_env.execute_sql(f"""
CREATE TEMPORARY VIEW first_orders AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY pt) AS rn FROM {orders_view}
) WHERE rn = 1""")
    _blackhole(ctx, "order_status", "partition_key STRING, payload STRING")
    _blackhole(ctx, "stock_used", "store_id INT, ingredient_id INT, used BIGINT")
    statements.add_insert_sql("""
INSERT INTO order_status
SELECT CAST(store_id AS STRING),
       JSON_OBJECT('o' VALUE order_id, 'e' VALUE event_id, 's' VALUE store_id,
                   't' VALUE ts_ms, 'status' VALUE 'accepted', 'detail' VALUE '')
FROM first_orders""")
    statements.add_insert_sql(f"""
INSERT INTO stock_used
SELECT store_id, ingredient_id, SUM(CAST(units AS BIGINT))
FROM ({lines_sql})
GROUP BY store_id, ingredient_id""")


def inventory(ctx, tagged_stream) -> None:
    t_env = ctx.t_env
    _view(ctx, decoded(tagged_stream, ENRICHED_ORDER), "enriched_rows")
    t_env.execute_sql(
        "CREATE TEMPORARY VIEW enriched_orders AS SELECT o AS order_id, "
        "e AS event_id, s AS store_id, c AS channel, f AS fulfillment, "
        "t AS ts_ms, l AS lines, pt FROM enriched_rows"
    )
    statements = t_env.create_statement_set()
    lines_sql = f"""
SELECT f.store_id, r.ingredient_id, CAST(line[2] AS INT) * r.per_unit AS units
FROM first_orders AS f
CROSS JOIN UNNEST(f.lines) AS l(line)
CROSS JOIN UNNEST({recipe_case("CAST(line[1] AS INT)")}) AS r(ingredient_id, per_unit)"""
    _stock_and_status(ctx, statements, "enriched_orders", lines_sql)
    statements.attach_as_datastream()


def chained(ctx, raw_stream) -> None:
    _view(ctx, decoded(raw_stream, RAW_ORDER), "raw_orders")
    _valid_orders_views(ctx, "raw_orders")
    statements = ctx.t_env.create_statement_set()
    lines_sql = f"""
SELECT f.store_id, r.ingredient_id, i.quantity * r.per_unit AS units
FROM first_orders AS f
CROSS JOIN UNNEST(f.items) AS i(product_id, quantity, price, unit_price, total, amount)
CROSS JOIN UNNEST({recipe_case("i.product_id")}) AS r(ingredient_id, per_unit)"""
    _stock_and_status(ctx, statements, "valid_orders", lines_sql)
    _priced_lines_insert(ctx, statements)
    statements.attach_as_datastream()


HOURLY_COLUMNS = (
    "store_id INT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), "
    "orders BIGINT, items BIGINT, revenue_cents BIGINT, online_orders BIGINT, "
    "in_store_orders BIGINT, delivery_orders BIGINT, avg_order_value_cents BIGINT"
)


def _hourly(ctx, view: str) -> None:
    _blackhole(ctx, "hourly_store_metrics", HOURLY_COLUMNS)
    statements = ctx.t_env.create_statement_set()
    statements.add_insert_sql(f"""
INSERT INTO hourly_store_metrics
SELECT s, window_start, window_end, COUNT(*), SUM(CAST(n AS BIGINT)), SUM(r),
       SUM(CASE WHEN c = 'online' THEN 1 ELSE 0 END),
       SUM(CASE WHEN c = 'in_store' THEN 1 ELSE 0 END),
       SUM(CASE WHEN f = 'delivery' THEN 1 ELSE 0 END),
       SUM(r) / COUNT(*)
FROM TABLE(TUMBLE(TABLE {view}, DESCRIPTOR(rowtime), INTERVAL '1' HOUR))
GROUP BY s, window_start, window_end""")
    statements.attach_as_datastream()


def hourly_from_json(ctx, sale_stream) -> None:
    """Sale JSON bytes decoded by the JSON format into a bare 1-hour TUMBLE."""
    _view(ctx, decoded(sale_stream, SALE), "sales", watermark="t")
    _hourly(ctx, "sales")
