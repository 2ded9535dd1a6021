"""The failure suite's machinery: the pipeline under test (both jobs' real entry points,
their AWS calls through the fault proxy), waves of generated traffic with what each record
must become, incremental reads of the outputs, and the exact comparison of the two.

One pipeline runs through every scenario of the module (starting PyFlink costs about a
minute on the CI box, so it is started once): each scenario sends its own wave of orders
with new order ids while it injects its failure, waits for the outputs to settle and then
compares that wave's outputs with what was sent. Inventory is compared as a delta: the
stock at the end of the previous scenario plus the restocks delivered minus what the
accepted orders consume, so one scenario's error does not spill into the next one's
verdict.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import botocore.exceptions
import psycopg
import redis

from connectors import aurora, aws, kinesis_agg, redis_store
from connectors.kinesis_producer import KinesisProducer
from jobs.runtime import LOCAL_CHECKPOINTS, RESTORE_FROM_ENV
from pizzastream.catalog import Catalog
from pizzastream.config import Props, stream_name
from pizzastream.dead_letters import dead_letter
from pizzastream.inventory import requirements
from pizzastream.orders import (
    EnrichedOrder,
    OrderLine,
    OrderRules,
    OrderStatus,
    Rejection,
    enrich,
)
from pizzastream.sales import fact_rows
from simulation.traffic import BUSINESS_DAY, DUPLICATE, VALID, OrderTraffic
from stack import suppliers
from stack.generate import send_orders
from stack.jobs import JobProcess

if TYPE_CHECKING:
    from stack.flink_cluster import StandaloneCluster

ENRICHMENT, INVENTORY = "order_enrichment", "inventory_windowing"
JOBS = (ENRICHMENT, INVENTORY)
VALID_FINAL = {OrderStatus.ACCEPTED.value, OrderStatus.REJECTED_INSUFFICIENT_INVENTORY.value}
QUIET_S = 9  # inventory snapshots every 5 s, JDBC flush every 1 s, then some
# Every job of the suite runs at this parallelism; a scenario may rescale a job for a
# while. Wide by default, as production runs (CI too); PIZZASTREAM_FAILURES_PARALLELISM=1
# runs it narrow.
PARALLELISM = int(os.environ.get("PIZZASTREAM_FAILURES_PARALLELISM", "2"))
PARALLELISM_ENV = "PIZZASTREAM__FLINKTUNING__PARALLELISM"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def query(props: Props, sql: str, *args) -> list[tuple]:
    with aurora.connect(props) as conn:
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else []


def retrying(call: Callable, attempts: int = 30, every_s: float = 2.0):
    """For the test's own reads while a server it just restarted comes back."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception:  # any error of a server coming back
            if attempt == attempts - 1:
                raise
            time.sleep(every_s)


# ----------------------------------------------------------------------------- outputs


