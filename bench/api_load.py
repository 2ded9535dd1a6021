"""Load test of the API: ``python -m bench.api_load [--seconds 30] [--users 80] [--rate 2400]``.

Needs the local stack up (``make stack-up``). It
1. resets the stack's data (as the demo does) and fills what the mix reads: every store's
   closed hours of today and yesterday in the warehouse (synthetic figures, loaded as the
   hourly ETL loads corrections), the open hour's live hash of every store, 1,000 final order
   statuses; one merchant token per 20 stores and an intake token;
2. starts the API (``python -m api serve``, ``--workers``) on a loopback port, rate limits
   lifted for the run (it measures throughput, not the limiter), and reads each store's
   metrics once (a server that has been up has a warm cache);
3. runs locust headless for ``--seconds`` against 127.0.0.1 only (``bench/api_locustfile.py``:
   90% metric reads skewed 80/20 over stores, 9% status reads, 1% orders), at ``--rate``
   requests/s offered in total;
4. reports requests/s, p50/p99, errors, the API's CPU (requests per CPU-second = per core),
   the machine's load during the run, the cache counters, and the API's CPU per request of
   each kind measured alone (sequential requests, server CPU time / requests); writes
   ``docs/api_load.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from api import auth
from api.__main__ import WORKER_STOP_TIMEOUT_S, healthy
from connectors import aurora, redis_store
from pizzastream.config import REPO_ROOT, load_properties
from pizzastream.metrics import MetricRow
from stack.process import wait_until

RESULTS = REPO_ROOT / "docs" / "api_load.md"
STORES_PER_MERCHANT = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _hours(now: datetime) -> list[datetime]:
    """Yesterday's hours and today's closed ones (naive UTC)."""
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current.replace(hour=0) - timedelta(days=1)
    return [start + timedelta(hours=h) for h in range(int((current - start) / timedelta(hours=1)))]


def seed(props) -> dict:
    import stack
    from connectors import warehouse

    stack.reset_data(props)
    rng = random.Random(18)
    with aurora.connect(props) as conn:
        stores = conn.execute("SELECT store_id, busy FROM store ORDER BY store_id").fetchall()
        products = [
            row[0]
            for row in conn.execute(
                "SELECT product_id FROM product WHERE active ORDER BY product_id"
            )
        ]
    now = datetime.now(UTC).replace(tzinfo=None)
    hours = _hours(now)
    rows = []
    for hour in hours:
        for store_id, busy in stores:
            orders = rng.randint(8, 40) if busy else rng.randint(0, 6)
            if orders:
                revenue = Decimal(orders * rng.randint(1200, 2600)) / 100
                rows.append(
                    MetricRow(
                        store_id,
                        hour,
                        hour + timedelta(hours=1),
                        orders,
                        orders * 2,
                        revenue,
                        orders // 2,
                        orders - orders // 2,
                        orders // 3,
                        (revenue / orders).quantize(Decimal("0.01")),
                    )
                )
    if hours:
        warehouse.replace_hours(props, hours, rows)
    redis = redis_store.client(props)
    current = now.replace(minute=0, second=0, microsecond=0)
    with redis.pipeline(transaction=False) as pipe:
        for store_id, busy in stores:
            pipe.hset(
                redis_store.live_key(store_id, current),
                mapping={
                    f"{m:02d}": f"{rng.randint(1, 3)}/{rng.randint(1200, 4000) / 100:.2f}"
                    for m in range(0, now.minute + 1, 3 if busy else 9)
                },
            )
            pipe.expire(redis_store.live_key(store_id, current), 7200)
        order_ids = [f"bench-{i:04d}" for i in range(1000)]
        for order_id in order_ids:
            pipe.set(redis_store.order_status_key(order_id), "accepted", ex=3600)
        pipe.execute()
    secret = props["Api"]["token_secret"]
    tokens = {}
    for first in range(1, 2001, STORES_PER_MERCHANT):
        group = range(first, first + STORES_PER_MERCHANT)
        issued = auth.issue(
            secret,
            f"merchant-{first // STORES_PER_MERCHANT + 1}",
            auth.MERCHANT,
            group,
            ttl_s=86400,
        )
        tokens.update({str(s): issued for s in group})
    return {
        "busy_stores": [s for s, busy in stores if busy],
        "quiet_stores": [s for s, busy in stores if not busy],
        "merchant_tokens": tokens,
        "products": products,
        "order_ids": order_ids,
        "intake_token": auth.issue(secret, "bench-app", auth.INTAKE, ttl_s=86400),
        "seeded_hours": len(hours),
        "seeded_rows": len(rows),
    }


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            queue += [int(child) for child in task.read_text().split()]
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants."""
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


