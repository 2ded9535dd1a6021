-- Aurora (PostgreSQL) operational store. Idempotent: safe to run on every `stack up`.

CREATE TABLE IF NOT EXISTS store (
    store_id        integer PRIMARY KEY CHECK (store_id BETWEEN 1 AND 2000),
    name            text NOT NULL,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    traffic_weight  double precision NOT NULL,   -- share of the chain's orders
    busy            boolean NOT NULL             -- one of the 20% that carry 80% of orders
);

CREATE TABLE IF NOT EXISTS product (
    product_id  integer PRIMARY KEY,
    name        text NOT NULL,
    unit_price  numeric(10,2) NOT NULL CHECK (unit_price > 0),
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS supplier (
    supplier_id        integer PRIMARY KEY,
    name               text NOT NULL,
    lead_time_minutes  integer NOT NULL CHECK (lead_time_minutes > 0),
    review_period_minutes  integer NOT NULL DEFAULT 1440 CHECK (review_period_minutes > 0),
    grace_minutes      integer NOT NULL DEFAULT 120 CHECK (grace_minutes >= 0)
);
ALTER TABLE supplier ADD COLUMN IF NOT EXISTS review_period_minutes integer NOT NULL
    DEFAULT 1440 CHECK (review_period_minutes > 0);
ALTER TABLE supplier ADD COLUMN IF NOT EXISTS grace_minutes integer NOT NULL
    DEFAULT 120 CHECK (grace_minutes >= 0);

-- Quantities of raw material are whole units (grams, pieces) so stock arithmetic is exact.
CREATE TABLE IF NOT EXISTS ingredient (
    ingredient_id     integer PRIMARY KEY,
    name              text NOT NULL,
    unit              text NOT NULL,
    supplier_id       integer NOT NULL REFERENCES supplier,
    safety_stock      integer NOT NULL CHECK (safety_stock >= 0),
    reorder_quantity  integer NOT NULL CHECK (reorder_quantity > 0),
    service_level     double precision NOT NULL DEFAULT 0.99 CHECK (service_level BETWEEN 0.5 AND 0.9999)
);
ALTER TABLE ingredient ADD COLUMN IF NOT EXISTS service_level double precision NOT NULL
    DEFAULT 0.99 CHECK (service_level BETWEEN 0.5 AND 0.9999);

CREATE TABLE IF NOT EXISTS recipe (
    product_id     integer NOT NULL REFERENCES product,
    ingredient_id  integer NOT NULL REFERENCES ingredient,
    quantity       integer NOT NULL CHECK (quantity > 0),   -- per unit of product
    PRIMARY KEY (product_id, ingredient_id)
);

CREATE TABLE IF NOT EXISTS inventory (
    store_id       integer NOT NULL REFERENCES store,
    ingredient_id  integer NOT NULL REFERENCES ingredient,
    on_hand        bigint NOT NULL CHECK (on_hand >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, ingredient_id)
);

-- Where inventory_windowing opens a store it has never seen. No job writes it: the
-- `inventory` table above is the job's output, and reading it back would let a job restored
-- from a checkpoint open a store with stock it had already consumed.
CREATE TABLE IF NOT EXISTS opening_inventory (
    store_id       integer NOT NULL REFERENCES store,
    ingredient_id  integer NOT NULL REFERENCES ingredient,
    on_hand        bigint NOT NULL CHECK (on_hand >= 0),
    PRIMARY KEY (store_id, ingredient_id)
);

CREATE TABLE IF NOT EXISTS delivery_partner (
    partner_id      integer PRIMARY KEY,
    name            text NOT NULL,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    base_fee        numeric(8,2) NOT NULL,
    fee_per_km      numeric(8,2) NOT NULL,
    capacity        integer NOT NULL CHECK (capacity > 0),
    refusal_rate    double precision NOT NULL CHECK (refusal_rate BETWEEN 0 AND 1),
    speed_kmh       double precision NOT NULL CHECK (speed_kmh > 0)
);

-- The contract's sales fact: one row per sold line item.
CREATE TABLE IF NOT EXISTS order_fct (
    store_id               integer NOT NULL,
    order_id               text NOT NULL,
    product_id             integer NOT NULL,
    transaction_ts         timestamptz NOT NULL,
    quantity               integer NOT NULL CHECK (quantity > 0),
    unit_price             numeric(10,2) NOT NULL,
    total_transaction_amt  numeric(12,2) NOT NULL,
    delivery_id            text NULL,
    delivery_type          text NOT NULL CHECK (delivery_type IN ('delivery', 'pickup', 'dine_in')),
    channel                text NOT NULL CHECK (channel IN ('online', 'in_store')),
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX IF NOT EXISTS order_fct_transaction_ts ON order_fct (transaction_ts);
CREATE INDEX IF NOT EXISTS order_fct_store_transaction_ts ON order_fct (store_id, transaction_ts);

-- Every record a job could not use, with the reason; the stream keeps flowing past it.
-- The id is a hash of the job and the raw record (and, for a repeated event, which repeat
-- it is), so a replayed bad record lands once (pizzastream.dead_letters).
CREATE TABLE IF NOT EXISTS dead_letter (
    dead_letter_id  text PRIMARY KEY,
    job             text NOT NULL,
    reason          text NOT NULL,
    detail          text NOT NULL,
    event_id        text NULL,
    order_id        text NULL,
    payload         text NOT NULL,      -- the record as received, non-UTF-8 bytes escaped, cut at 4 KiB
    received_at     timestamptz NOT NULL DEFAULT now(),
    store_id        integer NULL        -- the store the record names, when it can be read
);
-- Databases made before store_id existed.
ALTER TABLE dead_letter ADD COLUMN IF NOT EXISTS store_id integer NULL;
CREATE INDEX IF NOT EXISTS dead_letter_reason ON dead_letter (reason);
-- etl.health counts the recent ones for the dead-letter alarm.
CREATE INDEX IF NOT EXISTS dead_letter_received_at ON dead_letter (received_at);

-- Supplier orders, one row per line; a restock carrying the same supplier_order_id and
-- ingredient answers a line. on_hand and reorder_point: the line's, when it was ordered.
CREATE TABLE IF NOT EXISTS supplier_order (
    supplier_order_id  text NOT NULL,
    store_id           integer NOT NULL,
    ingredient_id      integer NOT NULL,
    supplier_id        integer NOT NULL,
    quantity           integer NOT NULL CHECK (quantity > 0),
    ordered_ts         timestamptz NOT NULL,
    on_hand            bigint NOT NULL,
    reorder_point      bigint NOT NULL,
    PRIMARY KEY (supplier_order_id, ingredient_id)
);
-- A supplier order has a line per ingredient (pizzastream.replenishment.ReplenishmentOrder):
-- one row per line. Databases made when an order had one ingredient keyed it by order alone.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'supplier_order_pkey'
               AND conrelid = 'supplier_order'::regclass
               AND array_length(conkey, 1) = 1) THEN
        ALTER TABLE supplier_order DROP CONSTRAINT supplier_order_pkey;
        ALTER TABLE supplier_order ADD PRIMARY KEY (supplier_order_id, ingredient_id);
    END IF;
END $$;

-- What the replenishment plan raises for a store: a supplier order overdue (and its
-- re-issue), an expected stock-out. The id is made of what the alert is about and when
-- (pizzastream.order_batches.alert_row), so a replay writes no second row.
CREATE TABLE IF NOT EXISTS replenishment_alert (
    alert_id           text PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('supplier_order_overdue', 'expected_stockout')),
    store_id           integer NOT NULL,
    ingredient_id      integer NULL,       -- expected_stockout
    supplier_id        integer NULL,       -- supplier_order_overdue
    supplier_order_id  text NULL,          -- supplier_order_overdue: the order re-issued
    alert_ts           timestamptz NOT NULL,   -- event time the plan raised it
    record             text NOT NULL       -- the alert as JSON (docs/streams.md)
);
CREATE INDEX IF NOT EXISTS replenishment_alert_store_ts ON replenishment_alert (store_id, alert_ts);
