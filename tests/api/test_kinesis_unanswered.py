"""The orders stream accepts connections but never answers (a hung endpoint, not a refused
one): a customer's order gets a 503 after the intake's bounded attempts instead of hanging
on botocore's 60 s reads, and a server stopped with a request still stuck on such a call
exits within its worker stop bound (the CI failure of stop 23: the load harness's server
did not stop in 20 s)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from api import auth
from api.__main__ import WORKER_STOP_TIMEOUT_S, healthy
from api.app import KINESIS_TIMEOUT_S
from pizzastream.config import REPO_ROOT
from stack.process import wait_until
from tests.api_support import token

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unanswering_stream_gives_a_503_and_the_server_still_stops_in_bound(
    local_stack, props, tmp_path
):
    silent = socket.socket()  # accepts (the kernel's backlog), never replies
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = _free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "api", "serve", "--port", str(port), "--workers", "1"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PIZZASTREAM__AWS__ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}",
            },
        )
    base_url = f"http://127.0.0.1:{port}"
    order = {
        "store_id": 1,
        "channel": "online",
        "fulfillment": "pickup",
        "items": [{"product_id": 1, "quantity": 1}],
    }
    try:
        assert wait_until(lambda: healthy(base_url), 60), log.read_text()
        headers = token(props, auth.INTAKE)
        with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
            started = time.monotonic()
            refused = http.post("/orders", json=order)
            waited = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        assert waited < 4 * KINESIS_TIMEOUT_S + 10, waited  # 3 attempts and their backoff

        stuck = threading.Thread(target=lambda: _post_ignoring_errors(base_url, headers, order))
        stuck.start()
        time.sleep(1)  # the request is now in a put that cannot return
        server.terminate()
        server.wait(WORKER_STOP_TIMEOUT_S + 15)
        assert "Killing worker-1" in log.read_text(), log.read_text()
        stuck.join(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        silent.close()


def _post_ignoring_errors(base_url: str, headers: dict, order: dict) -> None:
    try:
        httpx.post(f"{base_url}/orders", headers=headers, json=order, timeout=60)
    except httpx.HTTPError:
        pass  # the server went away under it, as expected