def run(args) -> dict:
    props = load_properties()
    print("api_load: seeding the warehouse, live hashes, statuses and tokens", flush=True)
    plan = seed(props)
    workdir = Path(tempfile.mkdtemp(prefix="api-load-"))
    plan_file = workdir / "plan.json"
    plan_file.write_text(json.dumps(plan))
    base_url = f"http://127.0.0.1:{args.port}"
    env = {
        **os.environ,
        "PIZZASTREAM__API__MERCHANT_RATE_PER_S": "100000",
        "PIZZASTREAM__API__MERCHANT_BURST": "100000",
        "PIZZASTREAM__API__INTAKE_RATE_PER_S": "100000",
        "PIZZASTREAM__API__INTAKE_BURST": "100000",
    }
    log = open(workdir / "api.log", "wb")  # noqa: SIM115 - the server's log, open while it runs
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api",
            "serve",
            "--port",
            str(args.port),
            "--workers",
            str(args.workers),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not wait_until(lambda: healthy(base_url), 60):
            raise SystemExit(f"api_load: the API did not start; see {workdir / 'api.log'}")
        today = datetime.now(UTC).date()
        query = {"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}
        with httpx.Client(base_url=base_url, timeout=30) as http:
            for _ in range(args.workers):  # each worker process has its own cache
                for store, issued in plan["merchant_tokens"].items():
                    http.get(
                        f"/stores/{store}/metrics",
                        params=query,
                        headers={"Authorization": f"Bearer {issued}"},
                    ).raise_for_status()
            before_health = http.get("/health").json()
        print(
            f"api_load: cache warmed; locust {args.users} users, {args.rate} req/s offered, "
            f"{args.seconds} s",
            flush=True,
        )
        load_before = os.getloadavg()
        cpu_before, busy_before = cpu_seconds(server.pid), machine_busy()
        started = time.monotonic()
        locust = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(REPO_ROOT / "bench" / "api_locustfile.py"),
                "--headless",
                "-u",
                str(args.users),
                "-r",
                str(args.users),
                "-t",
                f"{args.seconds}s",
                "--host",
                base_url,
                "--csv",
                str(workdir / "run"),
                "--only-summary",
                "--stop-timeout",
                "5",
                "--loglevel",
                "WARNING",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "locust.log", "wb"),  # noqa: SIM115 - the child's
            env={
                **os.environ,
                "API_LOAD_PLAN_FILE": str(plan_file),
                "API_LOAD_RATE_PER_USER": str(args.rate / args.users),
            },
        )
        locust_cpu = 0.0
        while locust.poll() is None:
            locust_cpu = max(locust_cpu, cpu_seconds(locust.pid))
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        cpu_after, busy_after = cpu_seconds(server.pid), machine_busy()
        load_after = os.getloadavg()
        with httpx.Client(base_url=base_url, timeout=30) as http:
            after_health = http.get("/health").json()
        costs = route_costs(base_url, plan, server.pid, args.cost_seconds)
    finally:
        server.terminate()
        try:
            server.wait(WORKER_STOP_TIMEOUT_S + 20)
        except subprocess.TimeoutExpired:
            server.kill()
            tail = (workdir / "api.log").read_text(errors="replace")[-3000:]
            raise SystemExit(
                f"api_load: the API did not stop {WORKER_STOP_TIMEOUT_S + 20} s "
                f"after SIGTERM; its log ends:\n{tail}"
            ) from None
    stats = _aggregated(workdir / "run_stats.csv")
    api_cpu = cpu_after - cpu_before
    busy = (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1e-9)
    counters = (
        {
            k: after_health["cache"][k] - before_health["cache"].get(k, 0)
            for k in after_health["cache"]
        }
        if after_health["pid"] == before_health["pid"]
        else after_health["cache"]
    )
    return {
        "seconds": args.seconds,
        "users": args.users,
        "offered_rps": args.rate,
        "workers": args.workers,
        **stats,
        "api_cpu_cores": api_cpu / elapsed,
        "rps_per_core": stats["requests"] / api_cpu if api_cpu else float("nan"),
        "locust_cpu_s": locust_cpu,
        "machine_busy_share": busy,
        "load_before": load_before[0],
        "load_after": load_after[0],
        "cores": os.cpu_count(),
        "cache": counters,
        "by_name": stats.pop("by_name"),
        "costs": costs,
        "cost_seconds": args.cost_seconds,
        "seeded_hours": plan["seeded_hours"],
        "seeded_rows": plan["seeded_rows"],
    }


