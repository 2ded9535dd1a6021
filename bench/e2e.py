"""End to end through the local Kinesis stand-in: the jobs' real entry points
(``python jobs/<job>.py``, real connectors) on streams and a database of the benchmark's
own, so the run disturbs nobody's streams and nobody's ``reset_data`` disturbs it.

1. ``stack.generate.send_orders`` puts ``orders`` records on ``bench-orders`` as fast as
   moto takes them: the put rate.
2. Both jobs start and drain what is there (TRIM_HORIZON), writing every output stream,
   Redis and Aurora as in production. The drain rate is measured on ``order_fct`` rows (one
   per line of an accepted online order, spread evenly over the traffic) between 10% and
   90% of the final count, while the CPU of moto, PostgreSQL and the jobs is sampled:
   whichever sits at a full core is the limit.
"""

from __future__ import annotations

import os
import time

from bench import benchdb
from bench.measure import CpuSampler, load_average, stack_pids

STREAM_SETTINGS = ("shard_count", "initial_position")
JOBS = ("order_enrichment", "inventory_windowing")
# order ids far above any other wave on the shared stack (Redis keys are shared)
FIRST_SEQUENCE = 700_000_000


def e2e_props() -> dict:
    props = benchdb.bench_props()
    for key in props["Streams"]:
        if key not in STREAM_SETTINGS:
            props["Streams"][key] = f"bench-{props['Streams'][key]}"
    return props


def job_environment(props) -> dict[str, str]:
    """The jobs read ``conf/local``; these overrides point them at the benchmark's streams
    and database (``pizzastream.config`` reads ``PIZZASTREAM__<GROUP>__<KEY>``)."""
    env = {
        f"PIZZASTREAM__STREAMS__{key.upper()}": value
        for key, value in props["Streams"].items()
        if key not in STREAM_SETTINGS
    }
    env["PIZZASTREAM__AURORA__DBNAME"] = props["Aurora"]["dbname"]
    return env


def _fact_rows(props) -> int:
    from connectors import aurora

    with aurora.connect(props) as conn:
        return conn.execute("SELECT count(*) FROM order_fct").fetchone()[0]  # type: ignore[index]  # an aggregate: always one row


def _reset(props) -> None:
    from connectors import aurora
    from stack import moto_resources

    moto_resources.recreate_streams(props)
    with aurora.connect(props) as conn:
        conn.execute("TRUNCATE order_fct, dead_letter, supplier_order")


def run(orders: int = 20_000, timeout_s: float = 600.0, settle_s: float = 15.0) -> dict:
    from stack.generate import send_orders
    from stack.jobs import LocalProcess

    props = e2e_props()
    benchdb.ensure()
    _reset(props)
    watch = stack_pids()
    # 1. the put rate
    sampler = CpuSampler(watch=watch).start()
    load_before = load_average()
    started = time.time()
    report = send_orders(props, orders, bad_share=0.05, seed=29, first_sequence=FIRST_SEQUENCE)
    put_s = time.time() - started
    sampler.stop()
    put_cpu = sampler.window(started, started + put_s)
    # 2. the drain rate
    env = job_environment(props)
    jobs = [LocalProcess(f"bench-{job}", [os.path.join("jobs", f"{job}.py")], env) for job in JOBS]
    sampler = CpuSampler(watch=watch).start()  # the jobs are this process's children
    points: list[tuple[float, int]] = []
    try:
        deadline = time.time() + timeout_s
        still_since = None
        while time.time() < deadline:
            for job in jobs:
                if not job.running():
                    raise RuntimeError(f"{job.job} stopped:\n{job.log_tail()}")
            rows = _fact_rows(props)
            now = time.time()
            if points and rows == points[-1][1] and rows > 0:
                still_since = still_since or now
                if now - still_since >= settle_s:
                    break
            else:
                still_since = None
            points.append((now, rows))
            time.sleep(1.0)
    finally:
        sampler.stop()
        for job in jobs:
            job.stop()
    final = points[-1][1] if points else 0
    if final == 0:
        raise RuntimeError("no order_fct rows arrived")
    # The drain window brackets 10%..90% of the rows by polls: from the last poll below 10%
    # to the first at 90% or more. order_fct is written on checkpoints, so a fast drain can
    # pass both marks between two polls; the window is then the poll interval around it
    # (a lower bound of the rate), never zero.
    below = [(t, r) for t, r in points if r < 0.1 * final]
    t10, r10 = below[-1] if below else points[0]
    t90, r90 = next((t, r) for t, r in points if r >= 0.9 * final)
    drain_rate = orders * (r90 - r10) / final / max(t90 - t10, 1e-9)
    first = next(t for t, r in points if r > 0)
    return {
        "orders": orders,
        "records_sent": report.records,
        "put_s": round(put_s, 1),
        "put_per_s": round(report.records / put_s, 1),
        "put_cpu": put_cpu,
        "fact_rows": final,
        "drain_events_per_s": round(drain_rate, 1),
        "drain_window_s": round(t90 - t10, 1),
        "first_row_after_start_s": round(first - points[0][0], 1),
        "drain_cpu": sampler.window(t10, t90),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_average()],
    }
