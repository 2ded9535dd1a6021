"""Hourly ETL: ``python -m etl.hourly [--hour ISO]``, Aurora -> S3 staging -> warehouse and
curated lake, every hour (seed design, section 6).

Which hours a run writes (``hours_to_export``), among the *closed* ones, those the streaming
hourly_metrics job has published already (``etl.metrics.stream_closed``:
``HourlySettings.bound`` after the hour's end; before that a correction would race the
stream):

- the hour asked for, or by default every closed hour since the last scheduled one (the
  last closed hour, plus any a stopped ETL missed);
- every closed hour in which an ``order_fct`` row changed since the previous run: late POS
  batches with hours-old sales, delivery ids set after the fact. ``changed_at`` (kept by a
  trigger, ``stack/sql/etl.sql``) says when a row last changed; the run covers changes in
  ``[watermark, cutoff)`` and then moves the watermark to ``cutoff``. Changes to hours not
  closed yet need no tracking: such an hour is exported whole once it is closed.
- every closed hour from which a row was deleted (or moved to another hour) since the
  previous run: a trigger keeps them in ``order_fct_deleted``, stamped like ``changed_at``.
  Deletes are propagated, not refused: the hour is exported whole again and replaces the
  hour in the warehouse (rows gone from Aurora go from there too) and its metrics.

``cutoff`` is "now", held back to the start of the oldest transaction still open in the
database: a row stamped before the cutoff is then committed, hence seen by this run, and a
row stamped after it falls in the next run's window. Nothing slips between two runs. It
takes seeing every session's transaction (``pg_read_all_stats``): without it PostgreSQL
hides other roles' ``xact_start`` and the cutoff would silently become "now", so a run
whose role lacks it stops with ``MissingPrivilege`` before doing anything.

Each hour is written whole (``etl.staging``): exported from Aurora to staging, loaded from
staging into the warehouse's ``order_fct`` (stage table, then the hour and the staged keys
deleted and the stage inserted, in one transaction, on the configured back end,
``connectors.warehouse``), and its hourly store metrics recomputed from staging by the
hourly_metrics job in batch mode (``etl.metrics``), which replaces the hour's lake object
and warehouse rows. Running an hour twice writes the same bytes and rows. ``etl_run`` logs every hour.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg

from connectors import aurora, warehouse
from etl import freshness, locks, metrics
from etl.runlog import RunLog
from etl.staging import COLUMNS, Staging, floor_hour
from pizzastream.config import Props, load_properties
from pizzastream.metrics import HOUR
from pizzastream.settings import EtlSettings, validate

log = logging.getLogger(__name__)

WATERMARK = "order_fct_changes"
SCHEDULED, REQUESTED, LATE_ROWS = "scheduled", "requested", "late_rows"
CUTOFF_LAG_WARNING = timedelta(minutes=15)
_CUTOFF = """
SELECT now(), least(now(), (SELECT min(xact_start) FROM pg_stat_activity
                            WHERE datname = current_database() AND pid <> pg_backend_pid()))"""
_SEES_EVERY_TRANSACTION = """
SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'), current_user
FROM pg_roles WHERE rolname = current_user"""
_CHANGED_HOURS = """
SELECT date_trunc('hour', transaction_ts, 'UTC') FROM order_fct
WHERE changed_at >= %(since)s AND changed_at < %(cutoff)s AND transaction_ts < %(first_open)s
UNION
SELECT date_trunc('hour', transaction_ts, 'UTC') FROM order_fct_deleted
WHERE deleted_at >= %(since)s AND deleted_at < %(cutoff)s AND transaction_ts < %(first_open)s"""
_EXPORT = f"""
SELECT {", ".join(COLUMNS)} FROM order_fct
WHERE transaction_ts >= %s AND transaction_ts < %s
ORDER BY order_id, product_id"""


def run(props: Props, hour: datetime | None = None) -> dict[datetime, tuple[str, int]]:
    """One ETL run; returns ``{hour: (cause, rows exported)}``."""
    staged = Staging(props)
    with aurora.connect(props) as conn, locks.exclusive(conn, locks.HOURLY):
        conn.execute("SET TIME ZONE 'UTC'")
        now, cutoff = change_cutoff(conn)
        hours = hours_to_export(conn, hour, first_open_hour(props, now), _watermark(conn), cutoff)
        runlog = RunLog(conn, "export")
        runlog.start(hours)
        try:
            exported = {h: _export_and_load(props, conn, staged, h, runlog) for h in sorted(hours)}
            metrics.refresh(props, hours, runlog.finish)  # type: ignore[arg-type]  # refresh sorts whatever hours it gets
            _advance(conn, cutoff)
        except BaseException as error:
            runlog.fail(error)
            raise
    return {h: (hours[h], exported[h]) for h in sorted(hours)}


def first_open_hour(props: Props, now: datetime) -> datetime:
    """The first hour the streaming job may still publish itself."""
    hour = floor_hour(now)
    while not metrics.stream_closed(props, hour - HOUR, now):
        hour -= HOUR
    return hour


class MissingPrivilege(RuntimeError):
    """The ETL's database role lacks a privilege the run needs; the message says which."""


