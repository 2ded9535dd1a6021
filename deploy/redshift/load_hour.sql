-- Redshift only: load one published hour from the lake, the way Redshift loads best (COPY
-- from S3 into staging, then a merge in the same transaction). This is the Redshift-native
-- alternative to the JDBC load of connectors/warehouse.py, for when the per-checkpoint
-- inserts grow too big for a leader node: run it for each hour the lake publishes (or
-- corrects), e.g. from an S3 event on lake/hourly_store_metrics/.
--
-- Parameters (substitute before running): {hour} as 'YYYY-MM-DD HH:00:00', {partition_url}
-- as 's3://<bucket>/lake/hourly_store_metrics/dt=YYYY-MM-DD/hour=HH/', {iam_role} the ARN
-- of a role that may read the bucket, {source} 'stream' or 'batch'.

BEGIN;

-- Exactly the lake's columns (Parquet COPY maps columns by position).
CREATE TEMP TABLE hourly_store_metrics_lake (
    store_id         integer,
    window_start     timestamp,
    window_end       timestamp,
    orders           bigint,
    items            bigint,
    revenue          numeric(12,2),
    online_orders    bigint,
    in_store_orders  bigint,
    delivery_orders  bigint,
    avg_order_value  numeric(12,2)
);

COPY hourly_store_metrics_lake
FROM '{partition_url}'
IAM_ROLE '{iam_role}'
FORMAT AS PARQUET;

-- The whole hour is replaced: a store without sales in it any more loses its row.
DELETE FROM hourly_store_metrics WHERE window_start = '{hour}';

INSERT INTO hourly_store_metrics
SELECT store_id, window_start, window_end, orders, items, revenue, online_orders,
       in_store_orders, delivery_orders, avg_order_value, '{source}', GETDATE()
FROM hourly_store_metrics_lake;

INSERT INTO metrics_publication (window_start, window_end, source, published_at, stores)
SELECT window_start, window_end, '{source}', GETDATE(), COUNT(*)
FROM hourly_store_metrics_lake
GROUP BY window_start, window_end;

DROP TABLE hourly_store_metrics_lake;

END;
