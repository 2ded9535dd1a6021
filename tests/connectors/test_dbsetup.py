"""The deployed platform's database set-up (``connectors.dbsetup``, the stack's custom
resource on AWS) against the local stack's PostgreSQL, no mocks.

Two fresh databases stand for Aurora and the warehouse, owned by an administrator that is
not a superuser (CREATEROLE, as Aurora's master user is an ``rds_superuser``, not a
superuser). The set-up runs twice: the second run writes no row and changes no grant.
Then each service's user, over its own connection, does what its code does and is refused
what its code never does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors, sql

from connectors import dbsetup
from connectors.dbsetup import AURORA, WAREHOUSE, ServiceUser
from pizzastream import reference_data
from pizzastream.config import postgres_dsn

pytestmark = pytest.mark.integration

PREFIX = "dbsetup_test"
ADMIN, ADMIN_PASSWORD = f"{PREFIX}_admin", "admin-Pw-1"
DATABASES = {AURORA: f"{PREFIX}_aurora", WAREHOUSE: f"{PREFIX}_warehouse"}


def _user(service: str, group: str) -> str:
    return f"{PREFIX}_{service}_{'a' if group == AURORA else 'w'}"


USERS = [
    ServiceUser(service, group, _user(service, group), f"{service}-Pw-{len(service)}")
    for group, grants in dbsetup.GRANTS.items()
    for service in grants
]


def _drop_everything(admin: psycopg.Connection) -> None:
    for dbname in DATABASES.values():
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
    for user in [u.user for u in USERS] + [ADMIN]:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


@pytest.fixture(scope="module")
def admin_props(local_stack, props):
    from stack.services import StackPaths, stack_services

    postgres = stack_services(props, StackPaths()).postgres
    with postgres.admin_connection() as admin:
        _drop_everything(admin)
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(ADMIN), sql.Literal(ADMIN_PASSWORD)
            )
        )
        for dbname in DATABASES.values():
            admin.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(dbname), sql.Identifier(ADMIN)
                )
            )
    result = copy.deepcopy(props)
    for group, dbname in DATABASES.items():
        result[group].update(dbname=dbname, user=ADMIN, password=ADMIN_PASSWORD)
    result[WAREHOUSE].update(engine="postgresql", stand_in="")
    yield result
    with postgres.admin_connection() as admin:
        _drop_everything(admin)


def _state(props) -> dict:
    """Everything a run could change: reference rows (with their row versions) and grants."""
    state: dict[str, object] = {}
    with psycopg.connect(postgres_dsn(props, AURORA)) as conn:
        for table in [*dbsetup.REFERENCE_TABLES, "opening_inventory", "inventory"]:
            state[table] = conn.execute(
                sql.SQL(
                    "SELECT md5(string_agg(t::text || xmin::text, ',' ORDER BY t::text)), count(*)"
                    " FROM {} t"
                ).format(sql.Identifier(table))
            ).fetchone()
    for group in DATABASES:
        with psycopg.connect(postgres_dsn(props, group)) as conn:
            state[f"grants-{group}"] = conn.execute(
                "SELECT grantee, table_name, privilege_type FROM information_schema."
                "role_table_grants WHERE grantee LIKE %s ORDER BY 1, 2, 3",
                [f"{PREFIX}%"],
            ).fetchall()
    return state


def _verifiers(props) -> list[tuple]:
    """The users' stored passwords (SCRAM verifiers), as only a superuser can read them."""
    from stack.services import StackPaths, stack_services

    with stack_services(props, StackPaths()).postgres.admin_connection() as admin:
        return admin.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE %s ORDER BY 1",
            [f"{PREFIX}%"],
        ).fetchall()


@pytest.fixture(scope="module")
def set_up_twice(admin_props):
    first = dbsetup.set_up(admin_props, USERS)
    before = {**_state(admin_props), "passwords": _verifiers(admin_props)}
    second = dbsetup.set_up(admin_props, USERS)
    return first, second, before, {**_state(admin_props), "passwords": _verifiers(admin_props)}


def test_set_up_is_idempotent(set_up_twice):
    first, second, before, after = set_up_twice
    assert first["store"] == reference_data.STORE_COUNT
    assert first["opening_inventory"] == len(reference_data.initial_inventory())
    assert second == {table: 0 for table in first}
    assert after == before
    assert before[f"grants-{AURORA}"] and before[f"grants-{WAREHOUSE}"]
    # the passwords went in as SCRAM verifiers, the same ones again the second time
    assert {u.user for u in USERS} <= {name for name, _ in before["passwords"]}
    assert all(
        verifier.startswith("SCRAM-SHA-256$")
        for name, verifier in before["passwords"]
        if name != ADMIN
    )


