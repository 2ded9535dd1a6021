"""The order path's dataflow logic run in memory, for fast tests: records in from a
``TestingSource``, each named output collected by a ``TestingSink``, one call to run a job
(``run_order_enrichment``, ``run_inventory_windowing``, or ``run_order_path`` for both
chained), as Bytewax's ``bytewax.testing`` runs a dataflow. No JVM, no PyFlink, no edge.

What runs is the Python the Flink operators call, unchanged: ``order_batches.enrich_batch``
once per batch, ``order_batches.ShardDesk.decide`` once per store shard's batch with each
store's state written (``store_to_bytes``) when a batch asks to persist and read back by a
later run (``JobState``), ``order_batches.repeat_letter`` for each repeat. The batches are
framed and the results read with ``pizzastream.batches``; what the JVM helpers do around them
is written here once, each function naming the class it mirrors: batching (``OrderBatcher``,
``StoreBatcher``: per store shard in arrival order, closed at the batch size, by the delay
timer in arrival time, at a checkpoint and at the end of input), repeats dropped by
``EVENT_ID_FIELDS`` within the dedup TTL (``DedupKey``, ``StoreBatcher``), store shards
(``StoreShardKey``), the fan-out by tag into the fields of ``Enrichment`` and ``Decisions``
(``BatchOutputs``), table rows parsed from tab-separated lines (``DelimitedRows``) and the
Redis ``SET`` commands of status lines (``RedisSetCommands``).

What it does not do: checkpoints and restores (a ``Checkpoint`` in the source only closes
batches and persists stores as a barrier would; ``JobState`` is what a checkpoint at the end
of a run holds), Kinesis, Aurora and Redis (the catalog, ingredient policies, opening stock
and sales history are injected; the Redis status gate, which turns a refused status write
into a dead letter, is not run), parallelism (one instance of each operator: every shard is
decided by one ``ShardDesk``). hourly_metrics (Flink SQL windows) has no in-memory runner.
tests/jobs/test_testing.py holds it to the rules; tests/e2e/test_order_path_parallel_e2e.py
and tests/jobs/test_inventory_windowing_e2e.py to the mini-cluster, record by record.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import os
import re
import time
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from connectors.redis_store import RedisCommand, order_status_key
from pizzastream.batches import LineRoutes, frame_raw_records, frame_store_records, result_lines
from pizzastream.catalog import Catalog, Row
from pizzastream.dead_letters import DeadLetter
from pizzastream.order_batches import (
    ALERT,
    DECISION_ROUTES,
    DELIVERY,
    ENRICHED,
    ENRICHMENT_ROUTES,
    EVENT_ID_FIELDS,
    FACT,
    ORDER,
    POS_ORDER,
    RESTOCK,
    ROW_LAYOUTS,
    SALE,
    STATUS,
    STATUS_CACHE,
    STOCK_LEVEL,
    SUPPLIER_ORDER,
    SUPPLIER_ORDER_ROW,
    Decisions,
    DelimitedLayout,
    Enrichment,
    ShardDesk,
    enrich_batch,
    repeat_letter,
)
from pizzastream.orders import EnrichedOrder, OrderRules
from pizzastream.replenishment import HistoryWindow, ReplenishmentPolicy
from pizzastream.settings import InventorySettings, OrderPathSettings
from pizzastream.ticks import tick_records

# ``Row(partition_key, payload)`` of an output stream (``BatchOutputs.KEYED_RECORD``).
KeyedRecord = namedtuple("KeyedRecord", ("partition_key", "payload"))
# The table rows of inventory_windowing, named as the job's row types.
ROW_TYPES: dict[str, Any] = {
    FACT: namedtuple("FactRow", ROW_LAYOUTS[FACT].fields),
    SUPPLIER_ORDER_ROW: namedtuple("SupplierOrderRow", ROW_LAYOUTS[SUPPLIER_ORDER_ROW].fields),
    ALERT: namedtuple("AlertRow", ROW_LAYOUTS[ALERT].fields),
    STOCK_LEVEL: namedtuple("StockLevelRow", ROW_LAYOUTS[STOCK_LEVEL].fields),
}
# The settings' defaults, as a job without an ``OrderPath`` group or with the default
# history window has them.
DEFAULT_PATH = OrderPathSettings()
DEFAULT_INVENTORY = InventorySettings(HistoryWindow())
# Each job's result line tags and the output each goes to (jobs.order_enrichment.enrich_orders,
# jobs.inventory_windowing.decide_orders); a line of any other tag fails the run, as it fails
# BatchOutputs.
ENRICHMENT_OUTPUTS = {ENRICHED: "enriched", STATUS: "statuses", STATUS_CACHE: "status_commands"}
DECISION_OUTPUTS = {
    STATUS: "statuses",
    STATUS_CACHE: "status_commands",
    SALE: "sales",
    POS_ORDER: "pos_orders",
    DELIVERY: "deliveries",
    SUPPLIER_ORDER: "supplier_orders",
    FACT: "facts",
    SUPPLIER_ORDER_ROW: "supplier_order_rows",
    ALERT: "alerts",
    STOCK_LEVEL: "levels",
}


@dataclass(frozen=True)
class SourceRecord:
    """A record as the jobs' Kinesis sources hand it on: its partition key, its bytes, the
    kind its stream is tagged with (order_enrichment reads only the bytes), and when it
    arrived, in processing time (ms): the batch delay and the dedup TTL count in it."""

    partition_key: str
    data: bytes
    kind: str = ORDER
    arrival_ms: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint barrier between two records: every open batch closes, and the stores
    a shard changed since the last one are persisted (their stock levels published)."""


