"""One benchmark job on the Flink mini-cluster, run in a process of its own.

``python -m bench.flinkjob <spec.json> <result.json>`` builds the scenario named in the
spec on a fresh environment (``jobs.runtime.stream_environment`` with the spec's
``FlinkTuning`` overrides), feeds it from the in-job generator, runs it until a steady-state
window of ``measure_s`` seconds has been seen after ``warmup_s`` seconds of warm-up, cancels
it and writes the result. One process per job: each gets a fresh JVM and Python workers,
its CPU is exactly its process tree's, and a crash costs one result, not the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import benchdb  # noqa: E402 - after the repository is put on sys.path
from bench.measure import CpuSampler, ProgressFiles, descendants_cpu, load_average, stack_pids  # noqa: E402 - after the repository is put on sys.path
from pizzastream import run_directory  # noqa: E402 - after the repository is put on sys.path

PROGRESS_NAME = "events"
NO_PROGRESS_TIMEOUT_S = 180.0


# The benchmark generators and counters (pizzastream.flink.bench, bench/jvm/pom.xml): a jar
# of their own, loaded beside the product's connector jar by benchmark jobs only.
BENCH_JAR = REPO_ROOT / "bench" / "jvm" / "target" / "pizzastream-bench.jar"


def bench_jar() -> Path:
    """The jar with the benchmark generators: ``PIZZASTREAM_BENCH_JAR`` if set (a private
    build while the shared one is in use), else the project's."""
    override = os.environ.get("PIZZASTREAM_BENCH_JAR")
    return Path(override) if override else BENCH_JAR


def run(spec: dict) -> dict:
    from bench import scenarios
    from jobs import runtime

    props = benchdb.bench_props(spec.get("tuning"))
    # this run's temporary files (progress, shipped code, Flink's, the JVM's) in one
    # directory that goes with the run (``pizzastream.run_directory``)
    run_directory.claim()
    progress_dir = Path(tempfile.mkdtemp(prefix="bench-progress-"))
    # this run's Flink log in a directory of its own (PyFlink's default one is shared by
    # every JVM started from this checkout)
    os.environ["FLINK_LOG_DIR"] = str(progress_dir)
    env = runtime.stream_environment(props)
    # the generators' jar beside the connector jar the environment already has
    env.add_jars(bench_jar().as_uri())
    _ship_bench(env)
    context = scenarios.Context(env, props, spec, str(progress_dir), PROGRESS_NAME)
    info = scenarios.SCENARIOS[spec["scenario"]].build(context) or {}
    # the rate is read where the scenario says: after a Python operator (its bundles let it
    # take records in ahead of finishing them), else at the generator
    progress = ProgressFiles(progress_dir, info.get("count", PROGRESS_NAME))
    generated = ProgressFiles(progress_dir, PROGRESS_NAME)
    sampler = CpuSampler(watch=stack_pids() if info.get("unit") == "rows" else {}).start()
    load_before = load_average()
    client = env.execute_async(f"bench-{spec['scenario']}")
    try:
        window = _steady_window(
            client, progress, spec["warmup_s"], spec["measure_s"], spec.get("jfr")
        )
        if spec.get("jfr"):
            _await_recording(Path(spec["jfr"]))
    finally:
        _cancel(client)
        sampler.stop()
    t0, t1 = window
    events = progress.count_at(t1) - progress.count_at(t0)
    generated_events = generated.count_at(t1) - generated.count_at(t0)
    batches = ProgressFiles(progress_dir, "batches")
    batch_info = {}
    if batches.subtasks():
        count = batches.count_at(t1) - batches.count_at(t0)
        batch_info = {
            "batches_per_s": round(count / (t1 - t0), 1),
            "events_per_batch": round(events / count, 1) if count else None,
        }
    cpu = sampler.window(t0, t1)
    if info.get("publications"):
        from bench import hourly

        info["publications"] = hourly.publication_latencies(
            progress_dir, spec, props, generated, after=t0
        )
    seconds = t1 - t0
    rate = events / seconds
    return {
        **{k: v for k, v in spec.items() if k not in ("tuning",)},
        "tuning": spec.get("tuning", {}),
        "events": int(events),
        "seconds": round(seconds, 2),
        "events_per_s": round(rate, 1),
        "generated_per_s": round(generated_events / seconds, 1),
        "counted_at": info.get("count", PROGRESS_NAME),
        "cpu": cpu,
        "events_per_cpu_s": round(rate / cpu["tree_cores"], 1) if cpu["tree_cores"] else None,
        "subtasks": progress.subtasks(),
        **_failures(progress_dir),
        **batch_info,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_average()],
        **info,
    }


