"""The three local servers: moto (Kinesis, S3, DynamoDB), PostgreSQL (Aurora and the
warehouse in one server) and Redis, all on 127.0.0.1 at the configured ports.

Each service knows how to launch itself, prove it answers a real request, and stop.
All state lives under ``.stack/`` in the repo (see ``StackPaths``), so one checkout has
exactly one stack and ``down --purge`` removes every trace of it.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import psycopg
import redis

from connectors import redis_store
from pizzastream.config import REPO_ROOT, Props
from stack import moto_resources, tls
from stack.process import (
    ServiceError,
    has_marker,
    is_alive,
    log_tail,
    marked_env,
    port_in_use,
    read_pid,
    runs_in,
    spawn_detached,
    terminate,
    wait_until,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SUPERUSER = "postgres"
# A test box, not production: more memory and connections than the defaults, but fsync
# and synchronous commit stay on so a crash loses nothing a test already saw committed.
PG_SETTINGS = {"shared_buffers": "256MB", "max_connections": "200"}


@dataclass(frozen=True)
class StackPaths:
    root: Path = REPO_ROOT / ".stack"

    @property
    def lock(self) -> Path:
        return self.root / "stack.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pg(self) -> Path:
        return self.root / "pg"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    def prepare(self) -> None:
        """Create the state directories; PostgreSQL's are handed to the account it runs as."""
        for directory in (self.root, self.logs, self.run, self.redis, self.pg):
            directory.mkdir(mode=0o755, exist_ok=True)
        (self.pg / "run").mkdir(mode=0o700, exist_ok=True)
        (self.logs / "postgres.log").touch()
        if os.geteuid() == 0:
            account = pwd.getpwnam(PG_SUPERUSER)
            for path in (self.pg, self.pg / "run", self.logs / "postgres.log"):
                os.chown(path, account.pw_uid, account.pw_gid)


class Service:
    """Launch / readiness / stop protocol shared by the three servers."""

    name: str
    ready_timeout = 30.0

    def __init__(self, paths: StackPaths, host: str, port: int) -> None:
        self.paths, self.host, self.port = paths, host, port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.paths.logs / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.paths.run / f"{self.name}.pid"

    def owns(self, pid: int) -> bool:
        """True if ``pid`` is a live process this stack started for this service."""
        return is_alive(pid) and has_marker(pid, self.paths.root)

    def pid(self) -> int | None:
        """Pid of the running server, if it is one this stack started."""
        pid = read_pid(self.pid_file)
        return pid if pid is not None and self.owns(pid) else None

    def ping(self) -> None:
        """Raise unless the server answers a real request."""
        raise NotImplementedError

    def answers(self) -> bool:
        # Any failure means "not ready yet": the caller waits, and on timeout reports the log.
        try:
            self.ping()
        except Exception:  # noqa: BLE001 - any failure means not ready yet, see above
            return False
        return True

    def is_up(self) -> bool:
        return self.pid() is not None and port_in_use(self.host, self.port) and self.answers()

    def check_port_free(self) -> None:
        if port_in_use(self.host, self.port):
            raise ServiceError(
                f"{self.name}: {self.address} is in use by a process this stack "
                f"did not start; stop it or change the port in the config"
            )

    def launch(self) -> None:
        """Start the server; returns once launched, ``wait_ready`` waits until it answers."""
        raise NotImplementedError

    def wait_ready(self) -> None:
        if not wait_until(lambda: self.pid() is not None and self.answers(), self.ready_timeout):
            raise ServiceError(
                f"{self.name} did not answer on {self.address} within "
                f"{self.ready_timeout:.0f}s\n{log_tail(self.log)}"
            )

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            terminate([pid])
        self.pid_file.unlink(missing_ok=True)


