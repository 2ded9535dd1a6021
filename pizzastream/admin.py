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

Before it measures, and again before every step, ``--apply`` reads the stream's consumer lag
(``GetRecords.IteratorAgeMilliseconds``, ``Resharding.lag_source`` ``cloudwatch``) and refuses
to reshard a stream whose readers are behind (``Resharding.max_consumer_lag_ms``), or whose lag
it cannot know, unless ``--even-if-behind``: connector 4.3.0 can reorder a store's records
across a reshard it reads behind the tip (docs/resharding.md, "The consumer-lag guard").
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from typing import Protocol

from pizzastream import resharding as rs
from pizzastream.resharding import Settings


class ShardMap(Protocol):
    def open_shards(self) -> list[rs.Shard]: ...
    def wait_active(self) -> None: ...
    def split(self, shard_id: str, new_starting_hash_key: int) -> None: ...
    def merge(self, shard_id: str, adjacent_shard_id: str) -> None: ...


class Refused(RuntimeError):
    """The consumer-lag guard refused a step; the message says why."""


class LagGuard:
    """Reads the consumer lag (``read(start, end)``, None: no datapoint) and weighs it with
    ``rs.lag_verdict``. ``check`` is the reading before the tool's own measurement; the tool's
    reads of its window are GetRecords calls up to ``window_s`` behind the tip, which the
    stream's metric counts like any reader's, so ``recheck`` (before each step) looks only at
    minutes after ``reads_done`` and keeps the earlier reading while there is none."""

    def __init__(
        self,
        read: Callable[[dt.datetime, dt.datetime], float | None] | None,
        stream: str,
        settings: Settings,
        *,
        even_if_behind: bool,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        self.read = read
        self.stream = stream
        self.settings = settings
        self.even_if_behind = even_if_behind
        self.now = now
        self.first: rs.LagVerdict | None = None
        self.not_before: dt.datetime | None = None

    def _verdict(self, earlier: rs.LagVerdict | None) -> rs.LagVerdict:
        end = self.now()
        start = end - dt.timedelta(seconds=self.settings.lag_lookback_s)
        if self.not_before is not None:
            start = max(start, self.not_before)
        lag = self.read(start, end) if self.read is not None and start < end else None
        return rs.lag_verdict(
            lag,
            stream=self.stream,
            lag_source=self.settings.lag_source,
            max_lag_ms=self.settings.max_consumer_lag_ms,
            lookback_s=self.settings.lag_lookback_s,
            even_if_behind=self.even_if_behind,
            earlier=earlier,
        )

    def check(self) -> rs.LagVerdict:
        self.first = self._verdict(None)
        return self.first

    def reads_done(self) -> None:
        """The tool's own reads end now: later checks start at the next whole minute (the
        metric's datapoints are minutes; the current one holds the tool's reads)."""
        t = self.now()
        self.not_before = t.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)

    def recheck(self) -> None:
        verdict = self._verdict(self.first)
        print(verdict.message)
        if not verdict.proceed:
            raise Refused(verdict.message)


def apply(
    shards: ShardMap,
    keys: list[rs.KeyLoad],
    policy: rs.Policy,
    *,
    max_steps: int | None = None,
    log: Callable[[str], None] = print,
    before_step: Callable[[], None] = lambda: None,
) -> list[rs.Step]:
    """Carries out the plan's steps until none is left (or ``max_steps`` are done).
    ``before_step`` runs right before each step is carried out (the consumer-lag guard: it
    raises to stop)."""
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
            raise RuntimeError(
                f"stopped after {len(done)} steps: the shard map keeps "
                "changing under the plan (another reshard running?)"
            )
        step = plan.steps[0]
        before_step()
        if isinstance(step, rs.Split):
            shards.split(step.shard_id, step.new_starting_hash_key)
        else:
            shards.merge(step.shard_id, step.adjacent_shard_id)
        log(f"done: {describe(step, policy.limits)}")
        done.append(step)
    shards.wait_active()
    return done


def _rate(load: rs.Load, limits: rs.Limits) -> str:
    return (
        f"{load.records_per_s:>9,.1f} rec/s {load.bytes_per_s / 1e6:>7.3f} MB/s "
        f"{load.utilisation(limits):>5.0%}"
    )


def describe(step: rs.Step, limits: rs.Limits) -> str:
    if isinstance(step, rs.Split):
        return (
            f"split {step.shard_id} at hash key {step.new_starting_hash_key}: "
            f"{step.before.utilisation(limits):.0%} -> {step.lower.utilisation(limits):.0%}"
            f" + {step.upper.utilisation(limits):.0%}"
        )
    return (
        f"merge {step.shard_id} + {step.adjacent_shard_id}: "
        f"{step.lower.utilisation(limits):.0%} + {step.upper.utilisation(limits):.0%} -> "
        f"{step.after.utilisation(limits):.0%}"
    )


