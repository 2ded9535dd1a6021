-- Warehouse (Redshift; locally a PostgreSQL database): the sales fact the hourly ETL loads
-- from S3 staging (etl/hourly.py). Plain SQL that both accept (so no CREATE INDEX). On
-- Redshift add DISTKEY(store_id) SORTKEY(transaction_ts); the key is informational there.
-- Idempotent: safe to run on every `stack up`.
CREATE TABLE IF NOT EXISTS order_fct (
    store_id               integer NOT NULL,
    order_id               varchar(64) NOT NULL,
    product_id             integer NOT NULL,
    transaction_ts         timestamptz NOT NULL,
    quantity               integer NOT NULL,
    unit_price             numeric(10,2) NOT NULL,
    total_transaction_amt  numeric(12,2) NOT NULL,
    delivery_id            varchar(64) NULL,
    delivery_type          varchar(16) NOT NULL,
    channel                varchar(16) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
