"""The order path's Python core timed and profiled outside Flink: what one event costs in
Python alone, with no JVM crossing, so the mini-cluster numbers can be split into "the
rules" and "the crossing".

``order_batches.enrich_batch`` and ``order_batches.ShardDesk`` (what the jobs' Python
functions call, once per batch) run in this process on realistic records
(``simulation.traffic`` at the benchmark's 80/20 skew) in batches as the JVM makes them
(``pizzastream.batches``), timed in CPU time (``time.process_time``, so other load on the
machine inflates the numbers less than wall time would), the least of ``REPEATS`` runs. The inventory desk persists every
``persist_every`` events (a 5-second checkpoint at 50,000 events/s) and at the end. ``python -m bench.profile`` prints the top
functions (cProfile).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pizzastream import batches
from pizzastream.catalog import Catalog
from pizzastream.order_batches import ORDER, RESTOCK, ShardDesk, enrich_batch
from pizzastream.orders import EnrichedOrder, OrderRules, enrich, format_event_time
from pizzastream.replenishment import HistoryWindow, policies_from_reference_data
from pizzastream.ticks import tick_records
from simulation.traffic import OrderTraffic

BATCH = 1000  # OrderPath.batch_max_records
# Each timing is the least of this many runs: what the code costs, less the machine's
# interruptions (this machine's single runs varied by up to half).
REPEATS = 3
SHARDS = 32  # OrderPath.store_shards


PEAK_EVENTS_PER_S = 350_000  # bench.scenarios.DEFAULT_RATE


def raw_orders(n: int, props) -> list[bytes]:
    """Realistic orders whose event times advance at the planned peak from an hour ago, as
    the benchmark's in-job generator makes them (a store's events are then as close in
    event time as in production at peak)."""
    rules = OrderRules.from_properties(props["OrderRules"])
    start = datetime.now(UTC) - timedelta(hours=8, minutes=1)
    traffic = OrderTraffic(rules, start, bad_share=0.0, seed=11)
    first_ms = int(time.time() * 1000) - 3_600_000
    out = []
    for index, record in enumerate(traffic.records(n)):
        order = json.loads(record.data)
        order["ts"] = format_event_time(first_ms + index * 1000 // PEAK_EVENTS_PER_S)
        out.append(json.dumps(order, separators=(",", ":")).encode())
    return out


def enriched_orders(raw: list[bytes], props) -> list[tuple[str, bytes]]:
    rules = OrderRules.from_properties(props["OrderRules"])
    catalog = Catalog.from_reference_data()
    now = int(time.time() * 1000)
    out = []
    for data in raw:
        order = enrich(data, catalog, rules, now)
        if isinstance(order, EnrichedOrder):
            out.append((str(order.store_id), order.to_json().encode()))
    return out


def _lines(result: str) -> int:
    return result.count("\n")


def time_enrichment(props, raw: list[bytes], batch: int = BATCH) -> dict:
    rules = OrderRules.from_properties(props["OrderRules"])
    catalog = Catalog.from_reference_data()
    framed = [batches.frame_raw_records(raw[i : i + batch]) for i in range(0, len(raw), batch)]
    now = int(time.time() * 1000)
    elapsed = float("inf")
    for _ in range(REPEATS):
        outputs = 0
        start = time.process_time()
        for blob in framed:
            result, letters = enrich_batch(blob, catalog, rules, now)
            outputs += _lines(result) + len(letters)
        elapsed = min(elapsed, time.process_time() - start)
    return {
        "us_per_event": round(elapsed / len(raw) * 1e6, 2),
        "outputs_per_event": round(outputs / len(raw), 2),
        "crossings_per_event": round(2 * len(framed) / len(raw), 4),
    }


def shard_batches(
    tagged: list[tuple[str, bytes]], batch: int, persist_every: int
) -> list[tuple[str, bytes]]:
    """The records as ``StoreBatcher`` batches: per shard (``store % SHARDS``), at most
    ``batch`` records, every shard's pending records flushed, the last with the persist
    flag, each ``persist_every`` records (a checkpoint)."""
    out: list[tuple[str, bytes]] = []
    pending: dict[str, list] = defaultdict(list)

    def flush(persist: bool):
        for shard, records in pending.items():
            out.append((shard, batches.frame_store_records(records, persist)))
        pending.clear()

    for index, (key, data) in enumerate(tagged, 1):
        shard = f"shard-{int(key) % SHARDS}"
        pending[shard].append((ORDER, key, data))
        if len(pending[shard]) >= batch:
            out.append((shard, batches.frame_store_records(pending.pop(shard))))
        if index % persist_every == 0:
            flush(True)
    flush(True)
    return out


def prepared_desk(tagged: list[tuple[str, bytes]]) -> ShardDesk:
    """A ``ShardDesk`` that has met every store once, at the hour's tick (opening a store
    reads the database, and the tick computes the hour's limits: once per store and hour,
    not part of an event's cost; 20,000 events would otherwise pay it ~1,700 times)."""
    from pizzastream import reference_data

    catalog = Catalog.from_reference_data()
    policies = policies_from_reference_data()
    opening: dict[int, dict[int, int]] = defaultdict(dict)
    for level in reference_data.initial_inventory():
        opening[level.store_id][level.ingredient_id] = level.on_hand
    desk = ShardDesk(
        lambda: catalog,
        lambda: policies,
        lambda store: opening[store],
        lambda store, first_ms, end_ms: (),
        HistoryWindow(),
    )
    first_ms = min(json.loads(data)["t"] for _, data in tagged)
    ticks = [
        (RESTOCK, key, data) for key, data in tick_records({int(k) for k, _ in tagged}, first_ms)
    ]
    by_shard: dict[str, list] = defaultdict(list)
    for tick in ticks:
        by_shard[f"shard-{int(tick[1]) % SHARDS}"].append(tick)
    for shard, records in by_shard.items():
        desk.decide(shard, batches.frame_store_records(records, False), lambda store: None)
    return desk


