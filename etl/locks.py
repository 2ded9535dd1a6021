"""One runner at a time per piece of ETL work, across processes and machines.

A second hourly run started while one is still going (a slow run, an overlapping schedule,
an operator reprocessing) would race it for the same hours; two POS ingestion runners
would race for the same batches. A session advisory lock in the operational database
makes the second one step aside instead; the lock goes away with the session, so a crashed
runner never leaves it held.

POS ingestion locks per store system, so several runners can share the systems' batches
(one runner cannot keep up with the seed's peak; see ``etl.pos_ingestion``); the hourly ETL
and reprocessing share one lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

LOCK_CLASS = 7247  # first key of pg_advisory_lock(int, int); delivery uses 7246
HOURLY = 1  # second key: the hourly ETL and reprocessing
_POS_STORE_SYSTEM = 1000  # second key: 1000 + the store system


class Busy(RuntimeError):
    """Another runner holds the lock."""


def pos_store_system(system: int) -> int:
    """The lock of POS ingestion for one store system's batches."""
    return _POS_STORE_SYSTEM + system


@contextmanager
def exclusive(conn: psycopg.Connection, key: int) -> Iterator[None]:
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, key)).fetchone()[0]:  # type: ignore[index]  # a SELECT without FROM: always one row
        raise Busy(f"another runner holds ETL lock ({LOCK_CLASS}, {key})")
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, key))
