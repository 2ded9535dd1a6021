"""Batched PutRecords for the tools that feed the pipeline's Kinesis streams.

PutRecords can succeed as a call while some of its records fail (throttled shard, internal
error); those come back marked in the response and would be lost silently. So only the
failed records are re-sent, with exponential backoff and a bounded number of attempts.
Whole-call failures (network, throttled API) are retried by botocore's standard mode in
``connectors.aws.client``. A retried record can land after later records of its shard:
consumers order by event time, not arrival.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from connectors import aws
from pizzastream.config import Props

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data plus partition key, Kinesis' per-record limit

Record = tuple[str, bytes]  # (partition_key, data)


class KinesisPutError(RuntimeError):
    """Records still failing after the last attempt."""


def batches(records: Iterable[Record]) -> Iterator[list[Record]]:
    """Consecutive groups within PutRecords' limits, read lazily from ``records``."""
    batch: list[Record] = []
    batch_bytes = 0
    for key, data in records:
        size = len(key.encode()) + len(data)
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"record of {size} bytes exceeds Kinesis' {MAX_RECORD_BYTES}")
        if batch and (len(batch) == MAX_BATCH_RECORDS or batch_bytes + size > MAX_BATCH_BYTES):
            yield batch
            batch, batch_bytes = [], 0
        batch.append((key, data))
        batch_bytes += size
    if batch:
        yield batch


class KinesisProducer:
    """Sends ``(partition_key, data)`` records; ``client`` and ``sleep`` are injectable
    so the retry logic can be exercised without a server."""

    def __init__(
        self,
        props: Props,
        *,
        client=None,
        max_attempts: int = 6,
        base_delay_s: float = 0.1,
        max_delay_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._client = client or aws.client(props, "kinesis")
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._sleep = sleep

    def put(
        self,
        stream_name: str,
        records: Iterable[Record],
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """Sends every record, calling ``on_sent(count)`` after each acknowledged batch;
        returns how many were sent. Raises ``KinesisPutError`` if a batch keeps failing."""
        sent = 0
        for batch in batches(records):
            self._put_batch(stream_name, batch)
            sent += len(batch)
            if on_sent:
                on_sent(len(batch))
        return sent

    def _put_batch(self, stream_name: str, batch: list[Record]) -> None:
        pending = [{"PartitionKey": key, "Data": data} for key, data in batch]
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(min(self._max_delay_s, self._base_delay_s * 2 ** (attempt - 1)))
            results = self._client.put_records(StreamName=stream_name, Records=pending)
            if not results.get("FailedRecordCount"):
                return
            failed = [
                (entry, result)
                for entry, result in zip(pending, results["Records"])
                if "ErrorCode" in result
            ]
            pending = [entry for entry, _ in failed]
        errors = Counter(result["ErrorCode"] for _, result in failed)
        raise KinesisPutError(
            f"{len(pending)} records to {stream_name} still failing after "
            f"{self._max_attempts} attempts: {dict(errors)}"
        )
