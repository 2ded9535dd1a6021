"""Databases of the local stack: roles, schemas, reference data, and the test reset.

The operational database (``Aurora`` group) gets ``stack/sql/operational.sql`` and the
reference data from ``pizzastream.reference_data``; the warehouse database (``Warehouse``
group) gets ``stack/sql/warehouse.sql``. Each database runs its files in the order listed,
skipping missing ones; the ETL's files come after the ones whose tables they extend.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from connectors import dbsetup
from pizzastream import reference_data
from pizzastream.config import Props, postgres_dsn

# The schema files and reference tables are shared with the deployed platform's set-up
# (connectors.dbsetup, run by the stack's custom resource on AWS).
SQL_DIR = dbsetup.SQL_DIR
SCHEMAS = dbsetup.SCHEMAS

# Loaded in this order (foreign keys); reset_data keeps them, empties everything else.
REFERENCE_TABLES = dbsetup.REFERENCE_TABLES
INVENTORY = "inventory"
# The same opening stock again, read by inventory_windowing and never written by it.
OPENING_INVENTORY = "opening_inventory"
# A reset must not hang behind a job's open transaction; fail loudly instead.
LOCK_TIMEOUT = "10s"


def ensure_databases(admin: psycopg.Connection, props: Props) -> None:
    """Create (or re-password) each configured role and create its database if missing."""
    for group in SCHEMAS:
        db = props[group]
        _ensure_role(admin, db["user"], db["password"])
        _ensure_database(admin, db["dbname"], db["user"])
    # The hourly ETL (etl/hourly.py, change_cutoff) must see every session's transaction.
    admin.execute(
        sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(props["Aurora"]["user"]))
    )


def _ensure_role(admin: psycopg.Connection, user: str, password: str) -> None:
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone()
    admin.execute(
        sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
            sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(user), sql.Literal(password)
        )
    )


def _ensure_database(admin: psycopg.Connection, dbname: str, owner: str) -> None:
    if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
        return
    admin.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner))
    )


def apply_schemas(props: Props) -> None:
    """Run each schema file as the application role, so its tables belong to that role."""
    for group in SCHEMAS:
        dbsetup.apply_schemas(props, group)


def seed(props: Props, force: bool = False) -> bool:
    """Load the reference data and opening inventory; True when it (re)loaded.

    Skipped when all stores are already there, unless ``force``. One transaction, so a
    failed load leaves the previous data rather than half of the new.
    """
    with psycopg.connect(postgres_dsn(props, "Aurora")) as conn:
        count = conn.execute("SELECT count(*) FROM store").fetchone()[0]  # type: ignore[index]  # an aggregate: always one row
        if count == reference_data.STORE_COUNT and not force:
            if not conn.execute(f"SELECT 1 FROM {OPENING_INVENTORY} LIMIT 1").fetchone():
                _copy(conn, OPENING_INVENTORY, reference_data.initial_inventory())
            return False
        _truncate(conn, [*REFERENCE_TABLES, INVENTORY, OPENING_INVENTORY])
        for table, rows in REFERENCE_TABLES.items():
            _copy(conn, table, rows())
        _copy_opening_inventory(conn)
    return True


def reset(props: Props) -> None:
    """Empty every non-reference table of both databases and restore the opening inventory.

    Tables are discovered, not listed, so tables added by other parts of the project are
    reset too without touching this module.
    """
    with psycopg.connect(postgres_dsn(props, "Aurora")) as conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        _truncate(conn, [t for t in _tables(conn) if t not in REFERENCE_TABLES])
        _copy_opening_inventory(conn)
    with psycopg.connect(postgres_dsn(props, "Warehouse")) as conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        _truncate(conn, _tables(conn))


def _copy_opening_inventory(conn: psycopg.Connection) -> None:
    """The opening stock into ``inventory`` (current, the job's output) and
    ``opening_inventory`` (where the job starts a store)."""
    levels = reference_data.initial_inventory()
    _copy(conn, INVENTORY, levels)
    _copy(conn, OPENING_INVENTORY, levels)


def _tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return [name for (name,) in rows]


def _truncate(conn: psycopg.Connection, tables: Sequence[str]) -> None:
    """One TRUNCATE for all, so foreign keys among them do not get in the way."""
    if tables:
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(map(sql.Identifier, tables))
            )
        )


def _copy(conn: psycopg.Connection, table: str, rows: Sequence) -> None:
    """COPY dataclass or named-tuple rows into ``table``; field names are column names."""
    dbsetup.copy_rows(conn, table, rows)
