"""The delivery service's side of Aurora: reference data, decisions and the write-back.

See ``stack/sql/delivery.sql`` for the tables and the trigger this pairs with. One
decision is one transaction on one connection:

1. ``lock_order`` - a transaction advisory lock (class ``DISPATCH_LOCK_CLASS``) serialises
   everything deciding the same order (two workers around a lease hand-over); the Flink
   sink never takes it, so it may be held across the provider calls;
2. ``existing`` - the decision already recorded, if any: a replayed record stops here;
3. ``pending`` - the order's ``delivery_attempt`` row when it is between two rounds of
   offers (its progress, and when the next round is due);
4. ``load`` - partners' current deliveries, for the capacity rule;
5. ``record`` - the ``delivery_assignment`` row and, for an assignment,
   ``UPDATE order_fct SET delivery_id``, after taking the lock the ``order_fct`` trigger
   takes (class ``DELIVERY_LOCK_CLASS``), dropping the ``delivery_attempt`` row, and then
   commit; or ``wait`` - the ``delivery_attempt`` row for the next round, and commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import redis
from psycopg.rows import DictRow, dict_row

from pizzastream import dead_letters
from pizzastream.config import postgres_dsn
from pizzastream.dead_letters import DeadLetter
from pizzastream.delivery import ASSIGNED, Partner, Place
from pizzastream.settings import DeliverySettings

log = logging.getLogger(__name__)

# Advisory lock classes (first key of pg_advisory_xact_lock(int, int)); the second key is
# hashtext(order_id). DELIVERY_LOCK_CLASS must equal the one in stack/sql/delivery.sql.
DELIVERY_LOCK_CLASS = 7246
DISPATCH_LOCK_CLASS = 7247

COLUMNS = (
    "order_id",
    "store_id",
    "status",
    "reason",
    "detail",
    "partner_id",
    "delivery_id",
    "fee",
    "distance_km",
    "eta_minutes",
    "order_ts",
    "busy_until",
    "assigned_at",
)


@dataclass(frozen=True)
class Decision:
    """A ``delivery_assignment`` row."""

    order_id: str
    store_id: int
    status: str  # 'assigned' | 'denied'
    reason: str | None
    detail: str | None
    partner_id: int | None
    delivery_id: str | None
    fee: Decimal | None
    distance_km: Decimal | None
    eta_minutes: Decimal | None
    order_ts: datetime
    busy_until: datetime | None
    assigned_at: datetime | None = None
    # DispatchProgress.to_json() (a JSON list, as jsonb gives it back), shown only
    steps: Sequence[Sequence[Any]] = field(default=(), compare=False)

    @classmethod
    def unassigned(
        cls,
        order_id: str,
        store_id: int,
        status: str,
        reason: str,
        detail: str | None,
        order_ts: datetime,
        steps: Sequence[Sequence[Any]] = (),
    ) -> Decision:
        """A ``denied`` or ``undeliverable`` decision: no partner, fee, distance or time."""
        return cls(
            order_id=order_id,
            store_id=store_id,
            status=status,
            reason=reason,
            detail=detail,
            partner_id=None,
            delivery_id=None,
            fee=None,
            distance_km=None,
            eta_minutes=None,
            order_ts=order_ts,
            busy_until=None,
            steps=steps,
        )

    @property
    def delivery_status(self) -> str:
        """``assigned``, ``denied:<reason>`` or ``undeliverable:<reason>``: the status in
        Redis ``delivery:{order_id}``."""
        return ASSIGNED if self.status == ASSIGNED else f"{self.status}:{self.reason}"

    def to_redis(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "order_id": self.order_id,
            "store_id": self.store_id,
            "status": self.delivery_status,
        }
        if self.steps:
            doc["steps"] = steps_for_customer(self.steps)
        if self.status == ASSIGNED:
            doc |= {
                "partner_id": self.partner_id,
                "delivery_id": self.delivery_id,
                "fee": None if self.fee is None else str(self.fee),
                "distance_km": None if self.distance_km is None else float(self.distance_km),
                "eta_minutes": None if self.eta_minutes is None else float(self.eta_minutes),
            }
        else:
            doc |= {"reason": self.reason, "detail": self.detail}
        doc["order_ts"] = self.order_ts.isoformat()
        if self.assigned_at is not None:
            doc["decided_at"] = self.assigned_at.isoformat()
        return doc


def steps_for_customer(steps) -> list[dict[str, Any]]:
    """Each offer so far, as the customer's status shows it."""
    return [
        {
            "partner_id": partner_id,
            "round": round_no,
            "outcome": outcome,
            "at": ms_to_datetime(at_ms).isoformat(),
        }
        for partner_id, round_no, outcome, at_ms in steps
    ]


