"""Handling one ``deliveries`` record, from bytes to a recorded decision.

``DeliveryService.handle`` is one attempt; ``handle_until_done`` retries it until it
succeeds, since a record must never be skipped (the KCL record processor checkpoints only
past records this returned for). An attempt is idempotent, so retries and replays are
safe:

1. parse the sale (``EnrichedOrder.from_json``; a record that is not one is dead-lettered);
2. in one transaction, under the order's dispatch lock: if ``delivery_assignment`` already
   holds a decision, stop there (first guard against a double dispatch);
3. if the provider already holds an active dispatch for the order (an attempt that died
   between the provider's answer and the commit), adopt it (second guard);
4. otherwise run one round of offers (``pizzastream.delivery.dispatch_round``): rank the
   partners and offer the order down the ranking, skipping those that refused it in an
   earlier round; before moving past a partner that timed out, cancel the offer, so at
   most one partner ever holds the order; the provider's idempotency key (the order id)
   makes a repeated offer to the same partner return the same delivery id (third guard);
   Redis ``delivery:{order_id}`` shows each offer as it is answered (``searching``);
5. a final outcome: record the decision and the ``order_fct`` write-back, commit; a
   round that found nobody before the deadline: keep the order in ``delivery_attempt``
   with its next round's time, commit (status ``retrying``); the record is then done,
   and ``retry_due`` (every worker's retry loop, ``delivery.processor``) runs the next
   round when it is due, through this same path;
6. ``SET delivery:{order_id}`` in Redis (TTL from ``Delivery.redis_ttl_s``).

A provider or database outage raises out of ``handle`` and is retried with backoff: a
delivery is denied only for the business reasons of ``pizzastream.delivery``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import psycopg
import redis
from psycopg.rows import DictRow

from connectors import redis_store
from connectors.aurora import Refreshing
from connectors.delivery_provider import DeliveryProviderClient, ProviderUnavailable
from delivery import store
from pizzastream import delivery as rules_mod
from pizzastream.config import Props
from pizzastream.dead_letters import dead_letter
from pizzastream.delivery import (
    ASSIGNED,
    RETRYING,
    SEARCHING,
    Assignment,
    DeliveryRules,
    Denial,
    DispatchProgress,
    OfferOutcome,
    OfferResult,
    Partner,
    Place,
    Quote,
    Retry,
    Undeliverable,
)
from pizzastream.orders import EnrichedOrder, Fulfillment
from pizzastream.settings import DeliverySettings

log = logging.getLogger(__name__)

JOB = "delivery"
# Failures of the infrastructure, which pass: retried for as long as they last. Anything
# else (a constraint violation, a bug) would fail the same way again. On a Redis cluster a
# failover leaves slots without a master (CLUSTERDOWN) or unknown to the client for a while.
TRANSIENT = (
    ProviderUnavailable,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
    OSError,
)
REDIS_KEY = "delivery:{order_id}"


def redis_key(order_id: str) -> str:
    return REDIS_KEY.format(order_id=order_id)


@dataclass(frozen=True)
class Handled:
    """What an attempt did: ``decision`` is None for a dead-lettered record."""

    order_id: str | None
    decision: store.Decision | None
    replay: bool = False  # the decision was already recorded
    adopted: bool = False  # an active provider dispatch was taken over
    rows_updated: int = 0
    retry: Retry | None = None  # nobody took it this round: the next one is due then
    waiting: bool = False  # between rounds and not due yet: nothing done


class DeliveryService:
    def __init__(
        self,
        props: Props,
        provider: DeliveryProviderClient | None = None,
        redis_client: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ):
        group = DeliverySettings.from_group(props["Delivery"])
        self.props = props
        self.rules: DeliveryRules = group.rules
        self.retry_poll_s = group.retry_poll_s
        self.clock = clock
        self.provider = provider or DeliveryProviderClient.from_properties(props)
        self.redis = redis_client or redis_store.client(
            props, decode_responses=False, socket_timeout=5, socket_connect_timeout=5
        )
        self.redis_ttl_s = group.redis_ttl_s
        self._refresh_s = group.reference_refresh_s
        self._partners: Refreshing | None = None  # loaded on first use, inside retries
        self._stores: Refreshing | None = None
        self.retry_max_s = group.retry_max_s
        self.unexpected_attempts = group.unexpected_error_attempts
        self.checkpoint_every_s = group.checkpoint_every_s
        self._conn: psycopg.Connection[DictRow] | None = None

    def partners(self) -> tuple[Partner, ...]:
        if self._partners is None:
            self._partners = Refreshing(
                lambda: store.cached_partners(self.props, self.redis), self._refresh_s
            )
        return self._partners.get()

    def stores(self) -> dict[int, Place]:
        if self._stores is None:
            self._stores = Refreshing(lambda: store.load_stores(self.props), self._refresh_s)
        return self._stores.get()

    # -- one attempt -------------------------------------------------------------------

    def handle(self, raw: bytes) -> Handled:
        try:
            order = EnrichedOrder.from_json(raw)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            return self._dead_letter(raw, "malformed_record", f"{type(error).__name__}: {error}")
        if order.fulfillment != Fulfillment.DELIVERY:
            return self._dead_letter(
                raw, "not_a_delivery", f"fulfillment {order.fulfillment}", order
            )
        conn = self._connection()
        try:
            handled = self._decide(conn, order, raw)
        except BaseException:
            self._rollback()
            raise
        self._publish(handled.decision)
        return handled

    def _decide(
        self, conn: psycopg.Connection[DictRow], order: EnrichedOrder, raw: bytes
    ) -> Handled:
        store.lock_order(conn, order.order_id)
        previous = store.existing(conn, order.order_id)
        if previous is not None:
            conn.commit()
            return Handled(order.order_id, previous, replay=True)
        now_ms = int(self.clock() * 1000)
        waiting = store.pending(conn, order.order_id)
        progress = DispatchProgress()
        if waiting is not None:
            if store.ms_to_datetime(now_ms) < waiting.next_attempt_at:
                conn.commit()  # a replay of a record whose next round is not due
                return Handled(order.order_id, None, waiting=True)
            progress = DispatchProgress.from_json(waiting.steps)

        partners = self.partners()
        order_ts = store.ms_to_datetime(order.ts_ms)
        customer = (
            Place(order.customer_lat, order.customer_lon)  # type: ignore[arg-type]  # a customer's lat and lon come together
            if order.customer_lat is not None
            else None
        )
        store_place = self.stores().get(order.store_id)
        if store_place is None:  # opened since the last refresh? look again first
            self._stores = None
            store_place = self.stores().get(order.store_id)
        active = self.provider.active_dispatch(order.order_id)
        if active is not None:
            outcome: Assignment | Denial = self._adopt(
                order, active, partners, store_place, customer
            )
            adopted = True
        else:
            load = store.load(conn, (p.partner_id for p in partners), order_ts)
            outcome = rules_mod.dispatch_round(  # type: ignore[assignment]  # a round that ends in Retry or Undeliverable is handled below
                partners,
                store_place,
                customer,
                self.rules,
                load,
                self._offer(order, store_place, customer),
                progress,
                order.ts_ms,
                now_ms,
                lambda progress: self._publish_progress(order, SEARCHING, progress),
            )
            adopted = False
        if isinstance(outcome, Retry):
            store.wait(
                conn,
                order.order_id,
                order.store_id,
                raw,
                outcome.progress.to_json(),
                outcome.reason.value,
                store.ms_to_datetime(outcome.at_ms),
                store.ms_to_datetime(self.rules.deadline_ms(order.ts_ms)),
            )
            self._publish_progress(order, RETRYING, outcome.progress, outcome)
            log.info(
                "order %s: nobody yet, next round at %s: %s",
                order.order_id,
                store.ms_to_datetime(outcome.at_ms).isoformat(),
                outcome.detail,
            )
            return Handled(order.order_id, None, retry=outcome)
        decision, updated = store.record(conn, self._decision(order, outcome))
        if isinstance(outcome, Assignment):
            log.info(
                "order %s -> partner %s delivery %s (%s), %d order_fct rows",
                order.order_id,
                outcome.quote.partner.partner_id,
                outcome.delivery_id,
                rules_mod.describe_attempts(outcome.attempts),
                updated,
            )
        else:
            log.info("order %s delivery %s: %s", order.order_id, outcome.status, outcome.detail)
        return Handled(order.order_id, decision, adopted=adopted, rows_updated=updated)

    def _offer(
        self, order: EnrichedOrder, store_place: Place | None, customer: Place | None
    ) -> Callable[[Quote], OfferResult]:
        def offer(q: Quote) -> OfferResult:
            details = {
                "store_id": order.store_id,
                "pickup": [store_place.lat, store_place.lon] if store_place else None,
                "dropoff": [customer.lat, customer.lon] if customer else None,
                "fee_cents": q.fee_cents,
                "distance_km": round(q.distance_km, 2),
            }
            result = self.provider.dispatch(order.order_id, q.partner.partner_id, details)
            if result.outcome is OfferOutcome.TIMED_OUT:
                # The partner may have taken it after all: withdraw before asking the next
                # one. If the cancel cannot get through this raises, and the retry adopts
                # or re-offers.
                self.provider.cancel(order.order_id, q.partner.partner_id)
            return result

        return offer

    def _adopt(
        self,
        order: EnrichedOrder,
        active,
        partners: tuple[Partner, ...],
        store_place: Place | None,
        customer: Place | None,
    ) -> Assignment:
        partner = next((p for p in partners if p.partner_id == active.partner_id), None)
        if partner is None:
            partner = Partner(active.partner_id, "unknown", 0.0, 0.0, 0, 0, 1, 0.0, 1.0)
        if store_place is not None and customer is not None:
            q = rules_mod.quote(partner, store_place, customer)
        else:
            q = Quote(partner, 0.0, 0.0, partner.base_fee_cents)
        log.warning(
            "order %s: adopting active dispatch %s with partner %s",
            order.order_id,
            active.delivery_id,
            active.partner_id,
        )
        return Assignment(q, active.delivery_id, ((active.partner_id, OfferOutcome.ACCEPTED),))

    @staticmethod
    def _decision(
        order: EnrichedOrder, outcome: Assignment | Denial | Undeliverable
    ) -> store.Decision:
        order_ts = store.ms_to_datetime(order.ts_ms)
        if isinstance(outcome, Denial):
            return store.Decision.unassigned(
                order.order_id,
                order.store_id,
                "denied",
                outcome.reason.value,
                outcome.detail,
                order_ts,
            )
        if isinstance(outcome, Undeliverable):
            return store.Decision.unassigned(
                order.order_id,
                order.store_id,
                "undeliverable",
                outcome.reason.value,
                outcome.detail,
                order_ts,
                steps=outcome.progress.to_json(),
            )
        q = outcome.quote
        return store.Decision(
            order_id=order.order_id,
            store_id=order.store_id,
            status=ASSIGNED,
            reason=None,
            detail=rules_mod.describe_attempts(outcome.attempts),
            partner_id=q.partner.partner_id,
            delivery_id=outcome.delivery_id,
            fee=rules_mod.cents_to_money(q.fee_cents),
            distance_km=Decimal(f"{q.distance_km:.2f}"),
            eta_minutes=Decimal(f"{q.eta_min:.1f}"),
            order_ts=order_ts,
            busy_until=store.ms_to_datetime(q.busy_until_ms(order.ts_ms)),
            steps=outcome.progress.to_json() if outcome.progress else (),
        )

    def _publish(self, decision: store.Decision | None) -> None:
        if decision is None:
            return
        self.redis.set(
            redis_key(decision.order_id), json.dumps(decision.to_redis()), ex=self.redis_ttl_s
        )

    def _publish_progress(
        self,
        order: EnrichedOrder,
        status: str,
        progress: DispatchProgress,
        retry: Retry | None = None,
    ) -> None:
        """The customer's view between offers: every step so far, and while waiting, why
        and until when."""
        doc = {
            "order_id": order.order_id,
            "store_id": order.store_id,
            "status": status,
            "steps": store.steps_for_customer(progress.to_json()),
            "order_ts": store.ms_to_datetime(order.ts_ms).isoformat(),
        }
        if retry is not None:
            doc |= {
                "reason": retry.reason.value,
                "detail": retry.detail,
                "next_attempt": store.ms_to_datetime(retry.at_ms).isoformat(),
            }
        self.redis.set(redis_key(order.order_id), json.dumps(doc), ex=self.redis_ttl_s)

    # -- rounds after the first --------------------------------------------------------

    def retry_due(
        self, should_stop: Callable[[], bool] = lambda: False, limit: int = 100
    ) -> list[Handled]:
        """Runs the next round of every order whose round is due (at most ``limit``);
        the order's lock makes two workers' loops take turns, and a round already run by
        the other finds the order decided or not due any more."""
        conn = self._connection()
        try:
            records = store.due(conn, store.ms_to_datetime(int(self.clock() * 1000)), limit)
        except BaseException:
            self._rollback()
            raise
        handled = []
        for raw in records:
            result = self.handle_until_done(raw, should_stop)
            if result is None:
                break
            handled.append(result)
        return handled

    def _dead_letter(
        self, raw: bytes, reason: str, detail: str, order: EnrichedOrder | None = None
    ) -> Handled:
        log.warning("dead letter (%s): %s", reason, detail)
        letter = dead_letter(
            JOB,
            raw,
            reason,
            detail,
            order.event_id if order else None,
            order.order_id if order else None,
            store_id=order.store_id if order else None,
        )
        conn = self._connection()
        try:
            store.dead_letter(conn, letter)
        except BaseException:
            self._rollback()
            raise
        return Handled(order.order_id if order else None, None)

    # -- retries -----------------------------------------------------------------------

    def handle_until_done(
        self, raw: bytes, should_stop: Callable[[], bool] = lambda: False
    ) -> Handled | None:
        """``handle`` until it succeeds; backs off 0.5 s doubling to ``retry_max_s``.

        An outage (provider, database, Redis) is retried for as long as it lasts: the
        shard waits rather than lose or deny a delivery. Any other error is a defect that
        retrying will not cure; after ``unexpected_error_attempts`` the record becomes a
        dead letter (reason ``handler_error``) so one bad record cannot stop the shard.
        Returns None only when ``should_stop`` says to give up (the worker is going
        away; the record stays unacknowledged for whoever takes the shard over)."""
        delay = 0.5
        unexpected = 0
        while True:
            try:
                return self.handle(raw)
            except TRANSIENT as error:
                log.warning("handling failed, retrying in %.1fs: %s", delay, error)
            except Exception as error:  # anything else is a defect, see above
                unexpected += 1
                log.exception(
                    "unexpected error handling a record (%d/%d)",
                    unexpected,
                    self.unexpected_attempts,
                )
                if unexpected >= self.unexpected_attempts:
                    try:
                        return self._dead_letter(
                            raw, "handler_error", f"{type(error).__name__}: {error}"
                        )
                    except Exception as db_error:  # noqa: BLE001 - keep trying, never skip
                        log.warning("could not dead-letter: %s", db_error)
            if should_stop():
                return None
            time.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    # -- connection --------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[DictRow]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = store.connect(self.props)
        return self._conn

    def _rollback(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except psycopg.Error:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def parent_gone() -> Callable[[], bool]:
    """A ``should_stop`` that turns true once the process that started this one (the
    MultiLangDaemon) is gone: a record processor orphaned by a killed daemon stops
    retrying instead of running on alone."""
    parent = os.getppid()
    return lambda: os.getppid() != parent