def test_reference_data_is_the_chains(set_up_twice, admin_props):
    with psycopg.connect(postgres_dsn(admin_props, AURORA)) as conn:
        for table, rows in dbsetup.REFERENCE_TABLES.items():
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()[0]
            assert count == len(rows()), table
        policy = conn.execute(
            "SELECT safety_stock, reorder_quantity, service_level FROM "
            "ingredient WHERE ingredient_id = %s",
            [reference_data.ingredients()[0].ingredient_id],
        ).fetchone()
    first = reference_data.ingredients()[0]
    assert policy == (first.safety_stock, first.reorder_quantity, first.service_level)


def test_a_changed_reference_row_is_put_back_and_the_jobs_stock_is_kept(set_up_twice, admin_props):
    with psycopg.connect(postgres_dsn(admin_props, AURORA)) as conn:
        conn.execute("UPDATE product SET unit_price = 99 WHERE product_id = 1")
        conn.execute("UPDATE inventory SET on_hand = 7 WHERE store_id = 1")
    written = dbsetup.set_up(admin_props, USERS)
    assert written["product"] == 1 and written["inventory"] == 0
    with psycopg.connect(postgres_dsn(admin_props, AURORA)) as conn:
        price = conn.execute("SELECT unit_price FROM product WHERE product_id = 1").fetchone()[0]
        stock = {row[0] for row in conn.execute("SELECT on_hand FROM inventory WHERE store_id = 1")}
    assert price == next(p.unit_price for p in reference_data.products() if p.product_id == 1)
    assert stock == {7}


def _connect(props, service: str, group: str) -> psycopg.Connection:
    user = next(u for u in USERS if (u.service, u.database) == (service, group))
    settings = dict(props[group], user=user.user, password=user.password)
    return psycopg.connect(postgres_dsn({group: settings}, group), autocommit=True)


def _refused(conn: psycopg.Connection, statement: str, params=()) -> bool:
    try:
        conn.execute(statement, params)
    except errors.InsufficientPrivilege:
        return True
    return False


NOW = datetime(2026, 12, 4, 13, 5, tzinfo=UTC)
_FACT = (
    "INSERT INTO order_fct (store_id, order_id, product_id, transaction_ts, quantity,"
    " unit_price, total_transaction_amt, delivery_type, channel)"
    " VALUES (1, %s, 1, %s, 1, 10, 10, 'delivery', %s)"
)
_UPSERT = (
    " ON CONFLICT (order_id, product_id) DO UPDATE SET transaction_ts = EXCLUDED.transaction_ts"
)
_DEAD_LETTER = (
    "INSERT INTO dead_letter (dead_letter_id, job, reason, detail, payload)"
    " VALUES (%s, 'job', 'r', 'd', 'p') ON CONFLICT (dead_letter_id) DO UPDATE"
    " SET reason = EXCLUDED.reason"
)


