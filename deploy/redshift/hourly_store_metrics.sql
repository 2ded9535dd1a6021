-- Redshift only: the warehouse tables with Redshift's physical design. Same columns and
-- meaning as stack/sql/warehouse.sql and etl_warehouse.sql (the local PostgreSQL runs those
-- files): tests/pizzastream/test_schemas.py holds all of them to pizzastream/schemas.py. Primary keys are informational on Redshift: the loads
-- (connectors/warehouse.py: COPY from S3 into a stage, then delete + insert by key) are what
-- keep (store_id, window_start) unique.

-- Analysts filter by time and group or join by store: rows of a store on one slice,
-- sorted by hour so a day's or a week's scan touches only its blocks.
CREATE TABLE IF NOT EXISTS hourly_store_metrics (
    store_id         integer NOT NULL ENCODE az64,
    window_start     timestamp NOT NULL ENCODE raw,
    window_end       timestamp NOT NULL ENCODE az64,
    orders           bigint NOT NULL ENCODE az64,
    items            bigint NOT NULL ENCODE az64,
    revenue          numeric(12,2) NOT NULL ENCODE az64,
    online_orders    bigint NOT NULL ENCODE az64,
    in_store_orders  bigint NOT NULL ENCODE az64,
    delivery_orders  bigint NOT NULL ENCODE az64,
    avg_order_value  numeric(12,2) NOT NULL ENCODE az64,
    source           varchar(8) NOT NULL ENCODE zstd,
    published_at     timestamp NOT NULL ENCODE az64,
    PRIMARY KEY (store_id, window_start)
)
DISTSTYLE KEY DISTKEY (store_id)
COMPOUND SORTKEY (window_start, store_id);

-- A few rows per hour: copied to every node.
CREATE TABLE IF NOT EXISTS metrics_publication (
    window_start  timestamp NOT NULL,
    window_end    timestamp NOT NULL,
    source        varchar(8) NOT NULL,
    published_at  timestamp NOT NULL,
    stores        bigint NOT NULL,
    revenue_change numeric(14,2) NOT NULL,  -- the load's revenue less what its rows held before
    orders_change  bigint NOT NULL
)
DISTSTYLE ALL
SORTKEY (window_start);

-- The sales fact the hourly ETL loads from S3 staging (stack/sql/etl_warehouse.sql locally).
CREATE TABLE IF NOT EXISTS order_fct (
    store_id               integer NOT NULL ENCODE az64,
    order_id               varchar(64) NOT NULL ENCODE zstd,
    product_id             integer NOT NULL ENCODE az64,
    transaction_ts         timestamptz NOT NULL ENCODE raw,
    quantity               integer NOT NULL ENCODE az64,
    unit_price             numeric(10,2) NOT NULL ENCODE az64,
    total_transaction_amt  numeric(12,2) NOT NULL ENCODE az64,
    delivery_id            varchar(64) NULL ENCODE zstd,
    delivery_type          varchar(16) NOT NULL ENCODE zstd,
    channel                varchar(16) NOT NULL ENCODE zstd,
    PRIMARY KEY (order_id, product_id)
)
DISTSTYLE KEY DISTKEY (store_id)
COMPOUND SORTKEY (transaction_ts, store_id);
