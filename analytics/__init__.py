"""The analysts' side of the hourly store metrics: ready-made questions, free SQL and a
chart, over the S3 lake (DuckDB reading the Parquet through httpfs) or the warehouse.

Every question is one SQL text that DuckDB and PostgreSQL/Redshift both run against a
relation named ``hourly_store_metrics`` with the contract's columns: the warehouse table, or
on the lake a DuckDB view over ``dt=/hour=`` partitions. Totals over several hours are
computed from sums (an average of hourly averages would weigh a quiet hour like a busy one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from connectors import lake
from pizzastream.config import Props
from pizzastream.schemas import METRIC_COLUMNS
from pizzastream.settings import AwsSettings

TABLE = "hourly_store_metrics"


@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: list[tuple]


def _load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    """httpfs from the ``duckdb-extension-httpfs`` wheel when installed (machines without
    access to DuckDB's extension site; DuckDB still checks the binary's signature), else
    DuckDB's own install."""
    try:
        import duckdb_extension_httpfs
    except ImportError:
        con.install_extension("httpfs")
        con.load_extension("httpfs")
        return
    path = (
        Path(duckdb_extension_httpfs.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "httpfs.duckdb_extension"
    )
    con.execute(f"LOAD '{path}'")


def lake_connection(props: Props) -> duckdb.DuckDBPyConnection:
    """DuckDB with ``hourly_store_metrics`` as a view over the lake's Parquet (S3 endpoint
    and keys from the ``Aws`` group: the emulator locally, the default chain on AWS)."""
    con = duckdb.connect()
    _load_httpfs(con)
    aws = AwsSettings.from_group(props["Aws"])
    options = [f"REGION '{aws.region}'"]
    credentials = aws.credentials()
    if credentials:
        options += [f"KEY_ID '{credentials[0]}'", f"SECRET '{credentials[1]}'"]
    else:
        options.append("PROVIDER credential_chain")
    if aws.endpoint:
        endpoint = urlsplit(aws.endpoint)
        options += [
            f"ENDPOINT '{endpoint.netloc}'",
            "URL_STYLE 'path'",
            f"USE_SSL {str(endpoint.scheme == 'https').lower()}",
        ]
    con.execute(f"CREATE SECRET lake (TYPE s3, {', '.join(options)})")
    con.execute(f"""
CREATE VIEW {TABLE} AS
SELECT {", ".join(METRIC_COLUMNS)}
FROM read_parquet('{lake.metrics_url(props)}/*/*/*', hive_partitioning = true)""")
    return con


def on_lake(props: Props, sql: str) -> Result:
    with lake_connection(props) as con:
        cursor = con.execute(sql)
        return Result(tuple(d[0] for d in cursor.description), cursor.fetchall())


def on_warehouse(props: Props, sql: str) -> Result:
    """``sql`` on the warehouse, through the configured engine's client."""
    from connectors import warehouse

    with warehouse.backend(props).connect() as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        return Result(tuple(d[0] for d in cursor.description), cursor.fetchall())


def _day_range(first: date, last: date) -> str:
    """SQL condition: window starts on the UTC days ``first`` .. ``last``."""
    return (
        f"window_start >= DATE '{first.isoformat()}'"
        f" AND window_start < DATE '{(last + timedelta(days=1)).isoformat()}'"
    )


def store_day(store_id: int, day: date) -> str:
    """One store's day, hour by hour."""
    return f"""
SELECT window_start, orders, items, revenue, online_orders, in_store_orders, delivery_orders,
       avg_order_value
FROM {TABLE}
WHERE store_id = {int(store_id)} AND {_day_range(day, day)}
ORDER BY window_start"""


def top_stores(day: date, limit: int = 10) -> str:
    """The stores with the most revenue on a day."""
    return f"""
SELECT store_id, SUM(revenue) AS revenue, SUM(orders) AS orders,
       ROUND(SUM(revenue) / SUM(orders), 2) AS avg_order_value
FROM {TABLE}
WHERE {_day_range(day, day)}
GROUP BY store_id
ORDER BY revenue DESC, store_id
LIMIT {int(limit)}"""


def channel_share(first: date, last: date) -> str:
    """Online versus in-store orders per day, with the online share in percent."""
    return f"""
SELECT CAST(window_start AS DATE) AS day, SUM(online_orders) AS online_orders,
       SUM(in_store_orders) AS in_store_orders,
       ROUND(100.0 * SUM(online_orders) / SUM(orders), 1) AS online_pct
FROM {TABLE}
WHERE {_day_range(first, last)}
GROUP BY CAST(window_start AS DATE)
ORDER BY day"""


def aov_trend(first: date, last: date, store_id: int | None = None) -> str:
    """Average order value per day (revenue / orders of the day), chain-wide or one store."""
    store = f" AND store_id = {int(store_id)}" if store_id is not None else ""
    return f"""
SELECT CAST(window_start AS DATE) AS day, SUM(orders) AS orders, SUM(revenue) AS revenue,
       ROUND(SUM(revenue) / SUM(orders), 2) AS avg_order_value
FROM {TABLE}
WHERE {_day_range(first, last)}{store}
GROUP BY CAST(window_start AS DATE)
ORDER BY day"""


def chart_store_day(
    props: Props, store_id: int, day: date, out: Path, warehouse: bool = False
) -> Path:
    """PNG of a store's day: orders per hour by channel (bars) and revenue (line)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    result = (on_warehouse if warehouse else on_lake)(props, store_day(store_id, day))
    by_hour = {row[0].hour: dict(zip(result.columns, row)) for row in result.rows}
    hours = list(range(24))
    online = [by_hour.get(h, {}).get("online_orders", 0) for h in hours]
    in_store = [by_hour.get(h, {}).get("in_store_orders", 0) for h in hours]
    revenue = [float(by_hour.get(h, {}).get("revenue", 0)) for h in hours]

    figure, orders_axis = pyplot.subplots(figsize=(11, 5))
    orders_axis.bar(hours, online, label="online orders")
    orders_axis.bar(hours, in_store, bottom=online, label="in-store orders")
    orders_axis.set_xlabel("hour (UTC)")
    orders_axis.set_ylabel("orders")
    orders_axis.set_xticks(hours)
    revenue_axis = orders_axis.twinx()
    revenue_axis.plot(hours, revenue, color="black", marker="o", label="revenue")
    revenue_axis.set_ylabel("revenue")
    revenue_axis.set_ylim(bottom=0)
    orders_axis.legend(loc="upper left")
    revenue_axis.legend(loc="upper right")
    orders_axis.set_title(f"Store {store_id}, {day.isoformat()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100, bbox_inches="tight")
    pyplot.close(figure)
    return out
