"""The jobs' Python functions timed and profiled outside Flink: what one event costs in
Python alone, with no JVM crossing, so the mini-cluster numbers can be split into "the
rules" and "the crossing".

``EnrichOrders.process_element`` and ``StoreInventory.process_element`` run in this process
(timed in CPU time, ``time.process_time``, so other load on the machine inflates the numbers
less than wall time would) on realistic records (``pizzastream.traffic`` at the benchmark's
80/20 skew), against a stand-in for PyFlink's context and keyed state that keeps objects in a
dict and pickles the touched keys every ``bundle`` events, as PyFlink's state cache does
when a bundle ends. ``python -m bench.profile`` prints the top functions (cProfile).
"""
from __future__ import annotations

import cProfile
import io
import json
import pickle
import pstats
import time
from datetime import datetime, timedelta, timezone

from pizzastream.catalog import Catalog
from pizzastream.orders import EnrichedOrder, OrderRules, enrich
from pizzastream.traffic import OrderTraffic


def raw_orders(n: int, props) -> list[bytes]:
    rules = OrderRules.from_properties(props["OrderRules"])
    # the 8-hour business day ending now: every event time valid (as stack.generate does)
    start = datetime.now(timezone.utc) - timedelta(hours=8, minutes=1)
    traffic = OrderTraffic(rules, start, bad_share=0.0, seed=11)
    return [record.data for record in traffic.records(n)]


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


class _State:
    def __init__(self, store: dict, ctx):
        self._store = store
        self._ctx = ctx

    def value(self):
        return self._store.get(self._ctx.key)

    def update(self, value):
        self._store[self._ctx.key] = value
        self._ctx.touched.add(self._ctx.key)


class _Context:
    """Stands in for PyFlink's RuntimeContext and (keyed) process-function Context."""

    def __init__(self):
        self.key = None
        self.states: dict[str, dict] = {}
        self.touched: set = set()

    def get_state(self, descriptor):
        return _State(self.states.setdefault(descriptor.name, {}), self)

    def get_current_key(self):
        return self.key

    def commit(self) -> int:
        """What a bundle end costs: each touched key's value pickled once."""
        size = 0
        for store in self.states.values():
            for key in self.touched:
                if key in store:
                    size += len(pickle.dumps(store[key]))
        self.touched.clear()
        return size


def _drain(generator) -> int:
    count = 0
    if generator is not None:
        for _ in generator:
            count += 1
    return count


def time_enrichment(props, raw: list[bytes]) -> dict:
    from jobs.order_enrichment import EnrichOrders

    function = EnrichOrders(props)
    function.open(_Context())
    ctx = _Context()
    outputs = 0
    start = time.process_time()
    for data in raw:
        outputs += _drain(function.process_element(data, ctx))
    elapsed = time.process_time() - start
    return {"us_per_event": round(elapsed / len(raw) * 1e6, 1),
            "outputs_per_event": round(outputs / len(raw), 2)}


def prepared_inventory(props, tagged: list[tuple[str, bytes]]):
    """A ``StoreInventory`` with every store's opening stock already in state (reading it
    from the database is a once-per-store startup cost, not part of an event's)."""
    from jobs.inventory_windowing import StoreInventory

    function = StoreInventory(props)
    ctx = _Context()
    function.open(ctx)
    for key in sorted({k for k, _ in tagged}, key=int):
        ctx.key = key
        state = function._stock_state
        if state.value() is None:
            state.update(function._stock(int(key))[0].to_state())
    ctx.touched.clear()
    return function, ctx


def time_inventory(props, tagged: list[tuple[str, bytes]], bundle: int = 5000,
                   prepared=None) -> dict:
    function, ctx = prepared or prepared_inventory(props, tagged)
    outputs = pickled = 0
    start = time.process_time()
    for index, (key, data) in enumerate(tagged, 1):
        ctx.key = key
        outputs += _drain(function.process_element(("o", data), ctx))
        if index % bundle == 0:
            pickled += ctx.commit()
    elapsed = time.process_time() - start
    function.close()
    n = len(tagged)
    return {"us_per_event": round(elapsed / n * 1e6, 1),
            "outputs_per_event": round(outputs / n, 2),
            "pickled_bytes_per_event": round(pickled / n, 1)}


def inventory_breakdown(props, tagged: list[tuple[str, bytes]]) -> dict:
    """Where an inventory event's Python time goes, step by step (CPU µs per event), and what
    the proposed changes to ``pizzastream`` would save: ``orjson`` instead of ``json``,
    no defensive copies of the state, reorder checks limited to the ingredients the event
    changed (plus all of them when the clock enters a new bucket)."""
    import orjson

    from pizzastream.catalog import Catalog
    from pizzastream.inventory import (StoreStock, due_reorders, place_order,
                                       policies_from_reference_data)
    from pizzastream.orders import OrderLine
    from pizzastream.sales import enriched_status_json, fact_rows, sale_json

    catalog = Catalog.from_reference_data()
    policies = policies_from_reference_data()
    function, ctx = prepared_inventory(props, tagged)
    states = dict(ctx.states["stock"])
    steps = dict.fromkeys(("parse_json", "parse_orjson", "state_from_copy", "place_order",
                           "outputs_json", "due_reorders_all", "due_reorders_changed",
                           "state_to_copy"), 0)
    clock = time.process_time_ns
    for key, data in tagged:
        t0 = clock()
        order = EnrichedOrder.from_json(data)
        t1 = clock()
        doc = orjson.loads(data)
        lat, lon = doc.get("g", (None, None))
        EnrichedOrder(doc["e"], doc["o"], doc["s"], doc["c"], doc["f"], doc["t"], lat, lon,
                      tuple(OrderLine(*line) for line in doc["l"]))
        t2 = clock()
        stock = StoreStock.from_state(states[key])
        t3 = clock()
        bucket = stock.clock_ms // stock.bucket_ms
        decision = place_order(stock, order, catalog)
        t4 = clock()
        enriched_status_json(order, decision.status, decision.detail)
        if decision.accepted:
            sale_json(order)
            fact_rows(order)
        t5 = clock()
        probe = StoreStock.from_state(stock.to_state())
        t6 = clock()
        due_reorders(stock, policies, stock.clock_ms)
        t7 = clock()
        changed = (policies if stock.clock_ms // stock.bucket_ms != bucket
                   else {i: policies[i] for i in decision.consumed if i in policies})
        due_reorders(probe, changed, probe.clock_ms)
        t8 = clock()
        states[key] = stock.to_state()
        t9 = clock()
        for name, spent in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t7 - t6,
                                       t8 - t7, t9 - t8)):
            steps[name] += spent
    function.close()
    return {name: round(ns / len(tagged) / 1000, 2) for name, ns in steps.items()}


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
        "inventory": time_inventory(props, tagged),
        "inventory_steps_us": inventory_breakdown(props, tagged),
        "json": json_costs(raw, tagged),
    }


def main() -> None:
    from bench import benchdb

    props = benchdb.ensure()
    raw = raw_orders(20_000, props)
    tagged = enriched_orders(raw, props)
    print(json.dumps(run(props), indent=2))
    print("== EnrichOrders.process_element")
    print(profile(lambda: time_enrichment(props, raw)))
    print("== StoreInventory.process_element")
    prepared = prepared_inventory(props, tagged)
    print(profile(lambda: time_inventory(props, tagged, prepared=prepared)))


if __name__ == "__main__":
    main()
