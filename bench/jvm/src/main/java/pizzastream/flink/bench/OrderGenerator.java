package pizzastream.flink.bench;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFlatMapFunction;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * In-job source of synthetic orders for benchmarks: a {@code NumberSequenceSource} feeds the
 * sequence numbers, this function turns each into one order (see {@link SyntheticOrders}) in
 * the shape the measured operator reads, and reports its progress to the harness.
 *
 * <p>Formats ({@link #typeOf} gives each one's type):
 * <ul>
 *   <li>{@code raw}: contract JSON bytes, the {@code orders} record (order_enrichment input);
 *   <li>{@code tagged}: {@code Row(partition_key, Row("o", enriched JSON bytes))}, as
 *       {@code KeyedRawRecordSchema} builds it (inventory_windowing input);
 *   <li>{@code raw_tagged}: {@code Row(partition_key, Row("o", contract JSON bytes))}: the
 *       {@code orders} record keyed by store, as one job doing both jobs' work would read it;
 *   <li>{@code sale}: the {@code sales} record as bytes;
 *   <li>{@code sale_text}: the {@code sales} record as text, what hourly_metrics reads;
 *   <li>{@code sale_row}: the sale as typed columns (a SQL baseline without JSON decoding);
 *   <li>{@code fact}: {@code order_fct} rows in cents, one per line (Aurora sink input).
 * </ul>
 */
public final class OrderGenerator extends RichFlatMapFunction<Long, Object> {
    private static final long serialVersionUID = 1L;

    private final SyntheticOrders orders;
    private final String format;
    private final double eventsPerSecond;
    private final long lagMs;
    private final String progressDir;
    private final String progressName;

    private transient SyntheticOrders.Order order;
    private transient StringBuilder sb;
    private transient Progress progress;
    private transient long t0;
    private transient double msPerEvent;
    private transient long local;

    /**
     * @param eventsPerSecond simulated traffic rate over all subtasks: event time advances by
     *     {@code parallelism * 1000 / eventsPerSecond} ms per order of one subtask
     * @param lagMs how far before now the first event time lies
     * @param progressDir where progress files go ({@code null}: none)
     */
    public OrderGenerator(SyntheticOrders orders, String format, double eventsPerSecond, long lagMs,
                          String progressDir, String progressName) {
        typeOf(format);
        this.orders = orders;
        this.format = format;
        this.eventsPerSecond = eventsPerSecond;
        this.lagMs = lagMs;
        this.progressDir = progressDir;
        this.progressName = progressName;
    }

    public static TypeInformation<?> typeOf(String format) {
        switch (format) {
            case "raw":
            case "sale":
                return PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO;
            case "sale_text":
                return Types.STRING;
            case "tagged":
            case "raw_tagged":
                return Types.ROW(Types.STRING,
                        Types.ROW(Types.STRING, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
            case "sale_row":
                return Types.ROW_NAMED(
                        new String[] {"store_id", "order_id", "channel", "fulfillment", "ts_ms",
                            "n", "r"},
                        Types.INT, Types.STRING, Types.STRING, Types.STRING, Types.LONG, Types.INT,
                        Types.LONG);
            case "fact":
                return Types.ROW_NAMED(
                        new String[] {"store_id", "order_id", "product_id", "transaction_ts_ms",
                            "quantity", "unit_price_cents", "total_cents", "delivery_type",
                            "channel"},
                        Types.INT, Types.STRING, Types.INT, Types.LONG, Types.INT, Types.LONG,
                        Types.LONG, Types.STRING, Types.STRING);
            default:
                throw new IllegalArgumentException("unknown format " + format);
        }
    }

    @Override
    public void open(OpenContext openContext) {
        order = new SyntheticOrders.Order();
        sb = new StringBuilder(512);
        int parallelism = getRuntimeContext().getTaskInfo().getNumberOfParallelSubtasks();
        int subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        msPerEvent = parallelism * 1000.0 / eventsPerSecond;
        t0 = System.currentTimeMillis() - lagMs;
        if (progressDir != null) {
            progress = new Progress(progressDir, progressName, subtask);
        }
    }

    @Override
    public void close() {
        if (progress != null) {
            progress.close();
        }
    }

    @Override
    public void flatMap(Long seq, Collector<Object> out) {
        long ts = t0 + (long) (local++ * msPerEvent);
        orders.fill(seq, ts, order);
        sb.setLength(0);
        switch (format) {
            case "raw":
                orders.rawJson(order, sb);
                out.collect(SyntheticOrders.utf8(sb));
                break;
            case "tagged":
                orders.enrichedJson(order, sb);
                out.collect(Row.of(Integer.toString(order.storeId),
                        Row.of("o", SyntheticOrders.utf8(sb))));
                break;
            case "raw_tagged":
                orders.rawJson(order, sb);
                out.collect(Row.of(Integer.toString(order.storeId),
                        Row.of("o", SyntheticOrders.utf8(sb))));
                break;
            case "sale":
                orders.saleJson(order, sb);
                out.collect(SyntheticOrders.utf8(sb));
                break;
            case "sale_text":
                orders.saleJson(order, sb);
                out.collect(sb.toString());
                break;
            case "sale_row":
                orders.orderId(order, sb);
                out.collect(Row.of(order.storeId, sb.toString(),
                        order.online ? "online" : "in_store", order.fulfillment, order.tsMs,
                        order.units(), order.revenueCents()));
                break;
            default: // fact
                orders.orderId(order, sb);
                String orderId = sb.toString();
                String channel = order.online ? "online" : "in_store";
                for (int i = 0; i < order.lines; i++) {
                    out.collect(Row.of(order.storeId, orderId, order.productId[i], order.tsMs,
                            order.quantity[i], order.priceCents[i],
                            order.quantity[i] * order.priceCents[i], order.fulfillment, channel));
                }
        }
        if (progress != null) {
            progress.add("fact".equals(format) ? order.lines : 1);   // fact: rows, else orders
        }
    }
}
