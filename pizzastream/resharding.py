"""Where to split a hot Kinesis shard and which cold ones to merge: the arithmetic of
``python -m pizzastream.admin shards``, free of any AWS call so it can be checked on any
load table.

A partition key lands on the shard whose hash-key range holds the MD5 of the key, and all of
a store's records share one key (``str(store_id)``). So a shard's load is the sum of the
loads of the keys hashing into it, and a split can only move whole keys: splitting at the
middle of the range halves the load only if the keys happen to be spread evenly, which with
80% of the orders on 20% of the stores they are not. The planner therefore splits at the
boundary between two keys (in hash order) that leaves the two halves closest to equal, and a
store hotter than a whole shard is reported instead, since no split can help it.

Load is measured against both per-shard write limits at once (records/s and bytes/s): a
shard's *utilisation* is the larger of the two fractions, and that is what splitting halves
and merging adds up.

The planner works on a shard map and a load per key only, never on shard ids, so the same
map and loads always give the same plan, and the plan of a planned map is empty: applying the
first step and planning again from the new map gives the rest of the same plan. That is what
lets ``--apply`` stop anywhere and be run again.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

HASH_KEY_MAX = 2**128 - 1
GROUP = "Resharding"


class ConfigError(ValueError):
    """A ``Resharding`` property is missing or unusable; the message names it."""


def hash_key(partition_key: str) -> int:
    """Kinesis' placement of a partition key: its MD5 as a 128-bit unsigned integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


@dataclass(frozen=True)
class Limits:
    """A provisioned shard's write limits."""

    records_per_s: float = 1_000.0
    bytes_per_s: float = 1_048_576.0


@dataclass(frozen=True)
class Load:
    records_per_s: float = 0.0
    bytes_per_s: float = 0.0

    def __add__(self, other: Load) -> Load:
        return Load(self.records_per_s + other.records_per_s, self.bytes_per_s + other.bytes_per_s)

    def utilisation(self, limits: Limits) -> float:
        return max(self.records_per_s / limits.records_per_s, self.bytes_per_s / limits.bytes_per_s)


@dataclass(frozen=True)
class KeyLoad:
    key: str
    load: Load

    @property
    def hash(self) -> int:
        return hash_key(self.key)


@dataclass(frozen=True)
class Shard:
    """An open shard: ``start``..``end`` inclusive, as Kinesis gives its hash-key range."""

    shard_id: str
    start: int
    end: int


@dataclass(frozen=True)
class Policy:
    """``split_above``: a shard above this fraction of the limits is split;
    ``merge_below``: two adjacent shards are merged when together they stay at or under
    this fraction. ``merge_below`` < ``split_above``, or a merge could make a shard the next
    plan splits again."""

    limits: Limits = Limits()
    split_above: float = 0.8
    merge_below: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.merge_below < self.split_above <= 1:
            raise ConfigError(
                "Resharding needs 0 < merge_below < split_above <= 1, got "
                f"merge_below={self.merge_below}, split_above={self.split_above}"
            )
        if self.limits.records_per_s <= 0 or self.limits.bytes_per_s <= 0:
            raise ConfigError("Resharding shard limits must be positive")

    @classmethod
    def from_properties(cls, props: dict[str, dict[str, str]]) -> Policy:
        limits = Limits(
            setting(props, "shard_records_per_s", float), setting(props, "shard_bytes_per_s", float)
        )
        return cls(
            limits, setting(props, "split_above", float), setting(props, "merge_below", float)
        )


def setting(props: dict[str, dict[str, str]], key: str, kind: type[Any]) -> Any:
    """``Resharding.<key>`` as ``kind``, or a ``ConfigError`` naming it."""
    try:
        raw = props[GROUP][key]
    except KeyError:
        raise ConfigError(f"missing property {GROUP}.{key}") from None
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"property {GROUP}.{key}={raw!r} is not a {kind.__name__}") from None


def key_loads(records: Iterable[tuple[str, int]], seconds: float) -> list[KeyLoad]:
    """Per-key rates from ``(partition_key, record_bytes)`` pairs seen over ``seconds``.
    Kinesis counts a record's bytes as its data plus its partition key."""
    if seconds <= 0:
        raise ValueError("the measuring window must be positive")
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, size in records:
        counts[key][0] += 1
        counts[key][1] += size
    return [KeyLoad(key, Load(n / seconds, size / seconds)) for key, (n, size) in counts.items()]


