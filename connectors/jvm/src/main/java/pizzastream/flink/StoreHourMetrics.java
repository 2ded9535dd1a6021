package pizzastream.flink;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.InternalTimer;
import org.apache.flink.streaming.api.operators.InternalTimerService;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.Triggerable;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.types.RowKind;

/**
 * hourly_metrics' event-time hourly windows per store, folded in memory: what the SQL group
 * window ({@code GROUP BY store_id, TUMBLE(ts, INTERVAL '1' HOUR)} with allowed lateness and
 * late firing) emits, without its keyed-state read and write and timer registration per sale
 * (on RocksDB, that window was the job's second largest cost after the deduplication: JFR,
 * docs/benchmarks.md). Keyed by store ({@link #STORE}).
 *
 * <p><b>Input.</b> One row per order (the first copy of each order id, deduplicated upstream)
 * with its event time as the record's timestamp: {@code Row(store_id INT, online BOOLEAN,
 * in_store BOOLEAN, delivery BOOLEAN, items BIGINT, revenue_cents BIGINT)}. What counts as
 * online, in-store or delivery is decided upstream (the job's SQL, from the business enums).
 *
 * <p><b>Output.</b> A changelog of {@code Row(store_id, window_start, window_end, orders,
 * items, revenue, online_orders, in_store_orders, delivery_orders, avg_order_value)}, window
 * bounds in minutes since the epoch and money in integer cents (the job's wire columns),
 * {@code avg_order_value} the revenue per order rounded half up to the cent, as the SQL's
 * {@code (2 * SUM + COUNT) / (2 * COUNT)}. As the group window: a store-hour is inserted when
 * the watermark reaches its last millisecond; a sale for it after that, within {@code
 * latenessMillis}, updates it (an update-before/update-after pair, only if the row changed) at
 * most {@code lateRefreshMillis} of processing time later (at once if 0), folding every sale of
 * that interval into one update; a sale later than the lateness is dropped, and the store-hour
 * is forgotten when the watermark passes its end plus the lateness (an update still pending is
 * emitted first). A store-hour whose first sale comes after its end has passed is inserted at
 * once.
 *
 * <p><b>State.</b> Per store, its open hours' sums, whether each was emitted and what was
 * emitted last, as one {@code long[]} in keyed state, written once per checkpoint for each
 * store that changed since the last one ({@link #prepareSnapshotPreBarrier}), read once per store
 * after a start or restore. Timers are set once per store-hour. This needs aligned checkpoints,
 * the only kind the jobs enable.
 *
 * <p><b>The watermark across a restore.</b> Flink does not checkpoint watermarks: a restored
 * operator's is {@code Long.MIN_VALUE} until its inputs send the first one, and in that moment
 * a sale (or a repeat of one) for a store-hour already cleaned up would open it again, count
 * it alone and insert it as if it were the whole hour. So each subtask's watermark is kept in
 * operator state at every checkpoint, and after a restore the lowest of them (every subtask's
 * watermark was at least that; a rescale moves stores between subtasks) is the floor below
 * which the lateness is judged ({@code lateFloor}).
  *
 * <p>The job runs {@link StoreSales}, which extends these windows ({@link #fold}, {@link
 * #width}, {@link #forget}) with the deduplication and the live view; this class alone, over
 * the input above, is the benchmarks' "before" (bench/hourly.py).
 */
public class StoreHourMetrics extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, Triggerable<Integer, VoidNamespace> {
    private static final long serialVersionUID = 1L;
    static final long HOUR_MS = 3_600_000L;
    private static final long MINUTE_MS = 60_000L;

    /** The input's store id, the operator's key. */
    public static final KeySelector<Row, Integer> STORE = new StoreKey();

    private static final class StoreKey implements KeySelector<Row, Integer> {
        private static final long serialVersionUID = 1L;

        @Override
        public Integer getKey(Row row) {
            return (Integer) row.getField(0);
        }
    }

    // long[] layout of one store-hour in state: its start, the sums, flags, what was emitted
    static final int START = 0;
    private static final int ORDERS = 1; // ORDERS..DELIVERY: the sums, in output order
    private static final int SUMS = 6;
    static final int FLAGS = ORDERS + SUMS;
    private static final int EMITTED = FLAGS + 1; // the sums as last emitted
    /** Slots of a store-hour's {@code long[]}: a subclass keeps its own from here on. */
    static final int WIDTH = EMITTED + SUMS;
    private static final long FIRED = 1;
    private static final long LATE_PENDING = 2;
    /** Set on a store-hour read from state (a start from a checkpoint, savepoint or rescale). */
    static final long FROM_STATE = 4;

    private final long latenessMillis;
    private final long lateRefreshMillis;

