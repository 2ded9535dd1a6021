"""Operator commands: ``python -m pizzastream.admin shards --stream orders [--apply]``.

``shards`` measures a stream's write load per partition key (a store), shows the hottest and
coldest shards with the stores on them and the stores no split can help, and plans splits and
merges (``pizzastream.resharding``). A dry run is the default: resharding costs (shards are
billed by the hour, each call leaves the stream UPDATING, and consumers must follow the new
parent/child shards), so an operator reads the plan first.

``--apply`` carries the plan out one step at a time, planning again from the shard map as
Kinesis reports it after every step (the loads per key were measured once, and a key's load
follows it to whichever shard its hash now falls in). A step done is therefore never done
again: its parent shards are closed and no longer in the map. Interrupted anywhere, the same
command run again finishes the job, and run on a finished stream it does nothing.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pizzastream import resharding as rs


class ShardMap(Protocol):
    def open_shards(self) -> list[rs.Shard]: ...
    def wait_active(self) -> None: ...
    def split(self, shard_id: str, new_starting_hash_key: int) -> None: ...
    def merge(self, shard_id: str, adjacent_shard_id: str) -> None: ...


@dataclass(frozen=True)
class Settings:
    """The ``Resharding`` property group, typed."""

    policy: rs.Policy
    window_s: float
    load_source: str
    sample_records_per_shard: int
    active_timeout_s: float

    @classmethod
    def from_properties(cls, props: dict[str, dict[str, str]]) -> Settings:
        source = rs.setting(props, "load_source", str)
        if source not in ("records", "cloudwatch"):
            raise rs.ConfigError(f"property {rs.GROUP}.load_source must be records or "
                                 f"cloudwatch, not {source!r}")
        return cls(rs.Policy.from_properties(props), rs.setting(props, "window_s", float),
                   source, rs.setting(props, "sample_records_per_shard", int),
                   rs.setting(props, "active_timeout_s", float))


def apply(shards: ShardMap, keys: list[rs.KeyLoad], policy: rs.Policy, *,
          max_steps: int | None = None, log: Callable[[str], None] = print) -> list[rs.Step]:
    """Carries out the plan's steps until none is left (or ``max_steps`` are done)."""
    done: list[rs.Step] = []
    limit: int | None = None
    while max_steps is None or len(done) < max_steps:
        shards.wait_active()
        plan = rs.plan(shards.open_shards(), keys, policy)
        if limit is None:
            # Each step comes out of a fresh plan; a plan cannot grow by replanning the same
            # loads, so more steps than the first plan had means the map is not what the
            # planner expects (someone else resharding at the same time): stop.
            limit = len(plan.steps)
        if not plan.steps:
            break
        if len(done) >= limit:
            raise RuntimeError(f"stopped after {len(done)} steps: the shard map keeps "
                               "changing under the plan (another reshard running?)")
        step = plan.steps[0]
        if isinstance(step, rs.Split):
            shards.split(step.shard_id, step.new_starting_hash_key)
        else:
            shards.merge(step.shard_id, step.adjacent_shard_id)
        log(f"done: {describe(step, policy.limits)}")
        done.append(step)
    shards.wait_active()
    return done


def _rate(load: rs.Load, limits: rs.Limits) -> str:
    return (f"{load.records_per_s:>9,.1f} rec/s {load.bytes_per_s / 1e6:>7.3f} MB/s "
            f"{load.utilisation(limits):>5.0%}")


def describe(step: rs.Step, limits: rs.Limits) -> str:
    if isinstance(step, rs.Split):
        return (f"split {step.shard_id} at hash key {step.new_starting_hash_key}: "
                f"{step.before.utilisation(limits):.0%} -> {step.lower.utilisation(limits):.0%}"
                f" + {step.upper.utilisation(limits):.0%}")
    return (f"merge {step.shard_id} + {step.adjacent_shard_id}: "
            f"{step.lower.utilisation(limits):.0%} + {step.upper.utilisation(limits):.0%} -> "
            f"{step.after.utilisation(limits):.0%}")


def _stores(sl: rs.ShardLoad, top: int) -> str:
    shown = ", ".join(f"{k.key} ({k.load.records_per_s:,.3g}/s)" for k in sl.keys[:top])
    more = len(sl.keys) - top
    return shown + (f" and {more} more" if more > 0 else "") if sl.keys else "no records"