class TestingSource:
    """Records in arrival order (``SourceRecord``, with ``Checkpoint`` barriers between
    them); sources add up with ``+``."""

    __test__ = False  # not a pytest test class

    def __init__(self, items: Iterable[SourceRecord | Checkpoint]):
        self.items: list[SourceRecord | Checkpoint] = list(items)
        times = [at for at, _ in _timed(self.items)]
        if times != sorted(times):
            raise ValueError("arrival times go back: processing time only moves forward")

    def __add__(self, other: TestingSource) -> TestingSource:
        return TestingSource(self.items + other.items)

    @classmethod
    def raw_orders(cls, records: Iterable[bytes | dict], arrival_ms: int = 0) -> TestingSource:
        """Orders as the ``orders`` stream carries them: bytes, or a JSON document."""
        return cls(
            SourceRecord(
                "", raw if isinstance(raw, bytes) else json.dumps(raw).encode(), ORDER, arrival_ms
            )
            for raw in records
        )

    @classmethod
    def enriched_orders(cls, orders: Iterable[EnrichedOrder], arrival_ms: int = 0) -> TestingSource:
        """``orders-enriched`` records, keyed by store."""
        return cls(
            SourceRecord(str(order.store_id), order.to_json().encode(), ORDER, arrival_ms)
            for order in orders
        )

    @classmethod
    def restocks(cls, records: Iterable[dict], arrival_ms: int = 0) -> TestingSource:
        """``restocks`` records, keyed by the store they name."""
        return cls(
            SourceRecord(
                str(record.get("store_id")), json.dumps(record).encode(), RESTOCK, arrival_ms
            )
            for record in records
        )

    @classmethod
    def ticks(cls, store_ids: Iterable[int], hour_ms: int, arrival_ms: int = 0) -> TestingSource:
        """The hourly review ticks of ``store_ids`` (``pizzastream.ticks``), on ``restocks``."""
        return cls(
            SourceRecord(key, data, RESTOCK, arrival_ms)
            for key, data in tick_records(store_ids, hour_ms)
        )


class TestingSink:
    """Collects the records of one named output of a run (a field of ``Enrichment`` or
    ``Decisions``) into ``records``."""

    __test__ = False  # not a pytest test class

    def __init__(self, output: str, records: list | None = None):
        self.output = output
        self.records: list = [] if records is None else records


@dataclass
class JobState:
    """What inventory_windowing keeps in Flink state, as a checkpoint taken at the end of a
    run holds it: each shard's stores (``store_to_bytes``) and the sightings of each event
    id (``DedupKey`` key -> ``(times seen, last seen ms)``). A later run given the same
    ``JobState`` starts as a job restored from that checkpoint."""

    stores: dict[str, dict[int, bytes]] = field(default_factory=dict)
    sightings: dict[str, tuple[int, int]] = field(default_factory=dict)


