"""The end-to-end demo: traffic in, the jobs' real entry points running, a summary out.

``make demo`` brings the stack up and runs this. It resets the stack's data, sends a
generated business day of orders (with bad records of every kind), runs the jobs until
every record has come out the other side, and prints what came out against what was sent.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

import stack
from connectors import aurora, aws
from pizzastream.config import load_properties, stream_name
from pizzastream.orders import EnrichedOrder
from stack.generate import send_orders
from stack.jobs import JobProcess


def _enriched_count(props) -> int:
    kinesis = aws.client(props, "kinesis")
    return sum(1 for _ in aws.read_stream(kinesis, stream_name(props, "orders_enriched")))


def _dead_letters(props) -> Counter:
    with aurora.connect(props) as conn:
        return Counter(dict(conn.execute(
            "SELECT reason, count(*) FROM dead_letter GROUP BY reason").fetchall()))


def _wait(jobs: list[JobProcess], what: str, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        for job in jobs:
            if not job.running():
                raise SystemExit(f"demo: {job.job} stopped:\n{job.log_tail()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    props = load_properties()
    stack.reset_data(props)
    print(f"demo: sending {args.orders} orders to Kinesis `orders`")
    report = send_orders(props, args.orders, bad_share=args.bad_share, seed=args.seed).to_dict()
    valid = report["by_kind"].get("valid", 0)
    bad = report["records"] - valid

    with JobProcess("order_enrichment") as enrichment:
        print("demo: order_enrichment running (log: .stack/logs/order_enrichment.log)")
        _wait([enrichment], "order_enrichment's outputs",
              lambda: _enriched_count(props) >= valid and sum(_dead_letters(props).values()) >= bad,
              args.timeout)

    enriched = _enriched_count(props)
    letters = _dead_letters(props)
    kinesis = aws.client(props, "kinesis")
    _, sample = next(aws.read_stream(kinesis, stream_name(props, "orders_enriched")))
    print("\n== order_enrichment ==")
    print(f"{'sent':<28}{report['records']:>8}")
    print(f"{'valid sent / enriched':<28}{valid:>8} / {enriched}")
    print(f"{'bad sent / dead-lettered':<28}{bad:>8} / {sum(letters.values())}")
    for reason, count in sorted(letters.items()):
        print(f"  {reason:<26}{count:>8}")
    print(f"sample enriched order: {EnrichedOrder.from_json(sample)}")


if __name__ == "__main__":
    main()
