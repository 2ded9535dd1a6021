"""How the API's framework and server were chosen: ``python -m bench.api_frameworks``.

The same small handler (check a bearer header, look a store's figures up in a dict, return
them as JSON: what a cached metrics read costs) in FastAPI and in Litestar, each served by
uvicorn (uvloop + httptools) and by granian, one worker process each, driven by ``wrk``
(C, loopback only, bounded time) so the load generator is not the bottleneck. Prints
requests/s and latency per combination; the figures are in the README's API section.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stack.process import port_in_use, wait_until

APPS = {
    "fastapi": """
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import ORJSONResponse
app = FastAPI(default_response_class=ORJSONResponse)
FIGURES = {s: {"store_id": s, "orders": 10 * s, "revenue": "123.45"} for s in range(1, 2001)}

@app.get("/stores/{store_id}/metrics")
async def metrics(store_id: int, authorization: str = Header("")):
    if not authorization.startswith("Bearer "):
        raise HTTPException(401)
    return FIGURES[store_id]
""",
    "litestar": """
from litestar import Litestar, get
from litestar.exceptions import NotAuthorizedException
from litestar.params import Parameter
FIGURES = {s: {"store_id": s, "orders": 10 * s, "revenue": "123.45"} for s in range(1, 2001)}

@get("/stores/{store_id:int}/metrics")
async def metrics(store_id: int, authorization: str = Parameter(header="authorization",
                                                                 default="")) -> dict:
    if not authorization.startswith("Bearer "):
        raise NotAuthorizedException()
    return FIGURES[store_id]

app = Litestar([metrics])
""",
}


def server_argv(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_app:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-ws",
        "bench_app:app",
    ]


def measure(framework: str, server: str, port: int, seconds: int, connections: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench_app.py").write_text(APPS[framework])
        proc = subprocess.Popen(
            server_argv(server, port),
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": tmp},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not wait_until(lambda: port_in_use("127.0.0.1", port), 20):
                raise SystemExit(f"{framework}/{server} did not start")
            time.sleep(0.5)
            out = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-H",
                    "Authorization: Bearer x",
                    f"http://127.0.0.1:{port}/stores/42/metrics",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            proc.terminate()
            proc.wait(10)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)  # type: ignore[union-attr]  # wrk prints them; a missing one fails the run
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (
        f"{framework:<9} {server:<8} {float(rps):>9,.0f} req/s  p50 {p50:>8}  p99 {p99:>8}"
        f"  non-2xx {errors.group(1) if errors else 0}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=58099)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for framework in APPS:
        for server in ("uvicorn", "granian"):
            print(measure(framework, server, args.port, args.seconds, args.connections), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
