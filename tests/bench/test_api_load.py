"""The API load test's harness works end to end on the real stack (seed, server, locust,
per-request CPU with wrk, report): a few seconds at a low rate, nothing asserted about
speed beyond "every request answered, none failed"."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from pizzastream.config import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_load_test_harness_reports_every_figure(local_stack):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.api_load",
            "--seconds",
            "4",
            "--users",
            "4",
            "--rate",
            "40",
            "--cost-seconds",
            "1",
            "--port",
            str(port),
            "--no-write",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = run.stdout
    assert "| errors | 0 |" in report
    for line in (
        "GET /stores/[id]/metrics",
        "GET /orders/[id]",
        "requests per API CPU-second",
        "| metrics, response cached |",
        "| order placed (Kinesis put) |",
    ):
        assert line in report, report
    costs = [
        line
        for line in report.split("| request | requests | CPU µs each")[1].splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert len(costs) == 4 and all(line.endswith("| 0 |") for line in costs), costs  # no non-2xx
