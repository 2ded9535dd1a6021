"""Reading a Kinesis stream with plain boto3 from a checkpoint file.

The POS stand-in is one process, so it needs no lease table: it reads every shard itself
and remembers, per shard, the last sequence number it has turned into a batch. ``poll``
advances positions in memory only; ``commit`` writes them (atomically) once what was read
is safely in the outbox, so a crash re-reads rather than loses. Re-read sales come back
in a new batch, which the ingestion's row keys make harmless.

Positions belong to one incarnation of the stream: a stream deleted and created again
(``stack reset``) starts over at sequence numbers the old checkpoint knows nothing about,
so the checkpoint records the stream's creation time and is ignored when it differs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from botocore.exceptions import ClientError

from connectors import kinesis_agg

GET_RECORDS_LIMIT = 1000


class CheckpointedReader:
    def __init__(
        self, kinesis, stream_name: str, checkpoint: Path, initial_position: str = "TRIM_HORIZON"
    ):
        self._kinesis = kinesis
        self._stream = stream_name
        self._checkpoint = checkpoint
        self._initial_position = initial_position
        self._incarnation = kinesis.describe_stream_summary(StreamName=stream_name)[
            "StreamDescriptionSummary"
        ]["StreamCreationTimestamp"].isoformat()
        saved = json.loads(checkpoint.read_text()) if checkpoint.exists() else {}
        # The stream was deleted and created again since the checkpoint was written.
        self.stream_replaced = bool(saved) and saved["stream"] != self._incarnation
        self._positions: dict[str, str] = {} if self.stream_replaced else saved.get("positions", {})
        self._iterators: dict[str, str | None] = {}
        self.caught_up = False  # whether the last poll reached the tip of every shard

    def poll(self) -> list[bytes]:
        """One GetRecords round over every shard: the user records' data, oldest first per
        shard (aggregated records unpacked, ``connectors.kinesis_agg``)."""
        records: list[bytes] = []
        self.caught_up = True
        for shard in self._kinesis.list_shards(StreamName=self._stream)["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._iterator(shard_id)
            if self._iterators[shard_id] is not None:  # None: a closed, drained shard
                records.extend(self._read(shard_id))
        return records

    def commit(self) -> None:
        """Makes the positions read so far the restart point."""
        self._checkpoint.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._checkpoint.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"stream": self._incarnation, "positions": self._positions}, sort_keys=True)
        )
        os.replace(temporary, self._checkpoint)

    def _read(self, shard_id: str) -> list[bytes]:
        try:
            page = self._kinesis.get_records(
                ShardIterator=self._iterators[shard_id], Limit=GET_RECORDS_LIMIT
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ExpiredIteratorException":
                raise
            self._iterators[shard_id] = self._iterator(shard_id)  # from the last record read
            self.caught_up = False
            return []
        self._iterators[shard_id] = page.get("NextShardIterator")
        self.caught_up &= page.get("MillisBehindLatest", 0) == 0
        if page["Records"]:
            self._positions[shard_id] = page["Records"][-1]["SequenceNumber"]
        return [
            data
            for record in page["Records"]
            for _, data in kinesis_agg.user_records(record["PartitionKey"], record["Data"])
        ]

    def _iterator(self, shard_id: str) -> str:
        position = self._positions.get(shard_id)
        where = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": position}
            if position
            else {"ShardIteratorType": self._initial_position}
        )
        return self._kinesis.get_shard_iterator(StreamName=self._stream, ShardId=shard_id, **where)[
            "ShardIterator"
        ]
