"""The warehouse interface on both back ends (``Warehouse.engine``): PostgreSQL, and
Redshift's staged path (Parquet files and a manifest in S3, ``COPY … FROM 's3://…'
MANIFEST`` into a stage, merge and publication row in one transaction), run locally on the
PostgreSQL stand-in with only the COPY played by a loader reading the very same files.

Every statement the Redshift back end sends is checked in the Redshift dialect by sqlglot
(``tests/redshift_dialect.py``), and the check itself is shown to catch what Redshift lacks.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from dataclasses import astuple
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pyarrow.parquet as pq
import pytest

from connectors import aws, redshift, warehouse
from connectors.redshift import CopyFromS3, statement_sql
from pizzastream.config import REPO_ROOT, postgres_dsn
from pizzastream.metrics import MetricRow
from tests import redshift_dialect
from tests.pos_support import query

HOUR = timedelta(hours=1)
H1 = datetime(2026, 11, 24, 10)
H2 = H1 + HOUR
ROLE = "arn:aws:iam::123456789012:role/pizzastream-warehouse-load"
MANIFEST = "s3://pizzastream-lake/warehouse/loads/x/manifest.json"


def row(store_id: int, hour: datetime, orders: int) -> MetricRow:
    revenue = (Decimal(orders * 1250) / 100).quantize(Decimal("0.01"))
    return MetricRow(
        store_id,
        hour,
        hour + HOUR,
        orders,
        2 * orders,
        revenue,
        orders,
        0,
        orders // 2,
        (revenue / orders).quantize(Decimal("0.01")),
    )


def redshift_statements() -> list[str]:
    """Every statement shape the Redshift back end runs, reads included."""
    fills = [CopyFromS3(warehouse.ORDER_FCT_STAGE, MANIFEST, ROLE), None]
    stage_fills = [CopyFromS3(warehouse.STAGE, MANIFEST, ROLE), None]
    loads = [statement for fill in fills for statement in warehouse.order_fct_statements(fill, H1)]
    loads += [
        statement
        for fill in stage_fills
        for hours in ([H1], [H1, H2], [])
        for statement in warehouse.replace_hours_statements(hours, fill)
    ]
    loads += warehouse.stream_statements(
        CopyFromS3(warehouse.STAGE, MANIFEST, ROLE, redshift.CSV_GZIP)
    )
    return [statement_sql(statement) for statement in loads] + [
        warehouse.METRIC_ROWS_SQL,
        warehouse.PUBLICATIONS_SQL,
    ]


def ddl_statements() -> list[str]:
    return [
        statement
        for path in (
            "deploy/redshift/hourly_store_metrics.sql",
            "stack/sql/warehouse.sql",
            "stack/sql/etl_warehouse.sql",
        )
        for statement in redshift_dialect.statements((REPO_ROOT / path).read_text())
    ]


# -- the dialect check (no server) ---------------------------------------------------------


@pytest.mark.parametrize("sql", redshift_statements() + ddl_statements())
def test_every_redshift_statement_passes_the_redshift_dialect_check(sql):
    assert redshift_dialect.problems(sql) == []


def test_the_redshift_loads_copy_from_s3_with_a_role_and_a_manifest():
    copies = [sql for sql in redshift_statements() if sql.startswith("COPY")]
    assert copies == [
        f"COPY order_fct_stage FROM '{MANIFEST}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST",
        *[
            f"COPY hourly_store_metrics_stage FROM '{MANIFEST}' IAM_ROLE '{ROLE}'"
            f" FORMAT AS PARQUET MANIFEST"
        ]
        * 3,
        f"COPY hourly_store_metrics_stage FROM '{MANIFEST}' IAM_ROLE '{ROLE}'"
        f" FORMAT AS CSV GZIP TIMEFORMAT 'auto' MANIFEST",
    ]


@pytest.mark.parametrize(
    "sql, problem",
    [
        (
            "INSERT INTO hourly_store_metrics (store_id) VALUES (1) ON CONFLICT (store_id)"
            " DO NOTHING",
            "ON CONFLICT",
        ),
        ("COPY hourly_store_metrics_stage (store_id) FROM STDIN", "COPY from STDIN"),
        ("COPY t FROM '/tmp/rows.csv'", "COPY from '/tmp/rows.csv'"),
        (
            "COPY t FROM 's3://b/k/manifest.json' FORMAT AS PARQUET MANIFEST",
            "COPY without IAM_ROLE",
        ),
        ("INSERT INTO t (a) VALUES (1) RETURNING a", "RETURNING"),
        ("LOCK t IN ACCESS EXCLUSIVE MODE", "not a statement the Redshift dialect knows"),
        ("SELECT gen_random_uuid_v7() FROM t", "function gen_random_uuid_v7"),
    ],
)
def test_the_dialect_check_refuses_what_redshift_lacks(sql, problem):
    assert any(found.startswith(problem) for found in redshift_dialect.problems(sql)), (
        redshift_dialect.problems(sql)
    )


def test_the_postgresql_fill_statements_would_fail_the_redshift_check():
    """What the PostgreSQL back end runs instead of the COPY from S3 (and why it is not the
    Redshift path): COPY FROM STDIN."""
    for fill in (f"COPY {warehouse.STAGE} (store_id) FROM STDIN",):
        assert redshift_dialect.problems(fill)


def test_a_manifest_names_every_file_mandatory_with_its_length():
    assert redshift.manifest([("s3://b/a.parquet", 10), ("s3://b/b.parquet", 0)]) == {
        "entries": [
            {"url": "s3://b/a.parquet", "mandatory": True, "meta": {"content_length": 10}},
            {"url": "s3://b/b.parquet", "mandatory": True, "meta": {"content_length": 0}},
        ]
    }


def test_an_unknown_engine_is_refused(props):
    with pytest.raises(ValueError, match=r"Warehouse.engine"):
        warehouse.backend({**props, "Warehouse": {**props["Warehouse"], "engine": "mysql"}})


# -- both back ends on the local stack -----------------------------------------------------


def stored(props) -> tuple[list[tuple], list[tuple]]:
    """The warehouse's metric rows with their source, and the publication log (load times
    left out: they differ between any two runs)."""
    return (
        query(
            props,
            "SELECT store_id, window_start, window_end, orders, items, revenue,"
            " online_orders, in_store_orders, delivery_orders, avg_order_value,"
            " source FROM hourly_store_metrics ORDER BY 2, 1",
            group="Warehouse",
        ),
        query(
            props,
            "SELECT window_start, window_end, source, stores FROM"
            " metrics_publication ORDER BY published_at, 1",
            group="Warehouse",
        ),
    )


def corrections(props) -> None:
    """Two hours published, then the first corrected: store 2 sold nothing after all."""
    warehouse.replace_hours(props, [H1, H2], [row(1, H1, 4), row(2, H1, 2), row(1, H2, 6)])
    warehouse.replace_hours(props, [H1], [row(1, H1, 5)])


@pytest.mark.integration
def test_replaced_hours_hold_exactly_the_rows_given(engine_stack):
    corrections(engine_stack)
    assert warehouse.metric_rows(engine_stack) == [row(1, H1, 5), row(1, H2, 6)]
    assert [
        (p.window_start, p.corrections) for p in warehouse.publications(engine_stack, H1, H2 + HOUR)
    ] == [(H1, 2), (H2, 1)]
    # what the loads changed of the keys they staged: H1 6 orders, then store 1's 4 -> 5
    # (store 2's row removed is no staged key)
    assert [
        (p.orders_change, p.revenue_change)
        for p in warehouse.publications(engine_stack, H1, H2 + HOUR)
    ] == [(7, Decimal("87.50")), (6, Decimal("75.00"))]
    warehouse.replace_hours(engine_stack, [H2], [])  # nothing sold any more
    assert warehouse.metric_rows(engine_stack) == [row(1, H1, 5)]


@pytest.mark.integration
def test_the_redshift_path_leaves_exactly_what_the_postgresql_path_leaves(clean_stack):
    import stack

    results = []
    for engine in warehouse.POSTGRESQL, warehouse.REDSHIFT:
        stack.reset_data(clean_stack)
        corrections({**clean_stack, "Warehouse": {**clean_stack["Warehouse"], "engine": engine}})
        results.append(stored(clean_stack))
    assert results[0] == results[1]
    assert len(results[0][0]) == 2 and len(results[0][1]) == 3


def redshift_props(props):
    return {**props, "Warehouse": {**props["Warehouse"], "engine": warehouse.REDSHIFT}}


def s3_objects(props, prefix: str) -> dict[str, bytes]:
    s3, bucket = aws.client(props, "s3"), props["Lake"]["bucket"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {
        obj["Key"]: s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        for page in pages
        for obj in page.get("Contents", [])
    }


@pytest.mark.integration
def test_a_redshift_load_stages_parquet_and_a_correct_manifest_in_s3(clean_stack):
    props = redshift_props(clean_stack)
    rows = [row(1, H1, 4), row(2, H1, 2)]
    warehouse.replace_hours(props, [H1], rows, source=warehouse.BATCH)

    files = s3_objects(props, "warehouse/loads/hourly_store_metrics/")
    [manifest_key] = [key for key in files if key.endswith("/manifest.json")]
    [data_key] = [key for key in files if key.endswith(".parquet")]
    assert manifest_key.rsplit("/", 1)[0] == data_key.rsplit("/", 1)[0]
    assert json.loads(files[manifest_key]) == {
        "entries": [
            {
                "url": f"s3://{props['Lake']['bucket']}/{data_key}",
                "mandatory": True,
                "meta": {"content_length": len(files[data_key])},
            }
        ]
    }
    table = pq.read_table(io.BytesIO(files[data_key]))
    assert tuple(table.column_names) == warehouse.LOAD_COLUMNS
    assert [MetricRow(*list(r.values())[:10]) for r in table.to_pylist()] == rows
    assert {r["source"] for r in table.to_pylist()} == {"batch"}
    # what the COPY loaded is what the files hold, load time included
    assert query(
        props, "SELECT DISTINCT published_at FROM hourly_store_metrics", group="Warehouse"
    ) == [(table.column("published_at")[0].as_py(),)]


@pytest.mark.integration
def test_the_order_fct_manifest_names_the_staging_parts_themselves(clean_stack):
    from etl import hourly
    from etl.staging import Staging
    from tests.etl.test_staging import AN_HOUR, export, insert_sales, sales_in

    props = redshift_props(clean_stack)
    insert_sales(props, sales_in(AN_HOUR, 30))
    rows, keys = export(props, AN_HOUR, part_rows=25)
    hourly.load_warehouse(props, Staging(props), AN_HOUR, rows)

    bucket = props["Lake"]["bucket"]
    manifests = s3_objects(props, "warehouse/loads/order_fct/")
    assert list(manifests) == [
        "warehouse/loads/order_fct/staging/order_fct/dt=2026-11-24/hour=09/manifest.json"
    ]
    parts = s3_objects(props, "staging/order_fct/")
    assert json.loads(next(iter(manifests.values()))) == redshift.manifest(
        [(f"s3://{bucket}/{key}", len(parts[key])) for key in keys]
    )


@pytest.mark.integration
def test_the_stand_in_copy_refuses_a_manifest_redshift_would_refuse(clean_stack):
    props = redshift_props(clean_stack)
    warehouse.replace_hours(props, [H1], [row(1, H1, 4)])
    files = redshift.LoadFiles(props)
    url = files.write("test/bad", warehouse.metric_load_table([row(1, H1, 9)], "batch", H2))
    bucket, key = redshift.split_s3_url(url)
    body = json.loads(s3_objects(props, key)[key])
    body["entries"][0]["meta"]["content_length"] += 1
    aws.client(props, "s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())

    backend = warehouse.backend(props)
    with pytest.raises(ValueError, match="the manifest says"):
        backend.run(
            warehouse.replace_hours_statements(
                [H1], CopyFromS3(warehouse.STAGE, url, backend.iam_role)
            )
        )
    assert warehouse.metric_rows(props) == [row(1, H1, 4)]  # rolled back whole


def conflict_with(props, load, waits_in: str, timeout_s: float) -> threading.Thread:
    """Runs ``load`` in a thread while another serializable writer deletes hour H1's rows
    and holds them until the load's statement starting ``waits_in`` waits for them, then
    commits: the load's transaction is aborted as Redshift would abort it. Returns the
    load's thread, joined."""
    with psycopg.connect(postgres_dsn(props, "Warehouse")) as other:
        other.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        other.execute("DELETE FROM hourly_store_metrics WHERE window_start = %s", (H1,))
        thread = threading.Thread(target=load)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not query(
            props,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            f"{waits_in}%",
            group="Warehouse",
        ):
            assert time.monotonic() < deadline, "the load never waited for the other writer"
            assert thread.is_alive(), "the load ended before it waited for the other writer"
            time.sleep(0.05)
        other.commit()
        thread.join(timeout_s)
    return thread


