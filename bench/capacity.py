"""Capacity model: Kinesis shards and MSF KPUs for a given load, and what they cost.

Pure Python, no I/O: ``plan(load, jobs)`` turns a peak rate, the store skew and the
measured per-core rates of the jobs into shards per stream, KPUs per application and a
monthly bill. ``python -m bench`` feeds it the rates it just measured; ``python -m
bench.capacity`` prints the plan for the planned peak with the target rates.

Kinesis (provisioned mode): a shard takes 1 MB/s or 1,000 records/s in. Every stream is
keyed by ``str(store_id)`` and a key always lands on one shard, so the constraint is not
only the total: a busy store's records all hit one shard. Three placements are computed:

* ``lower_bound``: total load / shard capacity, ignoring keys (unreachable in practice);
* ``contiguous``: shard boundaries placed by ``SplitShard`` between stores in MD5 order
  (what Kinesis hashes a partition key to), filled greedily up to the target utilisation:
  reachable with the existing keys, an operational task. This is the plan's number;
* ``even_ranges``: what ``UpdateShardCount`` gives (equal hash ranges): the busiest
  ranges decide, and busy stores colliding on a range force far more shards.

A single store whose rate exceeds one shard's capacity (at the target utilisation) cannot
be served with ``str(store_id)`` as the key at all: it is reported as ``hot_stores`` and
counted as if its key were salted (``"<store>#<n>"``) over just enough shards, which the
producer and the consuming job would have to do (see docs/benchmarks.md).

Aggregation (``Aggregation``): a producer packs the events of one store that arrive within
``linger_s`` into one Kinesis record of up to 1 MB (KPL-style aggregation, or a compact batch
of the project's own), so a store sending ``r`` events/s sends ``max(1, r x linger_s)``
events per record. The records/s limit then all but stops binding and the bytes decide; a
busy store packs more than a quiet one, which is why the packing is computed per store and
not as one factor per stream. A PUT payload unit is 25 KB, so a packed record can cost more
than one.

MSF: 1 KPU = 1 vCPU + 4 GB; an application needs ``ceil(rate / (per-core rate x
utilisation))`` KPUs plus one orchestration KPU, and 50 GB running storage per KPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pizzastream.resharding import hash_key

SHARD_RECORDS_PER_S = 1_000
SHARD_BYTES_PER_S = 1_048_576
MAX_RECORD_BYTES = 1_048_576
PUT_PAYLOAD_UNIT_BYTES = 25 * 1024
HASH_SPACE = 2**128


@dataclass(frozen=True)
class Aggregation:
    """Each store's events of ``linger_s`` in one record (KPL's ``RecordMaxBufferedTime``
    defaults to 100 ms), never over ``max_record_bytes``."""

    linger_s: float = 0.1
    max_record_bytes: int = MAX_RECORD_BYTES

    def events_per_record(self, events_per_s: float, event_bytes: int) -> float:
        return max(
            1.0, min(events_per_s * self.linger_s, float(self.max_record_bytes // event_bytes))
        )


@dataclass(frozen=True)
class Prices:
    """US East (N. Virginia) list prices, USD, as published on
    https://aws.amazon.com/kinesis/data-streams/pricing/ (provisioned mode: shard-hour,
    PUT payload unit of 25 KB) and
    https://aws.amazon.com/managed-service-apache-flink/pricing/ (KPU-hour, running
    application storage GB-month; one extra KPU per application for orchestration, see
    https://docs.aws.amazon.com/managed-flink/latest/java/how-pricing.html). Check them
    before budgeting: they change, and differ per region."""

    kpu_hour: float = 0.11
    shard_hour: float = 0.015
    put_payload_units_per_million: float = 0.014
    running_storage_gb_month: float = 0.10
    storage_gb_per_kpu: int = 50
    hours_per_month: float = 730.0


@dataclass(frozen=True)
class Load:
    """The traffic to plan for. ``store_weights[i]`` is store ``i + 1``'s share of all
    events (summing to 1); ``skewed_weights()`` gives the 80/20 split."""

    peak_events_per_s: float
    store_weights: tuple[float, ...]
    events_per_day: float = 1e9
    days_per_month: float = 30.0


@dataclass(frozen=True)
class StreamSpec:
    """A Kinesis stream: records per input event, and the average record size."""

    name: str
    records_per_event: float
    record_bytes: int


@dataclass(frozen=True)
class JobSpec:
    """An MSF application: the events it reads per input event, and what one core does
    (events per CPU-second, as ``python -m bench`` measures it)."""

    name: str
    events_per_event: float
    events_per_core_s: float


EXTERNAL_STREAM = "orders"  # written by the web layer, one record per order

# Shares from simulation.traffic: 80% online, 60% of online orders delivered, ~95% of
# records valid (5% bad in the generator's default traffic); record sizes measured on
# the generator's records (bench/capacity sizes in docs/benchmarks.md).
VALID_SHARE = 0.95
ONLINE_SHARE = 0.8
DELIVERY_SHARE_OF_ONLINE = 0.6
STREAMS = (
    StreamSpec("orders", 1.0, 260),
    StreamSpec("orders-enriched", VALID_SHARE, 160),
    StreamSpec("order-status", 1.0, 170),
    StreamSpec("sales", VALID_SHARE * ONLINE_SHARE, 180),
    StreamSpec("deliveries", VALID_SHARE * ONLINE_SHARE * DELIVERY_SHARE_OF_ONLINE, 180),
    StreamSpec("pos-orders", VALID_SHARE * (1 - ONLINE_SHARE), 180),
)


def jobs_at(enrichment: float, inventory: float, hourly: float) -> tuple[JobSpec, ...]:
    """The three applications at the given per-core rates (events per CPU-second)."""
    return (
        JobSpec("order_enrichment", 1.0, enrichment),
        JobSpec("inventory_windowing", VALID_SHARE, inventory),
        JobSpec("hourly_metrics", VALID_SHARE * ONLINE_SHARE, hourly),
    )


def skewed_weights(
    stores: int = 2000, busy_fraction: float = 0.2, busy_share: float = 0.8
) -> tuple[float, ...]:
    """``busy_fraction`` of the stores (the first ones) carry ``busy_share`` of the
    events, evenly; the others share the rest evenly."""
    if not (0 < busy_fraction < 1 and 0 < busy_share < 1 and stores > 1):
        raise ValueError("fractions must be strictly between 0 and 1")
    busy = round(stores * busy_fraction)
    return tuple(
        [busy_share / busy] * busy + [(1 - busy_share) / (stores - busy)] * (stores - busy)
    )


def reference_weights() -> tuple[float, ...]:
    """The seeded stores' traffic weights (80/20, and +-50% within each group)."""
    from pizzastream import reference_data

    stores = sorted(reference_data.stores(), key=lambda s: s.store_id)
    return tuple(s.traffic_weight for s in stores)


