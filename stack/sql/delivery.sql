-- Delivery service (delivery/): partner assignments and the delivery_id write-back onto
-- order_fct. Apply after operational.sql (it needs order_fct). Idempotent: safe to run on
-- every `stack up`.

-- One row per delivery order once the service has decided it: the partner that took it
-- (status 'assigned'), why none could (status 'denied': a limit, reason as in
-- pizzastream/delivery.py) or why none did by the order's deadline (status
-- 'undeliverable'). The primary key is what makes a replayed record dispatch once.
CREATE TABLE IF NOT EXISTS delivery_assignment (
    order_id     text PRIMARY KEY,
    store_id     integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('assigned', 'denied', 'undeliverable')),
    reason       text NULL,
    detail       text NULL,
    partner_id   integer NULL,
    delivery_id  text NULL,
    fee          numeric(8,2) NULL,
    distance_km  numeric(8,2) NULL,
    eta_minutes  numeric(8,1) NULL,
    order_ts     timestamptz NOT NULL,        -- event time of the order
    busy_until   timestamptz NULL,            -- event time the partner is free again
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'assigned') = (partner_id IS NOT NULL AND delivery_id IS NOT NULL)),
    CONSTRAINT delivery_assignment_reason CHECK ((status <> 'assigned') = (reason IS NOT NULL))
);
-- Tables made before 'undeliverable' existed: the same two checks, widened.
ALTER TABLE delivery_assignment DROP CONSTRAINT IF EXISTS delivery_assignment_status_check;
ALTER TABLE delivery_assignment ADD CONSTRAINT delivery_assignment_status_check
    CHECK (status IN ('assigned', 'denied', 'undeliverable'));
ALTER TABLE delivery_assignment DROP CONSTRAINT IF EXISTS delivery_assignment_check1;
ALTER TABLE delivery_assignment DROP CONSTRAINT IF EXISTS delivery_assignment_reason;
ALTER TABLE delivery_assignment ADD CONSTRAINT delivery_assignment_reason
    CHECK ((status <> 'assigned') = (reason IS NOT NULL));
-- An order between two rounds of offers (pizzastream.delivery.dispatch_round): its record,
-- what it has been through (steps: [partner_id, round, outcome, at_ms]) and when the next
-- round is due. The row goes in the transaction that records the final decision; each
-- worker's retry loop picks up the due ones.
CREATE TABLE IF NOT EXISTS delivery_attempt (
    order_id         text PRIMARY KEY,
    store_id         integer NOT NULL,
    record           bytea NOT NULL,           -- the deliveries record, as read
    steps            jsonb NOT NULL,
    reason           text NOT NULL,            -- why the last round found nobody
    next_attempt_at  timestamptz NOT NULL,
    deadline         timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS delivery_attempt_due ON delivery_attempt (next_attempt_at);

-- Capacity: deliveries a partner carries at an order's time.
CREATE INDEX IF NOT EXISTS delivery_assignment_partner_busy
    ON delivery_assignment (partner_id, busy_until) WHERE status = 'assigned';

-- The order's rows get the delivery id whichever comes first: the service's
--   UPDATE order_fct SET delivery_id = ... WHERE order_id = ...
-- (same transaction as its delivery_assignment row) covers rows already there; this
-- trigger covers rows the Flink job writes later, and a replayed upsert, which never
-- carries delivery_id, cannot clear it.
--
-- Both sides take the same transaction-scoped advisory lock on the order id, so neither
-- can miss the other's uncommitted write: if the service holds it, the insert waits and
-- then reads the committed assignment; if an insert holds it, the service's UPDATE runs
-- only after that insert committed and so sees the new rows. (READ COMMITTED takes a
-- fresh snapshot per statement, and PL/pgSQL per query.) Key: (7246, hashtext(order_id));
-- the same key is DELIVERY_LOCK_CLASS in delivery/store.py. Rows of pickup and dine-in
-- orders skip all of this.
CREATE OR REPLACE FUNCTION order_fct_fill_delivery_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.delivery_id IS NULL AND NEW.delivery_type = 'delivery' THEN
        PERFORM pg_advisory_xact_lock(7246, hashtext(NEW.order_id));
        SELECT a.delivery_id INTO NEW.delivery_id
        FROM delivery_assignment a
        WHERE a.order_id = NEW.order_id AND a.status = 'assigned';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER order_fct_fill_delivery_id
    BEFORE INSERT OR UPDATE ON order_fct
    FOR EACH ROW EXECUTE FUNCTION order_fct_fill_delivery_id();
