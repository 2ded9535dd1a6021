"""An order's status lifecycle: statuses only move forward, the first final one stays.

Two jobs write an order's status (``order:<order_id>`` in Redis, the contract's hot read):
order_enrichment the rejections of records that name an order (``rejected:invalid``,
``rejected:unknown_product``), inventory_windowing its decisions (``accepted``,
``rejected:insufficient_inventory``). Nothing orders those two paths, so a bad record that
names an order the other path has decided (a client retrying with a broken body, a forged
id) would otherwise overwrite its status: last writer wins across jobs.

The lifecycle, by rank (a write moves the status only to a higher rank):

    (absent)  -1   no status yet
    unknown    0   a value the pipeline never writes (left by hand); anything known replaces it
    pending    1   not final: placed, not decided (the API shows it while ``intake:<id>``
                   exists and ``order:<id>`` does not; no job writes it today)
    final      2   ``accepted`` or ``rejected:<reason>`` (``orders.OrderStatus``): the end

A write of the status already there is a replay and changes nothing (``SAME``); a write of a
higher rank moves the order forward (``WRITE``); anything else (a different final status
after a final one, a move backwards) is refused as a ``CONFLICT``: the status stays, and the
refused write becomes a ``status_conflict`` dead letter (``conflict_dead_letter``). So a
sequence of writes, in whatever order they arrive, ends in the status of its first final
write (``settle``).

The edge that applies the rule atomically where the writes land is
``connectors.redis_store.STATUS_WRITE_SCRIPT`` (a Lua script, run by the jobs'
``pizzastream.flink.OrderStatusGate`` and by ``redis_store.write_order_status``); the script
is generated from the names here and tests/connectors/test_redis_store.py holds it to ``transition``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from pizzastream.dead_letters import DeadLetter, dead_letter
from pizzastream.orders import OrderStatus

PENDING = "pending"
FINAL = frozenset(status.value for status in OrderStatus)
CONFLICT_REASON = "status_conflict"

ABSENT_RANK, UNKNOWN_RANK, PENDING_RANK, FINAL_RANK = -1, 0, 1, 2


class Outcome(Enum):
    WRITE = "write"  # the status moves forward: written
    SAME = "same"  # a replay of the status already there: nothing changes
    CONFLICT = "conflict"  # refused: the status stays, the write is dead-lettered


def is_final(status: str | None) -> bool:
    return status in FINAL


def rank(status: str | None) -> int:
    if status is None:
        return ABSENT_RANK
    if status in FINAL:
        return FINAL_RANK
    return PENDING_RANK if status == PENDING else UNKNOWN_RANK


def transition(current: str | None, new: str) -> Outcome:
    """What a write of ``new`` does to an order whose status is ``current`` (None: none)."""
    if new == current:
        return Outcome.SAME
    return Outcome.WRITE if rank(new) > rank(current) else Outcome.CONFLICT


def settle(
    writes: Iterable[str], current: str | None = None
) -> tuple[str | None, list[tuple[str, str | None]]]:
    """The status a sequence of writes leaves, from ``current``, and the refused writes as
    ``(refused, status kept)`` in order."""
    conflicts: list[tuple[str, str | None]] = []
    for new in writes:
        outcome = transition(current, new)
        if outcome is Outcome.WRITE:
            current = new
        elif outcome is Outcome.CONFLICT:
            conflicts.append((new, current))
    return current, conflicts


def conflict_payload(order_id: str, refused: str, kept: str | None) -> str:
    """The refused write as the dead letter records it: ``order_id``, the refused status and
    the one kept, tab-separated (an order id is printable, ``orders.is_id``: no tab)."""
    return f"{order_id}\t{refused}\t{'' if kept is None else kept}"


def conflict_detail(order_id: str, refused: str, kept: str | None) -> str:
    return (
        f"order {order_id}: status {refused} refused, the order already has the"
        f" final status {kept} (statuses only move forward)"
    )


def conflict_dead_letter(job: str, order_id: str, refused: str, kept: str | None) -> DeadLetter:
    """The dead letter of a status write refused as a conflict, by ``job``'s writer. Its id
    hashes the job and the payload: the same refusal replayed (a restart, a repeated bad
    record) lands on the same row. ``pizzastream.flink.OrderStatusGate`` builds the same
    row in the JVM."""
    return dead_letter(
        job,
        conflict_payload(order_id, refused, kept).encode(),
        CONFLICT_REASON,
        conflict_detail(order_id, refused, kept),
        order_id=order_id,
    )