def test_each_aurora_user_does_its_work_and_nothing_else(set_up_twice, admin_props):
    p = admin_props
    with _connect(p, "order_enrichment", AURORA) as conn:
        assert conn.execute("SELECT count(*) FROM product").fetchone()[0] > 0
        conn.execute("SELECT count(*) FROM recipe")
        conn.execute(_DEAD_LETTER, ["oe-1"])
        assert _refused(conn, _FACT, ["oe-order", NOW, "online"])
        assert _refused(conn, "SELECT * FROM inventory")

    with _connect(p, "inventory_windowing", AURORA) as conn:
        for table in ("ingredient", "supplier", "opening_inventory", "product", "recipe"):
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        conn.execute(_FACT + _UPSERT, ["iw-order", NOW, "online"])
        # a replay moving the row to another hour: the trigger records the old hour
        conn.execute(_FACT + _UPSERT, ["iw-order", NOW.replace(hour=11), "online"])
        conn.execute(
            "INSERT INTO inventory (store_id, ingredient_id, on_hand) VALUES (1, %s, 5)"
            " ON CONFLICT (store_id, ingredient_id) DO UPDATE SET on_hand = 5",
            [reference_data.ingredients()[0].ingredient_id],
        )
        conn.execute(
            "INSERT INTO supplier_order VALUES ('so-1', 1, 1, 1, 5, now(), 1, 2)"
            " ON CONFLICT (supplier_order_id, ingredient_id) DO UPDATE SET quantity = 5"
        )
        conn.execute(
            "INSERT INTO replenishment_alert (alert_id, kind, store_id, alert_ts, record)"
            " VALUES ('a-1', 'expected_stockout', 1, now(), '{}')"
            " ON CONFLICT (alert_id) DO UPDATE SET record = EXCLUDED.record"
        )
        conn.execute(_DEAD_LETTER, ["iw-1"])
        assert _refused(conn, "DELETE FROM order_fct")
        assert _refused(conn, "UPDATE opening_inventory SET on_hand = 0")
        assert _refused(
            conn, "INSERT INTO pos_batch (batch_id, store_system, status) VALUES ('b', 1, 'loaded')"
        )

    with _connect(p, "pos", AURORA) as conn:
        conn.execute(
            _FACT + " ON CONFLICT (order_id, product_id) DO NOTHING", ["pos-order", NOW, "in_store"]
        )
        conn.execute(
            "INSERT INTO pos_batch (batch_id, store_system, status) VALUES ('b1', 1,"
            " 'loaded') ON CONFLICT (batch_id) DO UPDATE SET deliveries ="
            " pos_batch.deliveries + 1"
        )
        conn.execute("INSERT INTO pos_batch_order VALUES ('b1', 'pos-order')")
        conn.execute("DELETE FROM pos_batch_order WHERE batch_id = 'b1'")
        conn.execute(_DEAD_LETTER, ["pos-1"])
        assert _refused(conn, "SELECT * FROM etl_watermark")
        assert _refused(conn, "UPDATE inventory SET on_hand = 0")
        assert _refused(
            conn, "INSERT INTO product (product_id, name, unit_price) VALUES (999, 'x', 1)"
        )

    with _connect(p, "health", AURORA) as conn:
        from etl import health

        measured = health.measure(conn, NOW)
        assert measured is not None
        assert _refused(conn, _DEAD_LETTER, ["h-1"])
        assert _refused(conn, "SELECT * FROM order_fct")

    with _connect(p, "etl", AURORA) as conn:
        (sees_all, _) = conn.execute(
            "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),"
            " current_user FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert sees_all
        conn.execute("SELECT count(*) FROM order_fct")
        assert (
            conn.execute("DELETE FROM order_fct_deleted WHERE order_id = 'iw-order'").rowcount == 1
        )
        conn.execute(
            "INSERT INTO etl_run (run_id, hour, kind, cause, status) VALUES"
            " ('r1', %s, 'export', 'scheduled', 'running')",
            [NOW],
        )
        conn.execute("UPDATE etl_run SET status = 'succeeded' WHERE run_id = 'r1'")
        conn.execute(
            "INSERT INTO etl_watermark (name, changes_to) VALUES ('w', now())"
            " ON CONFLICT (name) DO UPDATE SET changes_to = EXCLUDED.changes_to"
        )
        assert _refused(conn, "UPDATE order_fct SET quantity = 2")
        assert _refused(conn, "SELECT * FROM dead_letter")

    with _connect(p, "delivery", AURORA) as conn:
        conn.execute("SELECT count(*) FROM delivery_partner")
        conn.execute("SELECT count(*) FROM store")
        conn.execute(
            "INSERT INTO delivery_assignment (order_id, store_id, status, partner_id,"
            " delivery_id, order_ts) VALUES ('iw-order', 1, 'assigned', 1, 'd-1', now())"
            " ON CONFLICT (order_id) DO NOTHING"
        )
        assert (
            conn.execute(
                "UPDATE order_fct SET delivery_id = 'd-1' WHERE order_id = 'iw-order'"
            ).rowcount
            == 1
        )
        conn.execute(
            "INSERT INTO delivery_attempt (order_id, store_id, record, steps, reason,"
            " next_attempt_at, deadline) VALUES ('o', 1, '', '[]', 'r', now(), now())"
        )
        conn.execute("DELETE FROM delivery_attempt WHERE order_id = 'o'")
        conn.execute(_DEAD_LETTER, ["d-1"])
        assert _refused(conn, _FACT, ["d-order", NOW, "online"])
        assert _refused(conn, "DELETE FROM order_fct")

    with _connect(p, "api", AURORA) as conn:
        from connectors import aurora

        api_props = {
            AURORA: dict(
                p[AURORA],
                user=_user("api", AURORA),
                password=next(u.password for u in USERS if u.user == _user("api", AURORA)),
            )
        }
        products, recipes = aurora.catalog_rows(api_props)
        assert products and recipes
        conn.execute("SELECT ingredient_id, name, unit, safety_stock FROM ingredient")
        assert _refused(conn, _FACT, ["api-order", NOW, "online"])
        assert _refused(conn, "UPDATE product SET unit_price = 1")
        assert _refused(conn, "SELECT * FROM order_fct")


_METRIC = (
    "INSERT INTO hourly_store_metrics VALUES (1, '2026-12-04 13:00', '2026-12-04 14:00',"
    " 1, 1, 10, 1, 0, 0, 10, 'stream', now())"
)


def test_each_warehouse_user_does_its_work_and_nothing_else(set_up_twice, admin_props):
    p = admin_props
    with _connect(p, "hourly_metrics", WAREHOUSE) as conn, conn.transaction():
        # connectors.warehouse's staged merge
        conn.execute("CREATE TEMP TABLE hourly_store_metrics_stage (LIKE hourly_store_metrics)")
        conn.execute(_METRIC.replace("hourly_store_metrics", "hourly_store_metrics_stage"))
        conn.execute(
            "DELETE FROM hourly_store_metrics USING hourly_store_metrics_stage s"
            " WHERE hourly_store_metrics.store_id = s.store_id"
            " AND hourly_store_metrics.window_start = s.window_start"
        )
        conn.execute("INSERT INTO hourly_store_metrics SELECT * FROM hourly_store_metrics_stage")
        conn.execute(
            "INSERT INTO metrics_publication (window_start, window_end, source,"
            " published_at, stores, revenue_change, orders_change) VALUES"
            " ('2026-12-04 13:00', '2026-12-04 14:00', 'stream', now(), 1, 10, 1)"
        )
        conn.execute("DROP TABLE hourly_store_metrics_stage")
    with _connect(p, "hourly_metrics", WAREHOUSE) as conn:
        assert _refused(conn, "SELECT * FROM order_fct")

    with _connect(p, "etl", WAREHOUSE) as conn:
        conn.execute(
            "INSERT INTO order_fct VALUES (1, 'o', 1, now(), 1, 1, 1, NULL, 'pickup', 'online')"
        )
        conn.execute("DELETE FROM order_fct WHERE order_id = 'o'")
        conn.execute("DELETE FROM hourly_store_metrics WHERE store_id = 1")
        conn.execute(_METRIC)
        conn.execute("SELECT count(*) FROM metrics_publication")
        assert _refused(conn, "UPDATE metrics_publication SET stores = 2")

    with _connect(p, "api", WAREHOUSE) as conn:
        assert conn.execute("SELECT count(*) FROM hourly_store_metrics").fetchone()[0] == 1
        conn.execute("SELECT count(*) FROM metrics_publication")
        assert _refused(conn, _METRIC.replace("13:00", "15:00"))
        assert _refused(
            conn,
            "INSERT INTO order_fct VALUES (1, 'o', 1, now(), 1, 1, 1, NULL, 'pickup', 'online')",
        )
        assert _refused(conn, "DELETE FROM hourly_store_metrics")


def test_users_from_secrets_read_each_password_from_its_secret(local_stack, props):
    """What the custom resource's handler does with its ``Users``: each password from the
    user's own secret (the local moto's Secrets Manager)."""
    from connectors import aws

    client = aws.client(props, "secretsmanager")
    arns = {}
    for service, secret in (
        ("pos", '{"username": "pos", "password": "s3cret-Pos-1"}'),
        ("api", '{"username": "api", "password": "s3cret-Api-1"}'),
    ):
        name = f"{PREFIX}/{service}"
        try:
            arns[service] = client.create_secret(Name=name, SecretString=secret)["ARN"]
        except client.exceptions.ResourceExistsException:
            arns[service] = client.put_secret_value(SecretId=name, SecretString=secret)["ARN"]
    users = dbsetup.users_from_secrets(
        props,
        [
            {
                "service": "pos",
                "database": AURORA,
                "user": "pos",
                "password_secret_arn": arns["pos"],
            },
            {
                "service": "api",
                "database": WAREHOUSE,
                "user": "api",
                "password_secret_arn": arns["api"],
            },
        ],
    )
    assert users == [
        ServiceUser("pos", AURORA, "pos", "s3cret-Pos-1"),
        ServiceUser("api", WAREHOUSE, "api", "s3cret-Api-1"),
    ]
    assert dataclasses.asdict(users[0])["password"] == "s3cret-Pos-1"


def test_redshift_statements_split_the_redshift_file():
    (path,) = dbsetup.REDSHIFT_SCHEMAS
    parts = dbsetup.statements(path.read_text())
    assert len(parts) == 3
    assert all(part.startswith("CREATE TABLE IF NOT EXISTS") for part in parts)


def test_the_custom_resources_handler_sets_up_from_its_environment_and_secrets(
    set_up_twice, admin_props, monkeypatch
):
    """``handler`` as the provider framework calls it: the administrator from the function's
    environment (``PIZZASTREAM__<Group>__<key>``), each user's password from its secret
    (the local moto's Secrets Manager); Update after the two runs above writes nothing, and
    Delete keeps everything."""
    from connectors import aws

    client = aws.client(admin_props, "secretsmanager")
    entries = []
    for user in USERS:
        name = f"{PREFIX}/{user.database.lower()}/{user.service}"
        value = f'{{"username": "{user.user}", "password": "{user.password}"}}'
        try:
            arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        except client.exceptions.ResourceExistsException:
            arn = client.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        entries.append(
            {
                "service": user.service,
                "database": user.database,
                "user": user.user,
                "password_secret_arn": arn,
            }
        )
    for group in DATABASES:
        for key in ("dbname", "user", "password", "engine", "stand_in"):
            if key in admin_props[group]:
                monkeypatch.setenv(f"PIZZASTREAM__{group}__{key}", admin_props[group][key])
    event = {
        "RequestType": "Update",
        "PhysicalResourceId": "setup",
        "ResourceProperties": {"Users": entries, "Fingerprint": dbsetup.fingerprint()},
    }
    assert dbsetup.handler(event) == {
        "PhysicalResourceId": "setup",
        "Data": {"ReferenceRowsWritten": "0"},
    }
    with _connect(admin_props, "pos", AURORA) as conn:
        conn.execute("SELECT count(*) FROM pos_batch")
    assert dbsetup.handler({**event, "RequestType": "Delete"}) == {"PhysicalResourceId": "setup"}
    with _connect(admin_props, "api", WAREHOUSE) as conn:
        conn.execute("SELECT count(*) FROM hourly_store_metrics")


def test_invoked_by_hand_the_handler_sets_up_the_users_of_its_environment(
    set_up_twice, admin_props, monkeypatch
):
    """After a password changed in its secret: ``aws lambda invoke`` with ``{}`` sets the
    users of ``PIZZASTREAM_DBSETUP_USERS`` up again, the new password included."""
    from connectors import aws

    client = aws.client(admin_props, "secretsmanager")
    user = next(u for u in USERS if (u.service, u.database) == ("health", AURORA))
    name = f"{PREFIX}/rotated/health"
    value = f'{{"username": "{user.user}", "password": "changed-Pw-2"}}'
    try:
        arn = client.create_secret(Name=name, SecretString=value)["ARN"]
    except client.exceptions.ResourceExistsException:
        arn = client.put_secret_value(SecretId=name, SecretString=value)["ARN"]
    for group in DATABASES:
        for key in ("dbname", "user", "password", "engine", "stand_in"):
            if key in admin_props[group]:
                monkeypatch.setenv(f"PIZZASTREAM__{group}__{key}", admin_props[group][key])
    monkeypatch.setenv(
        dbsetup.USERS_VARIABLE,
        json.dumps(
            [
                {
                    "service": "health",
                    "database": AURORA,
                    "user": user.user,
                    "password_secret_arn": arn,
                }
            ]
        ),
    )
    try:
        assert dbsetup.handler({})["Data"] == {"ReferenceRowsWritten": "0"}
        settings = dict(admin_props[AURORA], user=user.user, password="changed-Pw-2")
        with psycopg.connect(postgres_dsn({AURORA: settings}, AURORA)) as conn:
            conn.execute("SELECT count(*) FROM dead_letter")
    finally:  # the other tests log in with the first password
        dbsetup.set_up(admin_props, [user])