def scaled_to_shard_totals(
    keys: list[KeyLoad], shards: list[Shard], totals: dict[str, Load]
) -> list[KeyLoad]:
    """Per-key loads from a sample of records, rescaled so each shard's keys add up to the
    shard's measured total (CloudWatch's ``IncomingRecords``/``IncomingBytes``): the sample
    gives the split between keys, the metric the level. A shard with a total but no sampled
    key keeps its load unplaced (nothing to split on)."""
    by_shard = _keys_by_shard(shards, keys)
    scaled = []
    for shard in shards:
        members = by_shard[shard.shard_id]
        total = totals.get(shard.shard_id, Load())
        sampled = sum((k.load for k in members), Load())
        for k in members:
            r = total.records_per_s / sampled.records_per_s if sampled.records_per_s else 0.0
            b = total.bytes_per_s / sampled.bytes_per_s if sampled.bytes_per_s else 0.0
            scaled.append(KeyLoad(k.key, Load(k.load.records_per_s * r, k.load.bytes_per_s * b)))
    return scaled


@dataclass(frozen=True)
class Split:
    shard_id: str
    new_starting_hash_key: int
    before: Load
    lower: Load
    upper: Load


@dataclass(frozen=True)
class Merge:
    shard_id: str
    adjacent_shard_id: str
    lower: Load
    upper: Load

    @property
    def after(self) -> Load:
        return self.lower + self.upper


Step = Split | Merge


@dataclass
class ShardLoad:
    shard: Shard
    load: Load
    keys: list[KeyLoad]  # hottest first

    def utilisation(self, limits: Limits) -> float:
        return self.load.utilisation(limits)


@dataclass
class Plan:
    policy: Policy
    before: list[ShardLoad]  # in hash order
    steps: list[Step]
    after: list[ShardLoad]  # in hash order; ids of shards still to be made are made up
    hot_keys: list[KeyLoad] = field(default_factory=list)  # hotter than one whole shard


def shard_loads(shards: Iterable[Shard], keys: Iterable[KeyLoad]) -> list[ShardLoad]:
    """Each open shard with the keys hashing into it, in hash order."""
    ordered = sorted(shards, key=lambda s: s.start)
    by_shard = _keys_by_shard(ordered, keys)
    result = []
    for shard in ordered:
        members = sorted(
            by_shard[shard.shard_id],
            key=lambda k: (-k.load.records_per_s, -k.load.bytes_per_s, k.key),
        )
        result.append(ShardLoad(shard, sum((k.load for k in members), Load()), members))
    return result


def _keys_by_shard(shards: Iterable[Shard], keys: Iterable[KeyLoad]) -> dict[str, list[KeyLoad]]:
    ordered = sorted(shards, key=lambda s: s.start)
    starts = [s.start for s in ordered]
    found: dict[str, list[KeyLoad]] = {s.shard_id: [] for s in ordered}
    for k in keys:
        h = k.hash
        i = bisect.bisect_right(starts, h) - 1
        if i < 0 or h > ordered[i].end:
            raise ValueError(f"key {k.key!r} hashes outside the open shards: is the map complete?")
        found[ordered[i].shard_id].append(k)
    return found


def split_point(shard: Shard, keys: list[KeyLoad], limits: Limits) -> int | None:
    """The ``NewStartingHashKey`` that leaves the two children's utilisation closest to
    equal (the larger of the two as small as it gets), placed at the hash of the first key
    of the upper child; None when fewer than two distinct hashes carry load."""
    groups: dict[int, Load] = defaultdict(Load)
    for k in keys:
        groups[k.hash] = groups[k.hash] + k.load
    hashes = sorted(h for h in groups if shard.start <= h <= shard.end)
    if len(hashes) < 2:
        return None
    total = sum((groups[h] for h in hashes), Load())
    best, best_at = None, None
    lower = Load()
    for i in range(1, len(hashes)):
        lower = lower + groups[hashes[i - 1]]
        upper = Load(
            total.records_per_s - lower.records_per_s, total.bytes_per_s - lower.bytes_per_s
        )
        worst = max(lower.utilisation(limits), upper.utilisation(limits))
        if best is None or worst < best:
            best, best_at = worst, hashes[i]
    return best_at


