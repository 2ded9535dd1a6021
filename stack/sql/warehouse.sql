-- Warehouse (Redshift; locally a PostgreSQL database): the contract's hourly store metrics.
-- Only SQL that PostgreSQL and Redshift both accept (no CHECK, no indexes, no defaults);
-- Redshift's distribution and sort keys are in deploy/redshift/. Loaded by
-- connectors/warehouse.py: staging table + merge in one transaction. Idempotent: safe to run
-- on every `stack up`.

-- One row per (store, UTC hour) with sales. Window bounds are UTC, without time zone, as
-- in the lake's Parquet. `source` says who wrote the row ('stream': the streaming job;
-- 'partial': published by the stream before the store's POS batches covering the hour came
-- in, 'late': corrected by the stream from later sales, 'batch': a correction recomputed from
-- order_fct), `published_at` (UTC) when.
-- The primary key's index (store_id, window_start) is also the read path of the API's
-- per-store range reads (api/insights.py); Redshift's sort key is in deploy/redshift/.
CREATE TABLE IF NOT EXISTS hourly_store_metrics (
    store_id         integer NOT NULL,
    window_start     timestamp NOT NULL,
    window_end       timestamp NOT NULL,
    orders           bigint NOT NULL,
    items            bigint NOT NULL,
    revenue          numeric(12,2) NOT NULL,
    online_orders    bigint NOT NULL,
    in_store_orders  bigint NOT NULL,
    delivery_orders  bigint NOT NULL,
    avg_order_value  numeric(12,2) NOT NULL,
    source           varchar(8) NOT NULL,
    published_at     timestamp NOT NULL,
    PRIMARY KEY (store_id, window_start)
);

-- Every load of an hour's rows: the first says when the hour was published (its delay,
-- pizzastream.metrics.Publication), later ones are replays and corrections. `source` as in
-- hourly_store_metrics ('stream', 'partial': published without a silent POS, 'late': the
-- stream's correction, 'batch'); the changes are what the load's rows changed of the same
-- (store, hour) keys.
CREATE TABLE IF NOT EXISTS metrics_publication (
    window_start  timestamp NOT NULL,
    window_end    timestamp NOT NULL,
    source        varchar(8) NOT NULL,
    published_at  timestamp NOT NULL,
    stores        bigint NOT NULL,
    revenue_change numeric(14,2) NOT NULL,  -- the load's revenue less what its rows held before
    orders_change  bigint NOT NULL
);
-- Warehouses made before the changes were recorded keep their rows: earlier loads count as
-- having changed nothing.
ALTER TABLE metrics_publication
    ADD COLUMN IF NOT EXISTS revenue_change numeric(14,2) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS orders_change bigint NOT NULL DEFAULT 0;