def time_inventory(
    tagged: list[tuple[str, bytes]],
    batch: int = 50,
    persist_every: int = 250_000,
    desk: ShardDesk | None = None,
) -> dict:
    framed = shard_batches(tagged, batch, persist_every)
    elapsed = float("inf")
    for _ in range(1 if desk else REPEATS):  # each repeat on a fresh desk
        run_desk = desk or prepared_desk(tagged)
        outputs = saved = 0
        start = time.process_time()
        for shard, blob in framed:
            result, letters, stored = run_desk.decide(shard, blob, lambda store: None)
            outputs += _lines(result) + len(letters)
            saved += len(stored)
        elapsed = min(elapsed, time.process_time() - start)
    n = len(tagged)
    return {
        "us_per_event": round(elapsed / n * 1e6, 2),
        "outputs_per_event": round(outputs / n, 2),
        "crossings_per_event": round(2 * len(framed) / n, 4),
        "stores_persisted_per_event": round(saved / n, 4),
    }


def profile(call, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def json_costs(raw: list[bytes], enriched: list[tuple[str, bytes]]) -> dict:
    """Decode cost of the two payloads with the stdlib ``json`` and with ``orjson``."""
    import orjson

    def per(fn, items):
        start = time.process_time()
        for item in items:
            fn(item)
        return round((time.process_time() - start) / len(items) * 1e6, 2)

    payloads = [data for _, data in enriched]
    docs = [json.loads(p) for p in payloads]
    return {
        "raw_json_loads_us": per(json.loads, raw),
        "raw_orjson_loads_us": per(orjson.loads, raw),
        "enriched_json_loads_us": per(json.loads, payloads),
        "enriched_orjson_loads_us": per(orjson.loads, payloads),
        "enriched_json_dumps_us": per(lambda d: json.dumps(d, separators=(",", ":")), docs),
        "enriched_orjson_dumps_us": per(orjson.dumps, docs),
    }


def run(props, n: int = 20_000) -> dict:
    raw = raw_orders(n, props)
    tagged = enriched_orders(raw, props)
    return {
        "events": n,
        "enrichment": time_enrichment(props, raw),
        "inventory": time_inventory(tagged),
        "compiled": compiled_timings(n),
        "json": json_costs(raw, tagged),
    }


# Times both functions in a process whose pizzastream is the copy the jobs ship, its core
# compiled (deploy.compiled_core), and prints their µs per event as JSON.
_TIME_COMPILED = """
import json, sys
sys.path.insert(0, sys.argv[1])
import pizzastream.order_batches
assert pizzastream.order_batches.__file__.endswith(".so"), pizzastream.order_batches.__file__
from bench import benchdb, profile
props = benchdb.ensure()
raw = profile.raw_orders(int(sys.argv[2]), props)
tagged = profile.enriched_orders(raw, props)
print(json.dumps({
    "enrichment": profile.time_enrichment(props, raw)["us_per_event"],
    "inventory": profile.time_inventory(tagged)["us_per_event"],
}))
"""


def compiled_timings(n: int) -> dict:
    """µs per event of ``enrich_batch`` and ``ShardDesk.decide`` with the core compiled as
    the jobs ship it, on the same kind of records, in a process of its own."""
    from deploy import compiled_core
    from pizzastream.config import REPO_ROOT

    with tempfile.TemporaryDirectory(prefix="compiled-core-") as code:
        compiled_core.compiled_checkout(Path(code))
        run = subprocess.run(
            [sys.executable, "-c", _TIME_COMPILED, code, str(n)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    from bench import benchdb

    props = benchdb.ensure()
    raw = raw_orders(20_000, props)
    tagged = enriched_orders(raw, props)
    print(json.dumps(run(props), indent=2))
    print("== order_batches.enrich_batch")
    print(profile(lambda: time_enrichment(props, raw)))
    print("== order_batches.ShardDesk.decide")
    desk = prepared_desk(tagged)
    print(profile(lambda: time_inventory(tagged, desk=desk)))


if __name__ == "__main__":
    main()
