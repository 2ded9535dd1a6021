"""``etl_run``: what each hourly export or reprocessing run did to each hour, and when, so
an operator can answer "which hours were (re)written, with how many rows, by which run"."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg


class RunLog:
    """The rows of one run; ``kind`` is ``export`` or ``reprocess``."""

    def __init__(self, conn: psycopg.Connection, kind: str):
        self._conn = conn
        self._kind = kind
        self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"

    def start(self, hours: dict[datetime, str]) -> None:
        """Logs the hours this run is about to write, each with why (its cause)."""
        with self._conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO etl_run (run_id, hour, kind, cause, status)"
                " VALUES (%s, %s, %s, %s, 'running')",
                [(self.run_id, hour, self._kind, cause) for hour, cause in sorted(hours.items())],
            )

    def exported(self, hour: datetime, rows: int, files: int) -> None:
        """Records what an hour's export wrote to staging."""
        self._conn.execute(
            "UPDATE etl_run SET rows_exported = %s, files = %s WHERE run_id = %s AND hour = %s",
            (rows, files, self.run_id, hour),
        )

    def finish(self, metric_rows: dict[datetime, int]) -> None:
        """These hours are done: their metrics are recomputed and published."""
        with self._conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE etl_run SET status = 'succeeded', finished_at = now(), metric_rows = %s"
                " WHERE run_id = %s AND hour = %s",
                [(count, self.run_id, hour) for hour, count in metric_rows.items()],
            )

    def fail(self, error: BaseException) -> None:
        """Marks every hour of the run that has not succeeded as failed."""
        self._conn.execute(
            "UPDATE etl_run SET status = 'failed', finished_at = now(), error = %s"
            " WHERE run_id = %s AND status = 'running'",
            (f"{type(error).__name__}: {error}"[:2000], self.run_id),
        )
