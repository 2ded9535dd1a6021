"""``python -m pizzastream.admin shards`` on the local stack: with a skewed table of store
traffic, ``--apply`` splits the hottest shard twice and merges two cold ones, and a second
``--apply`` does nothing; an apply stopped after its first step and run again ends on the
same shard map. The stream is measured from its own records (``Resharding.load_source``
``records``), with the shard limit scaled down so a few hundred records make a hot shard."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from pizzastream import admin
from pizzastream import resharding as rs
from pizzastream.config import load_properties
from tests.admin_shards_support import (
    RESHARDING_ENV,
    WINDOW_S,
    open_shards,
    run_shards,
    scratch_stream,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(local_stack, monkeypatch):
    with scratch_stream(local_stack, monkeypatch, RESHARDING_ENV, "reshard", 4) as stream:
        yield stream


def _table(shards: list[rs.Shard]) -> dict[str, int]:
    """Records per store key in the window. Shard 0 holds four keys of 250, 100, 100 and 50
    records in hash order (500: 167% of a shard): split at the first key (250 | 250, both
    still over 80%), then the upper half again (100 | 150); shard 1 takes 100 records, and
    shards 2 and 3 are cold (40 + 50 = 90, 30%: merged)."""

    def keys_in(shard: rs.Shard, n: int) -> list[str]:
        found = [str(k) for k in range(1, 5000) if shard.start <= rs.hash_key(str(k)) <= shard.end]
        return sorted(found[:n], key=rs.hash_key)

    table = dict(zip(keys_in(shards[0], 4), (250, 100, 100, 50)))
    table.update(zip(keys_in(shards[1], 1), (100,)))
    table.update(zip(keys_in(shards[2], 1), (40,)))
    table.update(zip(keys_in(shards[3], 1), (50,)))
    return table


def _write(kinesis, name: str, counts: dict[str, int], tag: str) -> None:
    records = [
        {"PartitionKey": key, "Data": json.dumps([tag, key, i]).encode()}
        for key, n in counts.items()
        for i in range(n)
    ]
    for start in range(0, len(records), 500):
        answer = kinesis.put_records(StreamName=name, Records=records[start : start + 500])
        assert answer.get("FailedRecordCount", 0) == 0


def _read_all(kinesis, name: str) -> list[tuple]:
    records = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [tuple(json.loads(r["Data"])) for r in page["Records"]]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def _run(capsys, *args: str) -> str:
    code, out, _ = run_shards(capsys, *args)
    assert code == 0
    return out


def test_apply_splits_the_hottest_shard_twice_merges_two_cold_ones_then_does_nothing(
    stream, capsys
):
    kinesis, name = stream
    before = open_shards(kinesis, name)
    table = _table(before)
    _write(kinesis, name, table, "before")

    dry = _run(capsys, "--stream", name)
    steps = [
        line.split(". ", 1)[1].split()[0] for line in dry.splitlines() if line.strip()[:1].isdigit()
    ]
    assert "dry run" in dry and steps == ["split", "split", "merge"], dry
    assert open_shards(kinesis, name) == before  # a dry run changes nothing

    # traffic while the reshard runs: one writer, on the store of shard 1 (never resharded)
    shard1_key = next(
        k
        for k, n in table.items()
        if n == 100 and before[1].start <= rs.hash_key(k) <= before[1].end
    )
    during = threading.Thread(
        target=lambda: [_write(kinesis, name, {shard1_key: 1}, f"d{i}") for i in range(20)]
    )
    during.start()
    out = _run(capsys, "--stream", name, "--apply")
    during.join()
    assert out.count("done: split") == 2 and out.count("done: merge") == 1, out

    after = open_shards(kinesis, name)
    assert len(after) == 4 + 2 - 1
    hot = sorted(
        (k for k in table if before[0].start <= rs.hash_key(k) <= before[0].end), key=rs.hash_key
    )
    # the hot shard's range is now three shards: [first key] [second] [third, fourth]
    assert [s.start for s in after[:3]] == [
        before[0].start,
        rs.hash_key(hot[1]),
        rs.hash_key(hot[2]),
    ]
    assert after[2].end == before[0].end
    assert (after[3].start, after[3].end) == (before[1].start, before[1].end)
    assert (after[4].start, after[4].end) == (before[2].start, before[3].end)  # merged

    again = _run(capsys, "--stream", name, "--apply")
    assert "nothing to do" in again and "done:" not in again
    assert open_shards(kinesis, name) == after

    # writes after the reshard land on the new shards, and nothing is lost or doubled
    _write(kinesis, name, table, "after")
    read = Counter(_read_all(kinesis, name))
    assert set(read.values()) == {1}
    assert sum(read.values()) == 2 * sum(table.values()) + 20


def test_an_interrupted_apply_run_again_completes_the_same_plan(stream, capsys):
    kinesis, name = stream
    table = _table(open_shards(kinesis, name))
    _write(kinesis, name, table, "before")
    planned = rs.plan(
        open_shards(kinesis, name),
        rs.key_loads(((k, 1) for k, n in table.items() for _ in range(n)), WINDOW_S),
        admin.Settings.from_properties(load_properties()).policy,
    )

    first = _run(capsys, "--stream", name, "--apply", "--max-steps", "1")
    assert first.count("done:") == 1 and "2 steps left" in first
    rest = _run(capsys, "--stream", name, "--apply")
    assert rest.count("done:") == 2 and "nothing left to do" in rest
    assert [(s.start, s.end) for s in open_shards(kinesis, name)] == [
        (sl.shard.start, sl.shard.end) for sl in planned.after
    ]
    assert "nothing to do" in _run(capsys, "--stream", name, "--apply")
