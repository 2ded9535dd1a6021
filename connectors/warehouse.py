"""Warehouse edge (Redshift; locally the PostgreSQL database of the ``Warehouse`` group):
loading ``hourly_store_metrics`` and reading back what was published when.

Loads go the way Redshift is loaded, never row by row into the table: rows into a staging
table, then in the SAME transaction a merge (DELETE the rows being replaced, INSERT the
staged ones) and a line in ``metrics_publication``. PostgreSQL and Redshift both run every
statement here (``stack/sql/warehouse.sql`` has the tables; Redshift's own DDL and its COPY
from the lake are in ``deploy/redshift/``). The streaming job loads per checkpoint through
``stream_sink`` (the JVM's ``StagedMergeSink``, merging by key); corrections replace whole
hours through ``replace_hours``. Both stamp each row with its ``source`` and ``published_at``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple
from datetime import datetime, timezone

import psycopg
from pyflink.datastream.connectors import Sink
from pyflink.java_gateway import get_gateway

from pizzastream.config import jdbc_url, postgres_dsn
from pizzastream.metrics import METRIC_COLUMNS, MetricRow, Publication

TABLE = "hourly_store_metrics"
STAGE = "hourly_store_metrics_stage"
PUBLICATIONS = "metrics_publication"
STREAM, BATCH = "stream", "batch"
# The staged columns: a metric row, where it came from, when the load committed.
LOAD_COLUMNS = (*METRIC_COLUMNS, "source", "published_at")
_COLUMNS = ", ".join(LOAD_COLUMNS)

_CREATE_STAGE = f"CREATE TEMP TABLE {STAGE} (LIKE {TABLE})"
_DELETE_STAGED_KEYS = (f"DELETE FROM {TABLE} USING {STAGE}"
                       f" WHERE {TABLE}.store_id = {STAGE}.store_id"
                       f" AND {TABLE}.window_start = {STAGE}.window_start")
_INSERT_STAGED = f"INSERT INTO {TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM {STAGE}"
_LOG_PUBLICATION = (
    f"INSERT INTO {PUBLICATIONS} (window_start, window_end, source, published_at, stores)"
    f" SELECT window_start, window_end, source, published_at, COUNT(*) FROM {STAGE}"
    f" GROUP BY window_start, window_end, source, published_at")
_DROP_STAGE = f"DROP TABLE {STAGE}"


def stream_sink(props: dict[str, dict[str, str]]) -> Sink:
    """Sink for rows of ``METRIC_COLUMNS`` plus ``source``: staged and merged by key
    (store, hour) once per checkpoint, ``published_at`` = the load's time. Merging by key
    makes a replay after a restart harmless."""
    db = props["Warehouse"]
    placeholders = ", ".join("?" * len(LOAD_COLUMNS))
    j_sink = get_gateway().jvm.pizzastream.flink.StagedMergeSink(
        jdbc_url(props, "Warehouse"), db["user"], db["password"], [_CREATE_STAGE],
        f"INSERT INTO {STAGE} ({_COLUMNS}) VALUES ({placeholders})",
        [_DELETE_STAGED_KEYS, _INSERT_STAGED, _LOG_PUBLICATION, _DROP_STAGE])
    return Sink(j_sink)


def replace_hours(props: dict[str, dict[str, str]], hours: Sequence[datetime],
                  rows: Sequence[MetricRow], source: str = BATCH) -> None:
    """Makes ``hours`` (naive UTC window starts) hold exactly ``rows`` in one transaction:
    every existing row of those hours goes, so a store that no longer has sales in an hour
    loses its row, and readers never see an hour half replaced."""
    published_at = datetime.now(timezone.utc).replace(tzinfo=None)
    hour_list = ", ".join(["%s"] * len(hours))
    with psycopg.connect(postgres_dsn(props, "Warehouse")) as conn:
        conn.execute(_CREATE_STAGE)
        with conn.cursor() as cur, cur.copy(f"COPY {STAGE} ({_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*astuple(row), source, published_at))
        conn.execute(f"DELETE FROM {TABLE} WHERE window_start IN ({hour_list})", list(hours))
        for statement in (_INSERT_STAGED, _LOG_PUBLICATION, _DROP_STAGE):
            conn.execute(statement)


def metric_rows(props: dict[str, dict[str, str]]) -> list[MetricRow]:
    """Every row of ``hourly_store_metrics``, ordered by hour and store."""
    with psycopg.connect(postgres_dsn(props, "Warehouse")) as conn:
        records = conn.execute(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM {TABLE} ORDER BY window_start, store_id")
        return [MetricRow(*record) for record in records]


def publications(props: dict[str, dict[str, str]], start: datetime,
                 end: datetime) -> list[Publication]:
    """For each hour starting in ``[start, end)`` (naive UTC) that was published: its first
    publication and how many corrections followed."""
    with psycopg.connect(postgres_dsn(props, "Warehouse")) as conn:
        records = conn.execute(
            f"SELECT window_start, window_end, MIN(published_at),"
            f" SUM(CASE WHEN source = %s THEN 1 ELSE 0 END) FROM {PUBLICATIONS}"
            f" WHERE window_start >= %s AND window_start < %s"
            f" GROUP BY window_start, window_end ORDER BY window_start", (BATCH, start, end))
        return [Publication(*record) for record in records]
