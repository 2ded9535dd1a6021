"""The COPY upsert sink (``connectors.aurora.copy_upsert_sink``, every Aurora table the jobs
write) keeps the JDBC sink's semantics: one row per key with the last values."""

from __future__ import annotations

from decimal import Decimal

import pytest


@pytest.mark.integration
@pytest.mark.slow
def test_copy_sink_upserts_last_version_of_each_key(local_stack):
    """Duplicates within a batch and across batches (a replay) leave one row per key with
    the last values; cents and epoch ms become numeric(…,2) and timestamptz in SQL."""
    from pyflink.common import Row

    from bench import benchdb
    from connectors import aurora
    from jobs import inventory_windowing, runtime

    props = benchdb.ensure(local_stack)
    props["Aurora"]["copy_batch_rows"] = "3"  # several batches
    with aurora.connect(props) as conn:
        conn.execute("DELETE FROM order_fct WHERE order_id LIKE 'COPYTEST-%'")
    ts = 1_795_500_000_123
    rows = [
        Row(7, "COPYTEST-1", 1, ts, 1, 899, 899, "pickup", "online"),
        Row(7, "COPYTEST-1", 1, ts, 2, 899, 1798, "pickup", "online"),  # same key
        Row(8, "COPYTEST-2", 4, ts + 1, 3, 999, 2997, "delivery", "online"),
        Row(9, "COPYTEST-3", 16, ts + 2, 1, 199, 199, "dine_in", "in_store"),
        Row(7, "COPYTEST-1", 1, ts, 3, 899, 2697, "pickup", "online"),
    ]  # replay, later
    env = runtime.stream_environment(props)
    env.set_parallelism(1)
    stream = env.from_collection(rows, type_info=inventory_windowing.FACT_ROW)
    stream.sink_to(
        aurora.copy_upsert_sink(
            props,
            "order_fct",
            aurora.ORDER_FCT_STAGE,
            aurora.ORDER_FCT_TARGET,
            ["order_id", "product_id"],
        )
    )
    env.execute("copy-sink-test")
    with aurora.connect(props) as conn:
        got = conn.execute(
            "SELECT order_id, product_id, store_id, quantity, unit_price, total_transaction_amt,"
            " (extract(epoch FROM transaction_ts) * 1000)::bigint, delivery_type, channel"
            " FROM order_fct WHERE order_id LIKE 'COPYTEST-%' ORDER BY order_id"
        ).fetchall()
    assert got == [
        ("COPYTEST-1", 1, 7, 3, Decimal("8.99"), Decimal("26.97"), ts, "pickup", "online"),
        ("COPYTEST-2", 4, 8, 3, Decimal("9.99"), Decimal("29.97"), ts + 1, "delivery", "online"),
        ("COPYTEST-3", 16, 9, 1, Decimal("1.99"), Decimal("1.99"), ts + 2, "dine_in", "in_store"),
    ]


@pytest.mark.integration
@pytest.mark.slow
def test_dead_letter_sink_keeps_one_row_per_letter_and_its_first_time(local_stack):
    """``dead_letter`` through the COPY upsert sink: a letter repeated within a batch and
    replayed in a later run (a restart) stays one row, ``received_at`` the first write's (the
    dead-letter alarm counts recent rows), and a payload with tabs, newlines and backslashes
    arrives as sent."""
    from pyflink.common import Row

    from connectors import aurora
    from jobs import runtime

    props = dict(local_stack)
    prefix = "COPYTEST-DL-"
    with aurora.connect(props) as conn:
        conn.execute("DELETE FROM dead_letter WHERE dead_letter_id LIKE %s", (prefix + "%",))

    def letter(n: int, detail: str, payload: str = "{}") -> Row:
        return Row(prefix + str(n), "test", "invalid", detail, None, f"O{n}", payload, 42)

    def run(rows: list) -> None:
        env = runtime.stream_environment(props)
        env.set_parallelism(1)
        env.from_collection(rows, type_info=aurora.DEAD_LETTER_ROW).sink_to(
            aurora.dead_letter_sink(props)
        )
        env.execute("dead-letter-sink-test")

    def stored() -> list[tuple]:
        with aurora.connect(props) as conn:
            return conn.execute(
                "SELECT dead_letter_id, detail, order_id, payload, store_id, received_at"
                " FROM dead_letter WHERE dead_letter_id LIKE %s ORDER BY dead_letter_id",
                (prefix + "%",),
            ).fetchall()

    awkward = 'a\tb\nc\\d "e"'
    run([letter(1, "first"), letter(2, "two", awkward), letter(1, "first")])
    first = stored()
    assert [row[:5] for row in first] == [
        (prefix + "1", "first", "O1", "{}", 42),
        (prefix + "2", "two", "O2", awkward, 42),
    ]
    run([letter(2, "two", awkward), letter(3, "three")])  # the replay of a restart, and a new one
    second = stored()
    assert [row[0] for row in second] == [prefix + "1", prefix + "2", prefix + "3"]
    assert second[:2] == first  # the replayed letter: same row, same first time
