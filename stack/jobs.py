"""Runs the pipeline's programs as local processes: the Flink jobs' real entry points
(``python jobs/<job>.py``) and the services around them (``python -m delivery`` ...).

Each is its own process group (a job with its own mini-cluster JVM, as each is its own
application on Managed Service for Apache Flink); stopping the group leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from pizzastream.config import REPO_ROOT

LOG_DIR = REPO_ROOT / ".stack" / "logs"
# log4j's console pattern: "2026-11-24 12:15:34,115 INFO  org.apache..."
_JVM_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


class LocalProcess:
    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None):
        """Runs ``python <args>`` from the repository root, logging to .stack/logs/<name>.log."""
        self.job = name
        self.log_path: Path = LOG_DIR / f"{name}.log"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def running(self) -> bool:
        return self._process.poll() is None

    def wait(self) -> int:
        """Waits for a program that ends by itself; returns its exit code."""
        return self._process.wait()

    def output(self) -> str:
        """What the program printed, without the JVM's log lines (they stay in the log)."""
        return "\n".join(
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if not _JVM_LOG_LINE.match(line)
        )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
        """Stops the job's whole process group (client, JVM, Python workers)."""
        if self.running():
            os.killpg(self._process.pid, sig)
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        try:  # the JVM or Python workers may outlive the client
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LocalProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class JobProcess(LocalProcess):
    """A Flink job's entry point, ``python jobs/<job>.py``."""

    def __init__(self, job: str, env: dict[str, str] | None = None):
        super().__init__(job, [str(REPO_ROOT / "jobs" / f"{job}.py")], env)