@dataclass(frozen=True)
class Pending:
    """A ``delivery_attempt`` row: an order waiting for its next round of offers."""

    order_id: str
    steps: list
    next_attempt_at: datetime


def pending(conn: psycopg.Connection[DictRow], order_id: str) -> Pending | None:
    row = conn.execute(
        "SELECT order_id, steps, next_attempt_at FROM delivery_attempt WHERE order_id = %s",
        [order_id],
    ).fetchone()
    return Pending(row["order_id"], row["steps"], row["next_attempt_at"]) if row else None


def wait(
    conn: psycopg.Connection[DictRow],
    order_id: str,
    store_id: int,
    raw: bytes,
    steps: list,
    reason: str,
    next_attempt_at: datetime,
    deadline: datetime,
) -> None:
    """Keeps the order for its next round (after its round's offers); commits."""
    conn.execute(
        "INSERT INTO delivery_attempt (order_id, store_id, record, steps, reason,"
        " next_attempt_at, deadline) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (order_id) DO UPDATE SET steps = EXCLUDED.steps,"
        " reason = EXCLUDED.reason, next_attempt_at = EXCLUDED.next_attempt_at,"
        " deadline = EXCLUDED.deadline, updated_at = now()",
        [order_id, store_id, raw, json.dumps(steps), reason, next_attempt_at, deadline],
    )
    conn.commit()


def due(conn: psycopg.Connection[DictRow], now: datetime, limit: int) -> list[bytes]:
    """Records of orders whose next round is due, earliest first."""
    rows = conn.execute(
        "SELECT record FROM delivery_attempt WHERE next_attempt_at <= %s"
        " ORDER BY next_attempt_at LIMIT %s",
        [now, limit],
    ).fetchall()
    conn.commit()
    return [bytes(row["record"]) for row in rows]


def ms_to_datetime(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def connect(props: Mapping[str, Mapping[str, str]]) -> psycopg.Connection[DictRow]:
    """A connection for decisions: explicit transactions, rows as dicts."""
    conn = psycopg.connect(
        postgres_dsn(props),
        autocommit=False,
        row_factory=dict_row,
        connect_timeout=5,
        application_name="delivery",
    )
    return conn


def load_partners(props: Mapping[str, Mapping[str, str]]) -> tuple[Partner, ...]:
    with psycopg.connect(postgres_dsn(props), row_factory=dict_row, connect_timeout=5) as conn:
        rows = conn.execute("SELECT * FROM delivery_partner ORDER BY partner_id").fetchall()
    return tuple(Partner.from_row(row) for row in rows)


# What the partner cache may fail with: the cache must never stop a dispatch (a cluster
# client also raises ``RedisClusterException``s, e.g. while no node answers).
REDIS_FAILURES = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ResponseError,
    redis.RedisClusterException,
)


