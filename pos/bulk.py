"""``python -m pos.bulk --lines N [--lines-per-order K] [--store-system S]``: one large
synthetic batch into
``pos/landing/``, as a peak-hour POS would drop it (the seed's 6.5 GB per 15 minutes is
some 30 M lines across the store systems), for load and memory tests of the ingestion.

The batch goes through the stand-in's own spool and outbox, so it is a real batch with a
real manifest. Orders have ``lines_per_order`` lines and are spread over the last hour.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

from connectors import aws
from pizzastream.catalog import Catalog
from pizzastream.config import Props, load_properties, pos_bucket
from pizzastream.orders import STORE_IDS, EnrichedOrder, OrderLine
from pizzastream.pos_batches import Manifest, batch_id, settle, store_system
from pizzastream.settings import PosSettings, validate
from pos.outbox import Outbox, Spool, Version

HOUR_MS = 3_600_000


def deliver_bulk(props: Props, lines: int, lines_per_order: int = 4, system: int = 1) -> Manifest:
    """Delivers one batch of about ``lines`` line items (whole orders) for ``system``."""
    systems = PosSettings.from_group(props["Pos"]).store_systems
    stores = [s for s in STORE_IDS if store_system(s, systems) == system]
    products = itertools.cycle([p for p in Catalog.from_reference_data().products() if p.active])
    now_ms = int(time.time() * 1000)
    batch = batch_id(system, now_ms)
    with tempfile.TemporaryDirectory() as directory:
        outbox = Outbox(Path(directory), aws.client(props, "s3"), pos_bucket(props))
        spool = Spool(Path(directory), system, systems)
        for n in range(max(1, lines // lines_per_order)):
            order = EnrichedOrder(
                f"bulk-{batch}-{n}",
                f"B{batch}-{n:08d}",
                stores[n % len(stores)],
                "in_store",
                "dine_in",
                now_ms - HOUR_MS + n % HOUR_MS,
                None,
                None,
                tuple(
                    OrderLine(p.product_id, 1 + n % 3, p.unit_price_cents)
                    for p in itertools.islice(products, lines_per_order)
                ),
            )
            for line in settle(order):
                spool.add(line)
        manifest = spool.cut(batch, outbox.data_path(batch))
        outbox.add(manifest, [(0, Version.COMPLETE)])
        outbox.pump(0)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pos.bulk", description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--lines-per-order", type=int, default=4)
    parser.add_argument("--store-system", type=int, default=1)
    args = parser.parse_args(argv)
    props = load_properties()
    validate(props)
    manifest = deliver_bulk(props, args.lines, args.lines_per_order, args.store_system)
    print(f"{manifest.batch_id}: {manifest.record_count} lines, sha256 {manifest.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
