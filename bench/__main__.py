"""``python -m bench``: every benchmark of docs/benchmarks.md in one command.

Runs each Flink scenario of ``full_plan`` (bench/scenarios.py) in a process of its own on
the mini-cluster, fed by the in-job generator, then the PostgreSQL reference rates, the
end-to-end run through the local Kinesis stand-in and the Python profile; prints a table,
writes ``docs/benchmarks.md`` (bench/markdown.py: every number in it from this run) and the
raw results to ``bench/results/latest.json``. Run it on a quiet machine: other load shows
in every rate, and the end-to-end part writes the shared Redis.

    python -m bench                 # everything (about 30 minutes on 2 cores)
    python -m bench --only inventory,sink_copy --no-doc --results /tmp/x.json
    python -m bench --smoke         # seconds-long runs that check the harness works (CI)

Needs the local stack (``python -m stack up``), the connector jar
(``mvn -q -B -f deploy/pom.xml package -DskipTests``) and the jar with the benchmark
generators (``mvn -q -B -f bench/jvm/pom.xml package``); ``scripts/setup.sh`` builds both.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import benchdb, markdown, report
from bench.measure import load_average, machine
from pizzastream import run_directory

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"
# --smoke without --results: kept after the run (its temporary files are not)
SMOKE_RESULTS = REPO_ROOT / ".stack" / "bench-smoke" / "results.json"
DOC = REPO_ROOT / "docs" / "benchmarks.md"
RUN_TIMEOUT_S = 420
JVM_CLASS = "pizzastream/flink/bench/OrderGenerator.class"


@dataclass
class Run:
    section: str
    scenario: str
    parallelism: int = 1
    tuning: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    warmup_s: float = 15
    measure_s: float = 20
    label: str = ""

    @property
    def id(self) -> str:
        parts = [self.scenario, f"p{self.parallelism}"]
        parts += [f"{k.split('.')[-1]}={v}" for k, v in sorted(self.tuning.items())]
        parts += [f"{k}={v}" for k, v in sorted(self.extra.items()) if k != "table_config"]
        return " ".join(parts)


# warm-up and measured window (s): Python operators need their first bundles and state
# warmed; pure-JVM ones are steady within seconds
PYTHON: dict[str, Any] = {"warmup_s": 10, "measure_s": 15}
# (RocksDB flushes and compacts every few seconds: a window of 20 s takes in several cycles)
JVM: dict[str, Any] = {"warmup_s": 10, "measure_s": 20}
GENERATOR: dict[str, Any] = {"warmup_s": 3, "measure_s": 5}
ORDER_PATH = ("enrichment", "inventory", "chained")
HEAP_BACKEND = {"state.backend.type": "hashmap", "state.backend.incremental": "false"}
SMALL_ROCKSDB_MEMORY = {"taskmanager.memory.managed.size": "128m"}
THREAD_MODE = {"python.execution-mode": "thread"}


def full_plan() -> list[Run]:
    """What docs/benchmarks.md reports, each run driving a number or a setting in it
    (about 30 Flink runs, ~20 minutes on 2 cores, ~25 with the rest)."""
    runs = [
        Run("generator", f"generator_{fmt}", 1, **GENERATOR)
        for fmt in ("raw", "tagged", "sale", "sale_text", "sale_row")
    ]
    for p in (1, 2):  # 1. the jobs as shipped, 2. the same logic in pure SQL
        runs += [Run("jobs", job, p, **PYTHON) for job in ORDER_PATH]
        runs.append(Run("jobs", "hourly_metrics", p, **JVM))
        # before StoreSales: the ROW_NUMBER dedup, StoreHourMetrics and the SQL live view;
        # before StoreHourMetrics: the same with the SQL group window; beside it in the run
        runs.append(Run("jobs", "hourly_row_number_dedup", p, **JVM))
        runs.append(Run("jobs", "hourly_group_window", p, **JVM))
        runs += [Run("sql", f"{job}_sql", p, **JVM) for job in (*ORDER_PATH, "hourly")]
    runs += [Run("sql", "hourly_tumble_sql", p, **JVM) for p in (1, 2)]
    runs.append(Run("jobs", "hourly_json_value", 1, **JVM))  # before decode-once
    runs += [
        Run("jobs", "hourly_two_dedups", p, **JVM)  # before one dedup
        for p in (1, 2)
    ]
    runs.append(Run("delay", "hourly_delay", 1, warmup_s=10, measure_s=30))
    # where the time goes: the crossing alone, one crossing per event (no rules)
    runs += [
        Run("crossing", s, 1, **PYTHON)
        for s in ("cross_stateless", "cross_keyed", "cross_keyed_state")
    ]
    # the state backend: the jobs run on MSF's (RocksDB, incremental, 1 GB managed memory
    # per slot: jobs/runtime.py); what the heap backend earlier reports ran on, and RocksDB
    # with the mini-cluster's default memory, would show instead
    runs += [
        Run("backend", job, 1, tuning=HEAP_BACKEND, **kind)
        for job, kind in (("chained", PYTHON), ("hourly_metrics", JVM))
    ]
    runs.append(Run("backend", "hourly_metrics", 1, tuning=SMALL_ROCKSDB_MEMORY, **JVM))
    # the order path with its Python embedded in the JVM (PyFlink's thread mode) instead of
    # in worker processes: the measured lever the jobs do not ship yet (docs/benchmarks.md)
    runs += [Run("mode", "chained", p, tuning=THREAD_MODE, **PYTHON) for p in (1, 2)]
    # what merging the two order jobs would save (bench.prototypes.fused_order_path)
    runs += [Run("merged", "fused", p, **PYTHON) for p in (1, 2)]
    # 4. the Aurora sink: the COPY sink shipped, and the JDBC upsert it replaced
    runs += [Run("aurora", "sink_copy", p, **JVM) for p in (1, 2)]
    runs.append(Run("aurora", "sink_jdbc", 1, **JVM))
    return runs


def smoke_plan() -> list[Run]:
    return [
        Run("jobs", "enrichment", 1, warmup_s=1, measure_s=2),
        Run("aurora", "sink_copy", 1, warmup_s=1, measure_s=2),
    ]


def jar_path() -> Path:
    from bench.flinkjob import bench_jar

    return bench_jar()


def check_jar() -> None:
    jar = jar_path()
    try:
        with zipfile.ZipFile(jar) as archive:
            archive.getinfo(JVM_CLASS)
    except (OSError, KeyError):
        sys.exit(
            f"{jar} lacks the benchmark generators: build it with "
            f"`mvn -q -B -f bench/jvm/pom.xml package`"
        )


def run_flink(run: Run, logs: Path, run_tag: str, jfr: Path | None = None) -> dict:
    spec = {
        "id": run.id,
        "section": run.section,
        "scenario": run.scenario,
        "parallelism": run.parallelism,
        "label": run.label,
        "tuning": {"parallelism": str(run.parallelism), **run.tuning},
        "warmup_s": run.warmup_s,
        "measure_s": run.measure_s,
        "run_tag": run_tag,
        **run.extra,
    }
    safe = "".join(c if c.isalnum() else "_" for c in run.id)
    if jfr:
        jfr.mkdir(parents=True, exist_ok=True)
        spec["jfr"] = str(jfr.resolve() / f"{safe}.jfr")
    spec_path, result_path = logs / f"{safe}.spec.json", logs / f"{safe}.result.json"
    log_path = logs / f"{safe}.log"
    spec_path.write_text(json.dumps(spec))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.flinkjob", str(spec_path), str(result_path)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:  # the JVM and Python workers of this run, whatever state they are in
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            # the run ends with os._exit or the kill above, so its run directory is stale now
            run_directory.remove_stale()
    if result_path.exists():
        return json.loads(result_path.read_text())
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    return {**spec, "error": "no result (timeout or crash)", "log_tail": tail}


def merge(plan: list[Run], args) -> int:
    """Re-runs ``plan`` and puts its results in place of the same runs' in the existing
    results (a run disturbed by other load, or one fixed after the full run)."""
    path = args.results or RESULTS
    results = json.loads(path.read_text())
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    run_tag = str(int(time.time()))
    parts = set(filter(None, args.parts.split(",")))
    if args.only or args.section:
        for index, run in enumerate(plan, 1):
            print(f"[{index}/{len(plan)}] {run.id} (load {load_average()[0]:.2f})", flush=True)
            result = run_flink(run, logs, run_tag, args.jfr)
            print("    " + report.one_line(result), flush=True)
            result["rerun"] = datetime.now(UTC).isoformat(timespec="seconds")
            results["flink"] = [r for r in results["flink"] if r.get("id") != run.id] + [result]
    props = benchdb.ensure()
    if "aurora" in parts:
        from bench import aurora_bench

        results["aurora"] = aurora_bench.run(props)
    if "e2e" in parts:
        from bench import e2e

        results["e2e"] = e2e.run()
    if "profile" in parts:
        from bench import profile

        results["profile"] = profile.run(props)
    order = {run.id: i for i, run in enumerate(full_plan())}
    results["flink"].sort(key=lambda r: order.get(r.get("id"), len(order)))
    results["capacity"] = report.capacity(results)
    path.write_text(json.dumps(results, indent=1))
    print(report.table(results))
    if not args.no_doc:
        (args.doc or DOC).write_text(markdown.render(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="seconds-long runs (CI)")
    parser.add_argument("--only", help="comma-separated scenario names (Flink runs only)")
    parser.add_argument("--section", help="comma-separated sections of the plan (Flink runs)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="re-run the selected Flink runs into the existing results "
        "(bench/results/latest.json), replacing theirs, and re-render",
    )
    parser.add_argument(
        "--parts", default="", help="with --merge: also re-run these of aurora,e2e,profile"
    )
    parser.add_argument(
        "--jfr",
        type=Path,
        help="record each Flink run's measured window with Java Flight Recorder into this "
        "directory (<run>.jfr; read with python -m bench.jfr)",
    )
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--skip", default="", help="comma-separated: flink,aurora,e2e,profile")
    parser.add_argument("--results", type=Path, help="where the raw results go (JSON)")
    parser.add_argument("--doc", type=Path, help="where the report goes")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    # logs and temporary files of the whole run in one directory that goes with it
    run_directory.claim()

    started = time.time()
    check_jar()
    props = benchdb.ensure()
    plan = smoke_plan() if args.smoke else full_plan()
    if args.only:
        wanted = set(args.only.split(","))
        plan = [r for r in plan if r.scenario in wanted]
    if args.section:
        sections = set(args.section.split(","))
        plan = [r for r in plan if r.section in sections]
    if args.merge:
        return merge(plan, args)
    results: dict = {
        "command": "python -m bench"
        + (" --smoke" if args.smoke else "")
        + (f" --only {args.only}" if args.only else ""),
        "machine": machine(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_at_start": [round(x, 2) for x in load_average()],
        "smoke": args.smoke,
        "flink": [],
        "aurora": [],
        "e2e": None,
        "profile": None,
    }
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    run_tag = str(int(started))
    if "flink" not in skip:
        for index, run in enumerate(plan, 1):
            print(f"[{index}/{len(plan)}] {run.id} (load {load_average()[0]:.2f})", flush=True)
            result = run_flink(run, logs, run_tag, args.jfr)
            results["flink"].append(result)
            print("    " + report.one_line(result), flush=True)
    if "aurora" not in skip:
        from bench import aurora_bench

        print("PostgreSQL reference rates ...", flush=True)
        results["aurora"] = aurora_bench.run(props, smoke=args.smoke)
    if "e2e" not in skip and not args.smoke:
        from bench import e2e

        print("end to end through the Kinesis stand-in ...", flush=True)
        try:
            results["e2e"] = e2e.run()
        except Exception as error:  # noqa: BLE001 - reported, the rest still counts
            results["e2e"] = {"error": f"{type(error).__name__}: {error}"[:2000]}
    if "profile" not in skip:
        from bench import profile

        print("Python profile ...", flush=True)
        results["profile"] = profile.run(props, n=2_000 if args.smoke else 20_000)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["load_at_end"] = [round(x, 2) for x in load_average()]
    results["capacity"] = report.capacity(results)

    out = args.results or (SMOKE_RESULTS if args.smoke else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print()
    print(report.table(results))
    print()
    print(report.capacity_text(results))
    doc = args.doc or (None if (args.no_doc or args.smoke) else DOC)
    if doc:
        doc.write_text(markdown.render(results))
        print(f"\nwrote {doc.relative_to(REPO_ROOT) if doc.is_relative_to(REPO_ROOT) else doc}")
    print(f"raw results: {out}")
    failed = [r for r in results["flink"] if r.get("error")]
    for result in failed:
        print(f"FAILED {result['id']}: {result['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
