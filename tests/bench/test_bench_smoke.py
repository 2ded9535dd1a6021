"""The benchmark harness works (``python -m bench --smoke``) and the capacity model's
arithmetic holds (the COPY upsert sink the benchmarks measure is tested with the connectors,
``tests/connectors/test_aurora_copy_sink.py``). Benchmarks are not timed tests: nothing here
asserts a rate beyond "something flowed"."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from bench import capacity as cap
from pizzastream.config import REPO_ROOT

# ------------------------------------------------------------------ harness (CI smoke)


@pytest.mark.integration
@pytest.mark.slow
def test_smoke_run_measures_every_part(local_stack, tmp_path):
    out = tmp_path / "results.json"
    doc = tmp_path / "benchmarks.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results", str(out), "--doc", str(doc)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    flink = {r["scenario"]: r for r in results["flink"]}
    assert {"enrichment", "sink_copy"} <= set(flink)
    for result in flink.values():
        assert not result.get("error"), result
        assert result["events"] > 0 and result["events_per_s"] > 0
        assert result["cpu"]["tree_cores"] > 0
    assert {r["method"] for r in results["aurora"]} >= {"raw COPY"}
    assert all(r["rows_per_s"] > 0 for r in results["aurora"])
    assert results["profile"]["enrichment"]["us_per_event"] > 0
    assert "# Benchmarks and the capacity model" in doc.read_text()
    assert "events/s" in run.stdout


# ------------------------------------------------------------------ capacity model (unit)


def test_skewed_weights_put_80_percent_on_20_percent_of_stores():
    weights = cap.skewed_weights(2000)
    assert len(weights) == 2000
    assert math.isclose(sum(weights), 1.0)
    assert math.isclose(sum(sorted(weights, reverse=True)[:400]), 0.8)
    assert math.isclose(max(weights) * 350_000, 700.0)


def test_kpus_are_rate_over_per_core_rate_at_the_utilisation_plus_orchestration():
    load = cap.Load(350_000, cap.skewed_weights())
    plan = cap.plan(load, cap.jobs_at(50_000, 50_000, 500_000), utilisation=1.0)
    by_name = {j.name: j for j in plan.jobs}
    assert by_name["order_enrichment"].kpus == 7
    assert by_name["order_enrichment"].billed_kpus == 8
    assert by_name["inventory_windowing"].kpus == math.ceil(350_000 * cap.VALID_SHARE / 50_000)
    assert by_name["hourly_metrics"].kpus == 1
    assert cap.plan(load, cap.jobs_at(50_000, 50_000, 500_000), utilisation=0.5).jobs[0].kpus == 14


def test_shards_respect_records_bytes_and_hot_keys():
    # 10 equal stores at 300 records/s: 3,000/s needs 3 shards by count, but no shard can
    # hold more than 3 whole stores (900/s), and bytes may bind first
    load = cap.Load(3_000, tuple([0.1] * 10))
    small = cap.plan_stream(load, cap.StreamSpec("s", 1.0, 100), utilisation=1.0)
    assert small.lower_bound == 3
    assert small.contiguous == 4  # ceil(10 stores / 3 per shard)
    big = cap.plan_stream(load, cap.StreamSpec("s", 1.0, 2_000), utilisation=1.0)
    assert big.lower_bound == math.ceil(3_000 * 2_000 / cap.SHARD_BYTES_PER_S)
    assert big.contiguous >= big.lower_bound
    # one store above a shard's 1,000 records/s cannot keep str(store_id) as its only key
    hot = cap.plan_stream(cap.Load(2_500, (0.6, 0.4)), cap.StreamSpec("s", 1.0, 100), 1.0)
    assert hot.hot_stores == [1] and hot.even_ranges is None
    assert hot.contiguous == 2 + 1  # store 1 salted over 2 shards, store 2 alone


def test_even_hash_ranges_need_more_shards_than_placed_boundaries():
    load = cap.Load(100_000, cap.skewed_weights(2000))
    plan = cap.plan_stream(load, cap.StreamSpec("s", 1.0, 200), utilisation=0.8)
    assert plan.lower_bound <= plan.contiguous
    assert plan.even_ranges is None or plan.even_ranges >= plan.contiguous


def test_monthly_cost_adds_kpus_storage_shards_and_put_units():
    prices = cap.Prices(
        kpu_hour=0.1,
        shard_hour=0.01,
        put_payload_units_per_million=0.02,
        running_storage_gb_month=0.1,
        storage_gb_per_kpu=50,
        hours_per_month=100,
    )
    load = cap.Load(1_000, tuple([0.5, 0.5]), events_per_day=1e6, days_per_month=10)
    streams = (cap.StreamSpec("orders", 1.0, 100),)
    plan = cap.plan(load, (cap.JobSpec("j", 1.0, 1_000),), streams, 1.0, prices)
    cost = plan.monthly_cost()
    assert plan.billed_kpus == 2 and plan.shards == 1
    assert cost["msf_kpu"] == pytest.approx(2 * 0.1 * 100)
    assert cost["msf_storage"] == pytest.approx(2 * 50 * 0.1)
    assert cost["kinesis_shards"] == pytest.approx(1 * 0.01 * 100)
    assert cost["kinesis_put_units"] == pytest.approx(1e6 * 10 / 1e6 * 0.02)
    assert cost["total"] == pytest.approx(sum(v for k, v in cost.items() if k != "total"))


def test_planned_peak_plan_is_printable():
    text = cap.format_plan(cap.plan(cap.planned_peak(), cap.jobs_at(20_000, 20_000, 200_000)))
    assert "order_enrichment" in text and "orders" in text and "total" in text


def test_packing_events_into_records_cuts_records_not_bytes():
    load = cap.planned_peak()
    one = cap.plan(load, cap.jobs_at(50_000, 50_000, 500_000))
    packed = cap.plan(load, cap.jobs_at(50_000, 50_000, 500_000), internal_events_per_record=10)
    by_name = {s.name: s for s in packed.streams}
    for stream in one.streams:
        other = by_name[stream.name]
        assert other.bytes_per_s == pytest.approx(stream.bytes_per_s)
        if stream.name == cap.EXTERNAL_STREAM:
            assert other.shards == stream.shards
        else:
            assert other.records_per_s == pytest.approx(stream.records_per_s / 10)
            assert other.shards < stream.shards
    assert packed.monthly_cost()["total"] < one.monthly_cost()["total"]


def test_aggregation_packs_each_store_by_its_own_rate_up_to_a_megabyte():
    aggregation = cap.Aggregation(linger_s=0.1)
    assert aggregation.events_per_record(700, 260) == pytest.approx(70)
    assert aggregation.events_per_record(5, 260) == 1.0  # never below one
    assert aggregation.events_per_record(1e6, 2_000) == cap.MAX_RECORD_BYTES // 2_000
    load = cap.Load(3_000, (0.9, 0.1))
    plan = cap.plan_stream(load, cap.StreamSpec("s", 1.0, 100), 1.0, aggregation=aggregation)
    assert plan.records_per_s == pytest.approx(2_700 / 270 + 300 / 30)
    assert plan.bytes_per_s == pytest.approx(3_000 * 100)
    assert plan.hot_stores == [] and plan.shards == 1
    # the bytes still bind: a store over 1 MB/s stays too hot for one shard
    heavy = cap.plan_stream(
        cap.Load(3_000, (0.9, 0.1)), cap.StreamSpec("s", 1.0, 1_000), 1.0, aggregation=aggregation
    )
    assert heavy.hot_stores == [1] and heavy.shards == 3 + 1


def test_aggregated_records_over_25_kb_cost_more_put_units():
    load = cap.Load(1_000, (1.0,))
    small = cap.plan_stream(
        load, cap.StreamSpec("s", 1.0, 100), 1.0, aggregation=cap.Aggregation(0.1)
    )  # 100 x 100 B: 1 unit
    big = cap.plan_stream(
        load, cap.StreamSpec("s", 1.0, 1_000), 1.0, aggregation=cap.Aggregation(0.1)
    )  # 100 KB: 4 units
    assert small.put_units_per_s == pytest.approx(10)
    assert big.put_units_per_s == pytest.approx(10 * 4)


def test_the_seeds_peak_fits_400_shards_only_with_aggregation():
    jobs = cap.jobs_at(100_000, 100_000, 750_000)
    one = cap.plan(cap.planned_peak(), jobs)
    aggregated = cap.plan(cap.planned_peak(), jobs, aggregation=cap.Aggregation())
    assert one.shards > 2_000 and aggregated.shards <= 400
    assert all(s.hot_stores == [] for s in aggregated.streams)
    assert aggregated.billed_kpus == one.billed_kpus
    assert aggregated.monthly_cost()["total"] < one.monthly_cost()["total"] / 4
    with pytest.raises(ValueError):
        cap.plan(
            cap.planned_peak(), jobs, internal_events_per_record=10, aggregation=cap.Aggregation()
        )


# ------------------------------------------------------------------ publication latency (unit)


def test_publication_latency_runs_from_the_watermark_passing_sale_to_the_first_row(tmp_path):
    """The generator's n-th sale has event time (first record time - lag) + n * 1000 / rate;
    an hour's rows may leave once a sale ``out_of_orderness`` past its end has been made."""
    from bench import hourly
    from bench.measure import ProgressFiles
    from pizzastream.config import load_properties

    props = load_properties()
    props["HourlyMetrics"]["out_of_orderness_minutes"] = "20"
    # 1,000 sales/s from t = 1,000 s; event time starts at t - 1 h and runs 40 ms per sale
    (tmp_path / "events-0.progress").write_text(
        "".join(f"{1 + 1000 * i} {(1000 + i) * 1000}\n" for i in range(101))
    )
    # the hour ending at epoch 0 may close at sale (20 min + 1 h - 1,000 s) / 40 ms = 95,000,
    # made at t = 1,095 s; its first row left at 1,097.5 s
    (tmp_path / hourly.PUBLISHED).write_text("0 1097500\n")
    spec = {"rate": 25, "lag_ms": 3_600_000}
    generated = ProgressFiles(tmp_path, "events")
    result = hourly.publication_latencies(tmp_path, spec, props, generated, after=1000.0)
    assert result["hours_published"] == 1
    assert result["p50_s"] == pytest.approx(2.5, abs=0.01)
    # the publisher's bound: the longer of 20 and pos_wait (30) min, plus idle (60 s)
    assert (result["bound_min"], result["late_refresh_s"]) == (31.0, 5.0)
    assert (
        hourly.publication_latencies(tmp_path, spec, props, generated, after=1096.0)[
            "hours_published"
        ]
        == 0
    )


