"""The contract's tables have one definition, ``pizzastream.schemas``; this holds the rest to
it: every SQL DDL of those tables, parsed by sqlglot in its engine's dialect (column names,
order, types, nullability, defaults, primary key, and the columns ``ALTER TABLE`` adds to
older databases), and the Python shapes that cannot be derived from it (dataclass fields,
Flink row types)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from pizzastream import schemas
from pizzastream.config import REPO_ROOT
from pizzastream.dead_letters import DeadLetter
from pizzastream.metrics import MetricRow
from pizzastream.pos_batches import SettledLine
from pizzastream.sales import FACT_COLUMNS, FACT_TARGET
from pizzastream.schemas import (
    DEAD_LETTER,
    HOURLY_STORE_METRICS,
    METRIC_COLUMNS,
    METRICS_PUBLICATION,
    ORDER_FCT,
)

AURORA, WAREHOUSE = "aurora", "warehouse"
# Every DDL file of the schema module's tables: (file, sqlglot dialect, engine, tables).
DDL = [
    ("stack/sql/operational.sql", "postgres", AURORA, (ORDER_FCT, DEAD_LETTER)),
    ("stack/sql/etl_warehouse.sql", "postgres", WAREHOUSE, (ORDER_FCT,)),
    ("stack/sql/warehouse.sql", "postgres", WAREHOUSE, (HOURLY_STORE_METRICS, METRICS_PUBLICATION)),
    (
        "deploy/redshift/hourly_store_metrics.sql",
        "redshift",
        WAREHOUSE,
        (HOURLY_STORE_METRICS, METRICS_PUBLICATION, ORDER_FCT),
    ),
]


@dataclasses.dataclass(frozen=True)
class DdlColumn:
    name: str
    type: str  # as sqlglot prints it in the PostgreSQL dialect
    nullable: bool
    defaulted: bool


def _engine_type(column: schemas.Column, engine: str, dialect: str) -> str:
    """The DDL type a column must have: the logical type, a text column as ``varchar`` of
    its width in the warehouse; printed by sqlglot as the DDL's types are."""
    logical = (
        f"varchar({column.width})"
        if engine == WAREHOUSE and column.type == schemas.TEXT
        else column.type
    )
    return exp.DataType.build(logical, dialect=dialect).sql("postgres")


def _column(definition: exp.ColumnDef, key: tuple[str, ...]) -> DdlColumn:
    kinds = [constraint.kind for constraint in definition.args.get("constraints") or []]
    not_null = any(
        isinstance(kind, exp.NotNullColumnConstraint) and not kind.args.get("allow_null")
        for kind in kinds
    )
    primary = any(isinstance(kind, exp.PrimaryKeyColumnConstraint) for kind in kinds)
    return DdlColumn(
        definition.name,
        definition.args["kind"].sql("postgres"),
        not (not_null or primary or definition.name in key),
        any(isinstance(kind, exp.DefaultColumnConstraint) for kind in kinds),
    )


def _table_ddl(
    script: str, dialect: str, table: str
) -> tuple[list[DdlColumn], tuple[str, ...], list[DdlColumn]]:
    """``table``'s columns and primary key as the script's ``CREATE TABLE`` has them, and the
    columns its ``ALTER TABLE … ADD COLUMN`` statements add."""
    statements = sqlglot.parse(script, read=dialect)
    creates = [
        tree
        for tree in statements
        if isinstance(tree, exp.Create)
        and tree.args.get("kind") == "TABLE"
        and tree.this.this.name == table
    ]
    assert len(creates) == 1, f"{len(creates)} CREATE TABLE {table}"
    body = creates[0].this.expressions
    definitions = [item for item in body if isinstance(item, exp.ColumnDef)]
    key = tuple(
        column.name
        for item in body
        if isinstance(item, exp.PrimaryKey)
        for column in item.expressions
    )
    key += tuple(
        definition.name
        for definition in definitions
        if any(
            isinstance(constraint.kind, exp.PrimaryKeyColumnConstraint)
            for constraint in definition.args.get("constraints") or []
        )
    )
    added = [
        _column(action, key)
        for tree in statements
        if isinstance(tree, exp.Alter) and tree.this.name == table
        for action in tree.args.get("actions") or []
        if isinstance(action, exp.ColumnDef)
    ]
    return [_column(definition, key) for definition in definitions], key, added


def disagreements(script: str, dialect: str, engine: str, table: schemas.Table) -> list[str]:
    """Where the script's DDL of ``table`` differs from ``pizzastream.schemas``."""
    columns, key, added = _table_ddl(script, dialect, table.name)
    expected = [
        DdlColumn(
            column.name, _engine_type(column, engine, dialect), column.nullable, column.defaulted
        )
        for column in table.columns
    ]
    found = [
        f"column {i + 1}: DDL {have}, schema {want}"
        for i, (have, want) in enumerate(zip(columns, expected))
        if have != want
    ]
    if len(columns) != len(expected):
        found.append(f"DDL has {[c.name for c in columns]}, schema {list(table.names)}")
    if key != table.primary_key:
        found.append(f"primary key: DDL {key}, schema {table.primary_key}")
    for column in added:  # older databases get the same column (its default is theirs)
        want = next((c for c in expected if c.name == column.name), None)
        if want is None or dataclasses.replace(column, defaulted=want.defaulted) != want:
            found.append(f"ALTER TABLE adds {column}, schema {want}")
    return found


CASES = [
    (path, dialect, engine, table) for path, dialect, engine, tables in DDL for table in tables
]


