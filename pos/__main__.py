"""``python -m pos [--once] [--interval S] [--<fault>-share X] ...``: the POS stand-in.

Settings come from the ``Pos`` property group (environment overrides such as
``PIZZASTREAM__POS__LATE_SHARE=0.1`` work as for every group); the flags override both.
``--once`` reads ``pos-orders`` to its end, cuts one batch per store system, delivers
what is due now and exits; planned redeliveries and late batches wait in the outbox for a
later run. Without it the stand-in runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from pizzastream.config import load_properties
from pizzastream.settings import validate
from pos.service import PosStandIn

# flag -> Pos key
OVERRIDES = {
    "interval": "batch_interval_s",
    "duplicate_share": "duplicate_share",
    "truncate_share": "truncate_share",
    "short_share": "short_share",
    "late_share": "late_share",
    "late_s": "late_s",
    "state_dir": "state_dir",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pos", description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", help="one cut, then exit")
    for flag in OVERRIDES:
        parser.add_argument(f"--{flag.replace('_', '-')}", help=f"Pos.{OVERRIDES[flag]}")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    props = load_properties()
    props["Pos"].update(
        {
            key: getattr(args, flag)
            for flag, key in OVERRIDES.items()
            if getattr(args, flag) is not None
        }
    )
    validate(props)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    PosStandIn(props).run(once=args.once, stopping=lambda: bool(stop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
