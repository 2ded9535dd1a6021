-- Delivery service (delivery/): partner assignments and the delivery_id write-back onto
-- order_fct. Apply after operational.sql (it needs order_fct). Idempotent: safe to run on
-- every `stack up`.

-- One row per delivery order once the service has decided it: the partner that took it
-- (status 'assigned') or why none did (status 'denied', reason as in
-- pizzastream/delivery.py). The primary key is what makes a replayed record dispatch once.
CREATE TABLE IF NOT EXISTS delivery_assignment (
    order_id     text PRIMARY KEY,
    store_id     integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('assigned', 'denied')),
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
    CHECK ((status = 'denied') = (reason IS NOT NULL))
);
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
