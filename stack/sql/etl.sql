-- POS ingestion and the hourly ETL (etl/): their bookkeeping in the operational database,
-- and change tracking on order_fct. Apply after operational.sql (and after delivery.sql if
-- that is applied: see the trigger name below). Idempotent: safe to run on every `stack up`.

-- When a row last changed (insert, or a real change such as the delivery service setting
-- delivery_id), so the hourly ETL can re-export the hours that late sales and late updates
-- touched. Writers never name the column: the trigger sets it. A replayed upsert that
-- changes nothing (Flink after a restart) keeps the old value, so it causes no re-export.
-- Added only when missing: ALTER TABLE takes an exclusive lock even when it has nothing to do.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'order_fct'
                     AND column_name = 'changed_at') THEN
        ALTER TABLE order_fct ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now();
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS order_fct_changed_at ON order_fct (changed_at);

-- now() is the writing transaction's start: the ETL only trusts a change window once no
-- transaction that started inside it can still be running (etl/hourly.py, change_cutoff).
CREATE OR REPLACE FUNCTION order_fct_track_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.changed_at := OLD.changed_at;
        IF NEW IS NOT DISTINCT FROM OLD THEN
            RETURN NEW;
        END IF;
    END IF;
    NEW.changed_at := now();
    RETURN NEW;
END
$$;
-- Row triggers fire in name order: this name sorts after order_fct_fill_delivery_id
-- (delivery.sql), so it sees the row as that trigger left it.
CREATE OR REPLACE TRIGGER order_fct_track_change
    BEFORE INSERT OR UPDATE ON order_fct
    FOR EACH ROW EXECUTE FUNCTION order_fct_track_change();

-- Rows deleted from order_fct, and the old hour of a row whose transaction_ts moved to
-- another hour: the hourly ETL re-exports the hours they were in (etl/hourly.py), so a
-- delete reaches the warehouse and the hour's metrics instead of lingering there. Pruned
-- by the ETL once its change window has passed them.
CREATE TABLE IF NOT EXISTS order_fct_deleted (
    order_id        text NOT NULL,
    product_id      integer NOT NULL,
    transaction_ts  timestamptz NOT NULL,     -- of the row as it was
    deleted_at      timestamptz NOT NULL,     -- the deleting transaction's start, as changed_at
    PRIMARY KEY (order_id, product_id, transaction_ts)
);
CREATE INDEX IF NOT EXISTS order_fct_deleted_at ON order_fct_deleted (deleted_at);

CREATE OR REPLACE FUNCTION order_fct_track_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_fct_deleted (order_id, product_id, transaction_ts, deleted_at)
    VALUES (OLD.order_id, OLD.product_id, OLD.transaction_ts, now())
    ON CONFLICT (order_id, product_id, transaction_ts) DO UPDATE SET deleted_at = now();
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER order_fct_track_delete
    AFTER DELETE ON order_fct
    FOR EACH ROW EXECUTE FUNCTION order_fct_track_delete();
CREATE OR REPLACE TRIGGER order_fct_track_move
    AFTER UPDATE OF transaction_ts ON order_fct
    FOR EACH ROW WHEN (date_trunc('hour', OLD.transaction_ts, 'UTC')
                       IS DISTINCT FROM date_trunc('hour', NEW.transaction_ts, 'UTC'))
    EXECUTE FUNCTION order_fct_track_delete();

-- One row per POS batch id: the ingestion's idempotency ledger. A batch is loaded into
-- order_fct in the same transaction that writes its row here, so a batch id that is
-- 'loaded' or 'published' is never loaded again. 'quarantined' does not block a later,
-- complete delivery of the same batch id.
CREATE TABLE IF NOT EXISTS pos_batch (
    batch_id       text PRIMARY KEY,
    store_system   integer NOT NULL,
    status         text NOT NULL CHECK (status IN ('loaded', 'published', 'quarantined')),
    reason         text NULL,                 -- pizzastream.pos_batches.Fault
    detail         text NULL,
    record_count   integer NULL,              -- line items in the batch
    inserted_rows  integer NULL,              -- of which new to order_fct
    sales_sent     integer NULL,              -- sale records put on `sales`
    min_ts         timestamptz NULL,
    max_ts         timestamptz NULL,
    deliveries     integer NOT NULL DEFAULT 1 CHECK (deliveries > 0),  -- times it arrived
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'quarantined') = (reason IS NOT NULL))
);

-- Outbox of a loaded batch: the orders whose rows it inserted, written in the load's
-- transaction and drained once their sale records are on the `sales` stream. A crash in
-- between re-sends them (same event ids) instead of losing them.
CREATE TABLE IF NOT EXISTS pos_batch_order (
    batch_id  text NOT NULL REFERENCES pos_batch ON DELETE CASCADE,
    order_id  text NOT NULL,
    PRIMARY KEY (batch_id, order_id)
);

-- The hourly ETL's log: one row per hour a run exported (or reprocessed), with what it
-- wrote and when.
CREATE TABLE IF NOT EXISTS etl_run (
    run_id         text NOT NULL,
    hour           timestamptz NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('export', 'reprocess')),
    cause          text NOT NULL,             -- 'scheduled', 'requested', 'late_rows', ...
    rows_exported  bigint NULL,
    files          integer NULL,
    metric_rows    integer NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz NULL,
    status         text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    error          text NULL,
    PRIMARY KEY (run_id, hour)
);
CREATE INDEX IF NOT EXISTS etl_run_hour ON etl_run (hour, started_at);

-- How far the ETL has looked for changed rows: order_fct rows with changed_at before
-- changes_to are in the staging area. Advanced only by a run whose every hour succeeded.
CREATE TABLE IF NOT EXISTS etl_watermark (
    name        text PRIMARY KEY,
    changes_to  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
