"""The benchmarks' own database and property overrides.

Benchmarks run on the shared local stack while other engineers' tests run there too, and
``stack.reset_data()`` truncates every non-reference table of the ``pizzastream`` database.
So the benchmarks read and write a database of their own, ``pizzastream_bench`` on the same
server: the operational schema, the same reference data, and opening stock
(``opening_inventory``, where inventory_windowing opens a store) multiplied by
``STOCK_MULTIPLIER`` so that a benchmark pushing millions of orders through a store keeps
taking the accepted-order path (status, sale, facts, delivery) that dominates in
production, instead of drifting into cheap rejections after a few hundred orders.
"""

from __future__ import annotations

import copy

import psycopg

from pizzastream import reference_data
from pizzastream.config import Props, load_properties, postgres_dsn
from pizzastream.orders import STORE_IDS

BENCH_DB = "pizzastream_bench"
STOCK_MULTIPLIER = 10_000


def bench_props(tuning: dict[str, str] | None = None, base: Props | None = None) -> Props:
    """The project's properties pointed at the benchmark database, ``tuning`` applied on top
    of the ``FlinkTuning`` group."""
    props = copy.deepcopy(base or load_properties())
    props["Aurora"]["dbname"] = BENCH_DB
    props["FlinkTuning"].update({k: str(v) for k, v in (tuning or {}).items()})
    return props


def ensure(props: Props | None = None) -> Props:
    """Creates and seeds the benchmark database if needed; returns its properties."""
    from stack import database
    from stack.services import StackPaths, stack_services

    props = bench_props(base=props)
    services = stack_services(props, StackPaths())
    with services.postgres.admin_connection() as admin:
        database._ensure_database(admin, BENCH_DB, props["Aurora"]["user"])
    with psycopg.connect(postgres_dsn(props)) as conn:
        conn.execute((database.SQL_DIR / "operational.sql").read_text())
    with psycopg.connect(postgres_dsn(props)) as conn:
        stores = conn.execute("SELECT count(*) FROM store").fetchone()[0]  # type: ignore[index]  # an aggregate: always one row
        stock = conn.execute(
            f"SELECT coalesce(min(on_hand), 0) FROM "  # type: ignore[index]  # an aggregate: always one row
            f"{database.OPENING_INVENTORY}"
        ).fetchone()[0]
    if stores != reference_data.STORE_COUNT or stock < 1000 * STOCK_MULTIPLIER // 100:
        database.seed(props, force=True)
        with psycopg.connect(postgres_dsn(props)) as conn:
            conn.execute(
                f"UPDATE {database.OPENING_INVENTORY} SET on_hand = on_hand * %s",
                (STOCK_MULTIPLIER,),
            )
    return props


def generator_inputs(store_count: int = len(STORE_IDS)) -> tuple[list[float], list[int], list[int]]:
    """What the JVM order generator needs: cumulative traffic weights of store ids
    1..``store_count`` (renormalised, so fewer stores keep the 80/20 skew among them), and
    the active products with their catalog prices in cents."""
    stores = sorted(reference_data.stores(), key=lambda s: s.store_id)[:store_count]
    total = sum(s.traffic_weight for s in stores)
    cumulative, running = [], 0.0
    for store in stores:
        running += store.traffic_weight / total
        cumulative.append(running)
    cumulative[-1] = 1.0
    products = [p for p in reference_data.products() if p.active]
    return (
        cumulative,
        [p.product_id for p in products],
        [int(p.unit_price * 100) for p in products],
    )
