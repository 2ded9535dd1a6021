"""The hourly ETL's export and load steps on the local stack (no Flink): an hour of
``order_fct`` becomes Parquet with the contract's columns and types, the same hour exported
again is byte-identical, the warehouse merge is idempotent, and the change window finds
exactly the hours that late rows touched, never missing a row still being written."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow.parquet as pq
import pytest

from connectors import aurora, aws
from etl import hourly
from etl.staging import COLUMNS, ORDER_FCT, Staging, floor_hour
from pizzastream.config import postgres_dsn
from pizzastream.orders import epoch_ms
from tests.pos_support import insert_sales, make_order, query

pytestmark = pytest.mark.integration

AN_HOUR = datetime(2026, 11, 24, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)


def sales_in(hour: datetime, count: int, first: int = 0, store_id: int = 3):
    start = epoch_ms(hour)
    return [
        make_order(n, store_id, start + n * 60_000, channel="online" if n % 3 else "in_store")
        for n in range(first, first + count)
    ]


def staged(props, hour: datetime) -> dict[str, bytes]:
    s3, bucket = aws.client(props, "s3"), props["Lake"]["bucket"]
    return {
        key: s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in Staging(props).keys(Staging(props).hour_prefix(hour))
    }


def export(props, hour: datetime, fetch_rows: int = 1000, part_rows: int = 100_000):
    with aurora.connect(props) as conn:
        return hourly.export_hour(conn, Staging(props), hour, fetch_rows, part_rows)


def aurora_hour(props, hour: datetime) -> list[tuple]:
    return query(
        props,
        f"SELECT {', '.join(COLUMNS)} FROM order_fct WHERE transaction_ts >= %s"
        f" AND transaction_ts < %s ORDER BY order_id, product_id",
        hour,
        hour + HOUR,
    )


def warehouse_rows(props) -> list[tuple]:
    return query(
        props,
        f"SELECT {', '.join(COLUMNS)} FROM order_fct ORDER BY order_id, product_id",
        group="Warehouse",
    )


def test_an_hour_is_staged_with_exactly_the_contract_columns_and_types(clean_stack):
    insert_sales(clean_stack, sales_in(AN_HOUR - timedelta(minutes=5), 20))  # 5 before the hour

    rows, keys = export(clean_stack, AN_HOUR)

    assert keys == ["staging/order_fct/dt=2026-11-24/hour=09/part-00000.parquet"]
    table = pq.read_table(io.BytesIO(staged(clean_stack, AN_HOUR)[keys[0]]))
    assert table.schema.equals(ORDER_FCT)
    assert str(table.schema.field("transaction_ts").type) == "timestamp[us, tz=UTC]"
    assert rows == table.num_rows == 2 * 15
    assert [tuple(row.values()) for row in table.to_pylist()] == aurora_hour(clean_stack, AN_HOUR)


def test_an_hour_exported_and_loaded_twice_is_byte_and_row_identical(engine_stack):
    props = engine_stack
    insert_sales(props, sales_in(AN_HOUR, 30))
    outputs = []
    for _ in range(2):
        rows, _ = export(props, AN_HOUR, fetch_rows=7, part_rows=25)
        hourly.load_warehouse(props, Staging(props), AN_HOUR, rows)
        outputs.append(
            (
                {
                    key: hashlib.sha256(body).hexdigest()
                    for key, body in staged(props, AN_HOUR).items()
                },
                warehouse_rows(props),
            )
        )
    assert outputs[0] == outputs[1]
    assert len(outputs[0][0]) == 3  # 60 rows in parts of 25
    assert outputs[0][1] == aurora_hour(props, AN_HOUR)


def test_a_re_export_replaces_the_parts_and_the_warehouse_rows_of_the_hour(engine_stack):
    props = engine_stack
    insert_sales(props, sales_in(AN_HOUR, 30))
    rows, _ = export(props, AN_HOUR, part_rows=25)
    hourly.load_warehouse(props, Staging(props), AN_HOUR, rows)
    query(
        props,
        "UPDATE order_fct SET delivery_id = 'D-1' WHERE order_id = %s",
        sales_in(AN_HOUR, 1)[0].order_id,
    )

    rows, keys = export(props, AN_HOUR, part_rows=1000)
    hourly.load_warehouse(props, Staging(props), AN_HOUR, rows)

    assert list(staged(props, AN_HOUR)) == keys and len(keys) == 1
    assert warehouse_rows(props) == aurora_hour(props, AN_HOUR)
    assert {row[7] for row in warehouse_rows(props)} == {None, "D-1"}


def test_an_hour_without_sales_loads_nothing_and_keeps_the_warehouse(engine_stack):
    props = engine_stack
    insert_sales(props, sales_in(AN_HOUR, 3))
    rows, _ = export(props, AN_HOUR)
    hourly.load_warehouse(props, Staging(props), AN_HOUR, rows)
    rows, _ = export(props, AN_HOUR + HOUR)
    hourly.load_warehouse(props, Staging(props), AN_HOUR + HOUR, rows)
    assert rows == 0
    assert warehouse_rows(props) == aurora_hour(props, AN_HOUR)


def test_an_hour_without_sales_is_one_empty_part(clean_stack):
    rows, keys = export(clean_stack, AN_HOUR)
    assert rows == 0 and len(keys) == 1
    assert pq.read_table(io.BytesIO(staged(clean_stack, AN_HOUR)[keys[0]])).num_rows == 0


def changed_at(props, order_id: str) -> datetime:
    return query(props, "SELECT max(changed_at) FROM order_fct WHERE order_id = %s", order_id)[0][0]


def test_changed_at_moves_on_a_real_change_only(clean_stack):
    order = sales_in(AN_HOUR, 1)[0]
    insert_sales(clean_stack, [order])
    inserted = changed_at(clean_stack, order.order_id)
    query(
        clean_stack, "UPDATE order_fct SET quantity = quantity WHERE order_id = %s", order.order_id
    )  # a replayed upsert
    assert changed_at(clean_stack, order.order_id) == inserted
    query(
        clean_stack, "UPDATE order_fct SET delivery_id = 'D-7' WHERE order_id = %s", order.order_id
    )
    assert changed_at(clean_stack, order.order_id) > inserted


def hours(props, hour, first_open, since, cutoff) -> dict[datetime, str]:
    with aurora.connect(props) as conn:
        return hourly.hours_to_export(conn, hour, first_open, since, cutoff)


def test_the_change_window_names_the_closed_hours_that_late_rows_touched(clean_stack):
    first_open = floor_hour(datetime.now(UTC))
    insert_sales(
        clean_stack, sales_in(first_open - 5 * HOUR, 2) + sales_in(first_open, 2, first=10)
    )
    first_cutoff = datetime.now(UTC)

    assert hours(clean_stack, None, first_open, None, first_cutoff) == {
        first_open - 5 * HOUR: "late_rows",  # history, on the first run
        first_open - HOUR: "scheduled",
    }  # the open hour waits

    insert_sales(clean_stack, sales_in(first_open - 3 * HOUR, 1, first=20))
    requested = first_open - 10 * HOUR
    assert hours(clean_stack, requested, first_open, first_cutoff, datetime.now(UTC)) == {
        first_open - 3 * HOUR: "late_rows",
        requested: "requested",
    }
    with pytest.raises(ValueError):
        hours(clean_stack, first_open, first_open, first_cutoff, datetime.now(UTC))


def test_a_row_still_being_written_is_left_to_the_next_window(clean_stack):
    """The race a plain high-water mark loses: a writer's transaction stamps its rows at
    its start but commits after the ETL has read."""
    with psycopg.connect(postgres_dsn(clean_stack, "Aurora")) as writer:
        insert = sales_in(AN_HOUR, 1)[0]
        writer.execute(
            "INSERT INTO order_fct (store_id, order_id, product_id, transaction_ts,"
            " quantity, unit_price, total_transaction_amt, delivery_type, channel)"
            " VALUES (1, %s, 1, %s, 1, 1, 1, 'pickup', 'online')",
            (insert.order_id, AN_HOUR),
        )  # open, uncommitted
        with aurora.connect(clean_stack) as conn:
            now, cutoff = hourly.change_cutoff(conn)
        writer.commit()
    assert cutoff < now and cutoff <= changed_at(clean_stack, insert.order_id)
