"""The POS stand-in's loop: accepted in-store orders in (``pos-orders``), settled line
items out as one batch per store system every ``Pos.batch_interval_s`` seconds.

Order of a cut, for crash safety: each spool becomes an outbox batch, then the stream
checkpoint moves past what those batches hold, then due deliveries go out. A crash before
the checkpoint re-reads those orders into new batches (duplicates the ingestion absorbs);
a crash after it still has the batches on disk.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

from connectors import aws
from pizzastream.config import REPO_ROOT, Props, pos_bucket, stream_name
from pizzastream.orders import EnrichedOrder
from pizzastream.pos_batches import batch_id, settle, store_system
from pizzastream.settings import PosSettings, StreamsSettings, need
from pos.outbox import Faults, Outbox, Spool
from pos.stream import CheckpointedReader


class PosStandIn:
    def __init__(self, props: Props):
        settings = PosSettings.from_group(props["Pos"])
        self.interval_s = settings.batch_interval_s
        self.poll_interval_s = settings.poll_interval_s
        self._systems = settings.store_systems
        self._faults = Faults.from_settings(settings)
        state = need(settings.state_dir, "Pos", "state_dir")
        state = state if state.is_absolute() else REPO_ROOT / state
        self._reader = CheckpointedReader(
            aws.client(props, "kinesis"),
            stream_name(props, "pos_orders"),
            state / "checkpoint.json",
            StreamsSettings.from_group(props["Streams"]).initial_position or "TRIM_HORIZON",
        )
        if self._reader.stream_replaced:  # a reset stack: old batches belong to old data
            shutil.rmtree(state / "outbox", ignore_errors=True)
        self.outbox = Outbox(state / "outbox", aws.client(props, "s3"), pos_bucket(props))
        self._spool_dir = state / "spool"
        shutil.rmtree(self._spool_dir, ignore_errors=True)  # a crashed run's, never checkpointed
        self._spool_dir.mkdir(parents=True)
        self._spools = self._open_spools()

    def read(self) -> int:
        """Settles every order one poll of the stream returns; how many orders that was."""
        records = self._reader.poll()
        for data in records:
            order = EnrichedOrder.from_json(data)
            spool = self._spools[store_system(order.store_id, self._systems)]
            for line in settle(order):
                spool.add(line)
        return len(records)

    def cut(self, now: float) -> None:
        """Closes one batch per store system into the outbox and checkpoints the stream."""
        for system, spool in self._spools.items():
            batch = batch_id(system, int(now * 1000))
            manifest = spool.cut(batch, self.outbox.data_path(batch))
            self.outbox.add(manifest, self._faults.plan(batch, now, self.interval_s))
        self._spools = self._open_spools()
        self._reader.commit()

    def run(self, once: bool = False, stopping: Callable[[], bool] = lambda: False) -> None:
        """Until ``stopping()``: read, cut every interval, deliver what is due. ``once``:
        read until caught up, cut, deliver what is due now, return."""
        next_cut = time.time() + self.interval_s
        while not stopping():
            read = self.read()
            drained = not read and self._reader.caught_up
            now = time.time()
            if (once and drained) or now >= next_cut:
                self.cut(now)
                next_cut = now + self.interval_s
            self.outbox.pump(now)
            if once and drained:
                return
            if not read:
                time.sleep(self.poll_interval_s)

    def _open_spools(self) -> dict[int, Spool]:
        return {
            system: Spool(self._spool_dir, system, self._systems)
            for system in range(1, self._systems + 1)
        }
