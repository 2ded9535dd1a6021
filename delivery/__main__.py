"""``python -m delivery [--worker-id ID] [--print-properties] [--invalidate-partners]``: run
one delivery worker.

``--invalidate-partners`` drops the workers' Redis cache of the delivery partners (run it
after changing ``delivery_partner``); each worker reads Aurora again at its next reload.

Start as many workers as you like (on one machine or several): they share the shards of
the ``deliveries`` stream through the KCL lease table in DynamoDB, and when one dies the
others take its shards over after ``Delivery.kcl_failover_ms``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from delivery import daemon
from pizzastream.config import load_properties
from pizzastream.settings import validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery", description=__doc__.split("\n")[0])
    parser.add_argument("--worker-id", help="KCL worker id (default: host name + random suffix)")
    parser.add_argument(
        "--print-properties",
        action="store_true",
        help="print the generated MultiLangDaemon properties and exit",
    )
    parser.add_argument(
        "--invalidate-partners",
        action="store_true",
        help="drop the cached delivery partners from Redis and exit",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    props = load_properties()
    validate(props)
    if args.invalidate_partners:
        from connectors import redis_store
        from delivery import store

        with redis_store.client(props) as client:
            dropped = store.invalidate_partners(client)
        print("delivery partners cache " + ("dropped" if dropped else "was empty"))
        return 0
    if args.print_properties:
        print(
            daemon.render_properties(daemon.kcl_properties(props, args.worker_id or "<worker>")),
            end="",
        )
        if daemon.needs_bridge(props):
            print("# at run time kinesisEndpoint is the local h2c bridge (delivery/h2c_bridge.py)")
        return 0
    return daemon.run(props, args.worker_id)


if __name__ == "__main__":
    sys.exit(main())