class Moto(Service):
    """moto's server (``stack.moto_server``: Kinesis calls one at a time, see there why):
    Kinesis, S3 and DynamoDB in one in-memory process."""

    name = "moto"
    module = "stack.moto_server"

    def __init__(self, paths: StackPaths, props: Props) -> None:
        endpoint = urlsplit(props["Aws"]["endpoint"])
        super().__init__(paths, endpoint.hostname, endpoint.port)  # type: ignore[arg-type]  # the endpoint names host and port
        self.props = props

    def launch(self) -> None:
        argv = [sys.executable, "-m", self.module, "-H", self.host, "-p", str(self.port)]
        env = {**marked_env(self.paths.root), "PYTHONPATH": str(REPO_ROOT)}
        pid = spawn_detached(argv, self.log, env)
        self.pid_file.write_text(f"{pid}\n")

    def serialises_kinesis(self) -> bool:
        """False for a moto this stack started before it ran ``stack.moto_server`` (a plain
        ``moto_server``, which loses records under concurrent writers): ``up`` replaces it."""
        pid = self.pid()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, TypeError):
            return False
        return self.module.encode() in argv

    def ping(self) -> None:
        moto_resources.client(self.props, "kinesis", quick=True).list_streams(Limit=1)


class Redis(Service):
    """redis-server as ElastiCache runs it (``connectors.redis_store``): with ``Redis.tls``
    it listens for TLS only, with a certificate from a CA made at start (``stack.tls``,
    at ``Redis.tls_ca_file``); with ``Redis.password`` it admits only ``Redis.user`` with
    that password (the default user disabled) or, without a user, the default user with
    that password. The settings go into ``.stack/redis/redis.conf`` (0600), not argv."""

    name = "redis"
    ready_timeout = 15.0

    def __init__(self, paths: StackPaths, props: Props) -> None:
        super().__init__(paths, props["Redis"]["host"], int(props["Redis"]["port"]))
        self.props = props

    @property
    def config_file(self) -> Path:
        return self.paths.redis / "redis.conf"

    def _config(self) -> list[str]:
        if redis_store.cluster_mode(self.props):
            raise ServiceError(
                "redis: Redis.cluster_mode is on; the local stack runs one "
                "server without cluster mode (the cluster tests start their "
                "own cluster, tests/redis_cluster.py)"
            )
        lines = [
            f"bind {self.host}",
            "daemonize yes",
            f"pidfile {self.pid_file}",
            f"logfile {self.log}",
            'save ""',
            "appendonly no",
            f"dir {self.paths.redis}",
        ]
        return lines + redis_access(self.props, self.host, self.port)

    def owns(self, pid: int) -> bool:
        # redis-server rewrites its environment block for its process title.
        return super().owns(pid) or runs_in(pid, "redis-server", self.paths.redis)

    def launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis: redis-server not found; run scripts/setup.sh")
        self.config_file.write_text("\n".join(self._config()) + "\n")
        self.config_file.chmod(0o600)
        _run([binary, str(self.config_file)], self, marked_env(self.paths.root))

    def ping(self) -> None:
        with self._client() as client:
            client.ping()

    def flush(self) -> None:
        with self._client() as client:
            client.flushall()

    def _client(self) -> redis.Redis:
        return redis_store.client(self.props, socket_timeout=5, socket_connect_timeout=2)  # type: ignore[return-value]  # the local stack runs without cluster mode


def redis_access(props: Props, host: str, port: int) -> list[str]:
    """redis.conf lines for how ``port`` admits clients, as ElastiCache does and the ``Redis``
    group expects: TLS only (certificates made by ``stack.tls`` for ``Redis.tls_ca_file``)
    with ``Redis.tls``, and AUTH as ``Redis.user`` (the default user disabled) or, without a
    user, as the default user, with ``Redis.password``."""
    conf = props["Redis"]
    if redis_store.tls_enabled(props):
        ca = redis_store.ca_file(props)
        if ca is None:
            raise ServiceError(
                "redis: Redis.tls is on; the local server needs "
                "Redis.tls_ca_file for the CA it makes"
            )
        tls.ensure_certificates(ca, host)
        cert, key = tls.server_files(ca)
        lines = [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {cert}",
            f"tls-key-file {key}",
            f"tls-ca-cert-file {ca}",
            "tls-auth-clients no",
        ]
    else:
        lines = [f"port {port}"]
    password, user = conf.get("password", ""), conf.get("user", "")
    if password and user and user != "default":
        lines += ["user default off", f"user {user} on >{password} ~* &* +@all"]
    elif password:
        lines.append(f"requirepass {password}")
    return lines