def format_report(stream: str, plan: rs.Plan, window_s: float, source: str, *,
                  top: int = 5) -> str:
    limits = plan.policy.limits
    by_heat = sorted(plan.before, key=lambda sl: (-sl.utilisation(limits), sl.shard.start))
    lines = [f"stream {stream}: {len(plan.before)} open shards; load over the last "
             f"{window_s:,.0f} s ({source})",
             f"limits per shard {limits.records_per_s:,.0f} records/s and "
             f"{limits.bytes_per_s:,.0f} bytes/s; split above {plan.policy.split_above:.0%}, "
             f"merge adjacent pairs at or under {plan.policy.merge_below:.0%}", "",
             ]

    def row(sl: rs.ShardLoad) -> str:
        return f"  {sl.shard.shard_id:<28}{_rate(sl.load, limits)}  stores {_stores(sl, top)}"

    if len(by_heat) <= 2 * top:
        lines += ["shards, hottest first"] + [row(sl) for sl in by_heat]
    else:
        lines += ["hottest shards"] + [row(sl) for sl in by_heat[:top]]
        lines += ["coldest shards"] + [row(sl) for sl in reversed(by_heat[-top:])]
    if plan.hot_keys:
        lines += ["", "stores hotter than one shard (no split can help: aggregate their events "
                      "into fewer records, or salt their key)"]
        lines += [f"  store {k.key}  {_rate(k.load, limits)}" for k in plan.hot_keys]
    lines += ["", "plan" if plan.steps else "plan: nothing to do"]
    lines += [f"  {i}. {describe(step, limits)}" for i, step in enumerate(plan.steps, 1)]
    if plan.steps:
        lines += ["", f"after the plan: {len(plan.after)} open shards (ids of new shards are "
                      "Kinesis'; shown as parent/lower, parent/upper, a+b)"]
        lines += [f"  {sl.shard.shard_id:<28}{_rate(sl.load, limits)}" for sl in plan.after]
    return "\n".join(lines)


def shards_command(args: argparse.Namespace) -> int:
    from connectors import kinesis_shards
    from pizzastream.config import load_properties, stream_name

    props = load_properties()
    settings = Settings.from_properties(props)
    name = stream_name(props, args.stream) if args.stream in props.get("Streams", {}) \
        else args.stream
    window_s = args.window_s or settings.window_s
    stream, meter = kinesis_shards.for_stream(
        props, name, load_source=settings.load_source,
        active_timeout_s=settings.active_timeout_s,
        sample_per_shard=settings.sample_records_per_shard)
    keys = meter.key_loads(window_s)
    plan = rs.plan(stream.open_shards(), keys, settings.policy)
    print(format_report(name, plan, window_s, settings.load_source, top=args.top))
    if not args.apply:
        if plan.steps:
            print("\ndry run: nothing changed (--apply carries the plan out)")
        return 0
    print()
    done = apply(stream, keys, settings.policy, max_steps=args.max_steps)
    left = rs.plan(stream.open_shards(), keys, settings.policy).steps
    print(f"applied {len(done)} steps; {len(stream.open_shards())} open shards; "
          + (f"{len(left)} steps left" if left else "nothing left to do"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pizzastream.admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    shards = commands.add_parser("shards", help="measure, plan and apply a reshard")
    shards.add_argument("--stream", default="orders",
                        help="a Streams property (orders, orders_enriched, ...) or a stream name")
    shards.add_argument("--apply", action="store_true", help="carry the plan out")
    shards.add_argument("--max-steps", type=int, default=None,
                        help="with --apply: stop after this many steps (run again to go on)")
    shards.add_argument("--window-s", type=float, default=None,
                        help="measure over this many seconds (default Resharding.window_s)")
    shards.add_argument("--top", type=int, default=5, help="shards and stores shown")
    args = parser.parse_args(argv)
    from connectors.kinesis_shards import ReshardError

    try:
        return shards_command(args)
    except rs.ConfigError as error:
        print(f"configuration: {error}", file=sys.stderr)
        return 2
    except ReshardError as error:
        print(f"stopped: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