def plan(shards: Iterable[Shard], keys: Iterable[KeyLoad], policy: Policy) -> Plan:
    """Splits first (the hottest shard over ``split_above`` first, again and again while a
    child is still over it and has keys to split on), then merges (the adjacent pair with the
    smallest sum first, while a pair stays at or under ``merge_below``)."""
    keys = list(keys)
    limits = policy.limits
    before = shard_loads(shards, keys)
    current = [(sl.shard, sl.load, sl.keys) for sl in before]
    steps: list[Step] = []
    unsplittable: set[int] = set()  # shards (by start) with no split point
    while True:
        candidates = [
            (load.utilisation(limits), -shard.start, i)
            for i, (shard, load, _) in enumerate(current)
            if load.utilisation(limits) > policy.split_above and shard.start not in unsplittable
        ]
        if not candidates:
            break
        _, _, i = max(candidates)
        shard, load, members = current[i]
        at = split_point(shard, members, limits)
        if at is None:
            unsplittable.add(shard.start)
            continue
        low_keys = [k for k in members if k.hash < at]
        high_keys = [k for k in members if k.hash >= at]
        low = sum((k.load for k in low_keys), Load())
        high = sum((k.load for k in high_keys), Load())
        steps.append(Split(shard.shard_id, at, load, low, high))
        current[i : i + 1] = [
            (Shard(f"{shard.shard_id}/lower", shard.start, at - 1), low, low_keys),
            (Shard(f"{shard.shard_id}/upper", at, shard.end), high, high_keys),
        ]
    while True:
        pairs = [
            ((a[1] + b[1]).utilisation(limits), a[0].start, i)
            for i, (a, b) in enumerate(pairwise(current))
            if a[0].end + 1 == b[0].start
        ]
        pairs = [p for p in pairs if p[0] <= policy.merge_below]
        if not pairs:
            break
        _, _, i = min(pairs)
        (a, a_load, a_keys), (b, b_load, b_keys) = current[i], current[i + 1]
        steps.append(Merge(a.shard_id, b.shard_id, a_load, b_load))
        current[i : i + 2] = [
            (Shard(f"{a.shard_id}+{b.shard_id}", a.start, b.end), a_load + b_load, a_keys + b_keys)
        ]
    after = shard_loads([s for s, _, _ in current], keys)
    hot = sorted(
        (k for k in keys if k.load.utilisation(limits) > 1),
        key=lambda k: (-k.load.utilisation(limits), k.key),
    )
    return Plan(policy, before, steps, after, hot)


# --- the consumer-lag guard ----------------------------------------------------------------
# flink-connector-kinesis 4.3.0 reads a child shard without waiting for its parent to be read
# to the end (FLINK-32218): a job far behind can put a store's later record before an
# earlier one across a split or merge. At the tip the race cannot bite, so ``--apply``
# reshards only while the stream's readers are caught up (docs/resharding.md, "The jobs
# through a reshard" and "The consumer-lag guard").

LAG_SOURCES = ("cloudwatch", "none")
DOCS = "docs/resharding.md#the-jobs-through-a-reshard"


@dataclass(frozen=True)
class LagVerdict:
    """Whether ``--apply`` may carry out a step, given the stream's consumer lag.

    ``lag_ms``: the Maximum of ``GetRecords.IteratorAgeMilliseconds`` read (None: not read,
    or no datapoint); ``checked``: the lag was read and weighed; ``message``: one line for
    the operator, saying what was measured and why the tool goes on or refuses."""

    proceed: bool
    checked: bool
    lag_ms: float | None
    message: str