class OrderPath(NamedTuple):
    """What each job of the order path put out in a ``run_order_path``."""

    enrichment: Enrichment[list]
    decisions: Decisions[list]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def no_sales(store_id: int, first_ms: int, end_ms: int) -> list[Row]:
    """The sales history of a store that sold nothing before (an empty ``order_fct``)."""
    return []


def run_order_enrichment(
    source: TestingSource,
    catalog: Catalog | Callable[[], Catalog],
    rules: OrderRules,
    *,
    path: OrderPathSettings = DEFAULT_PATH,
    clock: Callable[[], int] = wall_clock_ms,
    sinks: Iterable[TestingSink] = (),
) -> Enrichment[list]:
    """order_enrichment's logic over ``source``: raw orders batched as ``OrderBatcher``
    does, each batch through ``enrich_batch`` (``clock()`` its now), the result fanned out.
    ``enriched``, ``statuses``: ``KeyedRecord``; ``status_commands``: ``RedisCommand``;
    ``dead_letters``: ``DeadLetter``."""
    outputs, _ = _enrich(source, catalog, rules, path, clock)
    return _collect(outputs, sinks)


def run_inventory_windowing(
    source: TestingSource,
    catalog: Catalog | Callable[[], Catalog],
    policies: Mapping[int, ReplenishmentPolicy] | Callable[[], Mapping[int, ReplenishmentPolicy]],
    opening_stock: Mapping[int, Mapping[int, int]] | Callable[[int], Mapping[int, int]],
    sales_history: Callable[[int, int, int], Iterable[Row]] = no_sales,
    *,
    path: OrderPathSettings = DEFAULT_PATH,
    inventory: InventorySettings = DEFAULT_INVENTORY,
    state: JobState | None = None,
    sinks: Iterable[TestingSink] = (),
) -> Decisions[list]:
    """inventory_windowing's logic over ``source``: tagged orders, restocks and ticks, repeats
    dropped (``dead_letters``) and the rest batched per store shard as ``StoreBatcher``
    does, each batch through one ``ShardDesk`` (``catalog``, ``policies``, ``opening_stock``
    (a store's ``{ingredient: on hand}``) and ``sales_history`` as its constructor takes
    them, or plain values), the result fanned out. Streams: ``KeyedRecord``;
    ``status_commands``: ``RedisCommand``; table rows: ``ROW_TYPES``; ``dead_letters``:
    ``DeadLetter``. ``state``, if given, is read as restored and left as checkpointed at
    the end."""
    state = JobState() if state is None else state
    opening = opening_stock if callable(opening_stock) else _lookup(opening_stock)
    desk = ShardDesk(
        _supplier(catalog),
        _supplier(policies),
        opening,
        sales_history,
        inventory.history,
    )
    outputs: Decisions[list] = Decisions(*([] for _ in Decisions._fields))
    by_name = outputs._asdict()
    batcher = _StoreBatcher(path, inventory.dedup_ttl_ms, state, os.urandom(8))
    for event in batcher.run(source.items):
        if isinstance(event, DeadLetter):
            outputs.dead_letters.append(event)
            continue
        shard, batch = event
        result, letters, saved = desk.decide(shard, batch, state.stores.setdefault(shard, {}).get)
        state.stores[shard].update(saved)
        outputs.dead_letters.extend(letters)
        if result:
            _fan_out(result, DECISION_OUTPUTS, by_name, DECISION_ROUTES)
    return _collect(outputs, sinks)