def _stores(sl: rs.ShardLoad, top: int) -> str:
    shown = ", ".join(f"{k.key} ({k.load.records_per_s:,.3g}/s)" for k in sl.keys[:top])
    more = len(sl.keys) - top
    return shown + (f" and {more} more" if more > 0 else "") if sl.keys else "no records"


def format_report(stream: str, plan: rs.Plan, window_s: float, source: str, *, top: int = 5) -> str:
    limits = plan.policy.limits
    by_heat = sorted(plan.before, key=lambda sl: (-sl.utilisation(limits), sl.shard.start))
    lines = [
        f"stream {stream}: {len(plan.before)} open shards; load over the last "
        f"{window_s:,.0f} s ({source})",
        f"limits per shard {limits.records_per_s:,.0f} records/s and "
        f"{limits.bytes_per_s:,.0f} bytes/s; split above {plan.policy.split_above:.0%}, "
        f"merge adjacent pairs at or under {plan.policy.merge_below:.0%}",
        "",
    ]

    def row(sl: rs.ShardLoad) -> str:
        return f"  {sl.shard.shard_id:<28}{_rate(sl.load, limits)}  stores {_stores(sl, top)}"

    if len(by_heat) <= 2 * top:
        lines += ["shards, hottest first"] + [row(sl) for sl in by_heat]
    else:
        lines += ["hottest shards"] + [row(sl) for sl in by_heat[:top]]
        lines += ["coldest shards"] + [row(sl) for sl in reversed(by_heat[-top:])]
    if plan.hot_keys:
        lines += [
            "",
            "stores hotter than one shard (no split can help: aggregate their events "
            "into fewer records, or salt their key)",
        ]
        lines += [f"  store {k.key}  {_rate(k.load, limits)}" for k in plan.hot_keys]
    lines += ["", "plan" if plan.steps else "plan: nothing to do"]
    lines += [f"  {i}. {describe(step, limits)}" for i, step in enumerate(plan.steps, 1)]
    if plan.steps:
        lines += [
            "",
            f"after the plan: {len(plan.after)} open shards (ids of new shards are "
            "Kinesis'; shown as parent/lower, parent/upper, a+b)",
        ]
        lines += [f"  {sl.shard.shard_id:<28}{_rate(sl.load, limits)}" for sl in plan.after]
    return "\n".join(lines)


def shards_command(args: argparse.Namespace) -> int:
    from connectors import kinesis_shards
    from pizzastream.config import load_properties, stream_name
    from pizzastream.settings import validate

    props = load_properties()
    checked = validate(props)
    settings = Settings.from_properties(props)
    logical = checked.has("Streams") and args.stream in checked.streams.names
    name = stream_name(props, args.stream) if logical else args.stream
    window_s = args.window_s or settings.window_s
    stream, meter = kinesis_shards.for_stream(
        props,
        name,
        load_source=settings.load_source,
        active_timeout_s=settings.active_timeout_s,
        sample_per_shard=settings.sample_records_per_shard,
    )
    guard = LagGuard(
        kinesis_shards.lag_reader(props, name) if settings.lag_source == "cloudwatch" else None,
        name,
        settings,
        even_if_behind=args.even_if_behind,
    )
    lag = guard.check()  # before the tool's own reads count in the metric
    keys = meter.key_loads(window_s)
    guard.reads_done()
    plan = rs.plan(stream.open_shards(), keys, settings.policy)
    print(format_report(name, plan, window_s, settings.load_source, top=args.top))
    print(f"\n{lag.message}")
    if not args.apply:
        if plan.steps:
            print(
                "\ndry run: nothing changed (--apply carries the plan out"
                + ("; it would refuse now" if not lag.proceed else "")
                + ")"
            )
        return 0
    if not lag.proceed and plan.steps:
        raise Refused(lag.message)
    print()
    done = apply(stream, keys, settings.policy, max_steps=args.max_steps, before_step=guard.recheck)
    left = rs.plan(stream.open_shards(), keys, settings.policy).steps
    print(
        f"applied {len(done)} steps; {len(stream.open_shards())} open shards; "
        + (f"{len(left)} steps left" if left else "nothing left to do")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pizzastream.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    shards = commands.add_parser("shards", help="measure, plan and apply a reshard")
    shards.add_argument(
        "--stream",
        default="orders",
        help="a Streams property (orders, orders_enriched, ...) or a stream name",
    )
    shards.add_argument("--apply", action="store_true", help="carry the plan out")
    shards.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="with --apply: stop after this many steps (run again to go on)",
    )
    shards.add_argument(
        "--window-s",
        type=float,
        default=None,
        help="measure over this many seconds (default Resharding.window_s)",
    )
    shards.add_argument("--top", type=int, default=5, help="shards and stores shown")
    shards.add_argument(
        "--even-if-behind",
        action="store_true",
        help="with --apply: reshard even if the stream's readers are behind "
        "(or their lag is unknown); connector 4.3.0 can then reorder a "
        "store's records across the reshard (docs/resharding.md)",
    )
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
    except Refused as error:
        print(f"refused: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
