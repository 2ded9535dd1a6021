"""Database set-up: schemas, one user per service with its grants, reference data.

One entry point, ``set_up(props, users)``, for both places it runs:

* on AWS, the deploy's custom resource (``handler``, a Lambda function of the stack's
  package in the data subnets, run on create and whenever the schema files, the reference
  data or the grants below change: deploy/platform.py, docs/deploy.md);
* locally, ``stack.database`` keeps its own roles and seed, and shares ``SCHEMAS`` and
  ``REFERENCE_TABLES`` from here; ``tests/connectors/test_dbsetup.py`` runs ``set_up`` against the
  local PostgreSQL.

It connects as the administrator of each database (the ``Aurora`` and ``Warehouse``
groups: on AWS the master user of Aurora and the admin user of Redshift, their passwords
from their secrets) and, every time, all idempotent:

1. runs the schema files: Aurora gets ``stack/sql/operational.sql``, ``delivery.sql``,
   ``etl.sql`` (what the local stack runs); the warehouse ``stack/sql/warehouse.sql`` and
   ``etl_warehouse.sql`` on PostgreSQL, ``deploy/redshift/*.sql`` on Redshift (the same
   tables with Redshift's physical design). Every statement is ``CREATE … IF NOT EXISTS``,
   ``CREATE OR REPLACE`` or guarded;
2. creates each service's user if missing, sets its password (from its own secret; sent
   as PostgreSQL's SCRAM verifier or Redshift's MD5 form, never in clear) and
   gives it exactly the grants of ``AURORA_GRANTS``/``WAREHOUSE_GRANTS`` (revoke all, grant
   the list, in one transaction on PostgreSQL, so a service never sees a gap);
3. upserts the reference data of ``pizzastream.reference_data`` (suppliers, ingredients
   with their replenishment policy, products, recipes, stores, delivery partners, the
   opening inventory): a row is written only when it is new or differs, so a second run
   changes nothing; ``inventory`` (the job's output) only gets the opening stock of rows
   it does not have.

The SQL files travel in the Lambda package at the same paths relative to this module
(``deploy/packages.py``), so the same ``SQL_DIR``/``REDSHIFT_DIR`` work in both places.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields, is_dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from pizzastream import reference_data
from pizzastream.config import Props, postgres_dsn
from pizzastream.settings import WarehouseSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "stack" / "sql"
REDSHIFT_DIR = ROOT / "deploy" / "redshift"
AURORA, WAREHOUSE = "Aurora", "Warehouse"
# Schema files per database, in the order they run (later ones extend earlier ones' tables).
SCHEMAS = {
    AURORA: (SQL_DIR / "operational.sql", SQL_DIR / "delivery.sql", SQL_DIR / "etl.sql"),
    WAREHOUSE: (SQL_DIR / "warehouse.sql", SQL_DIR / "etl_warehouse.sql"),
}
REDSHIFT_SCHEMAS = (REDSHIFT_DIR / "hourly_store_metrics.sql",)

# Reference tables, loaded in this order (foreign keys), with their primary keys.
REFERENCE_TABLES: dict[str, Callable[[], Sequence]] = {
    "supplier": reference_data.suppliers,
    "ingredient": reference_data.ingredients,
    "product": reference_data.products,
    "recipe": reference_data.recipes,
    "store": reference_data.stores,
    "delivery_partner": reference_data.delivery_partners,
}
KEYS = {
    "supplier": ("supplier_id",),
    "ingredient": ("ingredient_id",),
    "product": ("product_id",),
    "recipe": ("product_id", "ingredient_id"),
    "store": ("store_id",),
    "delivery_partner": ("partner_id",),
    "opening_inventory": ("store_id", "ingredient_id"),
    "inventory": ("store_id", "ingredient_id"),
}
INVENTORY, OPENING_INVENTORY = "inventory", "opening_inventory"

# --- what each service's code does -------------------------------------------------------
# Table -> privileges. Read from the code: a service may do what its statements do.
R, RW, RWD = "SELECT", "SELECT, INSERT, UPDATE", "SELECT, INSERT, UPDATE, DELETE"
# Writing order_fct fires its triggers (stack/sql/delivery.sql, etl.sql), which run as the
# writer: the delivery id is looked up in delivery_assignment, and a row whose hour moved
# is recorded in order_fct_deleted.
_ORDER_FCT_WRITER = {"order_fct": RW, "delivery_assignment": R, "order_fct_deleted": RW}
AURORA_GRANTS: dict[str, dict[str, str]] = {
    # catalog (connectors.aurora.catalog_rows), dead letters (COPY upsert)
    "order_enrichment": {"product": R, "recipe": R, "dead_letter": RW},
    # catalog and replenishment policies, opening stock, a store's past sales; the sinks:
    # order_fct, supplier_order, replenishment_alert, inventory, dead_letter (COPY upserts)
    "inventory_windowing": {
        "product": R,
        "recipe": R,
        "ingredient": R,
        "supplier": R,
        "opening_inventory": R,
        **_ORDER_FCT_WRITER,
        "supplier_order": RW,
        "replenishment_alert": RW,
        "inventory": RW,
        "dead_letter": RW,
    },
    # etl.pos_ingestion: batches into order_fct, its ledger and outbox, refused lines
    "pos": {**_ORDER_FCT_WRITER, "pos_batch": RW, "pos_batch_order": RWD, "dead_letter": RW},
    # etl.health: counts recent dead letters and the ETL's newest exported hour
    "health": {"dead_letter": R, "etl_run": R},
    # etl.hourly: changed and deleted rows of order_fct, its run log and watermark;
    # etl.freshness: the hours with sales
    "etl": {
        "order_fct": R,
        "order_fct_deleted": "SELECT, DELETE",
        "etl_run": RW,
        "etl_watermark": RW,
    },
    # delivery.store: partners and stores, its decisions and pending rounds, the
    # delivery id onto the order's rows, dead letters
    "delivery": {
        "store": R,
        "delivery_partner": R,
        "delivery_assignment": RW,
        "delivery_attempt": RWD,
        "order_fct": "SELECT, UPDATE",
        "dead_letter": RW,
    },
    # api: the catalog for intake, ingredient names for the stock view
    "api": {"product": R, "recipe": R, "ingredient": R},
}
# Roles a service's user is made a member of: the hourly ETL must see every session's open
# transaction (etl/hourly.py, change_cutoff).
AURORA_ROLES = {"etl": ("pg_read_all_stats",)}
WAREHOUSE_GRANTS: dict[str, dict[str, str]] = {
    # connectors.warehouse: staged merge of the hour's rows, the publication log
    "hourly_metrics": {
        "hourly_store_metrics": "SELECT, INSERT, DELETE",
        "metrics_publication": "SELECT, INSERT",
    },
    # the hourly ETL and reprocessing: order_fct and the recomputed metrics; freshness
    "etl": {
        "order_fct": "SELECT, INSERT, DELETE",
        "hourly_store_metrics": "SELECT, INSERT, DELETE",
        "metrics_publication": "SELECT, INSERT",
    },
    # api.insights: reads only
    "api": {"hourly_store_metrics": R, "metrics_publication": R},
}
GRANTS = {AURORA: AURORA_GRANTS, WAREHOUSE: WAREHOUSE_GRANTS}


@dataclass(frozen=True)
class ServiceUser:
    """A service's login in one database (``AURORA`` or ``WAREHOUSE``)."""

    service: str
    database: str
    user: str
    password: str