def _failures(log_dir: Path) -> dict:
    """Task failures and restarts the Flink log shows: a benchmark of a restarting job
    measures its recovery, not its throughput."""
    logs = sorted(log_dir.glob("*.log"))
    if not logs:
        return {"flink_log": None}
    log_file = logs[0]
    text = log_file.read_text(errors="replace")
    failed = [line for line in text.splitlines() if "switched from RUNNING to FAILED" in line]
    causes = [
        line.strip()
        for line in text.splitlines()
        if line.startswith(("Caused by", "java.", "org.apache")) and "Exception" in line
    ]
    return {
        "flink_log": str(log_file),
        "task_failures": len(failed),
        "failure_causes": sorted(set(causes))[:5],
    }


def _ship_bench(env) -> None:
    """Ships ``bench`` as a package (inside a directory of its own, as ``jobs.runtime`` ships
    the project's: a shipped directory's contents become top-level modules)."""
    code = Path(tempfile.mkdtemp(prefix="bench-code-"))
    shutil.copytree(
        REPO_ROOT / "bench", code / "bench", ignore=shutil.ignore_patterns("__pycache__", "results")
    )
    env.add_python_file(str(code))


def _steady_window(
    client, progress: ProgressFiles, warmup_s: float, measure_s: float, jfr: str | None = None
) -> tuple[float, float]:
    """The measured window's (start, end); with ``jfr`` (a file name), the JVM records it
    with Java Flight Recorder (``bench.jfr`` reads it)."""
    started = time.time()
    while True:
        _check_running(client)
        first = progress.first_record_time()
        if first is not None:
            break
        if time.time() - started > NO_PROGRESS_TIMEOUT_S:
            raise RuntimeError(f"no records after {NO_PROGRESS_TIMEOUT_S}s")
        time.sleep(0.5)
    t0 = first + warmup_s
    t1 = t0 + measure_s
    while progress.latest_time() < t1 + 0.3:
        _check_running(client)
        if jfr and progress.latest_time() >= t0:
            _record_jvm(jfr, measure_s)
            jfr = None
        time.sleep(0.25)
    return t0, t1


def _record_jvm(path: str, seconds: float) -> None:
    """Starts a flight recording of ``seconds`` in this run's JVM (``jcmd``); started just
    after the window opens, it stops a little before the window closes."""
    seconds = max(1, int(seconds) - 2)
    jvms = [pid for pid, (_, role) in descendants_cpu(os.getpid()).items() if role == "jvm"]
    for pid in jvms:
        subprocess.run(
            [
                "jcmd",
                str(pid),
                "JFR.start",
                "settings=profile",
                f"duration={seconds}s",
                f"filename={path}",
            ],
            capture_output=True,
            check=False,
        )


def _await_recording(path: Path, timeout_s: float = 30) -> None:
    """Waits for the JVM to write the recording out (the run is cancelled after this)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (path.exists() and path.stat().st_size > 0):
        time.sleep(0.5)
    time.sleep(1)  # the file grows while JFR writes it


def _check_running(client) -> None:
    status = str(client.get_job_status().result())
    if status in ("FAILED", "CANCELED", "FINISHED"):
        raise RuntimeError(f"job is {status} before the measurement ended")


def _cancel(client) -> None:
    try:
        client.cancel().result()
    except Exception:  # noqa: BLE001 - already failed or finished: nothing to cancel
        pass


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    try:
        result = run(spec)
        if result.get("task_failures"):
            result["error"] = (
                f"{result['task_failures']} task failure(s) during the run: "
                f"{'; '.join(result['failure_causes'])[:500]}"
            )
    except Exception as error:  # noqa: BLE001 - reported to the harness, which goes on
        result = {
            **spec,
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc()[-4000:],
        }
    result_path.write_text(json.dumps(result, indent=2))
    # the py4j gateway and the mini-cluster threads would keep the interpreter alive
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
