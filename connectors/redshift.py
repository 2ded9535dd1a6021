"""Redshift edge: load files and manifests in S3, ``COPY … FROM 's3://…' IAM_ROLE … MANIFEST``,
one transaction of statements retried on serialization conflicts, and the client.

How Redshift is loaded (its documentation's advice, and the only way it loads well): data
files in S3, a manifest naming exactly those files, one ``COPY`` of the manifest into a
temporary staging table, then plain SQL that moves the staged rows into the table, all in
ONE transaction. ``connectors.warehouse`` builds the statements; this module runs them.

Statements go through ``redshift_connector`` (AWS's Python driver for Redshift). Redshift
runs every transaction SERIALIZABLE and aborts one of two conflicting writers (error 1023,
"Serializable isolation violation"); ``run_transaction`` rolls back and runs the whole
transaction again, up to ``Warehouse.serialization_attempts`` times. Every statement of a
load is idempotent as a unit (the COPY reads the same immutable files again), so a retry is
safe.

**The local stand-in** (``Warehouse.stand_in = postgresql``): the same statements run, in the
same order and the same SERIALIZABLE transaction, on the local PostgreSQL of the
``Warehouse`` group, except the ``COPY … FROM 's3://…'`` statement, which PostgreSQL lacks:
``StandInCopy`` reads the very manifest and Parquet files Redshift would read from S3 (moto
locally) and fills the staging table through PostgreSQL's COPY, refusing what Redshift
refuses (a manifest entry without ``meta.content_length`` or with a wrong one, a missing
mandatory file, a file whose column count differs from the table's).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from connectors import aws
from pizzastream.config import Props
from pizzastream.settings import LakeSettings, WarehouseSettings

log = logging.getLogger(__name__)

STAND_IN_POSTGRESQL = "postgresql"
MANIFEST_NAME = "manifest.json"
# The files' formats: Parquet (written from Python) and gzipped CSV (written by the JVM's
# ``RedshiftStagedMergeSink``; timestamps as ``YYYY-MM-DD HH:MI:SS.ffffff``).
PARQUET = "FORMAT AS PARQUET"
CSV_GZIP = "FORMAT AS CSV GZIP TIMEFORMAT 'auto'"


@dataclass(frozen=True)
class CopyFromS3:
    """``COPY <table> FROM '<manifest url>' IAM_ROLE '<role>' <format> MANIFEST``: fills
    ``table`` (every column, in order: COPY maps columns by position) from the files a
    manifest names."""

    table: str
    manifest_url: str
    iam_role: str
    data_format: str = PARQUET

    @property
    def sql(self) -> str:
        return (
            f"COPY {self.table} FROM {_literal(self.manifest_url)}"
            f" IAM_ROLE {_literal(self.iam_role)} {self.data_format} MANIFEST"
        )


Statement = str | CopyFromS3


def statement_sql(statement: Statement) -> str:
    """The text Redshift runs for ``statement``."""
    return statement.sql if isinstance(statement, CopyFromS3) else statement


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- files and manifests -------------------------------------------------------------------


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"not an s3://bucket/key URL: {url}")
    return parts.netloc, parts.path.lstrip("/")


def manifest(entries: Iterable[tuple[str, int]]) -> dict:
    """A COPY manifest of ``(url, size in bytes)`` files: every file mandatory (a missing
    one fails the load, never loads less), with ``meta.content_length``, which Redshift
    requires for Parquet."""
    return {
        "entries": [
            {"url": url, "mandatory": True, "meta": {"content_length": size}}
            for url, size in entries
        ]
    }


def load_location(props: Props) -> tuple[str, str]:
    """``(bucket, prefix)`` of the load files: ``Warehouse.load_bucket`` (default the lake
    bucket) and ``Warehouse.load_prefix``."""
    group = WarehouseSettings.from_group(props["Warehouse"])
    return (
        group.load_bucket or LakeSettings.from_group(props["Lake"]).bucket,
        group.load_prefix.strip("/"),
    )


class LoadFiles:
    """Writes a load's Parquet files and its manifest under ``<prefix>/<load id>/``."""

    def __init__(self, props: Props):
        self._s3 = aws.client(props, "s3")
        self.bucket, self.prefix = load_location(props)

    def write(self, load_id: str, table: pa.Table) -> str:
        """``table`` as ``part-00000.parquet`` plus a manifest naming it; returns the
        manifest's URL. The same load id and rows write the same bytes."""
        base = f"{self.prefix}/{load_id.strip('/')}"
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="snappy")
        body = buffer.getvalue()
        key = f"{base}/part-00000.parquet"
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return self.write_manifest(base, [(s3_url(self.bucket, key), len(body))])

    def write_manifest(self, base: str, entries: Sequence[tuple[str, int]]) -> str:
        key = f"{base.strip('/')}/{MANIFEST_NAME}"
        self._s3.put_object(
            Bucket=self.bucket, Key=key, Body=json.dumps(manifest(entries), indent=1).encode()
        )
        return s3_url(self.bucket, key)

    def sizes(self, bucket: str, keys: Sequence[str]) -> list[tuple[str, int]]:
        """``(url, size)`` of existing objects, for a manifest over files already in S3."""
        return [
            (s3_url(bucket, key), self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
            for key in keys
        ]


# -- running a transaction -----------------------------------------------------------------


def is_serialization_conflict(error: BaseException) -> bool:
    """Redshift's error 1023 (``Serializable isolation violation``), or PostgreSQL's
    SQLSTATE 40001 / 40P01 when the stand-in plays Redshift."""
    sqlstate = getattr(error, "sqlstate", None)
    return (
        sqlstate in ("40001", "40P01") or "serializable isolation violation" in str(error).lower()
    )


def run_transaction(
    connect: Callable[[], Any],
    statements: Sequence[Statement],
    copy: Callable[[object, CopyFromS3], None],
    attempts: int,
    backoff_s: float,
) -> int:
    """Runs ``statements`` in one transaction on a fresh connection from ``connect``
    (DB-API, autocommit off); ``copy`` runs each ``CopyFromS3``. A serialization conflict
    rolls back and starts again, up to ``attempts`` times in all, with growing waits;
    other errors propagate at once. Returns the attempts it took."""
    for attempt in range(1, attempts + 1):
        conn = connect()
        try:
            cursor = conn.cursor()
            for statement in statements:
                if isinstance(statement, CopyFromS3):
                    copy(cursor, statement)
                else:
                    cursor.execute(statement)
            conn.commit()
            return attempt
        except Exception as error:
            _rollback(conn)
            if attempt == attempts or not is_serialization_conflict(error):
                raise
            log.warning(
                "warehouse: serialization conflict (attempt %d of %d), retrying: %s",
                attempt,
                attempts,
                str(error).splitlines()[0],
            )
            time.sleep(backoff_s * attempt)
        finally:
            conn.close()
    raise AssertionError("unreachable")


def _rollback(conn) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection is being discarded either way
        log.debug("rollback failed", exc_info=True)


def copy_on_redshift(cursor, statement: CopyFromS3) -> None:
    cursor.execute(statement.sql)


class StandInCopy:
    """``COPY … FROM 's3://…' MANIFEST`` as Redshift performs it, for the PostgreSQL
    stand-in: reads the manifest and its Parquet files from S3 and copies every row, by
    position, into the table through PostgreSQL's own COPY."""

    def __init__(self, props: Props):
        self._s3 = aws.client(props, "s3")

    def __call__(self, cursor, statement: CopyFromS3) -> None:
        bucket, key = split_s3_url(statement.manifest_url)
        entries = json.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        width = _column_count(cursor, statement.table)
        with cursor.copy(f"COPY {statement.table} FROM STDIN") as copy:
            for entry in entries["entries"]:
                for row in self._rows(entry, width):
                    copy.write_row(row)

    def _rows(self, entry: dict, width: int):
        url = entry["url"]
        length = entry.get("meta", {}).get("content_length")
        if length is None:
            raise ValueError(
                f"manifest entry {url} has no meta.content_length (Parquet COPY requires it)"
            )
        bucket, key = split_s3_url(url)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            if entry.get("mandatory"):
                raise ValueError(f"mandatory file {url} of the manifest is missing") from None
            return
        if len(body) != length:
            raise ValueError(f"{url} is {len(body)} bytes, the manifest says {length}")
        table = pq.read_table(io.BytesIO(body))
        if table.num_columns != width:
            raise ValueError(f"{url} has {table.num_columns} columns, the table {width}")
        yield from zip(*(column.to_pylist() for column in table.columns))


def _column_count(cursor, table: str) -> int:
    cursor.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    return cursor.fetchone()[0]


def connect_redshift(props: Props):
    """A ``redshift_connector`` connection (TLS on, autocommit off) to the cluster or
    workgroup of the ``Warehouse`` group."""
    import redshift_connector

    return redshift_connector.connect(
        **WarehouseSettings.from_group(props["Warehouse"]).redshift_connection()
    )
