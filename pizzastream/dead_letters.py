"""What a dead letter records about a record the pipeline could not use.

Its id hashes the job and the raw bytes: a replayed bad record (source rewind after a
restart, producer retry) lands on the same row instead of a second one. A repeated event
(the same order or restock sent again) is a record of its own each time: its ``occurrence``
(which repeat it is, counted in the job's state and so the same after a restore) is hashed
too, one row per repeat.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pizzastream.schemas import DEAD_LETTER

PAYLOAD_LIMIT = 4096


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_id: str
    job: str
    reason: str
    detail: str
    event_id: str | None
    order_id: str | None
    payload: str
    store_id: int | None = None

    # The ``dead_letter`` columns the pipeline writes, in the table's order; the fields
    # above are the same (``tests/pizzastream/test_schemas.py``).
    FIELDS = tuple(column.name for column in DEAD_LETTER.written)

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)


# PostgreSQL: an ``as_tuple`` into ``dead_letter``, once (a replayed bad record has the
# same id), for the writers outside Flink (POS ingestion, the delivery service).
INSERT_SQL = (
    f"INSERT INTO {DEAD_LETTER.name} ({', '.join(DeadLetter.FIELDS)})"
    f" VALUES ({', '.join(['%s'] * len(DeadLetter.FIELDS))})"
    f" ON CONFLICT ({', '.join(DEAD_LETTER.primary_key)}) DO NOTHING"
)


def printable_payload(raw: bytes) -> str:
    """The record as readable text: invalid UTF-8 and NULs escaped (PostgreSQL text refuses
    NUL), cut to a bounded size so an oversize record cannot bloat the table."""
    text = raw[:PAYLOAD_LIMIT].decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    return text if len(raw) <= PAYLOAD_LIMIT else text + f"…[{len(raw)} bytes]"


def storable_store_id(store_id: object) -> int | None:
    """A store id a record names, as the ``dead_letter.store_id`` column takes it (an
    ``integer``): None for anything else, so a bad record's huge number cannot fail the
    write."""
    return store_id if type(store_id) is int and -(2**31) <= store_id < 2**31 else None


def dead_letter(
    job: str,
    raw: bytes,
    reason: str,
    detail: str,
    event_id: str | None = None,
    order_id: str | None = None,
    occurrence: int | None = None,
    store_id: object = None,
) -> DeadLetter:
    identity = job.encode() + b"\x00" + raw
    if occurrence is not None:
        identity += b"\x00repeat %d" % occurrence
    digest = hashlib.sha256(identity).hexdigest()[:32]
    return DeadLetter(
        digest,
        job,
        reason,
        detail,
        event_id,
        order_id,
        printable_payload(raw),
        storable_store_id(store_id),
    )
