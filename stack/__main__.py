"""``python -m stack up | down [--purge] | status | seed [--force] | reset`` from the repo root."""

from __future__ import annotations

import argparse
import sys

import stack
from pizzastream.config import load_properties
from pizzastream.settings import ConfigError, validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack", description=stack.__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the services, create streams/bucket/schema, seed")
    down = commands.add_parser("down", help="stop every process of the stack")
    down.add_argument("--purge", action="store_true", help="also delete .stack/ (all data)")
    commands.add_parser("status", help="print whether each service is up; exit 1 if any is down")
    seed = commands.add_parser("seed", help="load reference data unless already loaded")
    seed.add_argument(
        "--force", action="store_true", help="truncate reference tables and inventory, then reload"
    )
    commands.add_parser("reset", help="empty streams, facts, lake and Redis; reset inventory")
    args = parser.parse_args(argv)

    try:
        if args.command != "down":  # stopping must work whatever the configuration says
            validate(load_properties())
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down(purge=args.purge)
        elif args.command == "status":
            return 0 if all(stack.status().values()) else 1
        elif args.command == "seed":
            stack.seed(force=args.force)
        else:
            stack.reset_data()
    except (stack.ServiceError, ConfigError) as error:
        print(f"stack: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