class StreamTail:
    """Every record written to a Kinesis stream so far, read incrementally (each poll
    continues each shard where the previous one stopped).

    A page of records and the shard iterator after it are kept together, only once the
    page was read: a poll that fails half-way (a throttled or refused GetRecords) keeps
    what it read, and the next poll returns those records too and goes on from there, so
    no record is skipped and none is returned twice. A closed shard (no next iterator) is
    read to its end once."""

    def __init__(self, props: Props, logical_name: str):
        self._kinesis = aws.client(props, "kinesis")
        self.stream = stream_name(props, logical_name)
        self._iterators: dict[str, str | None] = {}  # None: a closed shard, read to its end
        self.records: list[tuple[str, bytes]] = []
        self._returned = 0

    def poll(self) -> list[tuple[str, bytes]]:
        """The records read since the last poll that returned (including those a failed
        poll read before it failed)."""
        for shard in self._kinesis.list_shards(StreamName=self.stream)["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id in self._iterators and self._iterators[shard_id] is None:
                continue
            iterator = (
                self._iterators.get(shard_id)
                or self._kinesis.get_shard_iterator(
                    StreamName=self.stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            while iterator:
                page = self._kinesis.get_records(ShardIterator=iterator, Limit=10000)
                self.records += [
                    user
                    for r in page["Records"]
                    for user in kinesis_agg.user_records(r["PartitionKey"], r["Data"])
                ]
                iterator = page.get("NextShardIterator")
                self._iterators[shard_id] = iterator
                if not page["Records"]:
                    break
        new = self.records[self._returned :]
        self._returned = len(self.records)
        return new


class Outputs:
    """What the pipeline has written, read from the real servers."""

    def __init__(self, props: Props):
        self.props = props
        self.statuses = StreamTail(props, "order_status")
        self.sales = StreamTail(props, "sales")
        self.pos_orders = StreamTail(props, "pos_orders")
        self.deliveries = StreamTail(props, "deliveries")
        self.supplier_orders = StreamTail(props, "supplier_orders")
        self.redis = redis_store.client(props)
        self.status_copies: dict[str, list[str]] = defaultdict(list)

    def poll_statuses(self) -> None:
        for _, data in self.statuses.poll():
            status = json.loads(data)
            self.status_copies[status["o"]].append(status["status"])

    def poll_all(self) -> None:
        self.poll_statuses()
        for tail in (self.sales, self.pos_orders, self.deliveries, self.supplier_orders):
            tail.poll()

    def dead_letters(self, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """``{dead_letter_id: (job, reason)}`` of the given ids present in ``dead_letter``."""
        rows = query(
            self.props,
            "SELECT dead_letter_id, job, reason FROM dead_letter WHERE dead_letter_id = ANY(%s)",
            list(ids),
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    def facts(self, order_ids: Iterable[str]) -> dict[str, set[tuple]]:
        rows = query(
            self.props,
            "SELECT store_id, order_id, product_id,"
            " (extract(epoch FROM transaction_ts) * 1000)::bigint, quantity,"
            " (unit_price * 100)::bigint, (total_transaction_amt * 100)::bigint,"
            " delivery_type, channel FROM order_fct WHERE order_id = ANY(%s)",
            list(order_ids),
        )
        found: dict[str, set[tuple]] = defaultdict(set)
        for row in rows:
            found[row[1]].add(tuple(row))
        return found

    def fact_count(self) -> int:
        return query(self.props, "SELECT count(*) FROM order_fct")[0][0]

    def inventory(self) -> dict[tuple[int, int], int]:
        return {
            (s, i): q
            for s, i, q in query(
                self.props, "SELECT store_id, ingredient_id, on_hand FROM inventory"
            )
        }

    def inventory_fingerprint(self) -> tuple:
        return tuple(
            query(self.props, "SELECT count(*), sum(on_hand), max(updated_at) FROM inventory")[0]
        )

    def redis_inventory(self) -> dict[int, dict[int, int]]:
        found = {}
        for key in self.redis.scan_iter(match=redis_store.inventory_key("*"), count=1000):
            store_id = redis_store.store_of_key(key)
            levels = self.redis.hgetall(key)  # redis-py: sync or async; a sync client's dict
            found[store_id] = {int(i): int(q) for i, q in levels.items()}  # type: ignore[union-attr]
        return found

    def redis_statuses(self, order_ids: list[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for start in range(0, len(order_ids), 500):
            chunk = order_ids[start : start + 500]
            values = self.redis.mget([redis_store.order_status_key(o) for o in chunk])
            found.update(zip(chunk, values))  # type: ignore[arg-type]  # a sync client's list
        return found


# ----------------------------------------------------------------------------- traffic


@dataclass
class BadRecord:
    """A record the pipeline must refuse: the generator's label (or the fuzz's expected
    reason), the rejection ``enrich`` gives it here, and the dead letter it must become."""

    key: str
    data: bytes
    reason: str
    rejection: Rejection
    source: str = "generator"

    @property
    def dead_letter_id(self) -> str:
        return dead_letter(ENRICHMENT, self.data, self.reason, "").dead_letter_id


@dataclass
class Wave:
    """One scenario's traffic: every record sent and what it must become."""

    name: str
    report: dict = field(default_factory=dict)
    valid: dict[str, EnrichedOrder] = field(default_factory=dict)
    replays: Counter = field(default_factory=Counter)  # order id -> replay records
    bad: list[BadRecord] = field(default_factory=list)
    sent_at_ms: int = 0

    @property
    def named_rejections(self) -> dict[str, str]:
        """Final status of each order a bad record names (its id unique in the wave)."""
        ids = Counter(b.rejection.order_id for b in self.bad if b.rejection.order_id)
        return {
            b.rejection.order_id: b.rejection.status()
            for b in self.bad
            if b.rejection.order_id
            and ids[b.rejection.order_id] == 1
            and b.rejection.order_id not in self.valid
        }

    def replay_dead_letter_ids(self) -> dict[str, str]:
        """``{dead_letter_id: order_id}`` of the repeats inventory_windowing must record:
        one row per repeat of each replayed order (the same bytes, told apart by which
        repeat they are; copies a restart adds come on top, as later repeats)."""
        return {
            dead_letter(
                INVENTORY, self.valid[o].to_json().encode(), "", "", occurrence=k
            ).dead_letter_id: o
            for o, n in self.replays.items()
            for k in range(1, n + 1)
        }

    def add_bad(self, records: Iterable[BadRecord]) -> None:
        self.bad += list(records)


def generated_wave(
    props: Props,
    name: str,
    n: int,
    *,
    seed: int,
    first_sequence: int,
    bad_share: float,
    duplicate_share: float,
) -> tuple[Wave, Callable[..., dict]]:
    """The wave ``stack.generate.send_orders`` will send with these arguments (same
    generator, same seed, same day), and a function that sends it (pass ``rate``)."""
    rules = OrderRules.from_properties(props["OrderRules"])
    catalog = Catalog.from_reference_data()
    day_start = datetime.now(UTC) - BUSINESS_DAY
    traffic = OrderTraffic(
        rules,
        day_start,
        seed=seed,
        bad_share=bad_share,
        duplicate_share=duplicate_share,
        first_sequence=first_sequence,
    )
    wave = Wave(name)
    clock = now_ms()
    for record in traffic.records(n):
        result = enrich(record.data, catalog, rules, clock)
        if record.kind == VALID:
            assert isinstance(result, EnrichedOrder), (record, result)
            wave.valid[result.order_id] = result
        elif record.kind == DUPLICATE:
            wave.replays[result.order_id] += 1
        else:
            assert isinstance(result, Rejection) and result.reason == record.kind, (record, result)
            wave.bad.append(BadRecord(record.partition_key, record.data, record.kind, result))
    wave.report = traffic.report.to_dict()

    def send(rate: float = 0.0) -> dict:
        wave.sent_at_ms = now_ms()
        report = send_orders(
            props,
            n,
            bad_share=bad_share,
            duplicate_share=duplicate_share,
            seed=seed,
            day_start=day_start,
            rate=rate,
            first_sequence=first_sequence,
        ).to_dict()
        assert report == wave.report, "the generator sent something else than expected"
        return report

    return wave, send


class Background:
    """Runs ``call`` in a thread (traffic flowing while the test injects a failure)."""

    def __init__(self, call: Callable, *args, **kwargs):
        self.result = self.error = None
        self._thread = threading.Thread(target=self._run, args=(call, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, call, args, kwargs):
        try:
            self.result = call(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - re-raised in join()
            self.error = error

    def join(self, timeout_s: float = 300):
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"background work still running after {timeout_s}s")
        if self.error is not None:
            raise self.error
        return self.result


def put(props: Props, logical_stream: str, records: list[tuple[str, bytes]]) -> None:
    KinesisProducer(props).put(stream_name(props, logical_stream), records)


# ----------------------------------------------------------------------------- the pipeline


class Pipeline:
    """Both jobs as ``python jobs/<job>.py`` processes (each its own mini-cluster), AWS
    calls through the fault proxy; ``inventory_windowing`` can move to a standalone
    cluster (``cluster_job``). Keeps the restock ledger and the phase's stock baseline."""

    def __init__(self, props: Props, proxy, workdir: Path):
        self.props, self.proxy, self.workdir = props, proxy, workdir
        self.outputs = Outputs(props)
        self.catalog = Catalog.from_reference_data()
        self.processes: dict[str, JobProcess] = {}
        self.log_dirs: dict[str, list[Path]] = defaultdict(list)
        self.job_ids: dict[str, list[str]] = defaultdict(list)
        self.cluster: StandaloneCluster | None = None
        self.cluster_job: str | None = None  # inventory_windowing's job id there
        # restock event id -> ((store, ingredient), quantity), every restock of the run
        self.delivered_restocks: dict[str, tuple[tuple[int, int], int]] = {}
        self.baseline = self.outputs.inventory()
        self.restocked: Counter = Counter()  # this phase's new restocks per cell
        self._retired_cluster_restarts = 0
        self.probes: dict[str, EnrichedOrder] = {}
        self.probe_count = 0
        self.extra_orders: list[EnrichedOrder] = []  # orders sent besides the wave, this phase

    # ---- processes
    def job_env(
        self, job: str, restore_from: str | Path | None = None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        log_dir = self.workdir / f"{job}-{len(self.log_dirs[job])}"
        log_dir.mkdir(parents=True)
        self.log_dirs[job].append(log_dir)
        env = {
            "PIZZASTREAM__AWS__ENDPOINT": self.proxy.endpoint,
            "FLINK_LOG_DIR": str(log_dir),
            PARALLELISM_ENV: str(PARALLELISM),
            **(extra or {}),
        }
        if os.environ.get("PIZZASTREAM_PROPERTIES"):
            env["PIZZASTREAM_PROPERTIES"] = os.environ["PIZZASTREAM_PROPERTIES"]
        if restore_from:
            env[RESTORE_FROM_ENV] = str(restore_from)
        return env

    def start(
        self, job: str, restore_from: str | Path | None = None, extra: dict[str, str] | None = None
    ) -> None:
        self.processes[job] = JobProcess(job, self.job_env(job, restore_from, extra))

    def kill(self, job: str) -> None:
        """SIGKILL of the job's whole process group: client, JVM, Python workers."""
        self.processes.pop(job).stop(signal.SIGKILL)

    def stop_all(self) -> None:
        for job in list(self.processes):
            self.processes.pop(job).stop()

    def flink_log(self, job: str) -> str:
        parts = []
        for log_dir in self.log_dirs[job]:
            for path in sorted(log_dir.glob("*.log")):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def current_job_id(self, job: str, timeout_s: float = 240) -> str:
        """The Flink job id of the job's current process (from its own Flink log)."""
        deadline = time.monotonic() + timeout_s
        pattern = re.compile(rf"Job {job} \(([0-9a-f]{{32}})\) switched from state CREATED")
        while time.monotonic() < deadline:
            self.assert_alive()
            log_dir = self.log_dirs[job][-1]
            text = "".join(p.read_text(errors="replace") for p in log_dir.glob("*.log"))
            found = pattern.findall(text)
            if found:
                if found[-1] not in self.job_ids[job]:
                    self.job_ids[job].append(found[-1])
                return found[-1]
            time.sleep(1)
        raise AssertionError(f"{job} did not start within {timeout_s}s")

    def restarts(self) -> dict[str, int]:
        """Failovers so far, per job: restarts inside the mini-clusters (their logs) and on
        the standalone cluster (its metrics)."""
        counts = {}
        for job in {*JOBS, *self.log_dirs}:
            text = self.flink_log(job)
            counts[job] = len(re.findall(r"switched from state RUNNING to RESTARTING", text))
        counts[INVENTORY] += self._retired_cluster_restarts
        if self.cluster is not None and self.cluster_job is not None:
            try:
                counts[INVENTORY] += self.cluster.restarts(self.cluster_job)
            except OSError:
                pass
        return counts

    def retire_cluster_job(self) -> None:
        """The cluster job has ended (stopped with a savepoint): keep its restart count."""
        assert self.cluster is not None and self.cluster_job is not None
        try:
            self._retired_cluster_restarts += self.cluster.restarts(self.cluster_job)
        except OSError:
            pass
        self.cluster_job = None

    def restored_from(self, job: str) -> str | None:
        """The checkpoint or savepoint the job's current process says it restored from."""
        text = "".join(p.read_text(errors="replace") for p in self.log_dirs[job][-1].glob("*.log"))
        found = re.findall(r"(?:Restoring job \S+ from|Starting job \S+ from savepoint) (.*)", text)
        return found[-1] if found else None

    def newest_checkpoint(self, job: str) -> Path:
        """The newest completed (``_metadata`` written) retained checkpoint of the job's
        current run, ``.stack/checkpoints/<job-id>/chk-N``."""
        job_id = self.job_ids[job][-1]
        directory = LOCAL_CHECKPOINTS / job_id
        completed = sorted(
            (int(p.parent.name.split("-")[1]), p.parent) for p in directory.glob("chk-*/_metadata")
        )
        assert completed, (
            f"no retained checkpoint of {job} ({job_id}) under {directory}: "
            f"jobs/runtime.py must retain checkpoints on cancel/kill"
        )
        return completed[-1][1]

    def assert_alive(self) -> None:
        for job in JOBS:
            on_cluster = job == INVENTORY and self.cluster_job is not None
            assert job in self.processes or on_cluster, (
                f"{job} is not running (an earlier scenario stopped it and could not restart it)"
            )
        for job, process in self.processes.items():
            assert process.running(), f"{job} stopped:\n{process.log_tail()}"
        if self.cluster is not None and self.cluster_job is not None:
            state = self.cluster.job(self.cluster_job)["state"]
            assert state not in ("FAILED", "CANCELED", "FINISHED"), (
                f"{INVENTORY} on the cluster is {state}: {self.cluster.root_exception(self.cluster_job)}"
            )

    def open_fresh_store(
        self, waves: list[Wave], timeout_s: float = 30
    ) -> tuple[EnrichedOrder, str]:
        """Right after inventory_windowing completes a checkpoint, one order for a store it
        has never seen (straight onto ``orders-enriched``); waits until the store's stock is
        published. Killed now, the job restores from a checkpoint that predates the store,
        while ``inventory`` already holds what the order consumed: the case where a job that
        opens stores from its own output would consume the order twice. Returns the order
        and what happened (to report)."""
        seen = {order.store_id for wave in waves for order in wave.valid.values()}
        seen |= {store for store, _ in self.restocked} | {o.store_id for o in self.probes.values()}
        seen |= {int(r[0]) for r in self.outputs.supplier_orders.records}
        stock = self.outputs.inventory()
        product = self.catalog.product(1)
        assert product is not None
        order = None
        for store in range(2000, 0, -1):
            if store in seen:
                continue
            self.probe_count += 1
            candidate = EnrichedOrder(
                f"fresh-{self.probe_count}",
                f"FRESH-{self.probe_count:05d}",
                store,
                "in_store",
                "dine_in",
                now_ms() - 60_000,
                None,
                None,
                (OrderLine(product.product_id, 1, product.unit_price_cents),),
            )
            if all(
                stock.get((store, i), 0) >= q
                for i, q in requirements(candidate, self.catalog).items()
            ):
                order = candidate
                break
        assert order is not None, "no unseen store has stock for one pizza"
        before = self.newest_checkpoint(INVENTORY)
        deadline = time.monotonic() + timeout_s
        while self.newest_checkpoint(INVENTORY) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        after = self.newest_checkpoint(INVENTORY)
        published_before = retrying(
            lambda: query(
                self.props,
                "SELECT max(updated_at) FROM inventory WHERE store_id = %s",
                order.store_id,
            )
        )
        self.probes[order.order_id] = order
        self.extra_orders.append(order)
        put(self.props, "orders_enriched", [(str(order.store_id), order.to_json().encode())])
        while (
            time.monotonic() < deadline
            and retrying(
                lambda: query(
                    self.props,
                    "SELECT max(updated_at) FROM inventory WHERE store_id = %s",
                    order.store_id,
                )
            )
            == published_before
        ):
            time.sleep(0.1)
        newest = self.newest_checkpoint(INVENTORY)
        return order, (
            f"store {order.store_id} opened after {after.name}, its stock published "
            + (
                "before the next checkpoint"
                if newest == after
                else f"after {newest.name} (window missed)"
            )
        )

    def wait_until_reading(self, timeout_s: float = 240) -> None:
        """Until the jobs' Kinesis sources are polling (through the proxy), so a fault
        injected next meets running jobs, not jobs still starting."""
        deadline = time.monotonic() + timeout_s
        calls = lambda: self.proxy.stats().get("Kinesis.GetRecords", {}).get("calls", 0)  # noqa: E731 - local shorthand
        first = calls()
        while calls() - first < 10:
            self.assert_alive()
            assert time.monotonic() < deadline, f"the jobs did not read Kinesis within {timeout_s}s"
            time.sleep(1)

    def cleanup_checkpoints(self) -> None:
        for ids in self.job_ids.values():
            for job_id in ids:
                shutil.rmtree(LOCAL_CHECKPOINTS / job_id, ignore_errors=True)

    # ---- restocks
    def deliver_restocks(self) -> tuple[int, int]:
        """The supplier stand-in delivers every supplier order on the stream so far, the
        ones already delivered again (a replayed delivery). Returns (new, repeated)."""
        self.outputs.supplier_orders.poll()
        delivered_at = datetime.now(UTC)
        records, new, repeated = [], 0, 0
        for _, data in self.outputs.supplier_orders.records:
            for restock in suppliers.restocks_for(json.loads(data), delivered_at):
                records.append((str(restock["store_id"]), json.dumps(restock).encode()))
                cell = (restock["store_id"], restock["ingredient_id"])
                if restock["event_id"] in self.delivered_restocks:
                    repeated += 1
                else:
                    new += 1
                    self.delivered_restocks[restock["event_id"]] = (cell, restock["quantity"])
                    self.restocked[cell] += restock["quantity"]
        if records:
            put(self.props, "restocks", records)
        return new, repeated

    def begin_phase(self) -> None:
        self.restocked = Counter()
        self.extra_orders = []
        self.baseline = retrying(self.outputs.inventory)


# ----------------------------------------------------------------------------- settle + check


@dataclass
class Verdict:
    """A scenario's outcome, compared exactly with what was sent."""

    scenario: str
    faults: list[str]  # what was injected, and what it did
    parallelism: str = str(PARALLELISM)  # of the jobs ("2 → 1 → 2": rescaled meanwhile)
    failures: int = 0  # failures injected
    orders: int = 0  # valid orders sent in the scenario's wave
    accepted: int = 0
    lost: int = 0  # valid orders without a final status or without their sale
    duplicated: int = 0  # sales applied twice (disagreeing statuses, extra facts, stock)
    status_copies: int = 0  # extra, agreeing copies on order-status (at-least-once)
    stream_copies: int = 0  # extra copies on sales, pos-orders, deliveries (the same)
    inventory_cells_off: int = 0  # (store, ingredient) cells not equal to the expectation
    bad_tried: int = 0
    bad_dead_lettered: int = 0
    restarts: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def inject(self, text: str) -> None:
        """Records a failure injected, described by ``text``."""
        self.failures += 1
        self.faults.append(text)

    def problem(self, text: str, examples: Iterable = ()) -> None:
        examples = list(examples)
        self.problems.append(text + (f" e.g. {examples[:5]}" if examples else ""))


# Errors of a server the scenario restarted or cut off, while it comes back: the settle
# loop reads again. Anything else (a bug in the harness or an output it cannot parse) ends
# the wait at once with that error.
SERVER_COMING_BACK = (
    OSError,
    psycopg.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)
UNREADABLE_LIMIT_S = 180  # longer than any outage a scenario injects


def _throttled(error: Exception) -> bool:
    return isinstance(error, botocore.exceptions.ClientError) and error.response["Error"][
        "Code"
    ] in ("ProvisionedThroughputExceededException", "ServiceUnavailable", "Throttling")


def wait_until_settled(
    pipeline: Pipeline,
    wave: Wave,
    timeout_s: float = 420,
    unreadable_limit_s: float = UNREADABLE_LIMIT_S,
    every_s: float = 2.0,
) -> None:
    """Until every record of the wave has come out (statuses, dead letters, facts) and
    then nothing moves for ``QUIET_S`` seconds (inventory snapshots included). A server
    coming back may make a read fail for up to ``unreadable_limit_s``; any other error,
    or that one for longer, fails the wait with it."""
    outputs = pipeline.outputs
    expected_ids = set(wave.valid) | set(wave.named_rejections)
    dead_ids = {b.dead_letter_id for b in wave.bad} | set(wave.replay_dead_letter_ids())
    deadline = time.monotonic() + timeout_s
    last, still_since = None, time.monotonic()
    unreadable_since, last_error = None, None
    while True:
        pipeline.assert_alive()
        try:
            outputs.poll_statuses()
            missing = len(expected_ids - outputs.status_copies.keys())
            lettered = len(outputs.dead_letters(dead_ids))
            accepted_online = [
                o
                for o in wave.valid.values()
                if o.channel == "online"
                and outputs.status_copies.get(o.order_id, [""])[-1] == "accepted"
            ]
            facts = sum(
                len(rows) for rows in outputs.facts([o.order_id for o in accepted_online]).values()
            )
            state: tuple[object, ...] = (
                missing,
                lettered,
                facts,
                outputs.inventory_fingerprint(),
                sum(len(v) for v in outputs.status_copies.values()),
            )
            complete = (
                missing == 0
                and lettered == len(dead_ids)
                and facts == sum(len(o.lines) for o in accepted_online)
            )
            unreadable_since = None
        except Exception as error:
            if not (isinstance(error, SERVER_COMING_BACK) or _throttled(error)):
                raise
            unreadable_since = unreadable_since or time.monotonic()
            last_error = error
            if time.monotonic() - unreadable_since > unreadable_limit_s:
                raise AssertionError(
                    f"{wave.name}: outputs unreadable for over {unreadable_limit_s:.0f}s: {error!r}"
                ) from error
            state, complete = ("unreadable", type(error).__name__), False
        if state != last:
            last, still_since = state, time.monotonic()
        elif complete and time.monotonic() - still_since >= QUIET_S:
            return
        if time.monotonic() > deadline:
            seen = (
                f"{state[0]} orders without a status, {state[1]} of {len(dead_ids)} dead letters"
                if state[0] != "unreadable"
                else f"outputs unreadable ({last_error!r})"
            )
            raise AssertionError(
                f"{wave.name}: outputs did not settle within {timeout_s}s: "
                f"{seen}; restarts {pipeline.restarts()}"
            ) from last_error
        time.sleep(every_s)


def consumed(orders: Iterable[EnrichedOrder], catalog: Catalog) -> Counter:
    """What the orders take out of stock, per (store, ingredient)."""
    total: Counter = Counter()
    for order in orders:
        for ingredient, quantity in requirements(order, catalog).items():
            total[(order.store_id, ingredient)] += quantity
    return total


def stock_differences(
    verdict: Verdict, outputs: Outputs, expected: Counter, trading: set[int]
) -> list[tuple]:
    """Stock in Aurora ``inventory`` and every Redis ``inventory:{<store>}`` hash against
    ``expected``; a Redis difference (a value, or a ``trading`` store without its hash) is
    a problem of ``verdict``. Returns the Aurora cells off as ``(cell, actual, expected)``."""
    actual = outputs.inventory()
    off = [
        (cell, actual.get(cell), expected[cell])
        for cell in set(actual) | set(expected)
        if actual.get(cell) != expected[cell]
    ]
    redis_stock = outputs.redis_inventory()
    redis_off = [
        (store, ingredient, q, expected[(store, ingredient)])
        for store, levels in redis_stock.items()
        for ingredient, q in levels.items()
        if q != expected[(store, ingredient)]
    ]
    redis_missing = sorted(trading - set(redis_stock))
    if redis_off or redis_missing:
        verdict.problem(
            f"Redis inventory: {len(redis_off)} values differ, "
            f"{len(redis_missing)} trading stores missing",
            redis_off + redis_missing,
        )
    return off


def probe_stores(
    pipeline: Pipeline, stores: list[int], expected_stock: Counter, timeout_s: float = 120
) -> str:
    """Diagnosis of a stock mismatch: one more event per store (an in-store dine-in order
    for one small pizza, straight onto ``orders-enriched``) makes the job publish its
    current stock of the ingredients that order takes (the job publishes what an event
    changes). If those then match, the job's state was right and only its published
    snapshot was stale; if not, the state itself is wrong."""
    outputs, probes = pipeline.outputs, {}
    product = pipeline.catalog.product(1)
    assert product is not None
    for store in stores:
        pipeline.probe_count += 1
        order = EnrichedOrder(
            f"probe-{pipeline.probe_count}",
            f"PROBE-{pipeline.probe_count:05d}",
            store,
            "in_store",
            "dine_in",
            now_ms() - 60_000,
            None,
            None,
            (OrderLine(1, 1, product.unit_price_cents),),
        )
        probes[order.order_id] = order
    pipeline.probes.update(probes)
    put(
        pipeline.props,
        "orders_enriched",
        [(str(o.store_id), o.to_json().encode()) for o in probes.values()],
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and probes.keys() - outputs.status_copies.keys():
        outputs.poll_statuses()
        time.sleep(2)
    time.sleep(QUIET_S)
    expected = Counter(expected_stock)
    expected.subtract(
        consumed(
            (
                o
                for o in probes.values()
                if outputs.status_copies.get(o.order_id, [""])[0] == "accepted"
            ),
            pipeline.catalog,
        )
    )
    actual = outputs.inventory()
    republished = {
        (o.store_id, i) for o in probes.values() for i in requirements(o, pipeline.catalog)
    }
    still_off = sorted(
        {s for (s, i), q in expected.items() if (s, i) in republished and actual.get((s, i)) != q}
    )
    return (
        f"diagnosis: after one more event per store, {len(stores) - len(still_off)} of "
        f"{len(stores)} stores match (their state was right, the published stock was "
        f"stale); {len(still_off)} still differ (their state is wrong): {still_off[:10]}"
    )


def check_wave(pipeline: Pipeline, wave: Wave, verdict: Verdict) -> Verdict:
    """Compares everything the wave must have produced with what is in the outputs."""
    outputs = pipeline.outputs
    outputs.poll_all()
    copies = outputs.status_copies

    # Exactly one final status per order (stream copies may repeat after a restore, but
    # they must agree), the same in Redis.
    verdict.orders = len(wave.valid)
    finals: dict[str, str] = {}
    for order_id in wave.valid:
        seen = set(copies.get(order_id, []))
        if not seen:
            verdict.lost += 1
            continue
        if len(seen) > 1:
            verdict.duplicated += 1
            verdict.problem(f"order {order_id} has conflicting statuses {sorted(seen)}")
        finals[order_id] = copies[order_id][0]
        if not seen <= VALID_FINAL:
            verdict.problem(f"order {order_id} has status {sorted(seen)}")
    if verdict.lost:
        verdict.problem(
            f"{verdict.lost} valid orders have no final status",
            [o for o in wave.valid if o not in copies],
        )
    for order_id, status in wave.named_rejections.items():
        if set(copies.get(order_id, [])) != {status}:
            verdict.problem(
                f"rejected order {order_id}: statuses {copies.get(order_id)}, expected {status}"
            )
    all_ids = list(wave.valid) + list(wave.named_rejections)
    verdict.status_copies = sum(len(copies.get(o, [])) - 1 for o in all_ids if copies.get(o))
    expected_redis = {**{o: s for o, s in finals.items()}, **wave.named_rejections}
    in_redis = outputs.redis_statuses(list(expected_redis))
    wrong = [(o, in_redis[o], s) for o, s in expected_redis.items() if in_redis[o] != s]
    if wrong:
        verdict.problem(f"{len(wrong)} order statuses in Redis differ from the stream", wrong)

    # Every accepted online sale in order_fct exactly once, as priced; nothing else.
    accepted = {o: wave.valid[o] for o, s in finals.items() if s == "accepted"}
    verdict.accepted = len(accepted)
    facts = outputs.facts(wave.valid)
    lost_facts: list[str] = []
    extra_facts: list[str] = []
    for order_id, order in wave.valid.items():
        expected = (
            {tuple(row) for row in fact_rows(order)}
            if order_id in accepted and order.channel == "online"
            else set()
        )
        if facts.get(order_id, set()) != expected:
            (lost_facts if expected - facts.get(order_id, set()) else extra_facts).append(order_id)
    if lost_facts:
        verdict.lost += len(lost_facts)
        verdict.problem(
            f"{len(lost_facts)} accepted online orders missing or wrong in order_fct",
            [(o, facts.get(o), fact_rows(wave.valid[o])) for o in lost_facts],
        )
    if extra_facts:
        verdict.duplicated += len(extra_facts)
        verdict.problem(
            f"{len(extra_facts)} orders in order_fct that were not accepted online sales",
            extra_facts,
        )

    # Accepted sales reach their downstream streams (sales, POS, deliveries) at least once,
    # and only theirs; the extra copies (at-least-once sinks after a restart) are counted.
    wave_orders = set(wave.valid)
    # (Named apart from ``copies``, the status copies the fresh-store check below reads: the
    # same name for both once made every extra order look status-less, docs/failures.md 8.)
    stream_copies = {
        name: Counter(o for o in (json.loads(d)["o"] for _, d in tail.records) if o in wave_orders)
        for name, tail in (
            ("sales", outputs.sales),
            ("pos-orders", outputs.pos_orders),
            ("deliveries", outputs.deliveries),
        )
    }
    routed = {name: set(counted) for name, counted in stream_copies.items()}
    verdict.stream_copies = sum(
        n - 1 for counted in stream_copies.values() for n in counted.values()
    )
    for name, wanted in (
        ("sales", {o for o, x in accepted.items() if x.channel == "online"}),
        ("pos-orders", {o for o, x in accepted.items() if x.channel == "in_store"}),
        ("deliveries", {o for o, x in accepted.items() if x.fulfillment == "delivery"}),
    ):
        missing = wanted - routed[name]
        if missing:
            verdict.lost += len(missing)
            verdict.problem(f"{len(missing)} accepted orders missing on {name}", missing)
        misrouted = routed[name] - wanted
        if misrouted:
            verdict.duplicated += len(misrouted)
            verdict.problem(
                f"{len(misrouted)} orders on {name} that do not belong there "
                f"(not accepted, or another channel or fulfillment)",
                misrouted,
            )

    # Inventory: what it was + restocks - what the accepted orders consume, in Aurora and Redis.
    extra = [o for o in pipeline.extra_orders if set(copies.get(o.order_id, [])) == {"accepted"}]
    for order in pipeline.extra_orders:
        if len(set(copies.get(order.order_id, []))) != 1:
            verdict.problem(
                f"order {order.order_id} (store {order.store_id}): statuses "
                f"{copies.get(order.order_id)}"
            )
    sold = [*accepted.values(), *extra]
    expected_stock = Counter(pipeline.baseline)
    expected_stock.update(pipeline.restocked)
    expected_stock.subtract(consumed(sold, pipeline.catalog))
    off = stock_differences(
        verdict,
        outputs,
        expected_stock,
        {store for store, _ in pipeline.restocked} | {order.store_id for order in sold},
    )
    verdict.inventory_cells_off = len(off)
    if off:
        verdict.problem(
            f"{len(off)} inventory cells (store, ingredient) differ from initial"
            f" + restocks - consumed (actual, expected)",
            sorted(off),
        )
        verdict.problem(
            probe_stores(pipeline, sorted({cell[0][0] for cell in off}), expected_stock)
        )

    # Bad input: each record dead-lettered once with its reason; each repeat recorded.
    verdict.bad_tried = len(wave.bad) + sum(wave.replays.values())
    letters = outputs.dead_letters([b.dead_letter_id for b in wave.bad])
    wrong_letters = [
        (b.reason, b.source, letters.get(b.dead_letter_id))
        for b in wave.bad
        if letters.get(b.dead_letter_id) != (ENRICHMENT, b.reason)
    ]
    repeats = wave.replay_dead_letter_ids()
    repeat_letters = outputs.dead_letters(repeats)
    wrong_repeats = [
        repeats[i] for i in repeats if repeat_letters.get(i) != (INVENTORY, "duplicate_order")
    ]
    verdict.bad_dead_lettered = (
        len(wave.bad)
        - len(wrong_letters)
        + sum(n for o, n in wave.replays.items() if o not in wrong_repeats)
    )
    if wrong_letters:
        verdict.problem(
            f"{len(wrong_letters)} bad records not dead-lettered with their reason"
            f" (reason, source, found)",
            wrong_letters,
        )
    if wrong_repeats:
        verdict.problem(
            f"{len(wrong_repeats)} replayed orders without their duplicate_order dead letter",
            wrong_repeats,
        )
    return verdict


# ----------------------------------------------------------------------------- server faults


def restart_postgres(props: Props, down_s: float) -> None:
    """PostgreSQL (Aurora and the warehouse) stopped (``pg_ctl stop -m fast``: sessions
    cut, as in a failover) and started again ``down_s`` later with the same settings."""
    from stack.services import StackPaths, stack_services

    postgres = stack_services(props, StackPaths()).postgres
    postgres.stop()
    time.sleep(down_s)
    postgres.launch()
    postgres.wait_ready()


def restart_redis(props: Props, down_s: float) -> None:
    """Redis shut down (``SHUTDOWN SAVE``: connections cut, the data kept as a replica
    failover keeps it) and started again ``down_s`` later. The stack's Redis persists
    nothing by itself, so the dump is removed once loaded."""
    from stack.services import StackPaths, stack_services

    paths = StackPaths()
    redis = stack_services(props, paths).redis
    try:
        redis_store.client(props).shutdown(save=True)
    except Exception:  # noqa: BLE001 - the server closes the connection as it goes
        pass
    deadline = time.monotonic() + 30
    while redis.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(down_s)
    redis.launch()
    redis.wait_ready()
    (paths.redis / "dump.rdb").unlink(missing_ok=True)