@pytest.mark.parametrize(
    "path, dialect, engine, table",
    CASES,
    ids=[f"{path}:{table.name}" for path, _, _, table in CASES],
)
def test_ddl_agrees_with_the_schema_module(path, dialect, engine, table):
    assert disagreements((REPO_ROOT / path).read_text(), dialect, engine, table) == []


def test_every_table_has_its_ddl():
    assert {table.name for *_, tables in DDL for table in tables} == {
        table.name for table in schemas.TABLES
    }
    for path, *_ in DDL:
        assert Path(REPO_ROOT / path).is_file()


@pytest.mark.parametrize(
    "old, new",
    [
        ("quantity               integer", "quantity               bigint"),  # a type
        ("unit_price             numeric(10,2)", "unit_price             numeric(12,2)"),
        ("delivery_id            text NULL", "delivery_id            text NOT NULL"),
        ("channel                text", "sales_channel          text"),  # a name
        ("PRIMARY KEY (order_id, product_id)", "PRIMARY KEY (order_id)"),
        ("    delivery_id            text NULL,\n", ""),  # a column gone
    ],
)
def test_a_ddl_that_differs_is_caught(old, new):
    script = (REPO_ROOT / "stack/sql/operational.sql").read_text()
    assert old in script
    assert disagreements(script.replace(old, new, 1), "postgres", AURORA, ORDER_FCT)


def test_a_column_order_that_differs_is_caught():
    script = (REPO_ROOT / "stack/sql/warehouse.sql").read_text()
    orders, items = (
        "    orders           bigint NOT NULL,\n",
        "    items            bigint NOT NULL,\n",
    )
    assert orders + items in script
    assert disagreements(
        script.replace(orders + items, items + orders), "postgres", WAREHOUSE, HOURLY_STORE_METRICS
    )


def test_the_python_shapes_have_the_schema_columns():
    assert tuple(field.name for field in dataclasses.fields(MetricRow)) == METRIC_COLUMNS
    assert HOURLY_STORE_METRICS.names == METRIC_COLUMNS + schemas.PROVENANCE
    assert tuple(field.name for field in dataclasses.fields(DeadLetter)) == DeadLetter.FIELDS
    assert tuple(name for name in DEAD_LETTER.names if name != "received_at") == DeadLetter.FIELDS
    # A settled POS line is a sale's fact row: the fields of every order_fct column written
    assert tuple(field.name for field in dataclasses.fields(SettledLine)) == FACT_COLUMNS
    assert tuple(name for name in ORDER_FCT.names if name != "delivery_id") == FACT_TARGET


def test_the_parquet_schemas_are_the_tables():
    import pyarrow as pa

    from connectors import lake, warehouse
    from etl import staging

    assert (
        pa.schema(
            [
                pa.field("store_id", pa.int32(), nullable=False),
                pa.field("order_id", pa.string(), nullable=False),
                pa.field("product_id", pa.int32(), nullable=False),
                pa.field("transaction_ts", pa.timestamp("us", tz="UTC"), nullable=False),
                pa.field("quantity", pa.int32(), nullable=False),
                pa.field("unit_price", pa.decimal128(10, 2), nullable=False),
                pa.field("total_transaction_amt", pa.decimal128(12, 2), nullable=False),
                pa.field("delivery_id", pa.string()),
                pa.field("delivery_type", pa.string(), nullable=False),
                pa.field("channel", pa.string(), nullable=False),
            ]
        )
        == staging.ORDER_FCT
    )
    assert lake.METRICS_SCHEMA.names == list(METRIC_COLUMNS)
    assert lake.METRICS_SCHEMA.field("window_start").type == pa.timestamp("ms")
    assert warehouse.METRIC_LOAD_SCHEMA.names == list(HOURLY_STORE_METRICS.names)
    assert warehouse.METRIC_LOAD_SCHEMA.field("revenue").type == pa.decimal128(12, 2)


def test_the_flink_rows_have_the_schema_types():
    from pyflink.common import Types
    from pyflink.common.typeinfo import LocalTimeTypeInfo

    from connectors import aurora
    from jobs import hourly_metrics, inventory_windowing

    timestamp = LocalTimeTypeInfo(LocalTimeTypeInfo.TimeType.LOCAL_DATE_TIME)
    flink = {
        schemas.INTEGER: Types.INT(),
        schemas.BIGINT: Types.LONG(),
        schemas.TEXT: Types.STRING(),
        schemas.TIMESTAMP: timestamp,
    }

    def type_of(column: schemas.Column):
        return Types.BIG_DEC() if schemas.numeric_precision(column.type) else flink[column.type]

    published = hourly_metrics.PUBLISHED_ROW
    columns = HOURLY_STORE_METRICS.columns[:-1]  # published_at: set by the load
    assert published.get_field_names() == [column.name for column in columns]
    assert published.get_field_types() == [type_of(column) for column in columns]
    fact = inventory_windowing.FACT_ROW
    assert fact.get_field_names() == list(FACT_COLUMNS)
    assert fact.get_field_types() == [flink[sql_type] for _, sql_type in aurora.ORDER_FCT_STAGE]
    assert (
        "".join(
            {"integer": "I", "bigint": "L", "text": "S"}[sql_type]
            for _, sql_type in aurora.ORDER_FCT_STAGE
        )
        == inventory_windowing.FACT_KINDS
    )
    letter = aurora.DEAD_LETTER_ROW
    assert letter.get_field_names() == list(DeadLetter.FIELDS)
    assert letter.get_field_types() == [flink[column.type] for column in DEAD_LETTER.written]
