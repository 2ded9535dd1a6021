"""Failures injected while orders flow; every output compared with what was sent.

The scenarios run in this order on one pipeline (see ``conftest.pipeline``): each sends its
own wave of generated orders (new order ids, 10% bad records of the generator's 26
kinds, 3% replays) while it injects its failure, waits for the outputs to settle, and
checks them exactly (``harness.check_wave``): one final status per order in Redis and on
``order-status`` (copies allowed there, all agreeing), every accepted online sale once
in ``order_fct``, accepted sales on ``sales``/``pos-orders``/``deliveries``, stock in
Aurora and Redis equal to the previous stock + restocks - consumption, every bad record
dead-lettered once with its reason, every replay recorded as a repeat.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.kinesis_producer import KinesisProducer
from pizzastream.catalog import Catalog
from pizzastream.orders import OrderRules, Reason
from tests.failures import summary
from tests.failures.fuzz import fuzz_batch
from tests.failures.harness import (
    ENRICHMENT,
    INVENTORY,
    PARALLELISM,
    PARALLELISM_ENV,
    QUIET_S,
    Background,
    Pipeline,
    Verdict,
    Wave,
    check_wave,
    consumed,
    generated_wave,
    now_ms,
    put,
    query,
    restart_postgres,
    restart_redis,
    stock_differences,
    wait_until_settled,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAVE_ORDERS = int(os.environ.get("PIZZASTREAM_FAILURES_WAVE", "600"))
RATE = 60  # orders/s: a wave flows for about ten seconds
BAD_SHARE, DUPLICATE_SHARE = 0.10, 0.03
THROTTLE = 0.25  # share of calls / records the proxy refuses
SERVER_DOWN_S = 10
S3_DOWN_S = 60
FUZZ_RECORDS = int(os.environ.get("PIZZASTREAM_FUZZ_RECORDS", "60"))
FUZZ_SEED = int(os.environ.get("PIZZASTREAM_FUZZ_SEED", str(int(time.time()) % 100_000)))
# The scenarios with a wave of their own, in the module's order; the position gives each
# wave its seed and its range of order ids.
WAVE_SCENARIOS = (
    "baseline",
    "kinesis throttled",
    "postgres restarted",
    "redis restarted",
    "jobs killed, restored",
    "taskmanager killed",
    "savepoint, upgrade, rescale",
    "fuzzed bad input",
)
WAVES: list[Wave] = []


def run_scenario(
    pipeline: Pipeline,
    name: str,
    inject: Callable[[Verdict, Wave], None],
    *,
    orders: int = WAVE_ORDERS,
    prepare: Callable[[Verdict], None] | None = None,
    settle_timeout_s: float = 300,
) -> Verdict:
    """Sends the scenario's wave in the background, lets ``inject`` fail things while it
    flows, waits for the outputs to settle, checks them, records the verdict. ``prepare``
    runs first, before any traffic, inside the scenario's accounting."""
    pipeline.assert_alive()
    pipeline.wait_until_reading()
    pipeline.begin_phase()
    restarts_before = sum(pipeline.restarts().values())
    index = WAVE_SCENARIOS.index(name) + 1
    wave, send = generated_wave(
        pipeline.props,
        name,
        orders,
        seed=1000 + index,
        first_sequence=index * 100_000 + 1,
        bad_share=BAD_SHARE,
        duplicate_share=DUPLICATE_SHARE,
    )
    WAVES.append(wave)
    verdict = Verdict(name, [])
    started = time.monotonic()
    try:
        if prepare is not None:
            prepare(verdict)
        sender = Background(send, rate=RATE)
        inject(verdict, wave)
        sender.join()
        wait_until_settled(pipeline, wave, settle_timeout_s)
        check_wave(pipeline, wave, verdict)
    except BaseException as error:
        verdict.problem(f"{type(error).__name__}: {str(error)[:1500]}")
        raise
    finally:
        try:
            verdict.restarts = sum(pipeline.restarts().values()) - restarts_before
        except Exception:  # noqa: BLE001 - keep the verdict even if the logs are gone
            pass
        verdict.seconds = time.monotonic() - started
        summary.RESULTS.append(verdict)
    assert not verdict.problems, "\n".join(verdict.problems)
    return verdict