def lag_verdict(
    lag_ms: float | None,
    *,
    stream: str,
    lag_source: str,
    max_lag_ms: float,
    lookback_s: float,
    even_if_behind: bool,
    earlier: LagVerdict | None = None,
) -> LagVerdict:
    """The guard's decision; no AWS call here (``connectors.kinesis_shards.consumer_lag_ms``
    reads the figure).

    * ``lag_source`` ``none`` (the local stack: moto emits no Kinesis metrics): not checked,
      go on, and say so.
    * a lag at or under ``max_lag_ms``: go on.
    * a lag over it: refuse, unless ``even_if_behind``.
    * no datapoint: GetRecords metrics exist only for minutes in which someone called
      GetRecords, so no datapoint means no polling reader in the window, which is not the
      same as safe: a stopped or failing job (restarting from a checkpoint after the reshard
      reads parents and children at once, the race this guards against) and a reader using
      enhanced fan-out (SubscribeToShard, which has its own metric) look the same. Refuse,
      unless ``even_if_behind``. A re-check (``earlier`` given) with no datapoint newer than
      the tool's own reads keeps the earlier reading: nothing newer says otherwise.
    """
    if lag_source not in LAG_SOURCES:
        raise ConfigError(
            f"property {GROUP}.lag_source must be one of {', '.join(LAG_SOURCES)},"
            f" not {lag_source!r}"
        )
    if lag_source == "none":
        return LagVerdict(
            True,
            False,
            None,
            f"consumer lag of {stream} not checked "
            f"({GROUP}.lag_source is none): reshard only while its readers are "
            f"caught up ({DOCS})",
        )
    bound = f"{GROUP}.max_consumer_lag_ms {max_lag_ms:,.0f} ms"
    why = (
        "flink-connector-kinesis 4.3.0 reads a child shard before its parent is read to the "
        "end (FLINK-32218), so a reader behind can reorder a store's records across the "
        f"reshard ({DOCS})"
    )
    if lag_ms is None:
        if earlier is not None and earlier.checked and earlier.lag_ms is not None:
            return LagVerdict(
                earlier.proceed,
                True,
                earlier.lag_ms,
                f"consumer lag of {stream}: no datapoint newer than the tool's own "
                f"reads yet; the reading before them stands "
                f"({earlier.lag_ms:,.0f} ms)",
            )
        what = (
            f"consumer lag of {stream} unknown: no GetRecords.IteratorAgeMilliseconds "
            f"datapoint in the last {lookback_s:,.0f} s (no reader polled it: nobody reads "
            "it, or its jobs are stopped or use enhanced fan-out)"
        )
        if even_if_behind:
            return LagVerdict(True, True, None, f"{what}; going on (--even-if-behind)")
        return LagVerdict(
            False,
            True,
            None,
            f"{what}; refusing to reshard: {why}. Start the readers and let them "
            "catch up, or pass --even-if-behind if nobody will read the stream's "
            "backlog across the reshard",
        )
    what = (
        f"consumer lag of {stream}: GetRecords.IteratorAgeMilliseconds Maximum "
        f"{lag_ms:,.0f} ms over the last {lookback_s:,.0f} s"
    )
    if lag_ms <= max_lag_ms:
        return LagVerdict(True, True, lag_ms, f"{what}, within {bound}")
    if even_if_behind:
        return LagVerdict(
            True, True, lag_ms, f"{what}, over {bound}; going on (--even-if-behind): {why}"
        )
    return LagVerdict(
        False,
        True,
        lag_ms,
        f"{what}, over {bound}; refusing to reshard: {why}. Let the jobs catch "
        "up and run again, or pass --even-if-behind",
    )


@dataclass(frozen=True)
class Settings:
    """The ``Resharding`` property group, typed (``pizzastream.admin`` reads it; it is
    ``pizzastream.settings.Settings.resharding``)."""

    policy: Policy
    window_s: float
    load_source: str
    sample_records_per_shard: int
    active_timeout_s: float
    lag_source: str
    max_consumer_lag_ms: float
    lag_lookback_s: float

    @classmethod
    def from_properties(cls, props: dict[str, dict[str, str]]) -> Settings:
        source = setting(props, "load_source", str)
        if source not in ("records", "cloudwatch"):
            raise ConfigError(
                f"property {GROUP}.load_source must be records or cloudwatch, not {source!r}"
            )
        lag_source = setting(props, "lag_source", str)
        if lag_source not in LAG_SOURCES:
            raise ConfigError(
                f"property {GROUP}.lag_source must be one of "
                f"{', '.join(LAG_SOURCES)}, not {lag_source!r}"
            )
        return cls(
            Policy.from_properties(props),
            setting(props, "window_s", float),
            source,
            setting(props, "sample_records_per_shard", int),
            setting(props, "active_timeout_s", float),
            lag_source,
            setting(props, "max_consumer_lag_ms", float),
            setting(props, "lag_lookback_s", float),
        )
