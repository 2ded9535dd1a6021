"""The KCL record processor: one process per shard lease, started by the MultiLangDaemon
(``executableName = <python> -m delivery.processor`` in the generated properties).

It speaks the MultiLangDaemon protocol on stdin/stdout through ``amazon_kclpy``, so
nothing else may write to stdout: logging goes to stderr, which the daemon copies into
its own log, and a stray ``print`` is redirected there too.

Checkpoints: only past records that are fully handled (``DeliveryService`` returned for
them), at the end of every batch and, within a long batch, every ``checkpoint_every_s``.
Handling never gives up on a record while this worker holds the shard (see
``DeliveryService.handle_until_done``), because ``amazon_kclpy`` swallows an exception
from ``process_records`` and the daemon would go on to the next batch and checkpoint
past the failed record.

Rounds after the first: an order that no partner took in its round, while one of them
did not answer, waits in ``delivery_attempt`` (its record is done and checkpointed); a
thread of each processor runs the rounds that are due every ``Delivery.retry_poll_s``
(``DeliveryService.retry_due``, with its own connections).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3 import processor

from delivery.service import DeliveryService, parent_gone
from pizzastream.config import load_properties
from pizzastream.settings import validate

log = logging.getLogger("delivery.processor")

CHECKPOINT_ATTEMPTS = 5


class DeliveryRecordProcessor(processor.RecordProcessorBase):
    def __init__(self, service_factory=None):
        self._service_factory = service_factory or (lambda: DeliveryService(load_properties()))
        self.service: DeliveryService | None = None
        self.shard_id = "?"
        self.lost = False
        self.should_stop = parent_gone()
        self.checkpoint_every_s = 5.0

    def initialize(self, initialize_input) -> None:
        self.shard_id = initialize_input.shard_id
        self.service = self._service_factory()
        self.checkpoint_every_s = self.service.checkpoint_every_s
        log.info("shard %s: starting at %s", self.shard_id, initialize_input.sequence_number)
        threading.Thread(target=self._retry_loop, name="delivery-retries", daemon=True).start()

    def _retry_loop(self) -> None:
        service = self._service_factory()
        try:
            while not self._stopping():
                try:
                    for handled in service.retry_due(self._stopping):
                        log.info(
                            "shard %s: next round of %s: %s",
                            self.shard_id,
                            handled.order_id,
                            "waiting" if handled.retry else "decided",
                        )
                except Exception:  # a failed poll is retried at the next one
                    log.warning("retry round failed", exc_info=True)
                time.sleep(service.retry_poll_s)
        finally:
            service.close()

    def process_records(self, process_records_input) -> None:
        checkpointer = process_records_input.checkpointer
        last_done = None
        last_checkpoint = time.monotonic()
        for record in process_records_input.records:
            if self.lost:
                return
            handled = self.service.handle_until_done(record.binary_data, self._stopping)  # type: ignore[union-attr]  # set in initialize(), before any records
            if handled is None:  # the daemon is gone; leave the rest unacknowledged
                return
            last_done = record
            if time.monotonic() - last_checkpoint >= self.checkpoint_every_s:
                self._checkpoint(checkpointer, last_done)
                last_done = None
                last_checkpoint = time.monotonic()
        if last_done is not None:
            self._checkpoint(checkpointer, last_done)

    def _stopping(self) -> bool:
        return self.lost or self.should_stop()

    def _checkpoint(self, checkpointer, record=None) -> None:
        """Checkpoint at ``record`` (None: the last record delivered); retries throttling,
        gives up quietly when the lease is gone (the next owner replays, idempotently)."""
        sequence = record.sequence_number if record is not None else None
        sub_sequence = record.sub_sequence_number if record is not None else None
        for attempt in range(CHECKPOINT_ATTEMPTS):
            try:
                checkpointer.checkpoint(sequence, sub_sequence)
                return
            except CheckpointError as error:
                if error.value == "ShutdownException":
                    log.info("shard %s: lease lost, not checkpointing", self.shard_id)
                    self.lost = True
                    return
                if error.value == "ThrottlingException" and attempt + 1 < CHECKPOINT_ATTEMPTS:
                    time.sleep(2**attempt * 0.2)
                    continue
                log.warning(
                    "shard %s: checkpoint at %s failed: %s", self.shard_id, sequence, error.value
                )
                return

    def lease_lost(self, lease_lost_input) -> None:
        log.info("shard %s: lease lost", self.shard_id)
        self.lost = True

    def shard_ended(self, shard_ended_input) -> None:
        log.info("shard %s: shard ended", self.shard_id)
        self._checkpoint(shard_ended_input.checkpointer)

    def shutdown_requested(self, shutdown_requested_input) -> None:
        # Every record delivered so far is handled (process_records returns only then).
        log.info("shard %s: shutdown requested", self.shard_id)
        self._checkpoint(shutdown_requested_input.checkpointer)


def main() -> None:
    # The daemon drives this process's end (shutdown_requested, then EOF on stdin). A
    # SIGTERM/SIGINT to the whole process group (Ctrl-C, `kill -- -pgid`) must not kill
    # it first, or the daemon's graceful shutdown finds its children gone.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # anything printed must not corrupt the protocol
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    validate(load_properties())
    kcl.KCLProcess(
        DeliveryRecordProcessor(),
        input_file=sys.stdin,
        output_file=protocol_out,
        error_file=sys.stderr,
    ).run()


if __name__ == "__main__":
    main()