def throttle_kinesis(
    pipeline: Pipeline, verdict: Verdict, meanwhile: Callable[[], None] | None = None
) -> None:
    """For 20 s the proxy refuses ``THROTTLE`` of Kinesis reads and writes (whole calls and
    records inside ``PutRecords``) while ``meanwhile`` runs."""
    pipeline.proxy.reset_stats()
    pipeline.proxy.configure(
        put_records_throttle=THROTTLE, get_records_throttle=THROTTLE, put_records_partial=THROTTLE
    )
    if meanwhile is not None:
        meanwhile()
    time.sleep(20)
    pipeline.proxy.clear()
    verdict.inject(proxy_counts(pipeline))


def proxy_counts(pipeline: Pipeline) -> str:
    stats = pipeline.proxy.stats()
    put, get = stats.get("Kinesis.PutRecords", {}), stats.get("Kinesis.GetRecords", {})
    return (
        f"Kinesis throttled: {put.get('throttled', 0)}/{put.get('calls', 0)} PutRecords "
        f"and {get.get('throttled', 0)}/{get.get('calls', 0)} GetRecords calls refused, "
        f"{put.get('records_failed', 0)}/{put.get('records', 0)} records failed in "
        f"partial PutRecords"
    )


# ----------------------------------------------------------------------------- scenarios


def test_baseline(pipeline):
    """No failure: the pipeline works end to end before anything is broken (and warms up)."""
    run_scenario(pipeline, "baseline", lambda verdict, wave: None, settle_timeout_s=600)


def test_kinesis_throttled_on_reads_and_writes(pipeline):
    run_scenario(
        pipeline, "kinesis throttled", lambda verdict, wave: throttle_kinesis(pipeline, verdict)
    )


def test_postgres_restarted_under_load(pipeline):
    def inject(verdict, wave):
        new, _ = pipeline.deliver_restocks()
        time.sleep(3)
        restart_postgres(pipeline.props, SERVER_DOWN_S)
        verdict.inject(
            f"PostgreSQL stopped (fast) for {SERVER_DOWN_S}s mid-wave and "
            f"started again; {new} restocks delivered just before"
        )

    run_scenario(pipeline, "postgres restarted", inject)


def test_redis_restarted_under_load(pipeline):
    def inject(verdict, wave):
        new, repeated = pipeline.deliver_restocks()
        time.sleep(3)
        restart_redis(pipeline.props, SERVER_DOWN_S)
        verdict.inject(
            f"Redis shut down for {SERVER_DOWN_S}s mid-wave (data kept) and "
            f"started again; {new} restocks delivered, {repeated} delivered again"
        )

    run_scenario(pipeline, "redis restarted", inject)


def test_jobs_killed_and_restored_from_retained_checkpoints(pipeline):
    def inject(verdict, wave):
        # The checkpoint directories are known before the kill (the job ids are in the logs).
        for job in (ENRICHMENT, INVENTORY):
            pipeline.current_job_id(job)
        time.sleep(3)
        _fresh, what = pipeline.open_fresh_store(WAVES)
        verdict.faults.append(f"killed right after {what}")
        restored = {}
        for job in (ENRICHMENT, INVENTORY):
            pipeline.kill(job)
        for job in (ENRICHMENT, INVENTORY):
            restored[job] = pipeline.newest_checkpoint(job)
            pipeline.start(job, restore_from=restored[job])
        for job in (ENRICHMENT, INVENTORY):
            pipeline.current_job_id(job)
            wait_for_restore(pipeline, job, restored[job])
        verdict.inject(
            "SIGKILL of both jobs' process groups mid-wave; restarted with "
            "PIZZASTREAM_RESTORE_FROM = "
            + ", ".join(f"{job}: {path.name}" for job, path in restored.items())
        )

    run_scenario(pipeline, "jobs killed, restored", inject)


