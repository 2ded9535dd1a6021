"""Process plumbing for the local stack: start detached, find our own, stop for sure.

Pid files go stale and pids get reused, so a pid only counts as ours if the process
proves it: processes the stack starts carry ``PIZZASTREAM_STACK=<state dir>`` in their
environment. Redis and PostgreSQL overwrite their environment block when they set their
process titles, so for them the services also accept "right process name, and the
working directory is that service's own directory in our state dir". That lets ``down``
kill every leftover of this stack and nothing that belongs to anyone else.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pizzastream import run_directory

MARKER = "PIZZASTREAM_STACK"


class ServiceError(RuntimeError):
    """A service could not be started, reached or stopped; the message says which and why."""


def marked_env(stack_dir: Path) -> dict[str, str]:
    """The environment of a server the stack starts: marked as ours, and with the system's
    temp directory, not the run directory of the process starting it (which goes first)."""
    return {**run_directory.outside_env(dict(os.environ)), MARKER: str(stack_dir)}


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; zombies count as gone (and our own exited children are reaped)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def has_marker(pid: int, stack_dir: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return f"{MARKER}={stack_dir}".encode() in environ.split(b"\0")


def runs_in(pid: int, name: str, cwd: Path) -> bool:
    """True if ``pid`` is a process called ``name`` whose working directory is ``cwd``."""
    try:
        return (
            Path(f"/proc/{pid}/comm").read_text().strip() == name
            and Path(os.readlink(f"/proc/{pid}/cwd")) == cwd
        )
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def live_pids() -> list[int]:
    """Every process on the machine except this one."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if pid != os.getpid() and is_alive(pid)]


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def spawn_detached(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Start ``argv`` in its own session with output to ``log`` (truncated); returns its pid.

    A new session keeps the service alive after the calling CLI or pytest exits and away
    from its Ctrl-C; ``posix_spawn`` leaves no ``Popen`` object to warn about at exit.
    """
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, env, file_actions=file_actions, setsid=True)


def terminate(pids: Iterable[int], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL whatever is still running after ``timeout`` seconds."""
    pids = [pid for pid in pids if is_alive(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if wait_until(lambda: not any(map(is_alive, pids)), timeout):
            return


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"(no log at {log})"
    return f"--- last {len(tail)} lines of {log} ---\n" + "\n".join(tail)