    private transient ValueStateDescriptor<long[]> hoursDescriptor;
    private transient ValueState<long[]> hoursState;
    private transient InternalTimerService<VoidNamespace> timers;
    /** The open store-hours of every store touched since the start, by store, then hour. */
    private transient Map<Integer, Map<Long, long[]>> byStore;
    private transient Set<Integer> changed;
    /** Every subtask's watermark at the last checkpoint (union: all of them after a restore). */
    private transient ListState<Long> watermarks;
    /** The lowest watermark restored: lateness is judged against at least this. */
    private transient long lateFloor = Long.MIN_VALUE;

    public StoreHourMetrics(long latenessMillis, long lateRefreshMillis) {
        if (latenessMillis < 0 || lateRefreshMillis < 0) {
            throw new IllegalArgumentException("latenessMillis, lateRefreshMillis >= 0");
        }
        this.latenessMillis = latenessMillis;
        this.lateRefreshMillis = lateRefreshMillis;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        watermarks = context.getOperatorStateStore().getUnionListState(
                new ListStateDescriptor<>("store-hours-watermark", Types.LONG));
        lateFloor = Long.MIN_VALUE;
        if (context.isRestored()) {
            long lowest = Long.MAX_VALUE;
            for (Long watermark : watermarks.get()) {
                lowest = Math.min(lowest, watermark);
            }
            lateFloor = lowest == Long.MAX_VALUE ? Long.MIN_VALUE : lowest;
        }
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        watermarks.update(List.of(Math.max(timers.currentWatermark(), lateFloor)));
    }

    @Override
    public void open() throws Exception {
        super.open();
        hoursDescriptor = new ValueStateDescriptor<>(
                "store-hours", PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO);
        hoursState = getPartitionedState(
                VoidNamespace.INSTANCE, VoidNamespaceSerializer.INSTANCE, hoursDescriptor);
        timers = getInternalTimerService("store-hours", VoidNamespaceSerializer.INSTANCE, this);
        byStore = new HashMap<>();
        changed = new HashSet<>();
    }

    /** The current key's open hours: from memory, else (first touch since the start) from state. */
    private Map<Long, long[]> hours() throws Exception {
        Integer store = (Integer) getCurrentKey();
        Map<Long, long[]> hours = byStore.get(store);
        if (hours == null) {
            hours = new HashMap<>();
            long[] saved = hoursState.value();
            int width = width();
            if (saved != null) {
                for (int i = 0; i + width <= saved.length; i += width) {
                    long[] hour = new long[width];
                    System.arraycopy(saved, i, hour, 0, width);
                    hour[FLAGS] |= FROM_STATE;
                    hours.put(hour[START], hour);
                }
            }
            byStore.put(store, hours);
        }
        return hours;
    }

    private static long lastMillisecond(long[] hour) {
        return hour[START] + HOUR_MS - 1;
    }

    private long cleanupTime(long[] hour) {
        long last = lastMillisecond(hour);
        return last + latenessMillis >= last ? last + latenessMillis : Long.MAX_VALUE;
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        long ts = element.getTimestamp();
        long start = ts - Math.floorMod(ts, HOUR_MS);
        long watermark = Math.max(timers.currentWatermark(), lateFloor);
        if (start + HOUR_MS - 1 + latenessMillis <= watermark) {
            return; // later than the lateness: the group window drops it too
        }
        Map<Long, long[]> hours = hours();
        long[] hour = hours.get(start);
        if (hour == null) {
            hour = new long[width()];
            hour[START] = start;
            hours.put(start, hour);
            timers.registerEventTimeTimer(VoidNamespace.INSTANCE, lastMillisecond(hour));
            timers.registerEventTimeTimer(VoidNamespace.INSTANCE, cleanupTime(hour));
        }
        if (!fold(hour, element.getValue(), ts)) {
            return;
        }
        changed.add((Integer) getCurrentKey());
        if ((hour[FLAGS] & FIRED) == 0) {
            if (lastMillisecond(hour) <= watermark) {
                emit(hour); // its first sale came after its end had passed
            }
        } else if (lateRefreshMillis == 0) {
            emit(hour);
        } else if ((hour[FLAGS] & LATE_PENDING) == 0) {
            hour[FLAGS] |= LATE_PENDING;
            timers.registerProcessingTimeTimer(
                    VoidNamespace.INSTANCE,
                    timers.currentProcessingTime() + lateRefreshMillis);
        }
    }