def route_costs(base_url: str, plan: dict, server_pid: int, seconds: int = 5) -> dict:
    """The API's CPU per request of each kind, measured alone under concurrent load
    (``wrk``, 16 connections, ``seconds`` each): server CPU seconds / requests answered.
    (Requests sent one at a time would mostly measure the event loop waking up.)"""
    secret = load_properties()["Api"]["token_secret"]
    merchant = auth.issue(secret, "bench-all", auth.MERCHANT, range(1, 2001), ttl_s=3600)
    midnight = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    today = midnight.date().isoformat()
    tomorrow = (midnight + timedelta(days=1)).date().isoformat()
    starts = [(midnight - timedelta(hours=h)).strftime("%Y-%m-%dT%H:00:00Z") for h in range(48)]
    order = json.dumps(
        {
            "store_id": 1,
            "channel": "online",
            "fulfillment": "pickup",
            "items": [{"product_id": plan["products"][0], "quantity": 1}],
        }
    )

    def lua_list(values) -> str:
        return "{" + ",".join(f'"{v}"' for v in values) + "}"

    kinds = {
        "metrics, response cached": (
            merchant,
            (
                'request = function() return wrk.format("GET", '
                f'"/stores/1/metrics?from={today}&to={tomorrow}") end'
            ),
        ),
        # Another (store, from) each time: the response is built (closed hours from the
        # per-hour cache, the live hour from Redis or its 5 s cache).
        "metrics, response built": (
            merchant,
            (
                f"starts = {lua_list(starts)}\nn = 0\n"
                'request = function() n = n + 1 return wrk.format("GET", "/stores/" .. '
                '(n % 2000 + 1) .. "/metrics?from=" .. starts[(math.floor(n / 2000) % 48) + 1] '
                f'.. "&to={tomorrow}") end'
            ),
        ),
        "order status": (
            plan["intake_token"],
            (
                f"ids = {lua_list(plan['order_ids'])}\nn = 0\n"
                'request = function() n = n + 1 return wrk.format("GET", "/orders/" .. '
                "ids[(n % #ids) + 1]) end"
            ),
        ),
        "order placed (Kinesis put)": (
            plan["intake_token"],
            (f'wrk.method = "POST"\nwrk.path = "/orders"\nwrk.body = {json.dumps(order)}'),
        ),
    }
    costs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (bearer, script) in kinds.items():
            path = Path(tmp, "kind.lua")
            path.write_text(f'wrk.headers["Authorization"] = "Bearer {bearer}"\n{script}\n')
            before = cpu_seconds(server_pid)
            out = subprocess.run(
                ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(path), base_url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            cpu = cpu_seconds(server_pid) - before
            requests = int(out.split(" requests in ")[0].split()[-1])
            bad = out.split("Non-2xx or 3xx responses: ")
            costs[name] = {
                "requests": requests,
                "cpu_us": cpu / max(requests, 1) * 1e6,
                "non_2xx": int(bad[1].split()[0]) if len(bad) > 1 else 0,
            }
    return costs


def _aggregated(path: Path) -> dict:
    by_name, total = {}, None
    with open(path) as f:
        for row in csv.DictReader(f):
            entry = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": float(row["Requests/s"]),
                "p50_ms": float(row["50%"]),
                "p99_ms": float(row["99%"]),
                "max_ms": float(row["Max Response Time"]),
            }
            if row["Name"] == "Aggregated":
                total = entry
            else:
                by_name[f"{row['Type']} {row['Name']}"] = entry
    return {**total, "by_name": by_name}  # type: ignore[dict-item]  # the run's totals are there


