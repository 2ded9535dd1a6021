"""Warehouse edge: one interface, two back ends chosen by ``Warehouse.engine``.

- ``postgresql`` (the default; the local stack's warehouse database): staging tables filled
  through PostgreSQL's ``COPY … FROM STDIN`` (psycopg), then the merge.
- ``redshift`` (production): every load writes Parquet files and a manifest to S3
  (``Warehouse.load_prefix`` in ``Warehouse.load_bucket``, default the lake bucket), then in
  ONE transaction ``COPY <stage> FROM '<manifest>' IAM_ROLE '<Warehouse.iam_role>' FORMAT AS
  PARQUET MANIFEST`` and the merge, through ``redshift_connector``, retried on serialization
  conflicts (``connectors.redshift``). With ``Warehouse.stand_in = postgresql`` the same
  statements run on the local PostgreSQL, only the COPY from S3 played by a loader that reads
  the very same files (``connectors.redshift.StandInCopy``).

Both back ends run the same merge statements (``stack/sql/warehouse.sql`` and
``etl_warehouse.sql`` have the tables; Redshift's physical design is in ``deploy/redshift/``):

- ``load_order_fct``: an hour's ``order_fct`` rows from S3 staging (``etl.staging``; on
  Redshift the manifest names those very staging parts): stage, delete the staged keys,
  insert the staged rows.
- ``replace_hours``: whole hours of ``hourly_store_metrics`` (corrections, reprocessing):
  stage, delete every row of the hours, insert the staged rows, log the load in
  ``metrics_publication``.

The streaming job loads per checkpoint through ``stream_sink`` (on Redshift: a gzipped CSV
file and a manifest per checkpoint, then COPY + merge, see there). Every metric row carries
its ``source`` and ``published_at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa

from connectors import lake, redshift
from connectors.redshift import CopyFromS3, Statement, statement_sql
from pizzastream import schemas
from pizzastream.config import Props, postgres_dsn
from pizzastream.metrics import MetricRow, Publication
from pizzastream.publication import LATE, PARTIAL, STREAM
from pizzastream.schemas import HOURLY_STORE_METRICS, METRIC_COLUMNS, METRICS_PUBLICATION
from pizzastream.settings import WarehouseSettings, need

POSTGRESQL, REDSHIFT = "postgresql", "redshift"
TABLE = HOURLY_STORE_METRICS.name
STAGE = f"{TABLE}_stage"
PUBLICATIONS = METRICS_PUBLICATION.name
ORDER_FCT = schemas.ORDER_FCT.name
ORDER_FCT_STAGE = f"{ORDER_FCT}_stage"
# Who wrote a row: the stream (``pizzastream.publication``: ``STREAM``, ``PARTIAL``,
# ``LATE``) or a batch correction.
BATCH = "batch"
# The staged columns: a metric row, where it came from, when the load committed
# (``schemas.PROVENANCE``).
LOAD_COLUMNS = HOURLY_STORE_METRICS.names
_COLUMNS = ", ".join(LOAD_COLUMNS)
# The load files' schema: exactly the stage table's columns in its order (Parquet COPY maps
# columns by position), with the warehouse's types (every field optional, as written since
# the first loads).
METRIC_LOAD_SCHEMA = lake.arrow_schema(HOURLY_STORE_METRICS, nullable=True)

_CREATE_STAGE = f"CREATE TEMP TABLE {STAGE} (LIKE {TABLE})"
_DELETE_STAGED_KEYS = (
    f"DELETE FROM {TABLE} USING {STAGE}"
    f" WHERE {TABLE}.store_id = {STAGE}.store_id"
    f" AND {TABLE}.window_start = {STAGE}.window_start"
)
_INSERT_STAGED = f"INSERT INTO {TABLE} ({_COLUMNS}) SELECT {_COLUMNS} FROM {STAGE}"
# Before the merge: what the staged rows change of the same keys is read against the rows
# they replace.
_LOG_PUBLICATION = (
    f"INSERT INTO {PUBLICATIONS} ({', '.join(METRICS_PUBLICATION.names)})"
    f" SELECT s.window_start, s.window_end, s.source, s.published_at, COUNT(*),"
    f" SUM(s.revenue - COALESCE(t.revenue, 0)), SUM(s.orders - COALESCE(t.orders, 0))"
    f" FROM {STAGE} s LEFT JOIN {TABLE} t"
    f" ON t.store_id = s.store_id AND t.window_start = s.window_start"
    f" GROUP BY s.window_start, s.window_end, s.source, s.published_at"
)
_DROP_STAGE = f"DROP TABLE {STAGE}"
# Reads, the same on both engines.
METRIC_ROWS_SQL = f"SELECT {', '.join(METRIC_COLUMNS)} FROM {TABLE} ORDER BY window_start, store_id"
# Corrections: the stream's ``late`` loads and the ETL's ``batch`` ones (a replay of the
# stream after a restart is neither).
_CORRECTION = "source IN (%s, %s)"
PUBLICATIONS_SQL = (
    f"SELECT window_start, window_end, MIN(published_at),"
    f" SUM(CASE WHEN {_CORRECTION} THEN 1 ELSE 0 END),"
    f" SUM(CASE WHEN source = %s THEN stores ELSE 0 END),"
    f" SUM(CASE WHEN {_CORRECTION} THEN revenue_change ELSE 0 END),"
    f" SUM(CASE WHEN {_CORRECTION} THEN orders_change ELSE 0 END)"
    f" FROM {PUBLICATIONS}"
    f" WHERE window_start >= %s AND window_start < %s"
    f" GROUP BY window_start, window_end ORDER BY window_start"
)


def _order_fct_columns() -> str:
    return ", ".join(schemas.ORDER_FCT.names)


def order_fct_statements(fill: Statement | None, hour: datetime) -> list[Statement]:
    """The transaction loading one staged hour of ``order_fct``: ``fill`` fills the stage
    (``None``: the hour has no rows, nothing to copy). The staged hour replaces the hour
    whole (rows deleted from Aurora go) and any row of its keys elsewhere (a row whose
    transaction_ts moved into this hour). ``hour`` (UTC) is written as a ``TIMESTAMPTZ``
    literal (a datetime only, nothing quoted from outside)."""
    columns = _order_fct_columns()
    start, end = (
        f"TIMESTAMPTZ '{h:%Y-%m-%d %H:%M:%S}+00'"
        for h in (_utc(hour), _utc(hour) + timedelta(hours=1))
    )
    return [
        f"CREATE TEMP TABLE {ORDER_FCT_STAGE} (LIKE {ORDER_FCT})",
        *([fill] if fill is not None else []),
        f"DELETE FROM {ORDER_FCT} WHERE transaction_ts >= {start} AND transaction_ts < {end}",
        f"DELETE FROM {ORDER_FCT} USING {ORDER_FCT_STAGE}"
        f" WHERE {ORDER_FCT}.order_id = {ORDER_FCT_STAGE}.order_id"
        f" AND {ORDER_FCT}.product_id = {ORDER_FCT_STAGE}.product_id",
        f"INSERT INTO {ORDER_FCT} ({columns}) SELECT {columns} FROM {ORDER_FCT_STAGE}",
        f"DROP TABLE {ORDER_FCT_STAGE}",
    ]


def replace_hours_statements(hours: Sequence[datetime], fill: Statement | None) -> list[Statement]:
    """The transaction making ``hours`` (naive UTC window starts) hold exactly the staged
    rows: every row of those hours goes first, so a store without sales any more loses its
    row. Hours are written as ``TIMESTAMP '…'`` literals (datetimes only, nothing quoted
    from outside)."""
    in_hours = ", ".join(f"TIMESTAMP '{hour:%Y-%m-%d %H:%M:%S}'" for hour in hours)
    return [
        _CREATE_STAGE,
        *([fill] if fill is not None else []),
        _LOG_PUBLICATION,
        *([f"DELETE FROM {TABLE} WHERE window_start IN ({in_hours})"] if hours else []),
        _INSERT_STAGED,
        _DROP_STAGE,
    ]


def metric_load_table(rows: Sequence[MetricRow], source: str, published_at: datetime) -> pa.Table:
    """Metric rows as the staged columns (``LOAD_COLUMNS``)."""
    return pa.Table.from_pylist(
        [dict(zip(LOAD_COLUMNS, (*astuple(row), source, published_at))) for row in rows],
        schema=METRIC_LOAD_SCHEMA,
    )


class Warehouse:
    """What the pipeline asks of the warehouse, whichever engine runs it."""

    def __init__(self, props: Props):
        self.props = props

    def load_order_fct(self, staged, hour: datetime, rows: int) -> None:
        """Merges the hour's staging partition (``etl.staging.Staging``, ``rows`` rows as
        the export wrote them) into ``order_fct`` by key, in one transaction."""
        raise NotImplementedError

    def replace_hours(
        self, hours: Sequence[datetime], rows: Sequence[MetricRow], source: str = BATCH
    ) -> None:
        """Makes ``hours`` (naive UTC) hold exactly ``rows`` in one transaction, and logs
        the load in ``metrics_publication``."""
        raise NotImplementedError

    def connect(self):
        """A DB-API connection for reads (``%s`` parameters on both engines)."""
        raise NotImplementedError


class PostgresWarehouse(Warehouse):
    """The local warehouse database: stages filled through ``COPY … FROM STDIN``."""

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(postgres_dsn(self.props, "Warehouse"))

    def load_order_fct(self, staged, hour: datetime, rows: int) -> None:
        fill = f"COPY {ORDER_FCT_STAGE} ({_order_fct_columns()}) FROM STDIN"
        with self.connect() as conn:
            for statement in order_fct_statements(fill, hour):
                if statement is fill:
                    with conn.cursor().copy(statement) as copy:
                        for batch in staged.read_hour(hour):
                            for row in zip(*(column.to_pylist() for column in batch.columns)):
                                copy.write_row(row)
                else:
                    conn.execute(statement)  # type: ignore[arg-type]  # the fill is handled above

    def replace_hours(
        self, hours: Sequence[datetime], rows: Sequence[MetricRow], source: str = BATCH
    ) -> None:
        published_at = _now()
        fill = f"COPY {STAGE} ({_COLUMNS}) FROM STDIN"
        with self.connect() as conn:
            for statement in replace_hours_statements(hours, fill):
                if statement is fill:
                    with conn.cursor().copy(statement) as copy:
                        for row in rows:
                            copy.write_row((*astuple(row), source, published_at))
                else:
                    conn.execute(statement)  # type: ignore[arg-type]  # the fill is handled above


class RedshiftWarehouse(Warehouse):
    """Redshift: files and manifest to S3, then COPY + merge in one transaction, retried
    on serialization conflicts (``connectors.redshift``)."""

    def __init__(self, props: Props):
        super().__init__(props)
        group = WarehouseSettings.from_group(props["Warehouse"])
        self.iam_role = need(group.iam_role, "Warehouse", "iam_role")
        self.files = redshift.LoadFiles(props)
        self.stand_in = group.stand_in == redshift.STAND_IN_POSTGRESQL
        self._attempts = group.serialization_attempts
        self._backoff_s = group.serialization_backoff_s
        self._copy = redshift.StandInCopy(props) if self.stand_in else redshift.copy_on_redshift

    def connect(self):
        if self.stand_in:
            conn = psycopg.connect(postgres_dsn(self.props, "Warehouse"))
            # Redshift runs every transaction serializable; so does its stand-in.
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
            return conn
        return redshift.connect_redshift(self.props)

    def run(self, statements: Sequence[Statement]) -> int:
        """Runs one load's statements as one transaction; returns the attempts it took."""
        return redshift.run_transaction(
            self.connect, statements, self._copy, self._attempts, self._backoff_s
        )

    def load_order_fct(self, staged, hour: datetime, rows: int) -> None:
        keys = staged.keys(staged.hour_prefix(hour))
        fill = None
        if rows:
            manifest_url = self.files.write_manifest(
                f"{self.files.prefix}/{ORDER_FCT}/{staged.hour_prefix(hour).rstrip('/')}",
                self.files.sizes(staged.bucket, keys),
            )
            fill = CopyFromS3(ORDER_FCT_STAGE, manifest_url, self.iam_role)
        self.run(order_fct_statements(fill, hour))

    def replace_hours(  # type: ignore[override]  # also the attempts it took
        self,
        hours: Sequence[datetime],
        rows: Sequence[MetricRow],
        source: str = BATCH,
    ) -> int:
        published_at = _now()
        fill = None
        if rows:
            load_id = f"{TABLE}/{source}-{published_at:%Y%m%dT%H%M%S%f}"
            manifest_url = self.files.write(load_id, metric_load_table(rows, source, published_at))
            fill = CopyFromS3(STAGE, manifest_url, self.iam_role)
        return self.run(replace_hours_statements(hours, fill))


