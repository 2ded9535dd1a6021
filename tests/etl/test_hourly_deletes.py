"""The hourly ETL's two safety rules on the real stack: it refuses to run with a database
role that cannot see every open transaction (its change window would silently end at
"now"), and rows deleted from Aurora's ``order_fct`` leave the warehouse and their hour's
metrics (propagated, by design: docs/hourly_metrics.md)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from connectors import lake, warehouse
from etl import hourly
from pizzastream.config import postgres_dsn
from stack.services import StackPaths, stack_services
from tests.etl.test_hourly import closed_hour, expected_metrics, sales_in
from tests.pos_support import insert_sales, query

pytestmark = pytest.mark.integration

ROLE = "etl_without_stats"


def _superuser(props, dbname: str) -> psycopg.Connection:
    postgres = stack_services(props, StackPaths()).postgres
    return psycopg.connect(
        host=str(postgres.socket_dir),
        port=postgres.port,
        user="postgres",
        dbname=dbname,
        autocommit=True,
    )


@pytest.fixture
def role_without_stats(local_stack):
    """A login role that can connect to Aurora's database but lacks pg_read_all_stats."""
    dbname = local_stack["Aurora"]["dbname"]
    with _superuser(local_stack, dbname) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'etl'").format(sql.Identifier(ROLE)))
    yield {**local_stack, "Aurora": {**local_stack["Aurora"], "user": ROLE, "password": "etl"}}
    with _superuser(local_stack, dbname) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [ROLE]
        )
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))


def test_the_etl_stops_loudly_when_its_role_cannot_see_every_transaction(
    clean_stack, role_without_stats
):
    with pytest.raises(hourly.MissingPrivilege) as missing:
        hourly.run(role_without_stats)
    assert f"GRANT pg_read_all_stats TO {ROLE}" in str(missing.value)
    assert query(clean_stack, "SELECT count(*) FROM etl_run") == [(0,)]  # nothing done


def test_the_cutoff_waits_for_another_roles_open_transaction(clean_stack):
    """The stack's role holds pg_read_all_stats, so a superuser's open transaction (another
    role: invisible without it) holds the cutoff back to its start."""
    with _superuser(clean_stack, clean_stack["Aurora"]["dbname"]) as other:
        other.autocommit = False
        (started,) = other.execute("SELECT now()").fetchone()  # transaction open
        with psycopg.connect(postgres_dsn(clean_stack, "Aurora"), autocommit=True) as etl:
            now, cutoff = hourly.change_cutoff(etl)
        other.rollback()
    assert cutoff == started < now


@pytest.mark.slow
def test_deleted_rows_leave_the_warehouse_and_their_hours_metrics(clean_stack):
    kept_hour, emptied_hour = closed_hour(6), closed_hour(5)
    kept, deleted = sales_in(kept_hour, 0, 8), sales_in(kept_hour, 8, 2)
    gone = sales_in(emptied_hour, 20, 3)
    insert_sales(clean_stack, kept + deleted + gone)
    hourly.run(clean_stack, kept_hour)
    hourly.run(clean_stack, emptied_hour)
    assert warehouse.metric_rows(clean_stack) == expected_metrics(kept + deleted + gone)

    query(
        clean_stack,
        "DELETE FROM order_fct WHERE order_id = ANY(%s)",
        [o.order_id for o in deleted + gone],
    )
    report = hourly.run(clean_stack)  # the next scheduled run

    assert report[kept_hour] == ("late_rows", 2 * len(kept))
    assert report[emptied_hour] == ("late_rows", 0)
    assert (
        warehouse.metric_rows(clean_stack)
        == lake.read_metrics(clean_stack)
        == expected_metrics(kept)
    )
    assert sorted(
        query(clean_stack, "SELECT DISTINCT order_id FROM order_fct", group="Warehouse")
    ) == sorted((o.order_id,) for o in kept)
    assert query(clean_stack, "SELECT count(*) FROM order_fct_deleted") == [(0,)]  # pruned
    assert kept_hour not in hourly.run(clean_stack)  # handled once