def fingerprint() -> str:
    """What a set-up run depends on: the schema files, the reference data and the grants
    (this module). The custom resource carries it, so a change runs the set-up again."""
    digest = hashlib.sha256()
    for path in (
        *SCHEMAS[AURORA],
        *SCHEMAS[WAREHOUSE],
        *REDSHIFT_SCHEMAS,
        ROOT / "pizzastream" / "reference_data.py",
        Path(__file__).resolve(),
    ):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def is_redshift(props: Props) -> bool:
    group = WarehouseSettings.from_group(props["Warehouse"])
    return group.engine == "redshift" and not group.stand_in


# --- PostgreSQL (Aurora; the local warehouse) ---------------------------------------------


def apply_schemas(props: Props, group: str) -> None:
    """The group's schema files, as the group's user (so the tables belong to it), in one
    transaction."""
    with psycopg.connect(postgres_dsn(props, group)) as conn:
        for path in SCHEMAS[group]:
            conn.execute(path.read_text())


def scram_verifier(user: str, password: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of ``password``, computed here so the password
    itself is never in a statement (nor in a log of a failed one). The salt is derived
    from the user and password: the same password gives the same verifier, so a second
    run changes nothing. (The generated passwords are ASCII letters and digits, which
    SASLprep leaves as they are.)"""
    salt = hashlib.sha256(f"pizzastream:{user}:{password}".encode()).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def encode(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{encode(salt)}${encode(stored_key)}:{encode(server_key)}"


def redshift_md5(user: str, password: str) -> str:
    """Redshift's hashed form of a password for CREATE/ALTER USER."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def ensure_users(conn: psycopg.Connection, users: Sequence[ServiceUser], group: str) -> None:
    """Each user exists with its password, may connect and holds exactly its grants."""
    dbname = conn.info.dbname
    for user in users:
        if user.service not in GRANTS[group]:
            raise ValueError(f"no grants are defined for {user.service} in {group}")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user.user]).fetchone()
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                sql.SQL("ALTER" if exists else "CREATE"),
                sql.Identifier(user.user),
                sql.Literal(scram_verifier(user.user, user.password)),
            )
        )
        name = sql.Identifier(user.user)
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), name)
        )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(name))
        conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(name))
        for table, privileges in GRANTS[group][user.service].items():
            conn.execute(
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    sql.SQL(privileges), sql.Identifier(table), name
                )
            )
        if group == AURORA:
            for role in AURORA_ROLES.get(user.service, ()):
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), name))