def backend(props: Props) -> Warehouse:
    """The back end ``Warehouse.engine`` names (``postgresql`` when it names none)."""
    engine = WarehouseSettings.from_group(props["Warehouse"]).engine
    if engine == POSTGRESQL:
        return PostgresWarehouse(props)
    if engine == REDSHIFT:
        return RedshiftWarehouse(props)
    raise ValueError(f"Warehouse.engine is {engine!r}; expected {POSTGRESQL!r} or {REDSHIFT!r}")


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC (naive datetimes are taken as UTC)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def stream_statements(fill: Statement) -> list[Statement]:
    """The streaming job's per-checkpoint transaction: ``fill`` stages the checkpoint's
    rows, which then replace the rows with the same keys."""
    return [_CREATE_STAGE, fill, _LOG_PUBLICATION, _DELETE_STAGED_KEYS, _INSERT_STAGED, _DROP_STAGE]


def stream_sink(props: Props):
    """Sink for rows of ``METRIC_COLUMNS`` plus ``source``: per checkpoint, staged and
    merged by key (store, hour) in one transaction (``stream_statements``), ``published_at``
    = the load's time; a replay after a restart merges the same keys again, harmlessly.

    - ``postgresql``: ``StagedMergeSink`` (JVM), the stage filled by pgjdbc batch INSERTs.
    - ``redshift``: ``RedshiftStagedMergeSink`` (JVM): the checkpoint's rows as one gzipped
      CSV file and a manifest under ``<load prefix>/hourly_store_metrics/stream/``, then
      ``COPY … FROM '<manifest>' IAM_ROLE … FORMAT AS CSV GZIP … MANIFEST`` and the merge
      through the Redshift JDBC driver, retried on serialization conflicts; on the local
      stand-in the same statements through pgjdbc, the COPY read back from those files."""
    from pyflink.datastream.connectors import Sink
    from pyflink.java_gateway import get_gateway

    db = WarehouseSettings.from_group(props["Warehouse"])
    engine = db.engine
    jvm = get_gateway().jvm
    if engine == POSTGRESQL:
        placeholders = ", ".join("?" * len(LOAD_COLUMNS))
        statements = stream_statements(f"INSERT INTO {STAGE} ({_COLUMNS}) VALUES ({placeholders})")
        return Sink(
            jvm.pizzastream.flink.StagedMergeSink(
                db.jdbc_url(), db.user, db.password, statements[:1], statements[1], statements[2:]
            )
        )
    if engine != REDSHIFT:
        backend(props)  # refuses an unknown engine
    stand_in = db.stand_in == redshift.STAND_IN_POSTGRESQL
    statements = stream_statements(
        CopyFromS3(
            STAGE, "{manifest}", need(db.iam_role, "Warehouse", "iam_role"), redshift.CSV_GZIP
        )
    )
    url = db.jdbc_url() if stand_in else redshift_jdbc_url(props)
    return Sink(
        jvm.pizzastream.flink.RedshiftStagedMergeSink(
            url,
            db.user,
            db.password,
            statements[:1],
            statement_sql(statements[1]),
            statements[2:],
            stream_load_url(props),
            STAGE if stand_in else "",
            db.serialization_attempts,
            int(db.serialization_backoff_s * 1000),
        )
    )


