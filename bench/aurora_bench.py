"""PostgreSQL (Aurora stand-in) reference rates, from this process with psycopg, into the
benchmark database's ``order_fct`` (same table, indexes and server as the Flink sinks):

* ``raw_copy``: ``COPY order_fct FROM STDIN`` of pre-rendered rows, the server's bulk
  ceiling and the yardstick of the sinks (target: the jobs' sink at >= 0.7x this);
* ``copy_merge``: what ``PostgresCopySink`` does per batch without Flink, COPY into a
  temporary table and one ``INSERT ... SELECT`` (new keys) or ``INSERT ... ON CONFLICT DO
  UPDATE`` (a replay): that design's ceiling, at the sink's default batch (50,000 rows) and
  at 5,000;
* ``row_upserts``: ``executemany`` of single-row ``INSERT ... ON CONFLICT`` statements
  (pipelined), what a row-at-a-time upsert costs.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.measure import CpuSampler, load_average, stack_pids
from pizzastream.sales import FACT_TARGET
from pizzastream.schemas import ORDER_FCT

# the columns a sale writes, and the upsert on the table's key (pizzastream.schemas)
COLUMNS = ", ".join(FACT_TARGET)
ON_CONFLICT = f"ON CONFLICT ({', '.join(ORDER_FCT.primary_key)}) DO UPDATE SET " + ", ".join(
    f"{name} = EXCLUDED.{name}" for name in FACT_TARGET if name not in ORDER_FCT.primary_key
)
UPSERT = (
    f"INSERT INTO order_fct ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) " + ON_CONFLICT
)
INSERT = f"INSERT INTO order_fct ({COLUMNS}) SELECT {COLUMNS} FROM stage"
MERGE = f"{INSERT} {ON_CONFLICT}"


def fact_rows(n: int, tag: str, seed: int = 5) -> list[tuple]:
    """``n`` order_fct rows shaped like the generator's: ~1.7 lines per order."""
    rng = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    order = 0
    base = time.time() - 3600
    while len(rows) < n:
        order += 1
        store = rng.randint(1, 2000)
        for product in rng.sample(range(1, 19), rng.choice((1, 1, 1, 2, 2, 3, 4))):
            quantity = rng.choice((1, 1, 1, 2, 3))
            cents = rng.randint(199, 1799)
            rows.append(
                (
                    store,
                    f"{tag}-{order}",
                    product,
                    time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(base + order / 1000)),
                    quantity,
                    f"{cents / 100:.2f}",
                    f"{quantity * cents / 100:.2f}",
                    rng.choice(("delivery", "pickup", "dine_in")),
                    rng.choice(("online", "online", "online", "online", "in_store")),
                )
            )
    return rows[:n]


def _copy_text(rows: list[tuple]) -> bytes:
    return "".join("\t".join(map(str, row)) + "\n" for row in rows).encode()


def _measure(props, label: str, rows: int, work) -> dict:
    from connectors import aurora

    with aurora.connect(props) as conn:
        conn.execute("TRUNCATE order_fct")
    sampler = CpuSampler(watch=stack_pids())
    load = load_average()
    sampler.sample()
    started = time.time()
    sampler.start()
    work()
    seconds = time.time() - started
    sampler.stop()
    sampler.sample()
    return {
        "method": label,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "cpu": sampler.window(started, started + seconds),
        "load_before": [round(x, 2) for x in load],
    }


def raw_copy(props, rows: int = 400_000) -> dict:
    import psycopg

    from pizzastream.config import postgres_dsn

    text = _copy_text(fact_rows(rows, "C"))

    def work():
        with (
            psycopg.connect(postgres_dsn(props)) as conn,
            conn.cursor() as cur,
            cur.copy(f"COPY order_fct ({COLUMNS}) FROM STDIN") as copy,
        ):
            for start in range(0, len(text), 1 << 20):
                copy.write(text[start : start + (1 << 20)])

    return _measure(props, "raw COPY", rows, work)


def copy_merge(props, rows: int = 400_000, batch: int = 5000, conflicts: bool = True) -> dict:
    """``conflicts``: merge with ``ON CONFLICT DO UPDATE`` (a replay); else the plain
    ``INSERT ... SELECT`` the sink tries first (new keys, the common case)."""
    import psycopg

    from pizzastream.config import postgres_dsn

    data = fact_rows(rows, "M")
    texts = [_copy_text(data[i : i + batch]) for i in range(0, rows, batch)]

    def work():
        with psycopg.connect(postgres_dsn(props)) as conn:
            conn.execute("CREATE TEMPORARY TABLE stage (LIKE order_fct) ON COMMIT DELETE ROWS")
            conn.commit()
            for text in texts:
                with conn.cursor() as cur, cur.copy(f"COPY stage ({COLUMNS}) FROM STDIN") as cp:
                    cp.write(text)
                conn.execute(MERGE if conflicts else INSERT)
                conn.commit()

    statement = "INSERT ON CONFLICT" if conflicts else "plain INSERT"
    return _measure(
        props, f"COPY into a temp table + {statement} ({batch}-row batches)", rows, work
    )


def row_upserts(props, rows: int = 50_000) -> dict:
    import psycopg

    from pizzastream.config import postgres_dsn

    data = fact_rows(rows, "U")

    def work():
        with psycopg.connect(postgres_dsn(props)) as conn, conn.cursor() as cur:
            for start in range(0, rows, 1000):
                cur.executemany(UPSERT, data[start : start + 1000])
                conn.commit()

    return _measure(
        props, "row-by-row INSERT ON CONFLICT (psycopg executemany, pipelined)", rows, work
    )


def run(props, smoke: bool = False) -> list[dict]:
    scale = 20 if smoke else 1
    return [
        raw_copy(props, 400_000 // scale),
        copy_merge(props, 400_000 // scale, batch=50_000 // scale, conflicts=False),
        copy_merge(props, 400_000 // scale, batch=50_000 // scale),
        copy_merge(props, 400_000 // scale, batch=5_000 // scale),
        row_upserts(props, 50_000 // scale),
    ]