def wait_for_restore(pipeline: Pipeline, job: str, path: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.assert_alive()
        restored = pipeline.restored_from(job)
        if restored:
            assert path.name in restored, f"{job} restored from {restored}, not {path}"
            return
        time.sleep(1)
    raise AssertionError(
        f"{job} did not restore from {path} within {timeout_s}s: "
        f"jobs/runtime.py must honour PIZZASTREAM_RESTORE_FROM"
    )


@pytest.fixture(scope="module")
def cluster(pipeline):
    """A standalone cluster (2 TaskManagers x 2 slots) from the pip package's scripts; one
    that does not start fails the scenarios needing it (``pipeline`` stops it at the end)."""
    from stack.flink_cluster import StandaloneCluster

    pipeline.cluster = StandaloneCluster(pipeline.workdir / "cluster", task_managers=2, slots=2)
    return pipeline.cluster.start()


def test_taskmanager_killed_on_a_standalone_cluster(pipeline, cluster):
    """inventory_windowing moves from its mini-cluster to the standalone cluster (killed,
    restored there from its retained checkpoint); then, mid-wave, the TaskManager running
    it dies and the job fails over to the other one."""

    def move(verdict):
        pipeline.current_job_id(INVENTORY)
        pipeline.kill(INVENTORY)
        checkpoint = pipeline.newest_checkpoint(INVENTORY)
        pipeline.cluster_job = cluster.run_python_job(
            INVENTORY, restore_from=checkpoint, env=pipeline.job_env(INVENTORY)
        )
        pipeline.job_ids[INVENTORY].append(pipeline.cluster_job)
        cluster.wait_running(pipeline.cluster_job)
        restored = cluster.checkpoints(pipeline.cluster_job)["latest"]["restored"]
        assert restored and checkpoint.name in restored["external_path"], restored
        verdict.inject(
            f"inventory_windowing SIGKILLed, restored from {checkpoint.name}"
            f" on the standalone cluster"
        )

    def inject(verdict, wave):
        time.sleep(4)
        victim = cluster.busy_task_managers(pipeline.cluster_job)[0]
        cluster.kill_task_manager(victim)
        verdict.inject("the TaskManager running it SIGKILLed mid-wave (JVM + Python workers)")
        cluster.wait_task_manager_gone(victim)
        cluster.start_task_manager()
        cluster.wait_running(pipeline.cluster_job)

    run_scenario(pipeline, "taskmanager killed", inject, prepare=move)


def upgraded_inventory_job(workdir: Path) -> Path:
    """``jobs/inventory_windowing.py`` with a code change that keeps every ``uid``: the
    statuses are rebalanced before their Kinesis sink, which splits the operator chain and
    adds an edge to the job graph (operators without a uid would get new ids)."""
    from pizzastream.config import REPO_ROOT

    source = (REPO_ROOT / "jobs" / f"{INVENTORY}.py").read_text()
    changes = {
        "str(Path(__file__).resolve().parents[1])": repr(str(REPO_ROOT)),
        '(out.statuses, "order_status")': '(out.statuses.rebalance(), "order_status")',
    }
    for old, new in changes.items():
        assert source.count(old) == 1, f"{INVENTORY}.py changed: no single {old!r} to upgrade"
        source = source.replace(old, new)
    path = workdir / f"{INVENTORY}_upgraded.py"
    path.write_text(source)
    return path


def test_stop_with_savepoint_upgrade_and_rescale(pipeline, cluster):
    """Mid-wave, ``flink stop --savepointPath`` and a changed version of the job
    (``upgraded_inventory_job``) submitted from the savepoint at another parallelism and
    bundle size; a few seconds later, while orders still flow, the same again back to the
    suite's parallelism. State follows the uids, and each store's stock and each order id
    seen move between subtasks with their key groups."""
    assert pipeline.cluster_job, "needs inventory_windowing on the cluster (previous scenario)"
    other = 1 if PARALLELISM != 1 else 2

    def resubmit(verdict, parallelism: int, bundle_size: str) -> None:
        old = pipeline.cluster_job
        pipeline.retire_cluster_job()
        savepoint = cluster.stop_with_savepoint(old)
        changed = {
            "PIZZASTREAM__FLINKTUNING__python.fn-execution.bundle.size": bundle_size,
            PARALLELISM_ENV: str(parallelism),
        }
        pipeline.cluster_job = cluster.run_python_job(
            INVENTORY,
            restore_from=savepoint,
            env=pipeline.job_env(INVENTORY, extra=changed),
            entry_point=upgraded_inventory_job(pipeline.workdir),
        )
        pipeline.job_ids[INVENTORY].append(pipeline.cluster_job)
        cluster.wait_running(pipeline.cluster_job)
        restored = cluster.checkpoints(pipeline.cluster_job)["latest"]["restored"]
        assert (
            restored
            and restored["is_savepoint"]
            and restored["external_path"].rstrip("/") == savepoint.rstrip("/")
        ), restored
        running = {v["parallelism"] for v in cluster.job(pipeline.cluster_job)["vertices"]}
        assert running == {parallelism}, running
        verdict.inject(
            f"stop with savepoint ({Path(savepoint).name}); resubmitted from it at "
            f"parallelism {parallelism}, changed (statuses rebalanced before their "
            f"sink: a new edge in the job graph), bundle size {bundle_size}"
        )

    def inject(verdict, wave):
        verdict.parallelism = f"{PARALLELISM} → {other} → {PARALLELISM}"
        time.sleep(3)
        resubmit(verdict, other, "1000")
        time.sleep(5)
        resubmit(verdict, PARALLELISM, "100000")

    run_scenario(pipeline, "savepoint, upgrade, rescale", inject, orders=2 * WAVE_ORDERS)


def test_fuzzed_bad_input_under_kinesis_throttling(pipeline):
    """A hypothesis batch of byte strings through Kinesis -> order_enrichment ->
    dead_letter, with the generator's wave, while Kinesis throttles reads and writes."""
    rules = OrderRules.from_properties(pipeline.props["OrderRules"])
    bad, accepted = fuzz_batch(
        FUZZ_RECORDS, FUZZ_SEED, rules, Catalog.from_reference_data(), tag=str(FUZZ_SEED)
    )
    summary.NOTES.append(
        f"hypothesis fuzz: {len(bad)} distinct records sent with seed "
        f"{FUZZ_SEED} (PIZZASTREAM_FUZZ_SEED={FUZZ_SEED} repeats them); "
        f"{len(accepted)} drawn records were valid orders and not sent"
    )

    def inject(verdict, wave):
        wave.add_bad(bad)
        throttle_kinesis(
            pipeline, verdict, lambda: put(pipeline.props, "orders", [(b.key, b.data) for b in bad])
        )
        verdict.faults.append(f"{len(bad)} hypothesis-generated records (seed {FUZZ_SEED})")

    run_scenario(pipeline, "fuzzed bad input", inject, settle_timeout_s=240)


def test_s3_down_for_a_minute_under_hourly_metrics(pipeline):
    """hourly_metrics publishes the closed hours of the run's accepted online sales while
    S3 refuses every connection for a minute: the lake and the warehouse must end equal to
    the recomputation from the sales (``pizzastream.metrics.metric_rows``), one object per
    hour. The job reads a stream of its own holding the pipeline's own sale records of
    those hours (at-least-once copies included) in event-time order, so every hour is on
    time for it; the waves' sales came in eight times over the same business day."""
    from connectors import aws, lake, warehouse
    from pizzastream.metrics import SaleOrder, hour_of, metric_rows

    outputs = pipeline.outputs
    outputs.poll_all()
    closed_before = hour_of(now_ms() - 25 * 60_000)  # the hour of now-25 min is still open
    orders = {
        o: order
        for wave in WAVES
        for o, order in wave.valid.items()
        if order.channel == "online"
        and hour_of(order.ts_ms) < closed_before
        and set(outputs.status_copies.get(o, [])) == {"accepted"}
    }
    expected = metric_rows(SaleOrder.from_enriched(order) for order in orders.values())
    assert expected, (
        f"no accepted online sale of a closed hour to replay (waves run: "
        f"{[wave.name for wave in WAVES]}): run the whole module"
    )
    records = sorted(
        (json.loads(data)["t"], key, data)
        for key, data in outputs.sales.records
        if json.loads(data)["o"] in orders
    )
    stream = "sales-failures-s3"
    kinesis = aws.client(pipeline.props, "kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    verdict = Verdict("S3 down for a minute", [], orders=len(orders), accepted=len(orders))
    started = time.monotonic()
    job = "hourly_metrics"
    try:
        KinesisProducer(pipeline.props).put(stream, [(key, data) for _, key, data in records])
        pipeline.proxy.reset_stats()
        pipeline.proxy.configure(s3_outage="close")
        pipeline.start(
            job,
            extra={
                "PIZZASTREAM__STREAMS__SALES": stream,
                # Quiet shards follow the wall clock after this, which closes the last
                # hours once everything is read. Not less: a shard whose first records come
                # later than this (a loaded machine, the emulator slow to answer) follows the
                # clock too, and its backlog's hours close before they are read, which is
                # JsonEventTime's documented behaviour, not what this scenario is about (a
                # run at load average ~8 with 10 s ended with half the rows missing, which
                # that explains; no Flink log was kept to prove it).
                "PIZZASTREAM__HOURLYMETRICS__IDLE_SECONDS": "30",
            },
        )
        pipeline.current_job_id(job)
        time.sleep(S3_DOWN_S)
        pipeline.proxy.configure(s3_outage="")
        refused = pipeline.proxy.stats().get("S3", {}).get("refused", 0)
        verdict.inject(
            f"S3 refused every connection for {S3_DOWN_S}s from the job's "
            f"start ({refused} requests); {len(records)} sale records of "
            f"{len(orders)} orders in {len({r.window_start for r in expected})}"
            f" closed hours"
        )
        published = lambda: (  # noqa: E731 - local shorthand
            sorted(lake.read_metrics(pipeline.props), key=_row_key),
            sorted(warehouse.metric_rows(pipeline.props), key=_row_key),
        )
        want = sorted(expected, key=_row_key)
        deadline = time.monotonic() + 240
        seen = ([], [])
        while time.monotonic() < deadline:
            pipeline.assert_alive()
            try:
                seen = published()
            except Exception:  # noqa: BLE001 - the lake has no object yet
                seen = ([], [])
            if seen == (want, want):
                break
            time.sleep(3)
        time.sleep(QUIET_S)
        seen = published()
        durations = [
            int(ms)
            for ms in re.findall(
                r"Completed checkpoint \d+ for job \S+ \(\d+ bytes, "
                r"checkpointDuration=(\d+) ms",
                pipeline.flink_log(job),
            )
        ]
        verdict.faults.append(
            f"longest checkpoint {max(durations, default=0) / 1000:.0f}s "
            f"(the S3 uploads waiting for S3)"
        )
        for name, rows in zip(("lake", "warehouse"), seen):
            missing, extra = set(want) - set(rows), set(rows) - set(want)
            verdict.lost += len(missing)
            verdict.duplicated += len(extra) + len(rows) - len(set(rows))
            if missing or extra or len(rows) != len(set(rows)):
                verdict.problem(
                    f"{name}: {len(missing)} metric rows missing or wrong, "
                    f"{len(extra)} unexpected, {len(rows) - len(set(rows))} doubled",
                    sorted(missing, key=_row_key)[:3] + sorted(extra, key=_row_key)[:3],
                )
        per_hour = {}
        for object_key in lake.object_keys(pipeline.props):
            per_hour.setdefault(object_key.rsplit("/", 1)[0], []).append(object_key)
        doubled = {hour: keys for hour, keys in per_hour.items() if len(keys) != 1}
        if doubled:
            verdict.duplicated += sum(len(keys) - 1 for keys in doubled.values())
            verdict.problem("hours with more than one object in the lake", doubled.items())
    except BaseException as error:
        verdict.problem(f"{type(error).__name__}: {str(error)[:1500]}")
        raise
    finally:
        pipeline.proxy.configure(s3_outage="")
        if job in pipeline.processes:
            pipeline.processes.pop(job).stop()
        verdict.restarts = pipeline.restarts().get(job, 0)
        verdict.seconds = time.monotonic() - started
        summary.RESULTS.append(verdict)
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    assert not verdict.problems, "\n".join(verdict.problems)


def _row_key(row) -> tuple:
    return (row.window_start, row.store_id)


def test_whole_run_adds_up(pipeline):
    """Across every scenario, from the opening stock: order_fct holds exactly the accepted
    online sales of all waves (no row from anything else); inventory in Aurora and Redis
    equals the opening stock + every restock delivered - what every accepted order
    consumed; every status belongs to an order sent; every kind of bad record went
    through the job and is dead-lettered with its reason. It checks what the scenarios
    sent, so it needs the whole module."""
    missing = [name for name in WAVE_SCENARIOS if name not in {wave.name for wave in WAVES}]
    assert not missing, (
        f"scenarios that did not send their wave: {missing}; this test checks "
        f"the whole run: run the whole module"
    )
    outputs = pipeline.outputs
    outputs.poll_all()
    accepted = lambda order: outputs.status_copies.get(order.order_id, [""])[0] == "accepted"  # noqa: E731 - local shorthand
    sold = [order for wave in WAVES for order in wave.valid.values() if accepted(order)]
    order_fct_rows = outputs.fact_count()
    assert order_fct_rows == sum(len(o.lines) for o in sold if o.channel == "online")

    verdict = Verdict("whole run", [])
    sold += [order for order in pipeline.probes.values() if accepted(order)]
    expected = Counter(
        {
            (s, i): q
            for s, i, q in query(
                pipeline.props, "SELECT store_id, ingredient_id, on_hand FROM opening_inventory"
            )
        }
    )
    for cell, quantity in pipeline.delivered_restocks.values():
        expected[cell] += quantity
    expected.subtract(consumed(sold, pipeline.catalog))
    trading = {cell[0] for cell, _ in pipeline.delivered_restocks.values()}
    off = stock_differences(verdict, outputs, expected, trading | {o.store_id for o in sold})
    if off:
        verdict.problem(
            f"{len(off)} inventory cells differ from the opening stock + restocks"
            f" - consumed (actual, expected)",
            sorted(off),
        )
    assert not verdict.problems, "\n".join(verdict.problems)

    known = {o for wave in WAVES for o in (*wave.valid, *wave.named_rejections)}
    known |= set(pipeline.probes)
    named_by_fuzz = {
        b.rejection.order_id for wave in WAVES for b in wave.bad if b.rejection.order_id
    }
    strangers = set(outputs.status_copies) - known - named_by_fuzz
    assert not strangers, f"statuses for orders nobody sent: {sorted(strangers)[:10]}"

    bad = [b for wave in WAVES for b in wave.bad]
    letters = outputs.dead_letters(b.dead_letter_id for b in bad)
    wrong = [
        (b.reason, b.source, letters.get(b.dead_letter_id))
        for b in bad
        if letters.get(b.dead_letter_id) != (ENRICHMENT, b.reason)
    ]
    assert not wrong, f"{len(wrong)} bad records not dead-lettered with their reason: {wrong[:5]}"
    tried = Counter(b.reason for b in bad if b.source == "generator")
    untried = sorted(set(Reason) - set(tried))
    assert not untried, f"kinds of bad record the waves never sent: {untried}"
    replays = sum(sum(wave.replays.values()) for wave in WAVES)
    fuzzed = [b for b in bad if b.source == "hypothesis"]
    assert replays and fuzzed, (replays, len(fuzzed))
    summary.NOTES.append(
        f"whole run: {len(tried)} kinds of bad record from the generator, each dead-lettered "
        f"with its reason ("
        + ", ".join(f"{reason} {n}" for reason, n in sorted(tried.items()))
        + f"); {replays} replayed orders recorded as duplicate_order; {len(fuzzed)} hypothesis "
        f"records; order_fct {order_fct_rows} rows, exactly the accepted online sales; "
        f"inventory = opening + {len(pipeline.delivered_restocks)} restocks - "
        f"{len(sold)} accepted orders, in Aurora and Redis"
    )
