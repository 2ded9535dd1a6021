"""One runner at a time per ETL step, across processes and machines.

A second POS ingestion or hourly run started while one is still going (a slow run, an
overlapping schedule, an operator) would race it for the same batches and hours. A session
advisory lock in the operational database makes it step aside instead; the lock goes away
with the session, so a crashed runner never leaves it held.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

LOCK_CLASS = 7247                 # first key of pg_advisory_lock(int, int); delivery uses 7246
POS_INGESTION, HOURLY = 1, 2      # second key: the step (reprocessing counts as hourly)


class Busy(RuntimeError):
    """Another runner holds the step's lock."""


@contextmanager
def exclusive(conn: psycopg.Connection, step: int) -> Iterator[None]:
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, step)).fetchone()[0]:
        raise Busy(f"another runner holds ETL lock ({LOCK_CLASS}, {step})")
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, step))
