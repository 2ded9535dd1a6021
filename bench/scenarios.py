"""What the benchmark jobs look like: the jobs' own logic, pure-SQL equivalents, and
prototypes of the proposed fixes, each fed by the in-job generator into discarding sinks.

Every scenario counts its input events at the generator (``Progress`` in the JVM); with the
generator much faster than what it feeds, the job is back-pressured and the generator's
rate is the rate of the slowest operator. Outputs go to discarding sinks through the same
side outputs the jobs' ``build`` functions use (``operators.side_output``), so the measured
work is the jobs' work minus Kinesis, Redis and the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyflink.datastream import DataStream
from pyflink.java_gateway import get_gateway

from bench import benchdb, sql
from pizzastream.sales import FACT_TARGET
from pizzastream.schemas import ORDER_FCT, flink_sql_type
from pizzastream.settings import database

OUTPUT_COUNT = "out"  # progress name of counted outputs
COUNT_OUTPUTS = {"count": OUTPUT_COUNT}
DEFAULT_RATE = 350_000  # simulated traffic: event time advances at the planned peak
DEFAULT_LAG_MS = 3_600_000  # first event time an hour ago: valid for the order rules


class Context:
    """What a scenario builds with: the environment, the benchmark properties, the spec,
    and helpers for the generator, discarding sinks and the table environment."""

    def __init__(self, env, props, spec: dict, progress_dir: str, progress_name: str):
        self.env = env
        self.props = props
        self.spec = spec
        self.progress_dir = progress_dir
        self.progress_name = progress_name
        self._t_env = None
        self._sinks = 0

    @property
    def jvm(self):
        return get_gateway().jvm

    @property
    def t_env(self):
        if self._t_env is None:
            from jobs import runtime

            self._t_env = runtime.table_environment(self.env)
            # dedup state lives as long as StoreBatcher's (Inventory.dedup_ttl_hours)
            settings = {"table.exec.state.ttl": "50 h", **self.spec.get("table_config", {})}
            for key, value in settings.items():
                self._t_env.get_config().set(key, str(value))
        return self._t_env

    def generator(self, fmt: str) -> DataStream:
        """The counted in-job source: sequence numbers turned into orders in ``fmt``."""
        jvm, gateway = self.jvm, get_gateway()
        cumulative, product_ids, prices = benchdb.generator_inputs(self.spec.get("stores", 2000))
        j_cum = gateway.new_array(jvm.double, len(cumulative))
        for i, value in enumerate(cumulative):
            j_cum[i] = value
        j_ids = gateway.new_array(jvm.int, len(product_ids))
        j_prices = gateway.new_array(jvm.long, len(prices))
        for i, (pid, cents) in enumerate(zip(product_ids, prices)):
            j_ids[i] = pid
            j_prices[i] = cents
        orders = jvm.pizzastream.flink.bench.SyntheticOrders(
            j_cum, j_ids, j_prices, self.spec.get("run_tag", "0")
        )
        source = jvm.org.apache.flink.api.connector.source.lib.NumberSequenceSource(0, 2**62)
        watermarks = jvm.org.apache.flink.api.common.eventtime.WatermarkStrategy.noWatermarks()
        j_numbers = self.env._j_stream_execution_environment.fromSource(
            source, watermarks, "sequence"
        )
        generator = jvm.pizzastream.flink.bench.OrderGenerator(
            orders,
            fmt,
            float(self.spec.get("rate", DEFAULT_RATE)),
            int(self.spec.get("lag_ms", DEFAULT_LAG_MS)),
            self.progress_dir,
            self.progress_name,
        )
        j_orders = j_numbers.flatMap(
            generator, jvm.pizzastream.flink.bench.OrderGenerator.typeOf(fmt)
        ).name(f"generate-{fmt}")
        return DataStream(j_orders)

    def count_and_discard(self, stream: DataStream) -> None:
        """Discards ``stream`` after counting it (progress name ``out``): the measured rate
        of a Python operator is read at its output (see ``bench.Count``)."""
        counter = self.jvm.pizzastream.flink.bench.Count(self.progress_dir, OUTPUT_COUNT)
        j_stream = stream._j_data_stream
        self.discard(DataStream(j_stream.map(counter, j_stream.getType()).name("count")))

    def discard(self, stream: DataStream) -> None:
        self._sinks += 1
        stream._j_data_stream.sinkTo(
            self.jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
        ).name(f"discard-{self._sinks}")

    def java(self, stream: DataStream, function, type_info, name: str) -> DataStream:
        """``stream`` through a JVM map function."""
        return DataStream(stream._j_data_stream.map(function, type_info).name(name))


@dataclass(frozen=True)
class Scenario:
    build: Callable[[Context], dict | None]
    description: str
    kind: str  # "generator", "python", "sql" or "prototype"
    job: str  # which job it stands for: enrichment, inventory, chained, hourly


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, description: str, kind: str, job: str):
    def register(build):
        SCENARIOS[name] = Scenario(build, description, kind, job)
        return build

    return register


# ------------------------------------------------------------------ generator alone

for _fmt, _job in (
    ("raw", "enrichment"),
    ("tagged", "inventory"),
    ("sale", "hourly"),
    ("sale_text", "hourly"),
    ("sale_row", "hourly"),
):

    def _generator_only(ctx: Context, fmt=_fmt):
        ctx.discard(ctx.generator(fmt))

    SCENARIOS[f"generator_{_fmt}"] = Scenario(
        _generator_only,
        f"in-job generator ({_fmt}) into a discarding sink: its own cost",
        "generator",
        _job,
    )


# ------------------------------------------------------------------ the jobs


def enrichment_outputs(ctx: Context, outputs, main: bool = True) -> None:
    """Every output of ``order_enrichment.enrich_orders`` into a discarding sink, the
    enriched orders counted (unless another job consumes them)."""
    if main:
        ctx.count_and_discard(outputs.enriched)
    for stream in (outputs.statuses, outputs.status_commands, outputs.dead_letters):
        ctx.discard(stream)


def inventory_outputs(ctx: Context, decisions) -> None:
    """Every output of ``inventory_windowing.decide_orders`` into a discarding sink, as
    ``build`` takes them (the Redis stock commands included), the statuses counted."""
    from jobs import inventory_windowing as job

    ctx.count_and_discard(decisions.statuses)
    for stream in (
        decisions.status_commands,
        decisions.sales,
        decisions.pos_orders,
        decisions.deliveries,
        decisions.supplier_orders,
        decisions.facts,
        decisions.supplier_order_rows,
        decisions.alerts,
        decisions.levels,
        decisions.dead_letters,
    ):
        ctx.discard(stream)
    ctx.discard(job.inventory_cache_commands(ctx.t_env, decisions.levels))
    ctx.discard(job.stockout_cache_commands(ctx.t_env, decisions.alerts))


@scenario("enrichment", "order_enrichment: enrich_orders() as shipped", "python", "enrichment")
def _enrichment(ctx: Context):
    from jobs import order_enrichment as job

    enrichment_outputs(ctx, job.enrich_orders(ctx.generator("raw"), ctx.props))
    return COUNT_OUTPUTS


@scenario("inventory", "inventory_windowing: decide_orders() as shipped", "python", "inventory")
def _inventory(ctx: Context):
    from jobs import inventory_windowing as job

    inventory_outputs(ctx, job.decide_orders(ctx.generator("tagged"), ctx.props))
    return COUNT_OUTPUTS


@scenario("chained", "enrich_orders() into decide_orders() in one job", "python", "chained")
def _chained(ctx: Context):
    from jobs import inventory_windowing, order_enrichment

    enrichment = order_enrichment.enrich_orders(ctx.generator("raw"), ctx.props)
    enrichment_outputs(ctx, enrichment, main=False)
    tagged = ctx.java(
        enrichment.enriched,
        ctx.jvm.pizzastream.flink.bench.KeyedToTagged(),
        ctx.jvm.pizzastream.flink.KeyedRawRecordSchema.TYPE,
        "keyed-to-tagged",
    )
    inventory_outputs(ctx, inventory_windowing.decide_orders(tagged, ctx.props))
    return COUNT_OUTPUTS


# ------------------------------------------------------------------ pure SQL equivalents


def _sql_job(ctx: Context) -> None:
    """What a pure-SQL job would run with: records handed between chained operators without
    a defensive copy (the jobs' Python operators copy nothing either). Not for the hourly
    scenarios: hourly_metrics is itself SQL and runs without it, so its yardsticks do too."""
    ctx.env.get_config().enable_object_reuse()


@scenario(
    "enrichment_sql", "order_enrichment's parse/validate/price in Flink SQL", "sql", "enrichment"
)
def _enrichment_sql(ctx: Context):
    _sql_job(ctx)
    sql.enrichment(ctx, ctx.generator("raw"))


@scenario(
    "inventory_sql",
    "inventory_windowing's dedup + per-store state in Flink SQL",
    "sql",
    "inventory",
)
def _inventory_sql(ctx: Context):
    _sql_job(ctx)
    sql.inventory(ctx, ctx.generator("tagged"))


@scenario("chained_sql", "both jobs' work in one Flink SQL job", "sql", "chained")
def _chained_sql(ctx: Context):
    _sql_job(ctx)
    sql.chained(ctx, ctx.generator("raw"))


@scenario(
    "hourly_sql",
    "hourly_metrics' own logic (metrics_and_live: StoreSales) over sales generated "
    "as typed rows, watermark in SQL: the same logic with no JSON",
    "sql",
    "hourly",
)
def _hourly_sql(ctx: Context):
    from bench import hourly

    return hourly.build_typed(ctx)


@scenario(
    "hourly_tumble_sql",
    "a bare 1-hour TUMBLE over the same decoded sales: no dedup, no live view, BIGINT money",
    "sql",
    "hourly",
)
def _hourly_tumble_sql(ctx: Context):
    sql.hourly_from_json(ctx, ctx.generator("sale"))


@scenario(
    "hourly_metrics", "hourly_metrics as shipped (sales_table + metrics_and_live)", "sql", "hourly"
)
def _hourly_metrics(ctx: Context):
    from bench import hourly

    return hourly.build(ctx)


@scenario(
    "hourly_row_number_dedup",
    "hourly_metrics before StoreSales: a SQL ROW_NUMBER dedup by order id, "
    "StoreHourMetrics and the SQL live view (LIVE_SQL)",
    "sql",
    "hourly",
)
def _hourly_row_number_dedup(ctx: Context):
    from bench import hourly

    return hourly.build_row_number_dedup(ctx)


@scenario(
    "hourly_group_window",
    "hourly_row_number_dedup but for its hourly metrics: the SQL group window "
    "(accumulator and timers in keyed state per sale) in place of StoreHourMetrics",
    "sql",
    "hourly",
)
def _hourly_group_window(ctx: Context):
    from bench import hourly

    return hourly.build_group_window(ctx)


@scenario(
    "hourly_json_value",
    "hourly_row_number_dedup before sales were decoded once: six JSON_VALUE "
    "calls per sale in the view the SQL reads",
    "sql",
    "hourly",
)
def _hourly_json_value(ctx: Context):
    from bench import hourly

    return hourly.build_json_value(ctx)


@scenario(
    "hourly_two_dedups",
    "hourly_metrics before one deduplication fed both outputs: "
    "window dedup for the metrics, its own for the live view",
    "sql",
    "hourly",
)
def _hourly_two_dedups(ctx: Context):
    from bench import hourly

    return hourly.build_two_dedups(ctx)


@scenario(
    "hourly_delay",
    "hourly_metrics.metrics_and_live() with event time running ~500x "
    "faster than the wall clock: when each hour's rows leave the job",
    "sql",
    "hourly",
)
def _hourly_delay(ctx: Context):
    from bench import hourly

    return hourly.build_publications(ctx)


# ------------------------------------------------------------------ prototypes


@scenario(
    "cross_stateless",
    "crossing only: bytes in, the same bytes out, stateless Python",
    "prototype",
    "enrichment",
)
def _cross_stateless(ctx: Context):
    from bench import prototypes

    ctx.count_and_discard(prototypes.passthrough(ctx.generator("raw")))
    return COUNT_OUTPUTS


@scenario(
    "cross_keyed",
    "crossing only: keyed by store in the JVM, one output, no state",
    "prototype",
    "inventory",
)
def _cross_keyed(ctx: Context):
    from bench import prototypes

    ctx.count_and_discard(prototypes.keyed_passthrough(ctx.generator("tagged"), state=False))
    return COUNT_OUTPUTS


@scenario(
    "cross_keyed_state",
    "crossing only + one ValueState read and write per event",
    "prototype",
    "inventory",
)
def _cross_keyed_state(ctx: Context):
    from bench import prototypes

    ctx.count_and_discard(prototypes.keyed_passthrough(ctx.generator("tagged"), state=True))
    return COUNT_OUTPUTS


@scenario(
    "fused",
    "prototype: both order jobs in one keyed Python call per store batch",
    "prototype",
    "chained",
)
def _fused(ctx: Context):
    from bench import prototypes

    inventory_outputs(ctx, prototypes.fused_order_path(ctx.generator("raw_tagged"), ctx.props))
    return COUNT_OUTPUTS


# ------------------------------------------------------------------ the Aurora sink

# The JDBC upsert the jobs wrote their Aurora tables with before the COPY sink: Flink's JDBC
# table connector (in the benchmarks' own jar, bench/jvm/pom.xml; the product jar no longer
# has it) in upsert mode, buffered as the jobs had it: 1000 rows, 1 s, and every checkpoint.
JDBC_BATCH_ROWS = 1000
JDBC_FLUSH_INTERVAL = "1s"


def jdbc_upsert_table_ddl(
    props, flink_table: str, columns: list[tuple[str, str]], primary_key: list[str], target: str
) -> str:
    """DDL of a Flink table that upserts into the Aurora table ``target`` by its primary key."""
    db = database(props, "Aurora")
    cols = ",\n  ".join(f"`{name}` {sql_type}" for name, sql_type in columns)
    pk = ", ".join(f"`{name}`" for name in primary_key)
    return f"""
CREATE TEMPORARY TABLE `{flink_table}` (
  {cols},
  PRIMARY KEY ({pk}) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'url' = '{db.jdbc_url()}',
  'table-name' = '{target}',
  'username' = '{db.user}',
  'password' = '{db.password}',
  'sink.buffer-flush.max-rows' = '{JDBC_BATCH_ROWS}',
  'sink.buffer-flush.interval' = '{JDBC_FLUSH_INTERVAL}',
  'sink.max-retries' = '5'
)"""


# (the columns a sale writes, typed as in the jobs' tables but for the time, which that sink
# took as the JVM's local timestamp)
ORDER_FCT_COLUMNS = [
    (name, "TIMESTAMP(3)" if name == "transaction_ts" else flink_sql_type(ORDER_FCT.column(name)))
    for name in FACT_TARGET
]
ORDER_FCT_SELECT = (
    "store_id, order_id, product_id,"
    " CAST(TO_TIMESTAMP_LTZ(transaction_ts_ms, 3) AS TIMESTAMP(3)), quantity,"
    " CAST(unit_price_cents / 100.0 AS DECIMAL(10, 2)),"
    " CAST(total_cents / 100.0 AS DECIMAL(12, 2)), delivery_type, channel"
)


def _empty_order_fct(props) -> None:
    from connectors import aurora

    with aurora.connect(props) as conn:
        conn.execute("TRUNCATE order_fct")


@scenario(
    "sink_jdbc",
    "order_fct rows through the JDBC upsert sink the job used before (Flink's JDBC connector)",
    "sink",
    "aurora",
)
def _sink_jdbc(ctx: Context):
    _empty_order_fct(ctx.props)
    ctx.t_env.execute_sql(
        jdbc_upsert_table_ddl(
            ctx.props, "order_fct_sink", ORDER_FCT_COLUMNS, list(ORDER_FCT.primary_key), "order_fct"
        )
    )
    ctx.t_env.create_temporary_view(
        "order_fct_rows", ctx.t_env.from_data_stream(ctx.generator("fact"))
    )
    statements = ctx.t_env.create_statement_set()
    statements.add_insert_sql(
        f"INSERT INTO `order_fct_sink` SELECT {ORDER_FCT_SELECT} FROM `order_fct_rows`"
    )
    statements.attach_as_datastream()
    return {"unit": "rows"}


@scenario(
    "sink_copy",
    "order_fct rows through the COPY upsert sink inventory_windowing ships "
    "with (aurora.copy_upsert_sink)",
    "sink",
    "aurora",
)
def _sink_copy(ctx: Context):
    from connectors import aurora

    _empty_order_fct(ctx.props)
    ctx.generator("fact").sink_to(
        aurora.copy_upsert_sink(
            ctx.props,
            "order_fct",
            aurora.ORDER_FCT_STAGE,
            aurora.ORDER_FCT_TARGET,
            ["order_id", "product_id"],
        )
    ).name("aurora:order_fct (COPY)")
    return {"unit": "rows"}
