"""The resharding planner's arithmetic (``pizzastream.resharding``) on skewed load tables:
splits halve a shard's load as finely as whole keys allow, merges join only adjacent
shards and never go over the limit, and planning a planned map finds nothing left to do."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pizzastream import resharding as rs
from pizzastream.resharding import KeyLoad, Load, Policy, Shard

LIMITS = rs.Limits(1_000, 1_048_576)
POLICY = Policy(LIMITS, split_above=0.8, merge_below=0.5)


def even_shards(n: int) -> list[Shard]:
    """``n`` shards over equal ranges, as CreateStream makes them."""
    step = (rs.HASH_KEY_MAX + 1) // n
    return [
        Shard(f"shardId-{i:012d}", i * step, rs.HASH_KEY_MAX if i == n - 1 else (i + 1) * step - 1)
        for i in range(n)
    ]


def stores(rates: dict[int, float], record_bytes: int = 200) -> list[KeyLoad]:
    return [KeyLoad(str(store), Load(rate, rate * record_bytes)) for store, rate in rates.items()]


def skewed(n_stores: int, total: float, busy_share: float = 0.8) -> list[KeyLoad]:
    """80% of the records on the first 20% of the stores (the seed's skew)."""
    busy = max(1, n_stores // 5)
    rates = {
        s: total * busy_share / busy if s <= busy else total * (1 - busy_share) / (n_stores - busy)
        for s in range(1, n_stores + 1)
    }
    return stores(rates)


def covers_the_hash_space(loads: list[rs.ShardLoad]) -> bool:
    ranges = [(sl.shard.start, sl.shard.end) for sl in loads]
    return (
        ranges[0][0] == 0
        and ranges[-1][1] == rs.HASH_KEY_MAX
        and all(a[1] + 1 == b[0] for a, b in pairwise(ranges))
    )


def test_hash_key_is_kinesis_md5_placement():
    # MD5("42") = a1d0c6e83f027327d8461063f4ac58a6
    assert rs.hash_key("42") == 0xA1D0C6E83F027327D8461063F4AC58A6


def test_split_point_halves_the_load_at_a_key_boundary_not_the_middle_of_the_range():
    shard = Shard("s", 0, rs.HASH_KEY_MAX)
    keys = skewed(200, 1_600)
    at = rs.split_point(shard, keys, LIMITS)
    lower = sum(k.load.records_per_s for k in keys if k.hash < at)
    upper = sum(k.load.records_per_s for k in keys if k.hash >= at)
    assert at in {k.hash for k in keys}
    assert abs(lower - upper) <= max(k.load.records_per_s for k in keys)
    middle = (rs.HASH_KEY_MAX + 1) // 2
    at_middle = sum(k.load.records_per_s for k in keys if k.hash < middle)
    assert abs(lower - upper) < abs(2 * at_middle - 1_600)


def test_split_point_is_none_for_a_single_key_and_the_store_is_reported_hot():
    shard = Shard("s", 0, rs.HASH_KEY_MAX)
    hot = stores({42: 1_500})
    assert rs.split_point(shard, hot, LIMITS) is None
    p = rs.plan([shard], hot, POLICY)
    assert p.steps == []
    assert [k.key for k in p.hot_keys] == ["42"]


def test_bytes_bind_when_records_are_large():
    # 300 records/s of 3 KB: 0.3 of the record limit but 0.86 of the byte limit
    keys = stores({s: 30 for s in range(1, 11)}, record_bytes=3_000)
    p = rs.plan(even_shards(1), keys, POLICY)
    assert isinstance(p.steps[0], rs.Split)
    assert all(sl.utilisation(LIMITS) <= POLICY.split_above for sl in p.after)


def test_hot_store_on_a_shard_gets_isolated_and_reported():
    rates = {s: 20 for s in range(1, 30)}
    rates[7] = 1_200
    p = rs.plan(even_shards(1), stores(rates), POLICY)
    assert [k.key for k in p.hot_keys] == ["7"]
    holding = [sl for sl in p.after if any(k.key == "7" for k in sl.keys)]
    assert [k.key for k in holding[0].keys] == ["7"]


def test_cold_adjacent_shards_merge_and_a_hot_neighbour_does_not():
    shards = even_shards(4)
    keys = []
    for shard, rate in zip(shards, (100, 150, 700, 50)):
        key = next(str(i) for i in range(10_000) if shard.start <= rs.hash_key(str(i)) <= shard.end)
        keys.append(KeyLoad(key, Load(rate, rate * 100)))
    p = rs.plan(shards, keys, POLICY)
    assert [(s.shard_id, s.adjacent_shard_id) for s in p.steps] == [
        (shards[0].shard_id, shards[1].shard_id)
    ]
    assert [round(sl.load.records_per_s) for sl in p.after] == [250, 700, 50]


def test_policy_names_a_missing_or_bad_property():
    with pytest.raises(rs.ConfigError, match=r"Resharding.merge_below"):
        Policy.from_properties(
            {
                "Resharding": {
                    "shard_records_per_s": "1000",
                    "shard_bytes_per_s": "1048576",
                    "split_above": "0.8",
                }
            }
        )
    with pytest.raises(rs.ConfigError, match=r"Resharding.split_above"):
        Policy.from_properties(
            {
                "Resharding": {
                    "shard_records_per_s": "1000",
                    "shard_bytes_per_s": "1048576",
                    "split_above": "high",
                    "merge_below": "0.5",
                }
            }
        )
    with pytest.raises(rs.ConfigError, match="merge_below < split_above"):
        Policy(LIMITS, split_above=0.5, merge_below=0.6)


def test_key_loads_count_records_and_bytes_per_second():
    loads = {k.key: k.load for k in rs.key_loads([("1", 100), ("1", 300), ("2", 50)], 10)}
    assert loads == {"1": Load(0.2, 40.0), "2": Load(0.1, 5.0)}


def test_sampled_keys_are_scaled_to_the_shards_measured_totals():
    shards = even_shards(2)
    keys = stores({s: 1 for s in range(1, 40)})
    totals = {shards[0].shard_id: Load(500, 50_000), shards[1].shard_id: Load(100, 10_000)}
    scaled = rs.scaled_to_shard_totals(keys, shards, totals)
    for sl in rs.shard_loads(shards, scaled):
        assert sl.load.records_per_s == pytest.approx(totals[sl.shard.shard_id].records_per_s)
        assert sl.load.bytes_per_s == pytest.approx(totals[sl.shard.shard_id].bytes_per_s)


# --- properties on random skewed tables ---------------------------------------------------

load_tables = st.tuples(
    st.integers(1, 8),  # open shards
    st.dictionaries(st.integers(1, 2_000), st.floats(0.5, 1_400), min_size=1, max_size=120),
    st.sampled_from([100, 200, 2_000, 20_000]),  # bytes per record
    st.sampled_from([(0.8, 0.5), (0.9, 0.3), (0.6, 0.55)]),
)


@settings(max_examples=150, deadline=None)
@given(load_tables)
def test_plans_keep_the_map_whole_split_only_over_and_merge_only_under(table):
    n, rates, size, (split_above, merge_below) = table
    policy = Policy(LIMITS, split_above, merge_below)
    keys = stores(rates, size)
    p = rs.plan(even_shards(n), keys, policy)
    assert covers_the_hash_space(p.before) and covers_the_hash_space(p.after)
    total = sum(k.load.records_per_s for k in keys)
    assert sum(sl.load.records_per_s for sl in p.after) == pytest.approx(total)
    for step in p.steps:
        if isinstance(step, rs.Split):
            assert step.before.utilisation(LIMITS) > split_above
            # both children keep keys (how evenly: test_split_is_the_best_key_boundary)
            assert step.lower.records_per_s > 0 and step.upper.records_per_s > 0
        else:
            assert step.after.utilisation(LIMITS) <= merge_below
    for sl in p.after:
        # every shard is either within the split threshold or holds one key only
        assert sl.utilisation(LIMITS) <= split_above or len({k.hash for k in sl.keys}) == 1
    for a, b in zip(p.after, p.after[1:]):
        assert (a.load + b.load).utilisation(LIMITS) > merge_below


@settings(max_examples=150, deadline=None)
@given(load_tables)
def test_split_is_the_best_key_boundary(table):
    n, rates, size, _ = table
    keys = stores(rates, size)
    for sl in rs.shard_loads(even_shards(n), keys):
        at = rs.split_point(sl.shard, sl.keys, LIMITS)
        hashes = sorted({k.hash for k in sl.keys})
        if len(hashes) < 2:
            assert at is None
            continue

        def worst(boundary: int) -> float:
            low = sum((k.load for k in sl.keys if k.hash < boundary), Load())  # noqa: B023 - called in this iteration
            high = sum((k.load for k in sl.keys if k.hash >= boundary), Load())  # noqa: B023 - called in this iteration
            return max(low.utilisation(LIMITS), high.utilisation(LIMITS))

        assert sl.shard.start < at <= sl.shard.end
        assert worst(at) == min(worst(h) for h in hashes[1:])


@settings(max_examples=150, deadline=None)
@given(load_tables)
def test_plans_converge_step_by_step(table):
    """Applying the first step and planning again from the new map gives the rest of the
    same plan; the plan of the final map is empty (what makes ``--apply`` resumable)."""
    n, rates, size, (split_above, merge_below) = table
    policy = Policy(LIMITS, split_above, merge_below)
    keys = stores(rates, size)
    shards = even_shards(n)
    first = rs.plan(shards, keys, policy)
    next_id = n
    for _ in range(len(first.steps)):
        step = rs.plan(shards, keys, policy).steps[0]
        by_id = {s.shard_id: s for s in shards}
        if isinstance(step, rs.Split):
            parent = by_id.pop(step.shard_id)
            by_id[f"shardId-{next_id:012d}"] = Shard(
                f"shardId-{next_id:012d}", parent.start, step.new_starting_hash_key - 1
            )
            by_id[f"shardId-{next_id + 1:012d}"] = Shard(
                f"shardId-{next_id + 1:012d}", step.new_starting_hash_key, parent.end
            )
            next_id += 2
        else:
            a, b = by_id.pop(step.shard_id), by_id.pop(step.adjacent_shard_id)
            assert a.end + 1 == b.start  # only adjacent shards merge
            by_id[f"shardId-{next_id:012d}"] = Shard(f"shardId-{next_id:012d}", a.start, b.end)
            next_id += 1
        shards = list(by_id.values())
    final = rs.plan(shards, keys, policy)
    assert final.steps == []
    assert [(sl.shard.start, sl.shard.end) for sl in final.before] == [
        (sl.shard.start, sl.shard.end) for sl in first.after
    ]
