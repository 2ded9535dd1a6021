"""One temporary directory per process run, removed when the process ends, killed or not.

A Flink run on the local mini-cluster writes ~150 MB of temporary files (``minicluster_*``,
``flink-dist-cache-*``, the RPC and planner jars it unpacks, ``python-dist-*``) and Flink
removes them only on an orderly shutdown; the project adds its own (``pizzastream-code-*``,
``bench-*``). One benchmark run once left 3.3 GB in the system temp directory. So every
entry point that starts a JVM or writes temporary files calls ``claim()`` first, and
everything goes into ``<system temp>/pizzastream-runs/<pid>-<start>/``:

- Python's ``tempfile`` (``tempfile.tempdir`` and ``TMPDIR``, which the Flink JVM and the
  Python workers it starts inherit);
- the JVM's ``java.io.tmpdir`` and Flink's ``io.tmp.dirs`` (``jobs/runtime.py`` sets them
  from ``path()``).

The directory is removed at exit (``atexit``, and a SIGTERM makes the process exit through
it); a process killed outright (SIGKILL, OOM) leaves it behind, and the next ``claim()`` on
the machine removes every run directory whose process is gone. A run is identified by pid
and process start time, so a reused pid is not mistaken for a live run.

Detached servers that outlive the process that started them (the stack's moto, PostgreSQL,
Redis) must not inherit a run directory that disappears under them: ``outside_env`` gives
them the environment without it.

No Flink import: this is plain process plumbing, also used by the benchmark harness.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType

ROOT_ENV = "PIZZASTREAM_RUNS_ROOT"
# The TMPDIR in force before any claim in this process tree ("" when it was unset), so a
# child can get the system's temp directory back (``outside_env``).
SYSTEM_TMPDIR_ENV = "PIZZASTREAM_SYSTEM_TMPDIR"
TEMP_VARIABLES = ("TMPDIR", "TEMP", "TMP")
ROOT_NAME = "pizzastream-runs"

_claimed: Path | None = None


def runs_root() -> Path:
    """Where the run directories live: ``$PIZZASTREAM_RUNS_ROOT``, else ``pizzastream-runs``
    in the system temp directory (taken before any claim changed ``TMPDIR``)."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV])
    system = (
        os.environ[SYSTEM_TMPDIR_ENV] or "/tmp"
        if SYSTEM_TMPDIR_ENV in os.environ
        else tempfile.gettempdir()
    )
    return Path(system) / ROOT_NAME


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/pid/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _run_name(pid: int) -> str | None:
    ticks = _start_ticks(pid)
    return None if ticks is None else f"{pid}-{ticks}"


def _is_live(name: str) -> bool:
    pid, _, _ = name.partition("-")
    return pid.isdigit() and _run_name(int(pid)) == name


def remove_stale(root: Path | None = None) -> list[Path]:
    """Removes the run directories whose process is gone; returns them."""
    root = root or runs_root()
    if not root.is_dir():
        return []
    removed = []
    for entry in root.iterdir():
        if entry.is_dir() and not _is_live(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def path() -> Path | None:
    """This process's run directory, if it claimed one."""
    return _claimed


def claim() -> Path:
    """This process's run directory, created on the first call (which also removes stale
    ones and points Python's temp directory, and its children's, into it)."""
    global _claimed
    if _claimed is not None:
        return _claimed
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    name = _run_name(os.getpid())
    assert name is not None, "this process's own start time is always readable"
    run = root / name
    run.mkdir(exist_ok=True)
    os.environ.setdefault(SYSTEM_TMPDIR_ENV, os.environ.get("TMPDIR", ""))
    os.environ[ROOT_ENV] = str(root)
    for variable in TEMP_VARIABLES:
        os.environ[variable] = str(run)
    tempfile.tempdir = str(run)
    atexit.register(shutil.rmtree, run, ignore_errors=True)
    _exit_on_sigterm()
    _claimed = run
    return run


def _exit_on_sigterm() -> None:
    """SIGTERM ends the process through ``SystemExit``, so the ``atexit`` removal runs
    (by default Python dies on it without running ``atexit``). A handler someone else set
    is kept."""
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: signals are the main thread's business
        pass


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def outside_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the system's temp directory instead of a run directory, for a detached
    process that outlives this one."""
    if SYSTEM_TMPDIR_ENV not in env:
        return dict(env)
    system = env[SYSTEM_TMPDIR_ENV]
    result = {
        k: v for k, v in env.items() if k not in (*TEMP_VARIABLES, SYSTEM_TMPDIR_ENV, ROOT_ENV)
    }
    if system:
        result["TMPDIR"] = system
    return result
