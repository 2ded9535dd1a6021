"""Measuring a running benchmark: CPU of a process tree, machine load, progress files.

A benchmark job reports what it handled through progress files (``<name>-<subtask>.progress``
lines ``<count> <epoch ms>``, written by ``pizzastream.flink.bench.Progress`` about every
200 ms). The harness samples the CPU time of its own process tree (the Flink JVM and the
Python workers it starts) and of the whole machine at the same time, so a steady-state
window yields both events/s and events per CPU-second: the number that sizes KPUs
(1 KPU = 1 vCPU) and that the other engineers' tests sharing this machine disturb least.
"""

from __future__ import annotations

import bisect
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, object]:
    """nproc, CPU model and memory, for the report."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, utime+stime ticks, comm) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    close = text.rindex(")")
    comm = text[text.index("(") + 1 : close]
    rest = text[close + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12]), comm


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def descendants_cpu(root: int) -> dict[int, tuple[float, str]]:
    """CPU seconds so far of every live descendant of ``root`` (not ``root`` itself), with a
    role: ``jvm``, ``python`` (a Python worker) or the process name."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    result = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        ppid, ticks, comm = stats[pid]
        role = "jvm" if comm == "java" else "python" if comm.startswith("python") else comm
        result[pid] = (ticks / CLOCK_TICKS, role)
        stack.extend(children.get(pid, []))
    return result


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, already in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass
class CpuSample:
    t: float
    tree: dict[str, float]  # CPU seconds by role, summed over live processes
    machine_busy: float
    machine_total: float


def stack_pids() -> dict[str, int]:
    """The shared local stack's servers worth watching during a benchmark: PostgreSQL's
    postmaster and moto (the Kinesis stand-in), when their pid files are there."""
    from pizzastream.config import REPO_ROOT

    pids = {}
    for role, path in (
        ("postgres", REPO_ROOT / ".stack" / "pg" / "data" / "postmaster.pid"),
        ("moto", REPO_ROOT / ".stack" / "run" / "moto.pid"),
    ):
        try:
            pids[role] = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return pids


def _waited_children_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s children that have exited and been waited for (cutime +
    cstime): a server's short-lived workers, such as a PostgreSQL connection's backend."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[13]) + int(rest[14])) / CLOCK_TICKS


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root``, all its live descendants and its exited children."""
    own = _proc_stat(root)
    total = own[1] / CLOCK_TICKS if own else 0.0
    return (
        total + _waited_children_cpu(root) + sum(cpu for cpu, _ in descendants_cpu(root).values())
    )


@dataclass
class CpuSampler:
    """Samples, every ``period_s`` in a thread, the CPU of ``root``'s descendants by role,
    and of each process tree in ``watch`` (role -> root pid: servers shared with the
    benchmark, such as PostgreSQL or moto), reported as ``<role>_cores`` but not counted
    in ``tree_cores``.

    A process's CPU counts from its first sample on (its earlier CPU is startup, outside
    any steady-state window); a process that exits keeps its last value."""

    root: int = field(default_factory=os.getpid)
    period_s: float = 0.25
    samples: list[CpuSample] = field(default_factory=list)
    watch: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._first: dict[int | str, float] = {}
        self._last: dict[int, tuple[float, str]] = {}

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period_s)

    def sample(self) -> None:
        now = time.time()
        for pid, (cpu, role) in descendants_cpu(self.root).items():
            self._first.setdefault(pid, cpu)
            self._last[pid] = (cpu, role)
        by_role: dict[str, float] = {}
        for pid, (cpu, role) in self._last.items():
            by_role[role] = by_role.get(role, 0.0) + cpu - self._first[pid]
        for role, root in self.watch.items():
            cpu = _tree_cpu(root)
            self._first.setdefault(f"w_{role}", cpu)
            by_role[f"w_{role}"] = cpu - self._first[f"w_{role}"]
        busy, total = machine_cpu()
        self.samples.append(CpuSample(now, by_role, busy, total))

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds used between ``t0`` and ``t1`` (interpolated): by role, ``tree`` (all
        of ours), ``machine`` (everything on the box) and ``others`` (machine minus ours),
        each divided by the window length, i.e. in cores."""
        span = t1 - t0
        a, b = self._at(t0), self._at(t1)
        roles = set(a) | set(b)
        result = {
            role: (b.get(role, 0.0) - a.get(role, 0.0)) / span
            for role in roles
            if role not in ("_busy", "_total")
        }
        tree = sum(v for k, v in result.items() if not k.startswith("w_"))
        watched = sum(v for k, v in result.items() if k.startswith("w_"))
        machine_busy = (b["_busy"] - a["_busy"]) / span
        result = {f"{role.removeprefix('w_')}_cores": round(v, 3) for role, v in result.items()}
        result["tree_cores"] = round(tree, 3)
        result["machine_cores"] = round(machine_busy, 3)
        result["others_cores"] = round(max(0.0, machine_busy - tree - watched), 3)
        return result

    def _at(self, t: float) -> dict[str, float]:
        samples = self.samples
        times = [s.t for s in samples]
        i = bisect.bisect_left(times, t)
        if i <= 0:
            lo = hi = samples[0]
        elif i >= len(samples):
            lo = hi = samples[-1]
        else:
            lo, hi = samples[i - 1], samples[i]
        w = 0.0 if hi.t == lo.t else (t - lo.t) / (hi.t - lo.t)

        def mix(x: float, y: float) -> float:
            return x + (y - x) * w

        roles = set(lo.tree) | set(hi.tree)
        out = {role: mix(lo.tree.get(role, 0.0), hi.tree.get(role, 0.0)) for role in roles}
        out["_busy"] = mix(lo.machine_busy, hi.machine_busy)
        out["_total"] = mix(lo.machine_total, hi.machine_total)
        return out


class ProgressFiles:
    """The progress files of one job: the cumulative count over all subtasks at any time."""

    def __init__(self, directory: Path, name: str):
        self.directory = directory
        self.name = name

    def _series(self) -> list[list[tuple[float, int]]]:
        series = []
        for path in sorted(self.directory.glob(f"{self.name}-*.progress")):
            points = []
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2:
                    points.append((int(parts[1]) / 1000.0, int(parts[0])))
            if points:
                series.append(points)
        return series

    def subtasks(self) -> int:
        return len(self._series())

    def total(self) -> int:
        return sum(points[-1][1] for points in self._series())

    def first_record_time(self) -> float | None:
        """When any subtask had handled its first records."""
        times = [next((t for t, c in points if c > 0), None) for points in self._series()]
        times = [t for t in times if t is not None]
        return min(times) if times else None  # type: ignore[type-var]  # the Nones are filtered out just above

    def latest_time(self) -> float:
        """The time up to which every subtask has reported."""
        series = self._series()
        return min(points[-1][0] for points in series) if series else 0.0

    def count_at(self, t: float) -> float:
        total = 0.0
        for points in self._series():
            times = [p[0] for p in points]
            i = bisect.bisect_left(times, t)
            if i <= 0:
                total += points[0][1] if t >= points[0][0] else 0
            elif i >= len(points):
                total += points[-1][1]
            else:
                (t0, c0), (t1, c1) = points[i - 1], points[i]
                total += c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
        return total

    def time_at(self, count: float) -> float | None:
        """When the cumulative count reached ``count`` (interpolated); None if it has not."""
        series = self._series()
        times = sorted({t for points in series for t, _ in points})
        if not times or self.count_at(times[-1]) < count:
            return None
        lo, hi = times[0], times[-1]
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.count_at(mid) < count else (lo, mid)
        return hi