@pytest.mark.integration
def test_a_serialization_conflict_is_retried_and_the_load_lands_once(clean_stack, caplog):
    """Redshift aborts one of two conflicting serializable writers; the stand-in runs its
    transactions serializable too, so the conflict here is real: another writer deletes
    the hour's rows after the load's snapshot and commits while the load waits for them."""
    props = redshift_props(clean_stack)
    warehouse.replace_hours(props, [H1], [row(1, H1, 4)])
    backend = warehouse.backend(props)
    attempts = []
    conflict_with(
        props,
        lambda: attempts.append(backend.replace_hours([H1], [row(1, H1, 7)])),
        "DELETE FROM hourly_store_metrics",
        timeout_s=20,
    )
    assert attempts == [2]
    assert "serialization conflict (attempt 1 of 5)" in caplog.text
    assert warehouse.metric_rows(props) == [row(1, H1, 7)]


# -- the streaming job's sink on both back ends (a Flink job each) ---------------------------


def run_stream_sink(props, rows: list[MetricRow], restarts: bool = True) -> None:
    """The JVM stream sink fed ``rows`` by a Flink job to its end; ``restarts=False`` fails
    the job on the sink's first error instead of restarting it from a checkpoint."""
    from pyflink.common import Row, Types
    from pyflink.common.restart_strategy import RestartStrategies

    from jobs import runtime

    row_type = Types.ROW_NAMED(
        list(warehouse.LOAD_COLUMNS[:-1]),
        [
            Types.INT(),
            Types.SQL_TIMESTAMP(),
            Types.SQL_TIMESTAMP(),
            Types.LONG(),
            Types.LONG(),
            Types.BIG_DEC(),
            Types.LONG(),
            Types.LONG(),
            Types.LONG(),
            Types.BIG_DEC(),
            Types.STRING(),
        ],
    )
    env = runtime.stream_environment(props)
    env.set_parallelism(1)
    if not restarts:
        env.set_restart_strategy(RestartStrategies.no_restart())
    t_env = runtime.table_environment(env)
    # Through a table, as the job's rows come (``to_data_stream``: LocalDateTime, decimals).
    rows_in = t_env.from_data_stream(
        env.from_collection([Row(*astuple(r), warehouse.STREAM) for r in rows], type_info=row_type)
    )
    t_env.to_data_stream(rows_in).sink_to(warehouse.stream_sink(props))
    env.execute("warehouse-stream-sink-test")


