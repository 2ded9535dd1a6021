"""Aurora (PostgreSQL) edge: reference-data reads and the Flink sinks.

Reads use psycopg directly (small, periodic). Writes from Flink are upserts, so a row
written twice after a restart stays one row: ``order_fct``, the high-volume table, through
``copy_upsert_sink`` (COPY into a staging table, then one INSERT per batch: several times
the JDBC connector's rows/s, docs/benchmarks.md); the smaller tables through the JDBC table
connector in upsert mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg

from pizzastream.config import Props, jdbc_url, postgres_dsn
from pizzastream.sales import FACT_COLUMNS, FACT_FIELD, FACT_TARGET
from pizzastream.schemas import DEAD_LETTER, ORDER_FCT, flink_sql_type
from pizzastream.settings import database

if TYPE_CHECKING:  # the Flink parts: the jobs have PyFlink; POS ingestion and the delivery
    # service import this module for its database helpers and run without it.
    from pyflink.datastream import DataStream
    from pyflink.table import StatementSet, StreamTableEnvironment

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


def jdbc_upsert_table_ddl(
    props: Props,
    flink_table: str,
    columns: list[tuple[str, str]],
    primary_key: list[str],
    target_table: str,
    group: str = "Aurora",
) -> str:
    """DDL of a Flink table that upserts into a PostgreSQL table by its primary key.

    Buffered rows are flushed on every checkpoint, so what a checkpoint covers is in the
    database; replays after a restart overwrite the same keys."""
    db = database(props, group)
    cols = ",\n  ".join(f"`{name}` {sql_type}" for name, sql_type in columns)
    pk = ", ".join(f"`{name}`" for name in primary_key)
    return f"""
CREATE TEMPORARY TABLE `{flink_table}` (
  {cols},
  PRIMARY KEY ({pk}) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'url' = '{jdbc_url(props, group)}',
  'table-name' = '{target_table}',
  'username' = '{db.user}',
  'password' = '{db.password}',
  'sink.buffer-flush.max-rows' = '{db.sink_batch_rows}',
  'sink.buffer-flush.interval' = '{db.sink_flush_interval}',
  'sink.max-retries' = '5'
)"""


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


def upsert_rows(
    t_env: StreamTableEnvironment,
    statements: StatementSet,
    props: Props,
    rows: DataStream,
    target_table: str,
    columns: list[tuple[str, str]],
    primary_key: list[str],
    select: str = "*",
) -> None:
    """Adds to ``statements`` an upsert of ``rows`` into ``target_table``. ``columns`` are the
    target's columns as Flink SQL types; ``select`` maps the rows' fields onto them (unit
    conversions such as cents to ``DECIMAL`` stay in the JVM)."""
    t_env.execute_sql(
        jdbc_upsert_table_ddl(props, f"{target_table}_sink", columns, primary_key, target_table)
    )
    t_env.create_temporary_view(f"{target_table}_rows", t_env.from_data_stream(rows))
    statements.add_insert_sql(
        f"INSERT INTO `{target_table}_sink` SELECT {select} FROM `{target_table}_rows`"
    )


def sink_dead_letters(t_env, statements, props, letters: DataStream) -> None:
    """``DEAD_LETTER_ROW`` rows into ``dead_letter``, one row per distinct bad record."""
    upsert_rows(
        t_env,
        statements,
        props,
        letters,
        DEAD_LETTER.name,
        [(column.name, flink_sql_type(column)) for column in DEAD_LETTER.written],
        list(DEAD_LETTER.primary_key),
    )


def copy_upsert_sink(
    props: Props,
    target_table: str,
    stage_columns: list[tuple[str, str]],
    target: list[tuple[str, str]],
    primary_key: list[str],
    group: str = "Aurora",
):
    """A sink that upserts rows into ``target_table`` through PostgreSQL ``COPY``
    (``pizzastream.flink.PostgresCopySink``): each batch is COPYed into a temporary staging
    table of ``stage_columns`` (``(name, PostgreSQL type)``, matching the rows' fields by
    position) and moved with one plain ``INSERT ... SELECT`` (new keys, the common case), or
    with ``ON CONFLICT (primary_key) DO UPDATE`` when that hits a key already there (a
    replay after a restart); ``target`` maps each target column to a SQL expression over the staging
    columns, so unit conversions run in the database. Batches are written every
    ``copy_batch_rows`` rows (default 50000: PostgreSQL's cost is per statement and commit,
    see docs/benchmarks.md), every ``copy_flush_interval_ms`` (default 1000) and on every
    checkpoint: at-least-once and idempotent, like ``upsert_rows``, at several times its
    rows per second."""
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
        )
    )


# ``order_fct`` from ``inventory_windowing.FACT_ROW`` rows (``pizzastream.sales.FACT_COLUMNS``:
# money in cents, time in epoch ms, as ``bigint``s) and the column each converted field makes.
ORDER_FCT_STAGE = [
    (field, "bigint" if column in FACT_FIELD else ORDER_FCT.column(column).type)
    for field, column in zip(FACT_COLUMNS, FACT_TARGET)
]
_FROM_FACT = {
    "transaction_ts": "timestamptz 'epoch' + transaction_ts_ms * interval '1 millisecond'",
    "unit_price": "unit_price_cents / 100.0",
    "total_transaction_amt": "total_cents / 100.0",
}
ORDER_FCT_TARGET = [(column, _FROM_FACT.get(column, column)) for column in FACT_TARGET]
