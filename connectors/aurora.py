"""Aurora (PostgreSQL) edge: reference-data reads and the Flink sinks.

Reads use psycopg directly (small, periodic). Writes from Flink are upserts, so a row
written twice after a restart stays one row: every table the jobs write (``order_fct``,
``supplier_order``, ``replenishment_alert``, ``inventory``, ``dead_letter``) through
``copy_upsert_sink`` (COPY into a staging table, then one INSERT per batch, flushed on every
checkpoint: several times the Flink JDBC connector's rows/s, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg

from pizzastream.config import Props, postgres_dsn
from pizzastream.order_batches import DelimitedLayout
from pizzastream.sales import FACT_COLUMNS, FACT_FIELD, FACT_TARGET
from pizzastream.schemas import BIGINT, DEAD_LETTER, INTEGER, ORDER_FCT, TEXT, flink_sql_type
from pizzastream.settings import database

if TYPE_CHECKING:  # the Flink parts: the jobs have PyFlink; POS ingestion and the delivery
    # service import this module for its database helpers and run without it.
    from pyflink.datastream.connectors import Sink

log = logging.getLogger(__name__)


def connect(props: Props, group: str = "Aurora") -> psycopg.Connection:
    return psycopg.connect(postgres_dsn(props, group), autocommit=True)


def catalog_rows(props: Props) -> tuple[list[tuple], list[tuple]]:
    """Products ``(product_id, name, unit_price_cents, active)`` and recipe lines
    ``(product_id, ingredient_id, quantity)`` as they are in the database now."""
    with connect(props) as conn:
        products = conn.execute(
            "SELECT product_id, name, (unit_price * 100)::bigint, active FROM product"
        ).fetchall()
        recipes = conn.execute("SELECT product_id, ingredient_id, quantity FROM recipe").fetchall()
    return products, recipes


def ingredient_policy_rows(props: Props) -> list[tuple]:
    """``pizzastream.replenishment.POLICY_COLUMNS`` rows: each ingredient with its
    supplier's lead time, review period and grace, for the replenishment rules."""
    with connect(props) as conn:
        return conn.execute(
            "SELECT i.ingredient_id, i.supplier_id, s.lead_time_minutes, i.safety_stock,"
            " i.reorder_quantity, s.review_period_minutes, s.grace_minutes, i.service_level"
            " FROM ingredient i JOIN supplier s USING (supplier_id)"
        ).fetchall()


def store_sales(conn: psycopg.Connection, store_id: int, first_ms: int, end_ms: int) -> list[tuple]:
    """A store's ``order_fct`` rows ``(transaction_ts, product_id, quantity)`` with
    ``first_ms <= transaction_ts < end_ms`` (epoch ms), the history that seeds its
    replenishment forecast (``replenishment.HistoryWindow`` chooses the bounds). Read
    through the ``(store_id, transaction_ts)`` index."""
    return conn.execute(
        "SELECT transaction_ts, product_id, quantity FROM order_fct"
        " WHERE store_id = %s AND transaction_ts >= to_timestamp(%s / 1000.0)"
        " AND transaction_ts < to_timestamp(%s / 1000.0)"
        " ORDER BY transaction_ts, order_id, product_id",
        (store_id, first_ms, end_ms),
    ).fetchall()


def store_inventory(conn: psycopg.Connection, store_id: int) -> dict[int, int]:
    """A store's opening stock (``opening_inventory``: never written by a job)."""
    rows = conn.execute(
        "SELECT ingredient_id, on_hand FROM opening_inventory WHERE store_id = %s", (store_id,)
    ).fetchall()
    return {ingredient_id: on_hand for ingredient_id, on_hand in rows}


class Refreshing:
    """A value reloaded every ``period_s`` so the catalog can change while a job runs
    (new product, price change, retirement). A failed reload keeps the last good value:
    a database blip must not stop the stream."""

    def __init__(self, load: Callable[[], object], period_s: float):
        self._load = load
        self._period_s = period_s
        self._value = load()
        self._next = time.monotonic() + period_s

    def get(self):
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._period_s
            try:
                self._value = self._load()
            except Exception:  # any failure keeps the previous catalog
                log.exception("reload failed; keeping the previous value")
        return self._value