def run_order_path(
    orders: TestingSource,
    catalog: Catalog | Callable[[], Catalog],
    rules: OrderRules,
    policies: Mapping[int, ReplenishmentPolicy] | Callable[[], Mapping[int, ReplenishmentPolicy]],
    opening_stock: Mapping[int, Mapping[int, int]] | Callable[[int], Mapping[int, int]],
    sales_history: Callable[[int, int, int], Iterable[Row]] = no_sales,
    *,
    restocks: TestingSource | None = None,
    path: OrderPathSettings = DEFAULT_PATH,
    inventory: InventorySettings = DEFAULT_INVENTORY,
    clock: Callable[[], int] = wall_clock_ms,
    state: JobState | None = None,
    enrichment_sinks: Iterable[TestingSink] = (),
    decision_sinks: Iterable[TestingSink] = (),
) -> OrderPath:
    """Both jobs chained: raw ``orders`` through order_enrichment, its ``enriched`` records
    (arriving when their batch closes) with ``restocks`` (ticks too) into
    inventory_windowing, the two merged by arrival time (orders first at the same time)."""
    enrichment, arrivals = _enrich(orders, catalog, rules, path, clock)
    enriched = [
        SourceRecord(record.partition_key, record.payload.encode(), ORDER, arrival)
        for record, arrival in zip(enrichment.enriched, arrivals, strict=True)
    ]
    merged = heapq.merge(
        ((at, 0, n, item) for n, (at, item) in enumerate(_timed(enriched))),
        (
            (at, 1, n, item)
            for n, (at, item) in enumerate(_timed(restocks.items if restocks else []))
        ),
    )
    decisions = run_inventory_windowing(
        TestingSource(item for *_, item in merged),
        catalog,
        policies,
        opening_stock,
        sales_history,
        path=path,
        inventory=inventory,
        state=state,
        sinks=decision_sinks,
    )
    return OrderPath(_collect(enrichment, enrichment_sinks), decisions)


def _timed(items: Iterable[SourceRecord | Checkpoint]) -> Iterator[tuple[int, Any]]:
    """Each item with its arrival time; a barrier's is the record's before it."""
    now = 0
    for item in items:
        if isinstance(item, SourceRecord):
            now = item.arrival_ms
        yield now, item


def _enrich(
    source: TestingSource,
    catalog: Catalog | Callable[[], Catalog],
    rules: OrderRules,
    path: OrderPathSettings,
    clock: Callable[[], int],
) -> tuple[Enrichment[list], list[int]]:
    """order_enrichment's outputs and, per ``enriched`` record, when its batch closed."""
    current = _supplier(catalog)
    outputs: Enrichment[list] = Enrichment([], [], [], [])
    by_name = outputs._asdict()
    arrivals: list[int] = []
    for closed_ms, records in order_batches(
        source.items, path.batch_max_records, path.batch_max_delay_ms
    ):
        result, letters = enrich_batch(frame_raw_records(records), current(), rules, clock())
        outputs.dead_letters.extend(letters)
        if result:
            before = len(outputs.enriched)
            _fan_out(result, ENRICHMENT_OUTPUTS, by_name, ENRICHMENT_ROUTES)
            arrivals += [closed_ms] * (len(outputs.enriched) - before)
    return outputs, arrivals


def order_batches(
    items: Iterable[SourceRecord | Checkpoint], max_records: int, max_delay_ms: int
) -> Iterator[tuple[int, list[bytes]]]:
    """``(closed at ms, records' bytes)`` of each batch ``pizzastream.flink.OrderBatcher``
    makes: closed at ``max_records``, ``max_delay_ms`` after the first record of a flush
    round (its timer fires before a record arriving then), at a checkpoint and at the end
    of input."""
    pending: list[bytes] = []
    timer: int | None = None
    now = 0
    for item in items:
        if isinstance(item, Checkpoint):
            if pending:
                yield now, pending
                pending = []
            continue
        now = item.arrival_ms
        if timer is not None and now >= timer:
            if pending:
                yield timer, pending
                pending = []
            timer = None
        pending.append(item.data)
        if len(pending) >= max_records:
            yield now, pending
            pending = []
        elif timer is None:
            timer = now + max_delay_ms
    if pending:
        yield now, pending


def store_shard(partition_key: str, shards: int) -> int:
    """The store shard of a partition key, as ``pizzastream.flink.StoreShardKey`` picks
    it: ``store_id % shards`` for a key of at most 9 ASCII digits, else Java's
    ``String.hashCode`` of the key modulo ``shards``. (The JVM names each shard so that the
    shards spread over the key groups, which only matters for parallelism; here shard ``n``
    is ``store-shard-n``.)"""
    if 0 < len(partition_key) <= 9 and all("0" <= c <= "9" for c in partition_key):
        return int(partition_key) % shards
    return _java_string_hash(partition_key) % shards


