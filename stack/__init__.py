"""The local stack: moto (Kinesis, S3, DynamoDB), PostgreSQL and Redis on 127.0.0.1.

One command up, one down (``python -m stack up|down|status|seed|reset``), or from Python::

    import stack
    stack.up()          # start what is not running, ensure streams/bucket/schema/seed
    stack.reset_data()  # between tests: empty streams, facts, lake, Redis; reset stock
    stack.down()        # stop everything; down(purge=True) also deletes .stack/

Every entry point takes an exclusive lock on ``.stack/stack.lock``: engineers and test
sessions share one stack per checkout, and two concurrent ``up`` calls must not both
initdb or both start moto.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from pizzastream.config import Props, load_properties
from stack import database, moto_resources
from stack.process import ServiceError, live_pids, port_in_use, terminate, wait_until
from stack.services import Services, StackPaths, stack_services

__all__ = ["ServiceError", "down", "reset_data", "seed", "status", "up"]

PORT_RELEASE_TIMEOUT = 15.0


def _say(message: str) -> None:
    print(f"stack: {message}", flush=True)


@contextmanager
def _locked(paths: StackPaths) -> Iterator[None]:
    paths.root.mkdir(exist_ok=True)
    with open(paths.lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(props: Props | None = None) -> None:
    """Start every service that is not running and (re-)ensure everything on it.

    Safe to call when the stack is already up: it only re-checks, and recreates what a
    restarted moto lost. Raises ``ServiceError`` naming the service and its log tail.
    """
    props = props or load_properties()
    paths = StackPaths()
    with _locked(paths):
        paths.prepare()
        services = stack_services(props, paths)
        if services.moto.pid() is not None and not services.moto.serialises_kinesis():
            _say(
                "moto runs without the Kinesis write lock (started by an older stack); "
                "restarting it (streams and bucket are recreated below)"
            )
            services.moto.stop()
        stopped = [service for service in services if service.pid() is None]
        for service in stopped:  # all conflicts first, so a busy port starts nothing
            service.check_port_free()
        for service in stopped:
            service.launch()
        for service in services:
            service.wait_ready()
            state = "up" if service in stopped else "already up"
            _say(f"{service.name} {state} on {service.address} (pid {service.pid()})")
        _ensure_resources(props, services)


def _ensure_resources(props: Props, services: Services) -> None:
    with services.postgres.admin_connection() as admin:
        database.ensure_databases(admin, props)
    database.apply_schemas(props)
    created = moto_resources.ensure_streams(props)
    streams = len(moto_resources.stream_names(props))
    _say(f"kinesis streams ready ({streams}, {len(created)} created)")
    bucket = props["Lake"]["bucket"]
    _say(f"s3 bucket {bucket} {'created' if moto_resources.ensure_bucket(props) else 'ready'}")
    _say("reference data " + ("seeded" if database.seed(props) else "already seeded"))


def down(props: Props | None = None, purge: bool = False) -> None:
    """Stop every process this stack started and check its ports are free again.

    Data stays in ``.stack/`` unless ``purge``. Leftovers (say, a moto whose pid file was
    lost) are recognised as this stack's (see ``stack.process``) and killed too.
    """
    props = props or load_properties()
    paths = StackPaths()
    services = stack_services(props, paths)
    if paths.root.exists():
        with _locked(paths):
            for service in reversed(services):
                service.stop()
            terminate(pid for pid in live_pids() if any(s.owns(pid) for s in services))
            if purge:
                shutil.rmtree(paths.root)
                _say(f"purged {paths.root}")
    for service in services:
        if not wait_until(
            lambda: not port_in_use(service.host, service.port),  # noqa: B023 - called here
            PORT_RELEASE_TIMEOUT,
        ):
            raise ServiceError(
                f"{service.name}: {service.address} is still in use by a process "
                f"this stack did not start"
            )
        _say(f"{service.name} down")


def status(props: Props | None = None) -> dict[str, bool]:
    """Whether each service runs (started by this stack) and answers; prints one line each."""
    props = props or load_properties()
    result = {}
    for service in stack_services(props, StackPaths()):
        result[service.name] = service.is_up()
        state = f"up on {service.address} (pid {service.pid()})" if result[service.name] else "down"
        _say(f"{service.name} {state}")
    return result


def seed(props: Props | None = None, force: bool = False) -> bool:
    """Load reference data unless present; ``force`` truncates and reloads it and the stock."""
    props = props or load_properties()
    with _locked(StackPaths()):
        loaded = database.seed(props, force=force)
    _say("reference data " + ("seeded" if loaded else "already seeded"))
    return loaded


def reset_data(props: Props | None = None) -> None:
    """Give a test a clean slate in seconds, keeping the servers and reference data.

    Recreates every Kinesis stream (and drops the KCL lease tables that pointed into the
    old ones), empties the lake bucket, truncates every non-reference table in both
    databases, restores the opening inventory and flushes Redis. The stack must be up;
    stop the jobs first, since their open shard iterators die with the old streams.
    """
    props = props or load_properties()
    paths = StackPaths()
    with _locked(paths):
        moto_resources.recreate_streams(props)
        moto_resources.delete_tables(props)
        moto_resources.empty_bucket(props)
        database.reset(props)
        stack_services(props, paths).redis.flush()
    _say("data reset: streams recreated, facts truncated, inventory restored, redis flushed")
