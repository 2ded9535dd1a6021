"""The POS stand-in's batches without servers: fault plans are repeatable and honour their
shares, and the damaged versions it delivers are exactly what the ingestion's checks catch."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from pizzastream.pos_batches import BadBatch, BatchDigest, Fault, Manifest, settle
from pos.outbox import Faults, Spool, Version, _version_file
from tests.pos_support import make_order

INTERVAL = 900.0


def test_without_faults_every_batch_is_delivered_once_now():
    assert Faults().plan("ss01-x", 100.0, INTERVAL) == [(100.0, Version.COMPLETE)]


@pytest.mark.parametrize(
    "faults, steps",
    [
        (Faults(duplicate_share=1), [(0, Version.COMPLETE), (INTERVAL, Version.COMPLETE)]),
        (Faults(truncate_share=1), [(0, Version.TRUNCATED_GZIP), (INTERVAL, Version.COMPLETE)]),
        (Faults(short_share=1), [(0, Version.SHORT), (INTERVAL, Version.COMPLETE)]),
        (Faults(late_share=1, late_s=7200), [(7200, Version.COMPLETE)]),
    ],
)
def test_each_fault_ends_in_a_complete_delivery(faults, steps):
    assert faults.plan("ss01-x", 0.0, INTERVAL) == steps


def test_faults_are_drawn_per_batch_repeatably_in_their_shares():
    kinds = ("duplicate", "truncate", "short", "late")
    plan_of = {
        tuple(Faults(**{f"{kind}_share": 1}).plan("any", 0.0, INTERVAL)): kind for kind in kinds
    }
    faults = Faults(**{f"{kind}_share": 0.1 for kind in kinds})
    plans = [tuple(faults.plan(f"ss01-{i}", 0.0, INTERVAL)) for i in range(4000)]
    assert plans == [tuple(faults.plan(f"ss01-{i}", 0.0, INTERVAL)) for i in range(4000)]
    drawn = Counter(plan_of.get(plan, "clean") for plan in plans)
    assert all(300 < drawn[kind] < 500 for kind in kinds)
    assert 2200 < drawn["clean"] < 2600


@pytest.fixture
def batch(tmp_path):
    spool = Spool(tmp_path, 1, 20)
    for n in range(30):
        for line in settle(make_order(n, 3, 1_764_000_000_000 + n)):
            spool.add(line)
    data = tmp_path / "b.jsonl.gz"
    return data, spool.cut("ss01-b", data)


def read(path, manifest: Manifest) -> None:
    digest = BatchDigest(1, 20)
    with gzip.open(path) as lines:
        for raw in lines:
            digest.add(raw)
    digest.verify(manifest)


def test_the_complete_version_matches_its_manifest(batch, tmp_path):
    data, manifest = batch
    assert manifest.record_count == 60
    read(_version_file(data, manifest, Version.COMPLETE, tmp_path), manifest)


def test_a_short_version_lacks_a_tenth_of_the_lines(batch, tmp_path):
    (tmp_path / "short").mkdir()
    data, manifest = batch
    with pytest.raises(BadBatch) as error:
        read(_version_file(data, manifest, Version.SHORT, tmp_path / "short"), manifest)
    assert error.value.fault == Fault.COUNT_MISMATCH
    assert "54 lines read" in error.value.detail


def test_a_truncated_version_is_not_a_whole_gzip_stream(batch, tmp_path):
    (tmp_path / "cut").mkdir()
    data, manifest = batch
    with pytest.raises(EOFError):
        read(_version_file(data, manifest, Version.TRUNCATED_GZIP, tmp_path / "cut"), manifest)