@pytest.mark.integration
@pytest.mark.slow
def test_the_stream_sink_retries_a_serialization_conflict_and_lands_once(clean_stack):
    """The JVM sink's Redshift load, in a job that may not restart: another serializable
    writer deletes the hour's rows after the load's snapshot and commits while the load's
    delete waits for them; the load is aborted (40001), runs again, and lands once."""
    props = redshift_props(clean_stack)
    warehouse.replace_hours(props, [H1], [row(1, H1, 4)])
    failures: list[BaseException] = []

    def load() -> None:
        try:
            run_stream_sink(props, [row(1, H1, 7)], restarts=False)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    job = conflict_with(props, load, "DELETE FROM hourly_store_metrics USING", timeout_s=120)
    assert not job.is_alive() and failures == []
    assert warehouse.metric_rows(props) == [row(1, H1, 7)]


@pytest.mark.integration
@pytest.mark.slow
def test_the_stream_sink_merges_by_key_and_a_replay_changes_nothing(engine_stack):
    props = engine_stack
    first = [row(1, H1, 4), row(2, H1, 2)]
    run_stream_sink(props, first)
    assert warehouse.metric_rows(props) == first
    run_stream_sink(props, [row(1, H1, 5), row(2, H1, 2)])  # a replay with a late sale
    assert warehouse.metric_rows(props) == [row(1, H1, 5), row(2, H1, 2)]
    assert stored(props)[1] == [(H1, H2, "stream", 2)] * 2
    loads = s3_objects(props, "warehouse/loads/hourly_store_metrics/stream/")
    if props["Warehouse"]["engine"] == warehouse.POSTGRESQL:
        assert loads == {}
        return
    manifests = sorted(key for key in loads if key.endswith("/manifest.json"))
    assert len(manifests) == 2 and len(loads) == 4  # one file each checkpoint
    for key in manifests:
        [entry] = json.loads(loads[key])["entries"]
        data_key = redshift.split_s3_url(entry["url"])[1]
        assert data_key == key.replace("manifest.json", "part-00000.csv.gz")
        assert entry["mandatory"] is True
        assert entry["meta"] == {"content_length": len(loads[data_key])}
    # One load per run, each its rows as staged (published_at last); the keys name the run,
    # not its order, so the loads are compared as a set.
    first_rows = {
        gzip.decompress(loads[key.replace("manifest.json", "part-00000.csv.gz")])
        .decode()
        .splitlines()[0]
        .rsplit(",", 1)[0]
        for key in manifests
    }
    assert first_rows == {
        '1,2026-11-24 10:00:00.000000,2026-11-24 11:00:00.000000,4,8,50.00,4,0,2,12.50,"stream"',
        '1,2026-11-24 10:00:00.000000,2026-11-24 11:00:00.000000,5,10,62.50,5,0,2,12.50,"stream"',
    }