def load_reference_data(conn: psycopg.Connection) -> dict[str, int]:
    """Upserts the reference tables and the opening stock; returns rows written per table
    (0 everywhere when the database already holds exactly this data)."""
    written = {}
    for table, rows in REFERENCE_TABLES.items():
        written[table] = _upsert(conn, table, rows())
    levels = reference_data.initial_inventory()
    written[OPENING_INVENTORY] = _upsert(conn, OPENING_INVENTORY, levels)
    # The job's current stock: only where it has none yet, never overwritten.
    written[INVENTORY] = _upsert(conn, INVENTORY, levels, update=False)
    return written


def _names(rows: Sequence) -> tuple[list[str], Callable]:
    first = rows[0]
    if is_dataclass(first):
        return [f.name for f in fields(first)], astuple
    return list(first._fields), tuple


def copy_rows(conn: psycopg.Connection, table: str, rows: Sequence) -> None:
    """COPY dataclass or named-tuple rows into ``table``; field names are column names."""
    names, as_tuple = _names(rows)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(as_tuple(row))


def _upsert(conn: psycopg.Connection, table: str, rows: Sequence, update: bool = True) -> int:
    names, _ = _names(rows)
    stage = f"{table}_setup_stage"
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            sql.Identifier(stage), sql.Identifier(table)
        )
    )
    copy_rows(conn, stage, rows)
    key = KEYS[table]
    values = [name for name in names if name not in key]
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    if update and values:
        action: sql.Composable = sql.SQL(
            "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})"
        ).format(
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in values
            ),
            sql.SQL(", ").join(
                sql.SQL("{}.{}").format(sql.Identifier(table), sql.Identifier(n)) for n in values
            ),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n)) for n in values),
        )
    else:
        action = sql.SQL("DO NOTHING")
    cursor = conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
            sql.Identifier(table),
            columns,
            columns,
            sql.Identifier(stage),
            sql.SQL(", ").join(map(sql.Identifier, key)),
            action,
        )
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(stage)))
    return cursor.rowcount


# --- Redshift ------------------------------------------------------------------------------


def statements(text: str) -> list[str]:
    """The statements of a plain SQL file (no dollar quoting): comments out, split on ';'."""
    without_comments = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def connect_redshift(props: Props):
    """A ``redshift_connector`` connection as ``connectors.redshift.connect_redshift`` makes
    it (``WarehouseSettings.redshift_connection``: ``sslmode`` too, which this one used to
    leave out), without that module's Parquet dependencies, which the Lambda package lacks."""
    import redshift_connector

    return redshift_connector.connect(
        **WarehouseSettings.from_group(props["Warehouse"]).redshift_connection()
    )


