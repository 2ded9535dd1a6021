"""The one definition of the contract's tables (``../shared/CONTRACT.md``): each table's
columns in order, their logical types, which may be null and the primary key.

Every Python user of these columns derives them from here: the row and column lists, the
COPY and INSERT column lists, the Parquet schemas (``connectors.lake.arrow_schema``), the
Flink SQL types (``flink_sql_type``). The SQL DDL stays SQL, one file per engine
(``stack/sql/operational.sql`` for Aurora, ``stack/sql/warehouse.sql`` and
``etl_warehouse.sql`` for the local warehouse, ``deploy/redshift/`` for Redshift), and
``tests/pizzastream/test_schemas.py`` holds each of them to this module: names, order, types,
nullability and primary key.

Logical types, and what each engine makes of them:

- ``integer``, ``bigint``: the same name everywhere.
- ``text``: ``text`` in Aurora, ``varchar(width)`` in the warehouse (Redshift's ``text`` is
  ``varchar(256)``; ``width`` is each column's bound there).
- ``timestamptz``: an instant; ``timestamp``: a naive UTC time (the metrics' hours).
- ``numeric(p,s)``: exact money.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTEGER, BIGINT, TEXT, TIMESTAMPTZ, TIMESTAMP = (
    "integer",
    "bigint",
    "text",
    "timestamptz",
    "timestamp",
)
_NUMERIC = re.compile(r"numeric\((\d+),(\d+)\)")


def numeric(precision: int, scale: int) -> str:
    return f"numeric({precision},{scale})"


def numeric_precision(logical_type: str) -> tuple[int, int] | None:
    """``(precision, scale)`` of a ``numeric(p,s)`` type, None for any other type."""
    match = _NUMERIC.fullmatch(logical_type)
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False
    # The warehouse's varchar bound of a text column.
    width: int | None = None
    # Filled by the database (a DEFAULT), never written by the pipeline.
    defaulted: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def written(self) -> tuple[Column, ...]:
        """The columns the pipeline writes (all but the database's defaults)."""
        return tuple(column for column in self.columns if not column.defaulted)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name}")


# Aurora and the warehouse: one row per sold line item.
ORDER_FCT = Table(
    "order_fct",
    (
        Column("store_id", INTEGER),
        Column("order_id", TEXT, width=64),
        Column("product_id", INTEGER),
        Column("transaction_ts", TIMESTAMPTZ),
        Column("quantity", INTEGER),
        Column("unit_price", numeric(10, 2)),
        Column("total_transaction_amt", numeric(12, 2)),
        Column("delivery_id", TEXT, nullable=True, width=64),
        Column("delivery_type", TEXT, width=16),
        Column("channel", TEXT, width=16),
    ),
    primary_key=("order_id", "product_id"),
)

# Aurora: one row per unusable input record (``pizzastream.dead_letters``).
DEAD_LETTER = Table(
    "dead_letter",
    (
        Column("dead_letter_id", TEXT),
        Column("job", TEXT),
        Column("reason", TEXT),
        Column("detail", TEXT),
        Column("event_id", TEXT, nullable=True),
        Column("order_id", TEXT, nullable=True),
        Column("payload", TEXT),
        Column("received_at", TIMESTAMPTZ, defaulted=True),
        Column("store_id", INTEGER, nullable=True),
    ),
    primary_key=("dead_letter_id",),
)

# The warehouse's metric columns after the contract's: who wrote the row and when
# (``connectors.warehouse``); the lake's Parquet has the contract's columns only.
PROVENANCE = ("source", "published_at")

# Lake and warehouse: one row per (store, UTC hour) with sales (``pizzastream.metrics``).
HOURLY_STORE_METRICS = Table(
    "hourly_store_metrics",
    (
        Column("store_id", INTEGER),
        Column("window_start", TIMESTAMP),
        Column("window_end", TIMESTAMP),
        Column("orders", BIGINT),
        Column("items", BIGINT),
        Column("revenue", numeric(12, 2)),
        Column("online_orders", BIGINT),
        Column("in_store_orders", BIGINT),
        Column("delivery_orders", BIGINT),
        Column("avg_order_value", numeric(12, 2)),
        Column("source", TEXT, width=8),
        Column("published_at", TIMESTAMP),
    ),
    primary_key=("store_id", "window_start"),
)

# The contract's columns of ``hourly_store_metrics``, a ``MetricRow``'s fields.
METRIC_COLUMNS = tuple(name for name in HOURLY_STORE_METRICS.names if name not in PROVENANCE)

# Warehouse: every load of an hour's metric rows (``pizzastream.metrics.Publication``).
METRICS_PUBLICATION = Table(
    "metrics_publication",
    (
        Column("window_start", TIMESTAMP),
        Column("window_end", TIMESTAMP),
        Column("source", TEXT, width=8),
        Column("published_at", TIMESTAMP),
        Column("stores", BIGINT),
        Column("revenue_change", numeric(14, 2)),
        Column("orders_change", BIGINT),
    ),
)

TABLES = (ORDER_FCT, DEAD_LETTER, HOURLY_STORE_METRICS, METRICS_PUBLICATION)

_FLINK_SQL = {
    INTEGER: "INT",
    BIGINT: "BIGINT",
    TEXT: "STRING",
    TIMESTAMPTZ: "TIMESTAMP_LTZ(3)",
    TIMESTAMP: "TIMESTAMP(3)",
}


def flink_sql_type(column: Column) -> str:
    """The Flink SQL type a column's values have in the jobs' tables."""
    precision = numeric_precision(column.type)
    if precision:
        return f"DECIMAL({precision[0]}, {precision[1]})"
    return _FLINK_SQL[column.type]
