"""A local standalone Flink cluster started from the pip package's own scripts.

``python jobs/<job>.py`` runs a job on a mini-cluster inside its own process, which is
enough for everything but the failures of a real cluster: a TaskManager dying under a
running job, or an operator stopping a job with a savepoint and submitting it again.
This starts PyFlink's ``bin/start-cluster.sh`` (one JobManager, ``task_managers``
TaskManagers) with its own configuration directory, and submits the jobs' real entry
points with ``bin/flink run -py jobs/<job>.py`` and the dependencies jar::

    with StandaloneCluster(Path("/tmp/cluster")) as cluster:
        job_id = cluster.run_python_job("inventory_windowing", restore_from=checkpoint)
        cluster.wait_running(job_id)
        cluster.kill_task_manager(cluster.busy_task_managers(job_id)[0])
        savepoint = cluster.stop_with_savepoint(job_id)

Two things the pip package does not do by itself are done here: ``flink-python`` ships in
``opt/`` and is not on a TaskManager's class path, so ``FLINK_LIB_DIR`` points at a
directory linking ``lib/*`` plus that jar; and the JVM options the jobs rely on locally
(``-Daws.cborEnabled=false``, UTC) go into ``env.java.opts.all``. Ports are picked free
at start, pid and log files stay in ``workdir``, so the cluster never meets another one.
Its temporary files too (``io.tmp.dirs``, ``java.io.tmpdir`` and the Python workers'
``TMPDIR`` all point at ``workdir/tmp``), removed by ``stop``.

``run_packaged_job`` submits an unpacked MSF application zip instead, the way MSF starts
it (``tests/deploy/test_msf_zip.py``): for that the cluster can run outside the repository
(``cwd``, ``environ``: a Python worker started in the repository would import the project
from there, whatever the zip lacks), with another interpreter (``python``: one with only
what MSF's runtime provides), file system plugins (``plugins``) and ``settings`` of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from pizzastream.config import REPO_ROOT, prepend_interpreter_to_path

DEPENDENCIES_JAR = REPO_ROOT / "deploy" / "target" / "pizzastream-deps.jar"
JVM_OPTIONS = "-Daws.cborEnabled=false -Duser.timezone=UTC"
# The run options MSF accepts for a Python application and the ``flink run`` option each is
# (docs.aws.amazon.com/managed-flink/latest/java/how-python-creating.html: no pyModule,
# pyExecutable or pyRequirements).
RUN_OPTION_FLAGS = {"python": "-py", "pyFiles": "-pyfs", "jarfile": "-j", "pyArchives": "-pyarch"}


def pyflink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _default_java_options(home: Path) -> str:
    """The ``env.java.opts.all`` line of the package's own config (Java 17 --add-opens)."""
    for line in (home / "conf" / "config.yaml").read_text().splitlines():
        if line.strip().startswith("all:"):
            return line.split("all:", 1)[1].strip()
    return ""