@dataclass
class StreamPlan:
    name: str
    records_per_s: float
    bytes_per_s: float
    busiest_store_records_per_s: float
    lower_bound: int
    contiguous: int
    even_ranges: int | None  # None: not found below the search limit
    hot_stores: list[int] = field(default_factory=list)
    events_per_s: float = 0.0
    put_units_per_s: float = 0.0

    @property
    def events_per_record(self) -> float:
        return self.events_per_s / self.records_per_s if self.records_per_s else 1.0

    @property
    def shards(self) -> int:
        return self.contiguous


def _pieces(rate: float, bytes_rate: float, records_cap: float, bytes_cap: float) -> int:
    return max(1, math.ceil(rate / records_cap), math.ceil(bytes_rate / bytes_cap))


StoreRate = tuple[int, float, float]  # (store_id, records/s, bytes/s)


def contiguous_shards(stores: list[StoreRate], utilisation: float) -> tuple[int, list[int]]:
    """Fewest shards covering the stores in hash order with no shard above the target;
    stores too hot for one shard are split into salted pieces. Returns (shards, hot)."""
    records_cap = SHARD_RECORDS_PER_S * utilisation
    bytes_cap = SHARD_BYTES_PER_S * utilisation
    shards, hot = 0, []
    load = load_bytes = None  # the shard being filled; None: none open yet
    for store_id, rate, bytes_rate in sorted(stores, key=lambda item: hash_key(str(item[0]))):
        pieces = _pieces(rate, bytes_rate, records_cap, bytes_cap)
        if pieces > 1:  # salted keys hash elsewhere: shards of its own
            hot.append(store_id)
            shards += pieces
            continue
        if load is None or load + rate > records_cap or load_bytes + bytes_rate > bytes_cap:  # type: ignore[operator]  # both set together
            shards += 1
            load = load_bytes = 0.0
        load += rate
        load_bytes += bytes_rate  # type: ignore[operator]  # both set together
    return shards, sorted(hot)