    /**
     * Adds one sale ({@code ts} its event time) to its store-hour's sums; false if it does
     * not count (the subclass's repeats), and then nothing may change. Here the input is
     * {@code Row(store_id, online, in_store, delivery, items, revenue_cents)}, one per order.
     */
    protected boolean fold(long[] hour, Row sale, long ts) throws Exception {
        add(hour, orZero(sale.getField(4)), orZero(sale.getField(5)),
                Boolean.TRUE.equals(sale.getField(1)), Boolean.TRUE.equals(sale.getField(2)),
                Boolean.TRUE.equals(sale.getField(3)));
        return true;
    }

    /** One order in a store-hour's sums. */
    static void add(long[] hour, long items, long cents, boolean online, boolean inStore,
                    boolean delivery) {
        hour[ORDERS] += 1;
        hour[ORDERS + 1] += items;
        hour[ORDERS + 2] += cents;
        hour[ORDERS + 3] += online ? 1 : 0;
        hour[ORDERS + 4] += inStore ? 1 : 0;
        hour[ORDERS + 5] += delivery ? 1 : 0;
    }

    /** Slots per store-hour: {@link #WIDTH}, more if a subclass keeps more per hour. */
    protected int width() {
        return WIDTH;
    }

    /** Called with the store as the current key as a store-hour is dropped (its cleanup). */
    protected void forget(long[] hour) throws Exception {}

    static long orZero(Object value) {
        return value == null ? 0 : ((Number) value).longValue();
    }

    /** The row as it is now: inserted the first time, else an update pair if it changed. */
    private void emit(long[] hour) {
        boolean fired = (hour[FLAGS] & FIRED) != 0;
        hour[FLAGS] = (hour[FLAGS] | FIRED) & ~LATE_PENDING;
        if (fired) {
            boolean same = true;
            for (int i = 0; i < SUMS; i++) {
                same &= hour[ORDERS + i] == hour[EMITTED + i];
            }
            if (same) {
                return;
            }
            output.collect(new StreamRecord<>(row(hour, EMITTED, RowKind.UPDATE_BEFORE)));
        }
        System.arraycopy(hour, ORDERS, hour, EMITTED, SUMS);
        output.collect(new StreamRecord<>(
                row(hour, EMITTED, fired ? RowKind.UPDATE_AFTER : RowKind.INSERT)));
    }

    private Row row(long[] hour, int at, RowKind kind) {
        long orders = hour[at];
        long revenue = hour[at + 2];
        Row row = Row.withPositions(kind, 10);
        row.setField(0, getCurrentKey());
        row.setField(1, (int) (hour[START] / MINUTE_MS));
        row.setField(2, (int) ((hour[START] + HOUR_MS) / MINUTE_MS));
        row.setField(3, orders);
        row.setField(4, hour[at + 1]);
        row.setField(5, revenue);
        row.setField(6, hour[at + 3]);
        row.setField(7, hour[at + 4]);
        row.setField(8, hour[at + 5]);
        row.setField(9, (2 * revenue + orders) / (2 * orders));
        return row;
    }

    @Override
    public void onEventTime(InternalTimer<Integer, VoidNamespace> timer) throws Exception {
        long time = timer.getTimestamp();
        Map<Long, long[]> hours = hours();
        boolean removed = false;
        for (Iterator<long[]> it = hours.values().iterator(); it.hasNext(); ) {
            long[] hour = it.next();
            if ((hour[FLAGS] & FIRED) == 0 && lastMillisecond(hour) <= time) {
                emit(hour);
                changed.add(timer.getKey());
            }
            if (cleanupTime(hour) <= time) {
                if ((hour[FLAGS] & LATE_PENDING) != 0) {
                    emit(hour);
                }
                forget(hour);
                it.remove();
                removed = true;
            }
        }
        if (removed) {
            changed.add(timer.getKey());
        }
    }

    @Override
    public void onProcessingTime(InternalTimer<Integer, VoidNamespace> timer) throws Exception {
        for (long[] hour : hours().values()) {
            if ((hour[FLAGS] & LATE_PENDING) != 0) {
                emit(hour);
                changed.add(timer.getKey());
            }
        }
    }

    /** Each store changed since the last checkpoint written to state, once. */
    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        List<Integer> stores = new ArrayList<>(changed);
        for (Integer store : stores) {
            setCurrentKey(store);
            Map<Long, long[]> hours = byStore.get(store);
            if (hours == null || hours.isEmpty()) {
                hoursState.clear();
                byStore.remove(store);
                continue;
            }
            int width = width();
            long[] saved = new long[hours.size() * width];
            int i = 0;
            for (long[] hour : hours.values()) {
                System.arraycopy(hour, 0, saved, i, width);
                i += width;
            }
            hoursState.update(saved);
        }
        changed.clear();
        super.prepareSnapshotPreBarrier(checkpointId);
    }
}