def redshift_jdbc_url(props: Props) -> str:
    """The Redshift JDBC driver's URL of the ``Warehouse`` group: TLS always, with the
    group's ``sslmode`` (``verify-full`` as deployed) against the JVM's trust store, which
    holds the Amazon roots Redshift's ACM certificates chain to (no CA file: the JVM sink
    runs where the application's files may not be)."""
    db = WarehouseSettings.from_group(props["Warehouse"])
    url = f"jdbc:redshift://{db.host}:{db.port}/{db.dbname}"
    return url + (f"?ssl=true&sslmode={db.sslmode}" if db.sslmode else "")


def stream_load_url(props: Props) -> str:
    """Where the streaming job's load files go on Redshift (written by the JVM through
    Flink's S3 file system: the job needs no boto3 for them)."""
    bucket, prefix = redshift.load_location(props)
    return f"s3://{bucket}/{prefix}/{TABLE}/{STREAM}"


def replace_hours(
    props: Props, hours: Sequence[datetime], rows: Sequence[MetricRow], source: str = BATCH
) -> None:
    """``Warehouse.replace_hours`` on the configured back end."""
    backend(props).replace_hours(hours, rows, source)


def load_order_fct(props: Props, staged, hour: datetime, rows: int) -> None:
    """``Warehouse.load_order_fct`` on the configured back end."""
    backend(props).load_order_fct(staged, hour, rows)


def metric_rows(props: Props) -> list[MetricRow]:
    """Every row of ``hourly_store_metrics``, ordered by hour and store."""
    with backend(props).connect() as conn:
        cursor = conn.cursor()
        cursor.execute(METRIC_ROWS_SQL)
        return [MetricRow(*record) for record in cursor.fetchall()]


def publications(props: Props, start: datetime, end: datetime) -> list[Publication]:
    """For each hour starting in ``[start, end)`` (naive UTC) that was published: its first
    publication and how many corrections followed."""
    with backend(props).connect() as conn:
        cursor = conn.cursor()
        cursor.execute(
            PUBLICATIONS_SQL, (LATE, BATCH, PARTIAL, LATE, BATCH, LATE, BATCH, start, end)
        )
        return [Publication(*record) for record in cursor.fetchall()]