def _java_string_hash(text: str) -> int:
    """Java's ``String.hashCode``: over UTF-16 code units, 32-bit signed."""
    units = text.encode("utf-16-be", "surrogatepass")
    value = 0
    for at in range(0, len(units), 2):
        value = (31 * value + (units[at] << 8 | units[at + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def dedup_key(kind: str, data: bytes, id_field_by_kind: Mapping[str, str] = EVENT_ID_FIELDS) -> str:
    """What makes two records the same event, as ``pizzastream.flink.DedupKey`` reads it:
    ``kind:id`` from the record's top-level string field named for its kind (read only as
    far as that field, the first of that name), else ``kind#`` and the base64 SHA-256 of its
    bytes."""
    field_name = id_field_by_kind.get(kind)
    if field_name is not None:
        found = _top_level_string(data, field_name)
        if found is not None:
            return f"{kind}:{found}"
    return f"{kind}#{base64.b64encode(hashlib.sha256(data).digest()).decode()}"


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is no JSON")


_JSON = json.JSONDecoder(parse_constant=_refuse)


def _top_level_string(data: bytes, name: str) -> str | None:
    """The string value of a top-level field, JSON read only up to it (``DedupKey``'s
    ``topLevelString``); None if the record is no JSON object up to there, lacks the
    field, or its value is not a string."""
    try:
        text = data.decode("utf-8")
        skip = _WHITESPACE.match
        at = skip(text, 0).end()  # type: ignore[union-attr]
        if text[at] != "{":
            return None
        at = skip(text, at + 1).end()  # type: ignore[union-attr]
        while text[at] == '"':
            key, at = _JSON.raw_decode(text, at)
            at = skip(text, at).end()  # type: ignore[union-attr]
            if text[at] != ":":
                return None
            value, at = _JSON.raw_decode(text, skip(text, at + 1).end())  # type: ignore[union-attr]
            if key == name:
                return value if isinstance(value, str) else None
            at = skip(text, at).end()  # type: ignore[union-attr]
            if text[at] != ",":
                return None
            at = skip(text, at + 1).end()  # type: ignore[union-attr]
        return None
    except (ValueError, IndexError):
        return None


class _StoreBatcher:
    """``pizzastream.flink.StoreBatcher`` behind ``StoreShardKey``: the first record of each
    event id passes, remembered ``ttl_ms`` from its last sighting (a repeat is a sighting);
    each repeat becomes its dead letter (``repeat_letter``, counted from 1); the rest are
    framed into one batch per store shard in arrival order, closed at the batch size, by the
    one delay timer (every shard with records), and with the ``PERSIST`` flag at a
    checkpoint and the end of input (every shard that saw records since the last persist,
    an empty batch if it has none pending)."""

    def __init__(self, path: OrderPathSettings, ttl_ms: int, state: JobState, epoch: bytes):
        self._path, self._ttl_ms, self._state, self._epoch = path, ttl_ms, state, epoch
        self._pending: dict[str, list[tuple[str, str, bytes]]] = {}
        self._since_persist: dict[str, None] = {}

    def run(
        self, items: Iterable[SourceRecord | Checkpoint]
    ) -> Iterator[tuple[str, bytes] | DeadLetter]:
        """Batches ``(shard, batch)`` and repeats' dead letters, in the order they leave."""
        timer: int | None = None
        sightings = self._state.sightings
        for item in items:
            if isinstance(item, Checkpoint):
                yield from self._flush(persist=True)
                continue
            now = item.arrival_ms
            if timer is not None and now >= timer:
                timer = None
                yield from self._flush(persist=False)
            kind = item.kind
            key = dedup_key(kind, item.data)
            seen = sightings.get(key)
            if seen is not None and now < seen[1] + self._ttl_ms:
                sightings[key] = (seen[0] + 1, now)
                yield repeat_letter(item.partition_key, kind, item.data, seen[0])
                continue
            sightings[key] = (1, now)
            shard = f"store-shard-{store_shard(item.partition_key, self._path.store_shards)}"
            batch = self._pending.setdefault(shard, [])
            # the kind as StoreBatcher writes it: its first character's low byte, "?" if none
            tag = chr(ord(kind[0]) & 0xFF) if kind else "?"
            batch.append((tag, item.partition_key, item.data))
            self._since_persist[shard] = None
            if len(batch) >= self._path.batch_max_records:
                yield self._emit(shard, persist=False)
            elif timer is None:
                timer = now + self._path.batch_max_delay_ms
        yield from self._flush(persist=True)

    def _emit(self, shard: str, persist: bool) -> tuple[str, bytes]:
        batch = frame_store_records(self._pending[shard], persist, self._epoch)
        self._pending[shard] = []
        return shard, batch

    def _flush(self, persist: bool) -> Iterator[tuple[str, bytes]]:
        if persist:
            shards = list(self._since_persist)
            self._since_persist.clear()
            for shard in shards:
                yield self._emit(shard, persist=True)
            return
        for shard, records in list(self._pending.items()):
            if records:
                yield self._emit(shard, persist=False)


def _fan_out(
    result: str, outputs: Mapping[str, str], into: Mapping[str, list], routes: LineRoutes
) -> None:
    """A batch's result lines into the outputs their tags and ``routes`` name
    (``BatchOutputs``), the table rows parsed (``DelimitedRows``) and the status cache
    entries as Redis commands (``RedisSetCommands``)."""
    if not result.endswith("\n"):
        raise ValueError(f"result line cut short: {result[-80:]!r}")
    status_key_prefix = order_status_key("")
    for tag, key, payload in result_lines(result.encode(), routes):
        name = outputs.get(tag)
        if name is None:
            raise ValueError(f"result line with unknown tag {tag}")
        if tag in ROW_LAYOUTS:
            into[name].append(ROW_TYPES[tag](*delimited_row(payload, ROW_LAYOUTS[tag])))
        elif tag == STATUS_CACHE:
            into[name].append(RedisCommand("SET", status_key_prefix + key, "", payload))
        else:
            into[name].append(KeyedRecord(key, payload))


_JAVA_INT = re.compile(r"[+-]?\d+")
_BOUNDS = {"I": 2**31, "L": 2**63}


def delimited_row(payload: str, layout: DelimitedLayout) -> tuple[int | str, ...]:
    """The fields of a tab-separated payload as ``pizzastream.flink.DelimitedRows`` parses
    them: ``I`` a Java int, ``L`` a long, ``S`` text; a payload with more or fewer fields
    than ``layout`` (a bug between the writer and the reader) raises ``ValueError``."""
    texts = payload.split("\t")
    if len(texts) != len(layout.kinds):
        raise ValueError(
            f"payload has {len(texts)} fields, kinds {layout.kinds} wants"
            f" {len(layout.kinds)}: {payload}"
        )
    row: list[int | str] = []
    for kind, text in zip(layout.kinds, texts, strict=True):
        if kind == "S":
            row.append(text)
            continue
        if not _JAVA_INT.fullmatch(text) or not -_BOUNDS[kind] <= int(text) < _BOUNDS[kind]:
            raise ValueError(f"not a Java {'int' if kind == 'I' else 'long'}: {text!r}")
        row.append(int(text))
    return (*row,)


def _supplier(value):
    """A value as the zero-argument callable ``ShardDesk`` reads it through."""
    return value if callable(value) else lambda: value


def _lookup(stock: Mapping[int, Mapping[int, int]]) -> Callable[[int], Mapping[int, int]]:
    """A store's opening stock from a mapping (none: a store without stock)."""
    return lambda store_id: dict(stock.get(store_id, {}))


def _collect(outputs, sinks: Iterable[TestingSink]):
    """Hands each sink its output's records; returns ``outputs``."""
    for sink in sinks:
        if sink.output not in outputs._fields:
            raise ValueError(f"no output {sink.output!r}; outputs are {outputs._fields}")
        sink.records.extend(getattr(outputs, sink.output))
    return outputs