def pid_listening_on(port: int) -> int | None:
    """The pid of the process with a listening TCP socket on ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(entry.name)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class ClusterError(RuntimeError):
    pass


class StandaloneCluster:
    def __init__(
        self,
        workdir: Path,
        *,
        task_managers: int = 2,
        slots: int = 2,
        checkpoint_interval: str = "5 s",
        restart_delay: str = "5 s",
        task_manager_memory: str = "1728m",
        python: str = sys.executable,
        cwd: Path = REPO_ROOT,
        environ: Mapping[str, str] | None = None,
        plugins: Path | None = None,
        settings: Mapping[str, object] | None = None,
    ):
        self.workdir = Path(workdir)
        self.cwd, self._environ = Path(cwd), environ
        self._plugins, self._settings = plugins, dict(settings or {})
        self.task_managers, self.slots = task_managers, slots
        self._checkpoint_interval, self._restart_delay = checkpoint_interval, restart_delay
        self._tm_memory = task_manager_memory
        self.python = python
        self.home = pyflink_home()
        self.rest_port: int | None = None

    # ------------------------------------------------------------------ layout
    @property
    def conf_dir(self) -> Path:
        return self.workdir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def savepoint_dir(self) -> Path:
        return self.workdir / "savepoints"

    @property
    def tmp_dir(self) -> Path:
        return self.workdir / "tmp"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for the package's scripts: this cluster's conf, lib, pid, log and
        temp dirs."""
        plugins = {"FLINK_PLUGINS_DIR": str(self._plugins)} if self._plugins else {}
        environ = dict(os.environ if self._environ is None else self._environ)
        # Python embedded in the TaskManagers (thread mode) is this cluster's Python.
        prepend_interpreter_to_path(environ, self.python)
        return {
            **environ,
            "TMPDIR": str(self.tmp_dir),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LIB_DIR": str(self.workdir / "lib"),
            "FLINK_PID_DIR": str(self.workdir / "pid"),
            "FLINK_LOG_DIR": str(self.log_dir),
            **plugins,
            **(extra or {}),
        }

    def _write_configuration(self) -> None:
        for name in ("conf", "lib", "pid", "log", "savepoints", "checkpoints", "tmp"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        for source in (self.home / "conf").iterdir():
            if source.name.startswith(("log4j", "logback")):
                (self.conf_dir / source.name).write_bytes(source.read_bytes())
        lib = self.workdir / "lib"
        for jar in [
            *(self.home / "lib").glob("*.jar"),
            *(self.home / "opt").glob("flink-python*.jar"),
        ]:
            link = lib / jar.name
            if not link.exists():
                link.symlink_to(jar)
        self.rest_port = _free_port()
        (self.conf_dir / "workers").write_text("localhost\n" * self.task_managers)
        (self.conf_dir / "masters").write_text(f"localhost:{self.rest_port}\n")
        settings = {
            "env.java.opts.all": (
                f"{_default_java_options(self.home)} {JVM_OPTIONS} -Djava.io.tmpdir={self.tmp_dir}"
            ),
            "io.tmp.dirs": str(self.tmp_dir),
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": _free_port(),
            "jobmanager.memory.process.size": "1024m",
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": self.slots,
            "taskmanager.memory.process.size": self._tm_memory,
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": self.rest_port,
            "blob.server.port": _free_port(),
            "parallelism.default": 1,
            "execution.checkpointing.interval": self._checkpoint_interval,
            "execution.checkpointing.dir": (self.workdir / "checkpoints").as_uri(),
            "execution.checkpointing.savepoint-dir": self.savepoint_dir.as_uri(),
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": 2147483647,
            "restart-strategy.fixed-delay.delay": self._restart_delay,
            # A killed TaskManager is noticed within seconds, not the default 50.
            "heartbeat.interval": 2000,
            "heartbeat.timeout": 15000,
            "python.executable": self.python,
            "python.client.executable": self.python,
            **self._settings,
        }
        # Flat keys are valid YAML for Flink's config.yaml parser.
        (self.conf_dir / "config.yaml").write_text(
            "".join(
                f"{key}: {json.dumps(value) if isinstance(value, str) else value}\n"
                for key, value in settings.items()
            )
        )

    def _script(
        self,
        *args: str,
        timeout_s: float = 300,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> str:
        result = subprocess.run(
            ["bash", str(self.home / "bin" / args[0]), *args[1:]],
            cwd=cwd or self.cwd,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise ClusterError(f"`{' '.join(args)}` exited {result.returncode}:\n{output[-3000:]}")
        return output

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 120) -> StandaloneCluster:
        self._write_configuration()
        self._script("start-cluster.sh")
        self.wait_for_task_managers(self.task_managers, timeout_s)
        return self

    def stop(self) -> None:
        """Cancels nothing: stops the daemons (jobs die with them), then kills leftovers."""
        pids = self._daemon_pids()
        try:
            self._script("stop-cluster.sh", timeout_s=120)
        except (ClusterError, subprocess.TimeoutExpired):
            pass
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in pids:
            for process in [pid, *_descendants(pid)]:
                try:
                    os.kill(process, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _daemon_pids(self) -> list[int]:
        pids = []
        for pid_file in (self.workdir / "pid").glob("*.pid"):
            pids += [int(line) for line in pid_file.read_text().split() if line.isdigit()]
        return [pid for pid in pids if _alive(pid)]

    # ------------------------------------------------------------------ REST
    def rest(self, path: str, method: str = "GET", body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.rest_port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def _wait(self, what: str, probe, timeout_s: float, every_s: float = 1.0):
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                last = probe()
            except (urllib.error.URLError, OSError, KeyError, ValueError) as error:
                last = error
            else:
                if last:
                    return last
            time.sleep(every_s)
        raise ClusterError(f"timed out after {timeout_s}s waiting for {what}; last: {last}")

    def task_managers_info(self) -> list[dict]:
        return self.rest("/taskmanagers")["taskmanagers"]

    def wait_for_task_managers(self, count: int, timeout_s: float = 120) -> None:
        self._wait(
            f"{count} task managers", lambda: len(self.task_managers_info()) >= count, timeout_s
        )

    def job(self, job_id: str) -> dict:
        return self.rest(f"/jobs/{job_id}")

    def wait_running(self, job_id: str, timeout_s: float = 240) -> None:
        """Until the job and every one of its tasks run (after a submit or a failover)."""

        def running():
            job = self.job(job_id)
            if job["state"] in ("FAILED", "CANCELED", "FINISHED"):
                raise ClusterError(f"job {job_id} is {job['state']}: {self.root_exception(job_id)}")
            return job["state"] == "RUNNING" and all(
                v["status"] == "RUNNING" for v in job["vertices"]
            )

        self._wait(f"job {job_id} running", running, timeout_s)

    def root_exception(self, job_id: str) -> str:
        try:
            return (self.rest(f"/jobs/{job_id}/exceptions").get("root-exception") or "")[:2000]
        except (urllib.error.URLError, OSError):
            return ""

    def restarts(self, job_id: str) -> int:
        """How many times the job has restarted (failovers), from the job's metrics."""
        metrics = self.rest(f"/jobs/{job_id}/metrics?get=numRestarts")
        return int(float(metrics[0]["value"])) if metrics else 0

    def checkpoints(self, job_id: str) -> dict:
        return self.rest(f"/jobs/{job_id}/checkpoints")

    # ------------------------------------------------------------------ jobs
    def run_python_job(
        self,
        job: str,
        *,
        restore_from: str | Path | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float = 300,
        entry_point: Path | None = None,
    ) -> str:
        """Submits ``jobs/<job>.py`` (or another ``entry_point``: a changed version of it)
        detached (``flink run -d -py``); returns the job id. ``restore_from``: a savepoint
        or retained checkpoint directory (``-s``)."""
        args = ["flink", "run", "-d"]
        if restore_from:
            args += ["-s", str(restore_from)]
        args += [
            "-pyclientexec",
            self.python,
            "-pyexec",
            self.python,
            "-j",
            str(DEPENDENCIES_JAR),
            "-py",
            str(entry_point or REPO_ROOT / "jobs" / f"{job}.py"),
        ]
        return _job_id(self._script(*args, timeout_s=timeout_s, env=env))

    def run_packaged_job(
        self,
        directory: Path,
        run_options: Mapping[str, str],
        *,
        env: dict[str, str] | None = None,
        timeout_s: float = 300,
    ) -> str:
        """Submits an unpacked MSF application zip detached, as MSF starts it: each of its
        run options (the ``kinesis.analytics.flink.run.options`` group) as the ``flink run``
        option it stands for, naming a path inside ``directory``, run from ``directory``;
        the Python interpreters are the cluster's, as MSF's are (it accepts no
        ``pyExecutable``). Returns the job id."""
        args = ["flink", "run", "-d"]
        for key, value in run_options.items():
            paths = ",".join(str(Path(directory) / path) for path in value.split(","))
            args += [RUN_OPTION_FLAGS[key], paths]
        return _job_id(self._script(*args, timeout_s=timeout_s, env=env, cwd=Path(directory)))

    def stop_with_savepoint(self, job_id: str, timeout_s: float = 180) -> str:
        """``flink stop --savepointPath``: the job drains nothing (no ``--drain``), takes a
        savepoint and finishes; returns the savepoint's path."""
        output = self._script(
            "flink",
            "stop",
            "--savepointPath",
            self.savepoint_dir.as_uri(),
            job_id,
            timeout_s=timeout_s,
        )
        found = re.search(r"Savepoint completed\. Path: (\S+)", output)
        if not found:
            raise ClusterError(f"no savepoint path in the output of flink stop:\n{output[-3000:]}")
        return found.group(1)

    def cancel(self, job_id: str) -> None:
        self._script("flink", "cancel", job_id, timeout_s=120)

    # ------------------------------------------------------------------ task managers
    def busy_task_managers(self, job_id: str) -> list[str]:
        """Ids of the TaskManagers running at least one of the job's tasks."""
        ids: set[str] = set()
        for vertex in self.job(job_id)["vertices"]:
            detail = self.rest(f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
            ids.update(tm["taskmanager-id"] for tm in detail["taskmanagers"])
        return sorted(ids)

    def task_manager_pid(self, task_manager_id: str) -> int:
        """A standalone TaskManager's id is ``<host>:<rpc port>-<suffix>``: the pid is the
        process listening on that port."""
        port = int(task_manager_id.split(":", 1)[1].split("-", 1)[0])
        pid = pid_listening_on(port)
        if pid is None:
            raise ClusterError(f"no process listens on the rpc port of {task_manager_id}")
        return pid

    def kill_task_manager(self, task_manager_id: str) -> int:
        """SIGKILL of the TaskManager JVM and its Python workers, as when its host or
        container dies. Returns the JVM's pid."""
        pid = self.task_manager_pid(task_manager_id)
        for process in [pid, *_descendants(pid)]:
            try:
                os.kill(process, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pid

    def wait_task_manager_gone(self, task_manager_id: str, timeout_s: float = 60) -> None:
        """Until the JobManager has noticed a dead TaskManager (heartbeat timeout)."""
        self._wait(
            f"{task_manager_id} to be dropped",
            lambda: task_manager_id not in {tm["id"] for tm in self.task_managers_info()},
            timeout_s,
        )

    def start_task_manager(self) -> None:
        """One more TaskManager (``bin/taskmanager.sh start``), e.g. to replace a dead one."""
        before = len(self.task_managers_info())
        self._script("taskmanager.sh", "start")
        self.wait_for_task_managers(before + 1)


def _job_id(output: str) -> str:
    found = re.search(r"JobID ([0-9a-f]{32})", output)
    if not found:
        raise ClusterError(f"no job id in the output of flink run:\n{output[-3000:]}")
    return found.group(1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