def even_range_shards(
    stores: list[StoreRate], utilisation: float, start: int, limit: int = 20_000
) -> int | None:
    """Smallest shard count with equal hash ranges (``UpdateShardCount``) under which no
    shard exceeds the target; None if none up to ``limit``."""
    records_cap = SHARD_RECORDS_PER_S * utilisation
    bytes_cap = SHARD_BYTES_PER_S * utilisation
    if any(rate > records_cap or bytes_rate > bytes_cap for _, rate, bytes_rate in stores):
        return None
    placed = [(hash_key(str(store_id)), rate, bytes_rate) for store_id, rate, bytes_rate in stores]
    n = max(1, start)
    while n <= limit:
        loads = [0.0] * n
        loads_bytes = [0.0] * n
        for position, rate, bytes_rate in placed:
            loads[position * n // HASH_SPACE] += rate
            loads_bytes[position * n // HASH_SPACE] += bytes_rate
        if max(loads) <= records_cap and max(loads_bytes) <= bytes_cap:
            return n
        n = n + max(1, n // 50)
    return None


def plan_stream(
    load: Load,
    stream: StreamSpec,
    utilisation: float,
    events_per_record: float = 1.0,
    aggregation: Aggregation | None = None,
) -> StreamPlan:
    """``events_per_record`` > 1: that many events packed into every Kinesis record;
    ``aggregation``: each store packs what its own rate allows (see ``Aggregation``).
    Either way fewer records, the same bytes."""
    events = load.peak_events_per_s * stream.records_per_event
    stores, units = [], 0.0
    for i, weight in enumerate(load.store_weights):
        store_events = weight * events
        packed = (
            aggregation.events_per_record(store_events, stream.record_bytes)
            if aggregation
            else events_per_record
        )
        records = store_events / packed
        stores.append((i + 1, records, store_events * stream.record_bytes))
        units += records * math.ceil(packed * stream.record_bytes / PUT_PAYLOAD_UNIT_BYTES)
    total = sum(records for _, records, _ in stores)
    bytes_per_s = events * stream.record_bytes
    lower = max(
        math.ceil(total / (SHARD_RECORDS_PER_S * utilisation)),
        math.ceil(bytes_per_s / (SHARD_BYTES_PER_S * utilisation)),
        1,
    )
    contiguous, hot = contiguous_shards(stores, utilisation)
    return StreamPlan(
        stream.name,
        total,
        bytes_per_s,
        max(r for _, r, _ in stores),
        lower,
        contiguous,
        even_range_shards(stores, utilisation, lower),
        hot,
        events,
        units,
    )


@dataclass
class JobPlan:
    name: str
    events_per_s: float
    events_per_core_s: float
    kpus: int  # processing KPUs (= parallelism at 1 per KPU)
    billed_kpus: int  # plus the orchestration KPU


def plan_job(load: Load, job: JobSpec, utilisation: float) -> JobPlan:
    if job.events_per_core_s <= 0:
        raise ValueError(f"{job.name}: per-core rate must be positive")
    rate = load.peak_events_per_s * job.events_per_event
    kpus = max(1, math.ceil(rate / (job.events_per_core_s * utilisation)))
    return JobPlan(job.name, rate, job.events_per_core_s, kpus, kpus + 1)


@dataclass
class Plan:
    load: Load
    utilisation: float
    streams: list[StreamPlan]
    jobs: list[JobPlan]
    prices: Prices
    internal_events_per_record: float = 1.0
    aggregation: Aggregation | None = None

    @property
    def shards(self) -> int:
        return sum(s.shards for s in self.streams)

    @property
    def billed_kpus(self) -> int:
        return sum(j.billed_kpus for j in self.jobs)

    def monthly_cost(self) -> dict[str, float]:
        p = self.prices
        hours = p.hours_per_month
        kpu = self.billed_kpus * p.kpu_hour * hours
        storage = self.billed_kpus * p.storage_gb_per_kpu * p.running_storage_gb_month
        shards = self.shards * p.shard_hour * hours
        # Each stream's PUT payload units per event as at the peak; quieter hours pack
        # fewer events per aggregated record, so with aggregation this is a floor.
        units_per_month = (
            self.load.events_per_day
            * self.load.days_per_month
            * sum(s.put_units_per_s / self.load.peak_events_per_s for s in self.streams)
        )
        puts = units_per_month / 1e6 * p.put_payload_units_per_million
        return {
            "msf_kpu": round(kpu, 2),
            "msf_storage": round(storage, 2),
            "kinesis_shards": round(shards, 2),
            "kinesis_put_units": round(puts, 2),
            "total": round(kpu + storage + shards + puts, 2),
        }


def plan(
    load: Load,
    jobs: tuple[JobSpec, ...],
    streams: tuple[StreamSpec, ...] = STREAMS,
    utilisation: float = 0.8,
    prices: Prices = Prices(),
    internal_events_per_record: float = 1.0,
    aggregation: Aggregation | None = None,
) -> Plan:
    """Shards and KPUs to carry ``load`` at no more than ``utilisation`` of each shard
    and core (headroom to catch up after a restart). ``internal_events_per_record``: events
    per Kinesis record on the streams the pipeline writes itself (not ``orders``);
    ``aggregation``: every stream, ``orders`` included (the order intake aggregating per
    store), packs each store's events by its rate instead."""
    if not 0 < utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    if aggregation and internal_events_per_record != 1:
        raise ValueError("aggregation packs by each store's rate: no fixed events per record")
    streams_plan = [
        plan_stream(
            load,
            s,
            utilisation,
            1.0 if s.name == EXTERNAL_STREAM else internal_events_per_record,
            aggregation,
        )
        for s in streams
    ]
    return Plan(
        load,
        utilisation,
        streams_plan,
        [plan_job(load, j, utilisation) for j in jobs],
        prices,
        internal_events_per_record,
        aggregation,
    )


def planned_peak(weights: tuple[float, ...] | None = None) -> Load:
    """The seed's planned peak: ~350,000 events/s, 80% on 20% of 2,000 stores."""
    return Load(350_000, weights or skewed_weights())


def format_plan(p: Plan) -> str:
    packing = (
        f"; {p.internal_events_per_record:g} events per record on the pipeline's own streams"
        if p.internal_events_per_record != 1
        else ""
    )
    if p.aggregation:
        packing = (
            f"; every stream aggregating each store's events of "
            f"{p.aggregation.linger_s * 1000:g} ms into records of up to "
            f"{p.aggregation.max_record_bytes / 1_048_576:g} MB"
        )
    lines = [
        f"peak {p.load.peak_events_per_s:,.0f} events/s over {len(p.load.store_weights)} "
        f"stores, at most {p.utilisation:.0%} of each shard and core{packing}",
        "",
        f"{'stream':<16}{'records/s':>11}{'events/rec':>11}{'MB/s':>7}"
        f"{'busiest store/s':>16}{'lower bound':>12}{'shards':>8}{'even ranges':>12}"
        f"  hot stores",
    ]
    for s in p.streams:
        even = "n/a" if s.even_ranges is None else f"{s.even_ranges:,}"
        lines.append(
            f"{s.name:<16}{s.records_per_s:>11,.0f}{s.events_per_record:>11.1f}"
            f"{s.bytes_per_s / 1e6:>7.1f}"
            f"{s.busiest_store_records_per_s:>16,.0f}{s.lower_bound:>12,}"
            f"{s.shards:>8,}{even:>12}  {len(s.hot_stores)}"
        )
    lines += ["", f"{'application':<22}{'events/s':>10}{'per core':>10}{'KPUs':>6}{'billed':>8}"]
    for j in p.jobs:
        lines.append(
            f"{j.name:<22}{j.events_per_s:>10,.0f}{j.events_per_core_s:>10,.0f}"
            f"{j.kpus:>6}{j.billed_kpus:>8}"
        )
    cost = p.monthly_cost()
    lines += [
        "",
        f"shards {p.shards:,}, billed KPUs {p.billed_kpus}; monthly (USD, "
        f"{p.prices.hours_per_month:.0f} h at peak capacity): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in cost.items()),
    ]
    return "\n".join(lines)


def main() -> None:
    for title, weights in (
        ("even 80/20", skewed_weights()),
        ("seeded stores (80/20, +-50% within groups)", reference_weights()),
    ):
        for packing, aggregation in (
            ("one event per record", None),
            ("aggregated per store", Aggregation()),
        ):
            print(f"== {title}, {packing}, at the target rates (50,000 events/core-s order path)")
            print(
                format_plan(
                    plan(
                        planned_peak(weights),
                        jobs_at(100_000, 100_000, 750_000),
                        aggregation=aggregation,
                    )
                )
            )
            print()


if __name__ == "__main__":
    main()
