"""``python -m stack.etl_schedule``: the local stand-in for production's ETL schedule.

On AWS an EventBridge rule starts the hourly ETL's Fargate task (``python -m etl.hourly``,
``deploy/platform.py``) on ``Etl.schedule``; locally this process starts the same entry point
every ``Etl.schedule_interval_s`` seconds (first at once), each run a process of its own as
the task is, so the stack corrects late sales in the warehouse and lake as production does
rather than when someone runs the ETL by hand. A run that fails is reported and the next one
comes at its time, as with the scheduled task. Stops on SIGTERM/SIGINT after the run in
progress.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from pizzastream.config import REPO_ROOT, load_properties

ENTRY_POINT = ["-m", "etl.hourly"]


def main() -> int:
    interval_s = float(load_properties()["Etl"]["schedule_interval_s"])
    stop: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    run = 0
    while not stop:
        run += 1
        started = time.monotonic()
        print(f"etl_schedule: run {run} started", flush=True)
        code = subprocess.run([sys.executable, *ENTRY_POINT], cwd=REPO_ROOT).returncode
        print(f"etl_schedule: run {run} exited {code}", flush=True)
        while not stop and time.monotonic() < started + interval_s:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
