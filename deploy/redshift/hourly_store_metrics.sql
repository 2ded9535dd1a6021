-- Redshift only: the hourly store metrics tables with Redshift's physical design. Same
-- columns and meaning as stack/sql/warehouse.sql (the local PostgreSQL stand-in runs that
-- file; keep the two in step). Primary keys are informational on Redshift: the loads
-- (connectors/warehouse.py, load_hour.sql) are what keep (store_id, window_start) unique.

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
    stores        bigint NOT NULL
)
DISTSTYLE ALL
SORTKEY (window_start);