def _set_up_redshift(props: Props, users: Sequence[ServiceUser]) -> None:
    conn = connect_redshift(props)
    try:
        conn.autocommit = True
        cursor = conn.cursor()
        for path in REDSHIFT_SCHEMAS:
            for statement in statements(path.read_text()):
                cursor.execute(statement)
        for user in users:
            cursor.execute("SELECT 1 FROM pg_user WHERE usename = %s", (user.user,))
            exists = cursor.fetchone()
            # Redshift takes the MD5 form ('md5' + md5(password + user)): no password in
            # the statement or its logs
            cursor.execute(
                f'{"ALTER" if exists else "CREATE"} USER "{user.user}" '
                f"PASSWORD '{redshift_md5(user.user, user.password)}'"
            )
        conn.autocommit = False
        cursor = conn.cursor()
        for user in users:
            cursor.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{user.user}"')
            cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{user.user}"')
            for table, privileges in WAREHOUSE_GRANTS[user.service].items():
                cursor.execute(f'GRANT {privileges} ON TABLE {table} TO "{user.user}"')
        conn.commit()
    finally:
        conn.close()


# --- the entry point -----------------------------------------------------------------------


def set_up(props: Props, users: Sequence[ServiceUser] = ()) -> dict[str, int]:
    """Schemas, users and grants, reference data; idempotent. Returns the reference rows
    written per table."""
    by_group = {group: [u for u in users if u.database == group] for group in GRANTS}
    unknown = [u for u in users if u.database not in GRANTS]
    if unknown:
        raise ValueError(f"users of unknown databases: {unknown}")
    apply_schemas(props, "Aurora")
    with psycopg.connect(postgres_dsn(props, "Aurora")) as conn:  # one transaction
        ensure_users(conn, by_group[AURORA], AURORA)
        written = load_reference_data(conn)
    if is_redshift(props):
        _set_up_redshift(props, by_group[WAREHOUSE])
    else:
        apply_schemas(props, "Warehouse")
        with psycopg.connect(postgres_dsn(props, "Warehouse")) as conn:
            ensure_users(conn, by_group[WAREHOUSE], WAREHOUSE)
    log.info("database set-up done: %s", written)
    return written


def users_from_secrets(props: Props, entries: Sequence[dict]) -> list[ServiceUser]:
    """``entries``: ``{"service", "database", "user", "password_secret_arn"}`` (the custom
    resource's ``Users``); each password read from its secret (JSON with a ``password``
    field, as CDK generates them)."""
    from connectors import aws

    client = aws.client(props, "secretsmanager")
    users = []
    for entry in entries:
        secret = json.loads(
            client.get_secret_value(SecretId=entry["password_secret_arn"])["SecretString"]
        )
        users.append(
            ServiceUser(entry["service"], entry["database"], entry["user"], secret["password"])
        )
    return users


# The users, as the custom resource's ``Users``, in the function's environment too, so the
# set-up can be run again by hand (after a password changed in its secret).
USERS_VARIABLE = "PIZZASTREAM_DBSETUP_USERS"


def handler(event: dict, context=None) -> dict:
    """The custom resource's Lambda entry point (``connectors.dbsetup.handler``), called by
    CDK's provider framework: Create and Update run the set-up; Delete keeps the data.
    Invoked by hand (``{}``: no ``ResourceProperties``), it runs the set-up for the users of
    its environment (docs/deploy.md)."""
    from pizzastream.config import load_properties
    from pizzastream.settings import validate

    physical_id = event.get("PhysicalResourceId") or "pizzastream-database-setup"
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": physical_id}
    props = load_properties()
    validate(props)
    entries = event.get("ResourceProperties", {}).get("Users")
    if entries is None:
        entries = json.loads(os.environ.get(USERS_VARIABLE, "[]"))
    written = set_up(props, users_from_secrets(props, entries))
    return {
        "PhysicalResourceId": physical_id,
        "Data": {"ReferenceRowsWritten": str(sum(written.values()))},
    }