class Postgres(Service):
    """One PostgreSQL 15 server holding both the operational (Aurora) and warehouse databases.

    Runs as the ``postgres`` account when we are root (initdb refuses root). TCP on
    127.0.0.1 requires a SCRAM password; the Unix socket in ``.stack/pg/run`` trusts the
    superuser, which is how the stack administers roles and databases.
    """

    name = "postgres"
    ready_timeout = 60.0

    def __init__(self, paths: StackPaths, props: Props) -> None:
        aurora, warehouse = props["Aurora"], props["Warehouse"]
        if (aurora["host"], aurora["port"]) != (warehouse["host"], warehouse["port"]):
            raise ServiceError(
                "postgres: Aurora and Warehouse must share host and port; "
                "the local stack runs one server for both"
            )
        super().__init__(paths, aurora["host"], int(aurora["port"]))

    @property
    def data(self) -> Path:
        return self.paths.pg / "data"

    @property
    def socket_dir(self) -> Path:
        return self.paths.pg / "run"

    @property
    def pid_file(self) -> Path:
        return self.data / "postmaster.pid"

    def owns(self, pid: int) -> bool:
        # Backends rewrite their environment block for their process titles.
        return super().owns(pid) or runs_in(pid, "postgres", self.data)

    def launch(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            print(f"stack: postgres initdb {self.data}", flush=True)
            self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                PG_SUPERUSER,
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            )
        options = [
            f"-c listen_addresses={self.host}",
            f"-p {self.port}",
            f"-k {shlex.quote(str(self.socket_dir))}",
        ]
        options += [f"-c {key}={value}" for key, value in PG_SETTINGS.items()]
        self._pg(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(self.ready_timeout)),
            "-o",
            " ".join(options),
        )

    def stop(self) -> None:
        if self.pid() is None:
            return
        try:
            self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
        except ServiceError:
            pid = self.pid()
            if pid is not None:
                terminate([pid])

    def admin_connection(self) -> psycopg.Connection:
        """Superuser session over the Unix socket, autocommit (CREATE DATABASE needs it)."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=PG_SUPERUSER,
            dbname="postgres",
            connect_timeout=3,
            autocommit=True,
        )

    def ping(self) -> None:
        with self.admin_connection() as conn:
            conn.execute("SELECT 1")

    def _pg(self, program: str, *args: str) -> None:
        argv = [str(PG_BIN / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", PG_SUPERUSER, "--", *argv]
        _run(argv, self, marked_env(self.paths.root))


def _run(argv: list[str], service: Service, env: dict[str, str]) -> None:
    """Run a short command for ``service``; on failure raise with its output and the log tail."""
    result = subprocess.run(
        argv,
        env=env,
        cwd=service.paths.root,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise ServiceError(
            f"{service.name}: `{shlex.join(argv)}` exited {result.returncode}\n"
            f"{result.stdout}{result.stderr}{log_tail(service.log)}"
        )


class Services(NamedTuple):
    """The stack's servers in start order; ``down`` stops them in reverse."""

    moto: Moto
    postgres: Postgres
    redis: Redis


def stack_services(props: Props, paths: StackPaths) -> Services:
    return Services(
        moto=Moto(paths, props),
        postgres=Postgres(paths, props),
        redis=Redis(paths, props),
    )
