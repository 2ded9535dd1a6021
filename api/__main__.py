"""``python -m api serve|start|stop|token``.

- ``serve``: the API in the foreground on granian (``Api.host``/``Api.port``/``Api.workers``,
  or ``--port``/``--workers``).
- ``start`` / ``stop``: the same, detached, its pid in ``.stack/api.pid`` and its log in
  ``.stack/logs/api.log`` (what ``make demo`` leaves running and ``make stack-down`` stops).
- ``token``: a signed token, ``--merchant NAME --stores 1-20,42`` or ``--intake NAME``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request

from api import auth
from pizzastream.config import REPO_ROOT, load_properties
from pizzastream.settings import ApiSettings, validate
from stack.process import is_alive, read_pid, spawn_detached, terminate, wait_until

PID_FILE = REPO_ROOT / ".stack" / "api.pid"
LOG_FILE = REPO_ROOT / ".stack" / "logs" / "api.log"


def parse_stores(text: str) -> list[int]:
    """``1-20,42`` -> [1, ..., 20, 42]."""
    stores: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        stores += range(int(first), int(last or first) + 1)
    return stores


# A worker still busy this long after SIGTERM (a request stuck on a backend call that cannot
# be cancelled, such as boto3 in a thread) is killed: a stop, a deploy or a test's teardown
# stays bounded, below ECS's 30 s between SIGTERM and SIGKILL.
WORKER_STOP_TIMEOUT_S = 10


def serve(host: str, port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        "api.app:app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_access=False,
        websockets=False,
        workers_kill_timeout=WORKER_STOP_TIMEOUT_S,
    ).serve()


def url(props: dict, port: int | None = None) -> str:
    api = ApiSettings.from_group(props["Api"])
    return f"http://{api.host}:{port or api.port}"


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start(
    props: dict, port: int | None = None, workers: int | None = None, timeout_s: float = 60
) -> str:
    """Starts the API detached unless it already runs; returns its URL once it answers."""
    base_url = url(props, port)
    pid = read_pid(PID_FILE)
    if pid is not None and is_alive(pid) and healthy(base_url):
        return base_url
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "api", "serve"]
    if port:
        argv += ["--port", str(port)]
    if workers:
        argv += ["--workers", str(workers)]
    pid = spawn_detached(argv, LOG_FILE, {**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    PID_FILE.write_text(f"{pid}\n")
    if not wait_until(lambda: healthy(base_url) or not is_alive(pid), timeout_s):
        raise SystemExit(
            f"api: not answering on {base_url} after {timeout_s:.0f} s; see {LOG_FILE}"
        )
    if not is_alive(pid):
        raise SystemExit(f"api: exited at start:\n{LOG_FILE.read_text()[-3000:]}")
    return base_url


def stop() -> bool:
    pid = read_pid(PID_FILE)
    if pid is None or not is_alive(pid):
        PID_FILE.unlink(missing_ok=True)
        return False
    os.killpg(pid, 15) if _leads_group(pid) else os.kill(pid, 15)
    terminate([pid])
    PID_FILE.unlink(missing_ok=True)
    return True


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "start"):
        command = commands.add_parser(name)
        command.add_argument("--port", type=int)
        command.add_argument("--workers", type=int)
    commands.add_parser("stop")
    token = commands.add_parser("token")
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--merchant", help="merchant name (needs --stores)")
    who.add_argument("--intake", help="name of the order-taking application")
    token.add_argument("--stores", type=parse_stores, default=[], help="e.g. 1-20,42")
    token.add_argument("--days", type=float, default=30)
    args = parser.parse_args(argv)

    props = load_properties()
    checked = validate(props)
    if args.command == "serve":
        api = checked.api
        serve(api.host, args.port or api.port, args.workers or api.workers)
    elif args.command == "start":
        print(start(props, args.port, args.workers))
    elif args.command == "stop":
        print("api: stopped" if stop() else "api: was not running")
    else:
        role, name = (auth.MERCHANT, args.merchant) if args.merchant else (auth.INTAKE, args.intake)
        print(
            auth.issue(
                checked.api.token_secret,
                name,
                role,
                args.stores,
                ttl_s=int(args.days * 86400),
                now=time.time(),
            )
        )


if __name__ == "__main__":
    main()