def change_cutoff(conn: psycopg.Connection) -> tuple[datetime, datetime]:
    """``(now, cutoff)``: rows stamped before ``cutoff`` are all committed (see the module
    docstring). Raises ``MissingPrivilege`` unless the role sees every session's
    ``xact_start`` (``pg_read_all_stats``, on Aurora too)."""
    sees_all, role = conn.execute(_SEES_EVERY_TRANSACTION).fetchone()  # type: ignore[misc]  # always one row
    if not sees_all:
        raise MissingPrivilege(
            f"the ETL's database role {role!r} cannot see other sessions' transactions, so it "
            f"cannot hold its change window back to the oldest open one (rows being written "
            f"now could be missed for good); grant it: GRANT pg_read_all_stats TO {role}"
        )
    now, cutoff = conn.execute(_CUTOFF).fetchone()  # type: ignore[misc]  # always one row
    if now - cutoff > CUTOFF_LAG_WARNING:
        log.warning("a transaction open since %s holds back the change window", cutoff)
    return now, cutoff


def hours_to_export(
    conn: psycopg.Connection,
    hour: datetime | None,
    first_open: datetime,
    since: datetime | None,
    cutoff: datetime,
) -> dict[datetime, str]:
    """``{hour: cause}`` of every hour this run writes (see the module docstring); only
    hours before ``first_open`` are closed. A requested hour must be closed too."""
    if hour is not None and floor_hour(hour) >= first_open:
        raise ValueError(
            f"{hour.isoformat()} is not closed yet: the stream publishes it until "
            f"{first_open.isoformat()} is the first open hour"
        )
    changed = conn.execute(
        _CHANGED_HOURS,
        {
            "since": since or datetime.min.replace(tzinfo=UTC),
            "cutoff": cutoff,
            "first_open": first_open,
        },
    ).fetchall()
    hours = {h: LATE_ROWS for (h,) in changed}
    if hour is not None:
        hours[floor_hour(hour)] = REQUESTED
    else:
        hours.update({h: SCHEDULED for h in _scheduled_hours(conn, first_open)})
    return hours


def _scheduled_hours(conn: psycopg.Connection, first_open: datetime) -> Iterator[datetime]:
    """Closed hours after the last successful scheduled one; the last closed hour on the
    first run (older history comes in through the change window, which starts empty)."""
    (last,) = conn.execute(
        "SELECT max(hour) FROM etl_run WHERE kind = 'export'"  # type: ignore[misc]  # an aggregate: always one row
        " AND cause = %s AND status = 'succeeded'",
        (SCHEDULED,),
    ).fetchone()
    hour = first_open - HOUR if last is None else last + HOUR
    while hour < first_open:
        yield hour
        hour += HOUR


def _export_and_load(
    props: Props, conn: psycopg.Connection, staged: Staging, hour: datetime, runlog: RunLog
) -> int:
    etl = EtlSettings.from_group(props["Etl"])
    rows, keys = export_hour(conn, staged, hour, etl.fetch_rows, etl.part_rows)
    runlog.exported(hour, rows, len(keys))
    load_warehouse(props, staged, hour, rows)
    log.info("%s: %d rows in %d staging files and the warehouse", hour, rows, len(keys))
    return rows


def export_hour(
    conn: psycopg.Connection, staged: Staging, hour: datetime, fetch_rows: int, part_rows: int
) -> tuple[int, list[str]]:
    """Writes the hour's ``order_fct`` rows to its staging partition, streaming them from
    a server-side cursor ``fetch_rows`` at a time; returns ``(rows, keys)``."""
    with conn.transaction(), conn.cursor(name="export_hour") as cursor:
        cursor.execute(_EXPORT, (hour, hour + HOUR))
        return staged.write_hour(hour, iter(lambda: cursor.fetchmany(fetch_rows), []), part_rows)


def load_warehouse(props: Props, staged: Staging, hour: datetime, rows: int) -> None:
    """Merges the hour's staging partition (``rows`` rows) into the warehouse ``order_fct``
    by key, in one transaction, on the configured back end (``connectors.warehouse``: COPY
    FROM STDIN on PostgreSQL; on Redshift a manifest of the very staging parts and
    ``COPY … FROM 's3://…' MANIFEST``)."""
    warehouse.load_order_fct(props, staged, hour, rows)


def _watermark(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute(
        "SELECT changes_to FROM etl_watermark WHERE name = %s", (WATERMARK,)
    ).fetchone()
    return row[0] if row else None


def _advance(conn: psycopg.Connection, cutoff: datetime) -> None:
    """Moves the watermark to ``cutoff`` and forgets the deletes the run has covered."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO etl_watermark (name, changes_to) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET changes_to = EXCLUDED.changes_to,"
            " updated_at = now()",
            (WATERMARK, cutoff),
        )
        conn.execute("DELETE FROM order_fct_deleted WHERE deleted_at < %s", (cutoff,))


def parse_hour(text: str) -> datetime:
    """An ISO-8601 time (UTC when it names no offset), floored to its hour."""
    moment = datetime.fromisoformat(text)
    return floor_hour(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etl.hourly", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--hour",
        type=parse_hour,
        help="export this hour (ISO-8601, e.g. 2026-11-24T10:00Z) instead of "
        "the closed hours since the last scheduled run",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    props = load_properties()
    validate(props)
    try:
        report = run(props, args.hour)
    except locks.Busy as busy:
        parser.exit(1, f"{parser.prog}: {busy}; this run does nothing\n")
    except MissingPrivilege as missing:
        parser.exit(2, f"{parser.prog}: {missing}\n")
    for hour, (cause, rows) in report.items():
        print(f"{hour:%Y-%m-%dT%H:00Z} {cause} {rows} rows", flush=True)
    # The late-hour alarm's metrics, now that this run's corrections are in.
    measured = freshness.publish(props).metrics()
    print(
        "freshness: " + ", ".join(f"{name} {value}" for name, value in measured.items()), flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