def cached_partners(props: Mapping[str, Mapping[str, str]], redis_client) -> tuple[Partner, ...]:
    """The delivery partners from their Redis cache (``redis_store.DELIVERY_PARTNERS_KEY``,
    one JSON list), or, on a miss, from Aurora, then cached for
    ``Delivery.partner_cache_ttl_s``. A change to ``delivery_partner`` therefore reaches
    the workers within that TTL plus ``Delivery.reference_refresh_s`` (each worker's own
    reload period), or at their next reload once ``invalidate_partners`` has run. A Redis
    failure falls back to Aurora: the cache must never stop a dispatch."""
    from connectors import redis_store

    key = redis_store.DELIVERY_PARTNERS_KEY
    try:
        cached = redis_client.get(key)
    except REDIS_FAILURES:
        log.warning("delivery partners: Redis unavailable, reading Aurora", exc_info=True)
        return load_partners(props)
    if cached is not None:
        return tuple(Partner(**fields) for fields in json.loads(cached))
    partners = load_partners(props)
    ttl_s = DeliverySettings.from_group(props["Delivery"]).partner_cache_ttl_s
    try:
        redis_client.set(key, json.dumps([asdict(p) for p in partners]), ex=ttl_s)
    except REDIS_FAILURES:
        log.warning("delivery partners: could not refresh the Redis cache", exc_info=True)
    return partners


def invalidate_partners(redis_client) -> bool:
    """Drops the cached partners (run after changing ``delivery_partner``); True if a
    cached copy was there. Workers read Aurora again at their next reload."""
    from connectors import redis_store

    return bool(redis_client.delete(redis_store.DELIVERY_PARTNERS_KEY))


def load_stores(props: Mapping[str, Mapping[str, str]]) -> dict[int, Place]:
    with psycopg.connect(postgres_dsn(props), connect_timeout=5) as conn:
        rows = conn.execute("SELECT store_id, lat, lon FROM store").fetchall()
    return {store_id: Place(lat, lon) for store_id, lat, lon in rows}


def lock_order(conn: psycopg.Connection[DictRow], order_id: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [DISPATCH_LOCK_CLASS, order_id])


def existing(conn: psycopg.Connection[DictRow], order_id: str) -> Decision | None:
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM delivery_assignment WHERE order_id = %s", [order_id]
    ).fetchone()
    return Decision(**row) if row else None


def load(
    conn: psycopg.Connection[DictRow], partner_ids: Iterable[int], at: datetime
) -> dict[int, int]:
    """Deliveries each partner carries at event time ``at``."""
    ids = list(partner_ids)
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT partner_id, count(*) AS n FROM delivery_assignment "
        "WHERE status = 'assigned' AND partner_id = ANY(%s) "
        "AND busy_until > %s AND order_ts <= %s GROUP BY partner_id",
        [ids, at, at],
    ).fetchall()
    return {row["partner_id"]: row["n"] for row in rows}


def record(conn: psycopg.Connection[DictRow], decision: Decision) -> tuple[Decision, int]:
    """Writes the decision and the order's delivery id; returns the decision as stored
    (an earlier one wins) and how many ``order_fct`` rows were updated. Commits."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [DELIVERY_LOCK_CLASS, decision.order_id]
    )
    conn.execute("DELETE FROM delivery_attempt WHERE order_id = %s", [decision.order_id])
    values = [getattr(decision, name) for name in COLUMNS[:-1]]
    inserted = conn.execute(
        f"INSERT INTO delivery_assignment ({', '.join(COLUMNS[:-1])}) "
        f"VALUES ({', '.join(['%s'] * (len(COLUMNS) - 1))}) "
        "ON CONFLICT (order_id) DO NOTHING RETURNING assigned_at",
        values,
    ).fetchone()
    stored = (
        existing(conn, decision.order_id)
        if inserted is None
        else Decision(**{**decision.__dict__, "assigned_at": inserted["assigned_at"]})
    )
    updated = 0
    if stored is not None and stored.status == ASSIGNED:
        updated = conn.execute(
            "UPDATE order_fct SET delivery_id = %s WHERE order_id = %s "
            "AND delivery_id IS DISTINCT FROM %s",
            [stored.delivery_id, stored.order_id, stored.delivery_id],
        ).rowcount
    conn.commit()
    return stored, updated  # type: ignore[return-value]  # an earlier decision is there when the insert found one


def dead_letter(conn: psycopg.Connection[DictRow], letter: DeadLetter) -> None:
    conn.execute(dead_letters.INSERT_SQL, list(letter.as_tuple()))
    conn.commit()
