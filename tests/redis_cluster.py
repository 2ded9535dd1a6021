"""A Redis cluster of three masters on this machine, admitting clients as ElastiCache in
cluster mode does (TLS only, on the client ports and on the cluster bus; AUTH as the
``Redis`` group's user), for the tests of the cluster clients (``Redis.cluster_mode``,
``connectors.redis_store``). The local stack's Redis is one server without cluster mode, so
this cluster is started only by the tests that ask for it (the ``redis_cluster`` fixture)
and stopped, its files removed, when they are done.

The nodes are children of the test process, on free ports, with their CA, certificates,
configuration and data in one directory under the run directory
(``pizzastream.run_directory``); they are told to stop when the test process dies.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import redis

from connectors import redis_store
from pizzastream import run_directory
from stack.process import wait_until
from stack.services import redis_access

MASTERS = 3
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> list[int]:
    """Ports free now on ``HOST``, all different (held open together while picked)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((HOST, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _die_with_parent() -> None:
    """In the node's process before exec: SIGTERM when the test process dies, killed or not."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalRedisCluster:
    """``with LocalRedisCluster(props) as cluster_props:`` the cluster runs in the block;
    ``cluster_props`` are ``props`` with the ``Redis`` group pointing at it (first node as
    the configuration endpoint, its own CA, ``cluster_mode`` on)."""

    def __init__(self, props: dict[str, dict[str, str]]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="redis-cluster-", dir=run_directory.claim()))
        ports = free_ports(2 * MASTERS)
        self.ports, self.bus_ports = ports[:MASTERS], ports[MASTERS:]
        self.props = {
            **props,
            "Redis": {
                **props["Redis"],
                "host": HOST,
                "port": str(self.ports[0]),
                "tls": "true",
                "tls_ca_file": str(self.root / "tls" / "ca.crt"),
                "cluster_mode": "true",
            },
        }
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> dict[str, dict[str, str]]:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self.props

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def node_props(self, port: int) -> dict[str, dict[str, str]]:
        """The props of one node as a plain server (no cluster client)."""
        return {
            **self.props,
            "Redis": {**self.props["Redis"], "port": str(port), "cluster_mode": "false"},
        }

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; run scripts/setup.sh")
        for port, bus_port in zip(self.ports, self.bus_ports):
            node = self.root / f"node-{port}"
            node.mkdir()
            config = node / "redis.conf"
            config.write_text(
                "\n".join(
                    [
                        f"bind {HOST}",
                        f"dir {node}",
                        'save ""',
                        "appendonly no",
                        "cluster-enabled yes",
                        "cluster-config-file nodes.conf",
                        f"cluster-port {bus_port}",
                        "cluster-node-timeout 5000",
                        "tls-cluster yes",
                        *redis_access(self.props, HOST, port),
                    ]
                )
                + "\n"
            )
            config.chmod(0o600)
            with open(node / "redis.log", "wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        [binary, str(config)],
                        cwd=node,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        preexec_fn=_die_with_parent,
                    )
                )
        for port in self.ports:
            self._wait(port, lambda client: client.ping(), "answer")
        self._create()
        for port in self.ports:
            self._wait(
                port,
                lambda client: client.cluster("info")["cluster_state"] == "ok",
                "report the cluster ok",
            )

    def _wait(self, port: int, probe, what: str) -> None:
        def done() -> bool:
            try:
                with redis_store.client(self.node_props(port), socket_timeout=2) as client:
                    return bool(probe(client))
            except redis.RedisError:
                return False

        if not wait_until(done, 20):
            raise RuntimeError(
                f"redis cluster node {port} did not {what} within 20 s\n{self._logs()}"
            )

    def _create(self) -> None:
        conf = self.props["Redis"]
        argv = [
            "redis-cli",
            "--tls",
            "--cacert",
            conf["tls_ca_file"],
            "--cluster",
            "create",
            *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        if conf.get("user") and conf["user"] != redis_store.DEFAULT_USER:
            argv[1:1] = ["--user", conf["user"]]
        # The password in the environment, not on a command line others can read.
        env = {**os.environ, "REDISCLI_AUTH": conf.get("password", "")}
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create exited {result.returncode}\n"
                f"{result.stdout}{result.stderr}{self._logs()}"
            )

    def _logs(self) -> str:
        return "\n".join(
            f"--- {log}\n{log.read_text()[-2000:]}"
            for log in sorted(self.root.glob("node-*/redis.log"))
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)