def __getattr__(name: str):
    """``DEAD_LETTER_ROW``: the Flink row type of a dead letter, built on first use so that
    importing this module needs no PyFlink."""
    if name == "DEAD_LETTER_ROW":
        from pyflink.common import Types

        types = {"INT": Types.INT(), "STRING": Types.STRING()}
        return Types.ROW_NAMED(
            [column.name for column in DEAD_LETTER.written],
            [types[flink_sql_type(column)] for column in DEAD_LETTER.written],
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def copy_upsert_sink(
    props: Props,
    target_table: str,
    stage_columns: list[tuple[str, str]],
    target: list[tuple[str, str]],
    primary_key: list[str],
    group: str = "Aurora",
    updates_expected: bool = False,
) -> Sink:
    """A sink that upserts rows into ``target_table`` through PostgreSQL ``COPY``
    (``pizzastream.flink.PostgresCopySink``): each batch is COPYed into a temporary staging
    table of ``stage_columns`` (``(name, PostgreSQL type)``, matching the rows' fields by
    position) and moved with one plain ``INSERT ... SELECT`` (new keys, the common case), or
    with ``ON CONFLICT (primary_key) DO UPDATE`` when that hits a key already there (a
    replay after a restart), or at once if ``updates_expected`` (a table of rows rewritten
    in place, such as stock levels, where the plain insert would fail nearly every batch).
    ``target`` maps each target column to a SQL expression over the staging columns, so
    unit conversions run in the database. Batches are written every ``copy_batch_rows``
    distinct keys (default 50000: PostgreSQL's cost is per statement and commit, see
    docs/benchmarks.md), ``copy_flush_interval_ms`` (default 1000) after a row found no
    write scheduled, and on every checkpoint (``pizzastream.flink.CheckpointFlushedSink``):
    at-least-once and idempotent by primary key. The update sets every ``target`` column but
    the key; columns not in ``target`` (a database default such as ``received_at``, a column
    another writer sets such as ``delivery_id``) keep what the first write left."""
    from pyflink.datastream.connectors import Sink
    from pyflink.java_gateway import get_gateway

    db = database(props, group)
    gateway = get_gateway()

    def strings(values: list[str]):
        array = gateway.new_array(gateway.jvm.String, len(values))
        for i, value in enumerate(values):
            array[i] = value
        return array

    return Sink(
        gateway.jvm.pizzastream.flink.PostgresCopySink(
            db.jdbc_url(),
            db.user,
            db.password,
            target_table,
            strings([f"{name} {sql_type}" for name, sql_type in stage_columns]),
            strings([name for name, _ in target]),
            strings([expression for _, expression in target]),
            strings(primary_key),
            db.copy_batch_rows,
            db.copy_flush_interval_ms,
            updates_expected,
        )
    )


_STAGE_TYPES = {"S": TEXT, "I": INTEGER, "L": BIGINT}


def stage_columns(layout: DelimitedLayout) -> list[tuple[str, str]]:
    """The staging columns of ``copy_upsert_sink`` for rows of ``layout`` made by
    ``jobs.operators.batch_rows`` (``S`` text, ``I`` integer, ``L`` bigint): the rows'
    field names, each with its PostgreSQL type."""
    return [
        (name, _STAGE_TYPES[kind]) for name, kind in zip(layout.fields, layout.kinds, strict=True)
    ]


def from_epoch_ms(column: str) -> str:
    """SQL of the ``timestamptz`` a staging column of epoch milliseconds holds."""
    return f"timestamptz 'epoch' + {column} * interval '1 millisecond'"


# ``dead_letter`` from ``DEAD_LETTER_ROW`` rows: the columns the pipeline writes, as they are;
# ``received_at`` is the database's, so a replayed letter keeps its first time.
DEAD_LETTER_STAGE = [(column.name, column.type) for column in DEAD_LETTER.written]
DEAD_LETTER_TARGET = [(column.name, column.name) for column in DEAD_LETTER.written]


def dead_letter_sink(props: Props) -> Sink:
    """``DEAD_LETTER_ROW`` rows into ``dead_letter``, one row per distinct bad record: its id
    hashes the job and the record (``pizzastream.dead_letters``), so a replay rewrites the
    row it wrote (the update sets the written columns; ``received_at`` stays the first
    write's) and never adds a second, as the JDBC connector's upsert by primary key did."""
    return copy_upsert_sink(
        props,
        DEAD_LETTER.name,
        DEAD_LETTER_STAGE,
        DEAD_LETTER_TARGET,
        list(DEAD_LETTER.primary_key),
    )


# ``order_fct`` from ``inventory_windowing.FACT_ROW`` rows (``pizzastream.sales.FACT_COLUMNS``:
# money in cents, time in epoch ms, as ``bigint``s) and the column each converted field makes.
ORDER_FCT_STAGE = [
    (field, "bigint" if column in FACT_FIELD else ORDER_FCT.column(column).type)
    for field, column in zip(FACT_COLUMNS, FACT_TARGET)
]
_FROM_FACT = {
    "transaction_ts": from_epoch_ms("transaction_ts_ms"),
    "unit_price": "unit_price_cents / 100.0",
    "total_transaction_amt": "total_cents / 100.0",
}
ORDER_FCT_TARGET = [(column, _FROM_FACT.get(column, column)) for column in FACT_TARGET]
