"""The Python workers import the project's packages from what the job ships them, not from
the directory they happen to start in (on MSF that is not the repository)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pizzastream.config import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(REPO_ROOT)!r})
    from pyflink.common import Types
    from jobs import runtime
    from pizzastream.config import load_properties

    def worker_reason(_):
        from pizzastream.orders import Reason  # imported inside the Python worker
        return Reason.OVERSIZE.value

    env = runtime.stream_environment(load_properties())
    stream = env.from_collection([1, 2], type_info=Types.INT())
    with stream.map(worker_reason, output_type=Types.STRING()).execute_and_collect() as rows:
        print(sorted(rows))
""")


def test_workers_import_shipped_packages_outside_the_repository(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "['oversize', 'oversize']" in run.stdout
