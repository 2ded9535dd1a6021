"""Each process run keeps its temporary files in one directory that goes when the run ends,
killed or not (``pizzastream.run_directory``); a Flink job run leaves the system temp
directory as it found it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pizzastream import run_directory
from pizzastream.config import REPO_ROOT

# A process that claims its run directory, makes a temp file and a child that makes one,
# prints where they went, then waits for a line on stdin (or exits at once).
CLAIMING = textwrap.dedent(f"""
    import json, os, subprocess, sys, tempfile, time
    sys.path.insert(0, {str(REPO_ROOT)!r})
    from pizzastream import run_directory
    run = run_directory.claim()
    own = tempfile.mkdtemp(prefix="pizzastream-code-")
    child = subprocess.run([sys.executable, "-c",
                            "import tempfile; print(tempfile.mkdtemp(prefix='flink-'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    grandchild_run = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
         "from pizzastream import run_directory; print(run_directory.claim())"],
        capture_output=True, text=True, check=True).stdout.strip()
    print(json.dumps({{"run": str(run), "own": own, "child": child,
                      "child_run": grandchild_run, "root": str(run_directory.runs_root())}}),
          flush=True)
    if sys.argv[1:] == ["wait"]:
        sys.stdin.readline()
""")


def _system_env(system_tmp: Path) -> dict[str, str]:
    """This environment as a fresh shell would give it, with ``system_tmp`` as the system's
    temp directory (whatever run directory this test process may be in)."""
    return {**run_directory.outside_env(dict(os.environ)), "TMPDIR": str(system_tmp)}


def _start(system_tmp: Path, *args: str) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen(
        [sys.executable, "-c", CLAIMING, *args],
        env=_system_env(system_tmp),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def _tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_a_run_keeps_its_and_its_childrens_temp_files_in_its_directory_and_removes_it(tmp_path):
    process, seen = _start(tmp_path)
    assert process.wait(30) == 0
    run = Path(seen["run"])
    assert run.parent == tmp_path / run_directory.ROOT_NAME == Path(seen["root"])
    assert run.name == f"{process.pid}-{seen['run'].rsplit('-', 1)[1]}"
    assert Path(seen["own"]).parent == run and Path(seen["child"]).parent == run
    # a child that claims a run of its own gets it beside its parent's, not inside it
    assert Path(seen["child_run"]).parent == run.parent != run
    assert _tree(tmp_path) == [run_directory.ROOT_NAME]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_terminated_run_removes_its_directory(tmp_path, sig):
    process, seen = _start(tmp_path, "wait")
    assert Path(seen["own"]).is_dir()
    process.send_signal(sig)
    assert process.wait(30) != 0
    assert not Path(seen["run"]).exists()
    assert _tree(tmp_path) == [run_directory.ROOT_NAME]


def test_a_killed_runs_directory_is_removed_by_the_next_run_and_a_live_one_is_not(tmp_path):
    killed, killed_seen = _start(tmp_path, "wait")
    live, live_seen = _start(tmp_path, "wait")
    killed.kill()
    killed.wait(30)
    assert Path(killed_seen["own"]).is_dir()  # nothing could clean up after SIGKILL

    process, _ = _start(tmp_path)
    assert process.wait(30) == 0

    assert not Path(killed_seen["run"]).exists()
    assert Path(live_seen["own"]).is_dir()
    live.stdin.write("\n")
    live.stdin.close()
    assert live.wait(30) == 0
    assert _tree(tmp_path) == [run_directory.ROOT_NAME]


def test_a_directory_named_after_a_reused_pid_is_stale(tmp_path):
    """A pid is reused: the directory of an earlier process with this test's pid but
    another start time is not this process's run."""
    root = tmp_path / run_directory.ROOT_NAME
    mine = root / run_directory._run_name(os.getpid())
    earlier = root / f"{os.getpid()}-1"
    junk = root / "not-a-run"
    for directory in (mine, earlier, junk):
        directory.mkdir(parents=True)
    assert sorted(run_directory.remove_stale(root)) == [earlier, junk]
    assert mine.is_dir()


def test_detached_servers_get_the_system_temp_directory_back():
    env = {
        "TMPDIR": "/work/tmp/pizzastream-runs/1-2",
        "TEMP": "/work/tmp/pizzastream-runs/1-2",
        run_directory.SYSTEM_TMPDIR_ENV: "/work/tmp",
        run_directory.ROOT_ENV: "/work/tmp/pizzastream-runs",
        "PATH": "/bin",
    }
    assert run_directory.outside_env(env) == {"TMPDIR": "/work/tmp", "PATH": "/bin"}
    env[run_directory.SYSTEM_TMPDIR_ENV] = ""  # TMPDIR was unset before the claim
    assert run_directory.outside_env(env) == {"PATH": "/bin"}
    assert run_directory.outside_env({"PATH": "/bin"}) == {"PATH": "/bin"}  # never claimed


FLINK_JOB = textwrap.dedent(f"""
    import json, os, sys
    sys.path.insert(0, {str(REPO_ROOT)!r})
    from pyflink.common import Types
    from jobs import runtime
    from pizzastream import run_directory
    from pizzastream.config import load_properties

    def worker_temp_dir(_):
        import tempfile
        return tempfile.gettempdir()

    env = runtime.stream_environment(load_properties())
    run = run_directory.path()
    seen, workers = set(), set()
    stream = env.from_collection(list(range(4)), type_info=Types.INT())
    with stream.map(worker_temp_dir, output_type=Types.STRING()).execute_and_collect() as rows:
        for row in rows:
            workers.add(row)
            seen |= set(os.listdir(run))
    print("RESULT " + json.dumps({{"run": str(run), "seen": sorted(seen),
                                   "workers": sorted(workers)}}), flush=True)
""")


@pytest.mark.integration
@pytest.mark.slow
def test_a_flink_job_run_leaves_the_system_temp_directory_as_it_found_it(tmp_path):
    """The job runs with ``tmp_path/system`` as its system temp directory (other engineers'
    runs on this machine write to /tmp at the same time); the JVM's and the workers'
    temporary files must appear in the run directory while it runs, and nothing may remain."""
    system = tmp_path / "system"
    system.mkdir()
    (system / "someone-elses-file").write_text("kept")
    before = _tree(system)
    run = subprocess.run(
        [sys.executable, "-c", FLINK_JOB],
        cwd=tmp_path,
        env=_system_env(system),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT ", 1)[1])

    # the mini-cluster (io.tmp.dirs), the JVM (java.io.tmpdir: the unpacked RPC jar), the
    # project's shipped code (_ship_packages) all wrote into the run directory
    for prefix in ("minicluster_", "flink-dist-cache-", "flink-rpc-", "pizzastream-code-"):
        assert any(name.startswith(prefix) for name in result["seen"]), (prefix, result["seen"])
    # the Python workers' temp directory is the run directory
    assert result["workers"] == [result["run"]]
    assert Path(result["run"]).parent == system / run_directory.ROOT_NAME
    assert _tree(system) == sorted([*before, run_directory.ROOT_NAME])