def report(result: dict, command: str) -> str:
    cache = result["cache"]
    hit = (
        1 - cache.get("closed_hours_missed", 0) / cache["closed_hours"]
        if cache.get("closed_hours")
        else float("nan")
    )
    answered = cache.get("responses_hit", 0) + cache.get("responses_missed", 0)
    responses = cache.get("responses_hit", 0) / answered if answered else float("nan")
    lines = [
        "# API load test (generated by `python -m bench.api_load`)",
        "",
        f"Command: `{command}` on {result['cores']} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| offered load | {result['offered_rps']:,} req/s from {result['users']} locust users "
        f"({result['seconds']} s) |",
        f"| achieved | **{result['rps']:,.0f} req/s** ({result['requests']:,} requests) |",
        f"| latency p50 / p99 / max | {result['p50_ms']:.0f} / {result['p99_ms']:.0f} / "
        f"{result['max_ms']:.0f} ms |",
        f"| errors | {result['failures']} |",
        f"| API processes | {result['workers']} granian worker(s), "
        f"{result['api_cpu_cores']:.2f} cores busy on average |",
        f"| requests per API CPU-second (per core) | **{result['rps_per_core']:,.0f}** |",
        f"| locust CPU | {result['locust_cpu_s']:.1f} s |",
        f"| machine busy during the run (all processes, all users) | "
        f"{100 * result['machine_busy_share']:.0f}% of {result['cores']} cores; load average "
        f"{result['load_before']:.1f} before, {result['load_after']:.1f} after |",
        f"| closed store-hours served from cache | {100 * hit:.2f}% "
        f"({cache.get('closed_hours', 0):,} read, {cache.get('closed_hours_missed', 0):,} "
        f"from the warehouse in {cache.get('warehouse_queries', 0):,} queries) |",
        f"| metric responses served from the response cache | {100 * responses:.1f}% |",
        f"| live store-hours read from Redis | {cache.get('redis_live_reads', 0):,} of "
        f"{cache.get('live_hours', 0):,} (the rest from the live cache) |",
        "",
        "| request | count | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in sorted(result["by_name"].items()):
        lines.append(
            f"| {name} | {entry['requests']:,} | {entry['rps']:,.0f} | "
            f"{entry['p50_ms']:.0f} | {entry['p99_ms']:.0f} | {entry['failures']} |"
        )
    lines += [
        "",
        "API CPU per request of each kind alone (`wrk`, 16 connections, "
        f"{result['cost_seconds']} s each, same server, same machine):",
        "",
        "| request | requests | CPU µs each | per core/s | non-2xx |",
        "|---|---|---|---|---|",
    ]
    for name, cost in result["costs"].items():
        lines.append(
            f"| {name} | {cost['requests']:,} | {cost['cpu_us']:,.0f} | "
            f"{1e6 / cost['cpu_us']:,.0f} | {cost['non_2xx']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=80)
    parser.add_argument("--rate", type=int, default=2400, help="requests/s offered in total")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=58092)
    parser.add_argument(
        "--cost-seconds",
        type=int,
        default=5,
        help="wrk seconds per request kind for the per-request CPU",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if not 0 < args.seconds <= 600 or not 0 < args.cost_seconds <= 60:
        parser.error("--seconds is 1..600, --cost-seconds 1..60")
    result = run(args)
    command = "python -m bench.api_load " + " ".join(sys.argv[1:])
    text = report(result, command.strip())
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
        print(f"api_load: written to {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