def test_the_delay_section_states_the_bound_a_run_recorded_and_no_other_number():
    from bench import markdown

    publications = {
        "hours_published": 8,
        "p50_s": 0.73,
        "max_s": 1.271,
        "out_of_orderness_min": 20.0,
        "idle_s": 60.0,
        "checkpoint_interval_ms": 5000,
    }
    run = {
        "scenario": "hourly_delay",
        "section": "delay",
        "parallelism": 1,
        "id": "d",
        "label": "",
        "tuning": {"parallelism": "1"},
        "events_per_s": 26_000,
        "rate": 25,
        "publications": publications,
    }
    older = markdown._delay({"flink": [run]})
    assert "`HourlySettings.bound` after its end:" in older
    assert "20 min past the hour's end" in older and "about 20 minutes" not in older
    newer = markdown._delay(
        {
            "flink": [
                {**run, "publications": {**publications, "bound_min": 31.0, "late_refresh_s": 5.0}}
            ]
        }
    )
    assert "`HourlySettings.bound` after its end (31 min in this run):" in newer
    assert "`late_refresh_seconds` (5 s)" in newer


def test_the_report_sets_the_fused_prototype_beside_the_chained_jobs():
    from bench import markdown

    def run(scenario, section, p, per_cpu):
        return {
            "scenario": scenario,
            "section": section,
            "parallelism": p,
            "id": f"{scenario} p{p}",
            "label": "",
            "tuning": {"parallelism": str(p)},
            "events_per_s": per_cpu,
            "events_per_cpu_s": per_cpu,
            "cpu": {"jvm_cores": 0.5, "python_cores": 0.5, "tree_cores": 1.0, "others_cores": 0.0},
            "load_before": [0.5],
        }

    results = {"flink": [run("chained", "jobs", 1, 20_000), run("fused", "merged", 1, 30_000)]}
    text = markdown._merged(results)
    assert "p=1: 30,000 events/CPU-s against the chained jobs' 20,000: 1.50x." in text
    assert markdown._merged({"flink": []}) == "_not run_"
