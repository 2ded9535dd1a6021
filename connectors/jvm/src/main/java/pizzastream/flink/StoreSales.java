package pizzastream.flink;

import java.io.Serializable;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.functions.FilterFunction;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.base.BooleanSerializer;
import org.apache.flink.api.common.typeutils.base.LongSerializer;
import org.apache.flink.api.common.typeutils.base.StringSerializer;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.runtime.state.internal.InternalMapState;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

/**
 * hourly_metrics' whole per-sale path in one operator keyed by store ({@link #STORE}): the
 * first copy of each order id, the store-hour metrics of {@link StoreHourMetrics} (whose
 * windows, changelog and state this extends) and the live per-minute view. One shuffle of
 * every sale, by store; before, a SQL {@code ROW_NUMBER} deduplication shuffled every sale by
 * order id and read and wrote RocksDB (through the TTL wrapper) per sale, and the live view's
 * SQL group-by shuffled them once more (docs/benchmarks.md).
 *
 * <p><b>Input.</b> Decoded sale records, {@code Row(o order_id, s store_id, c channel, f
 * fulfillment, t, n items, r revenue_cents)} (the job's {@code SALE_RECORD}), event time as
 * the record's timestamp; {@link #SALES} keeps the records with an order id and a store (POS
 * progress markers have no order id). What counts as online, in-store or delivery is the
 * channel and fulfillment names passed in (the job's business enums).
 *
 * <p><b>Deduplication, exact, per store-hour.</b> The copies of an order are the same record:
 * same store, same event time, so the same store-hour; a copy that comes after its store-hour
 * was cleaned up is later than the lateness and dropped anyway. So the order ids of a
 * store-hour live in keyed RocksDB state, a {@code MapState<order id, Boolean>} whose
 * namespace is the hour's start: no TTL, the namespace cleared when the store-hour is cleaned
 * up. In memory, per store-hour, an open-addressing table of 64-bit fingerprints of the ids
 * counted (8 to 16 bytes per id; the ids themselves, ~100M live at a billion sales a day,
 * stay off the heap): a fingerprint not in the table is a new order (its id is put, never
 * read first); a fingerprint in it (a repeat, or rarely another id with the same
 * fingerprint) is confirmed with {@code contains}. A store-hour that was read from state (a
 * start from a checkpoint or savepoint, a rescale) has no table (the tables are not
 * checkpointed): each of its sales is confirmed with {@code contains} until it is cleaned up.
 *
 * <p><b>Live view.</b> Per store-hour and minute, orders and revenue cents, kept in the
 * store-hour's {@code long[]} (so checkpointed with it). Every {@code liveRefreshMillis} of
 * processing time, and before each checkpoint barrier, each minute that changed is emitted on
 * {@link #LIVE} as {@code Row("HSET", key, minute "mm", "<orders>/<revenue>")}: values, not
 * increments (a replay writes the same numbers), the key from the template passed in ({@code
 * <store>} and {@code <hour>}, the UTC hour as {@code yyyyMMddHH}: the job passes {@code
 * connectors.redis_store.live_key}'s), the revenue as {@code pizzastream.metrics
 * .money_text_sql} prints non-negative cents ({@link #moneyText}). A sale later than the
 * lateness changes neither the metrics nor the live view.
 */
public final class StoreSales extends StoreHourMetrics {
    private static final long serialVersionUID = 1L;
    private static final long MINUTE_MS = 60_000L;
    private static final int MINUTES = 60;
    // past StoreHourMetrics' slots: the minutes changed since last emitted (a bit each), then
    // orders and revenue cents of each minute
    private static final int LIVE_CHANGED = WIDTH;
    private static final int LIVE = LIVE_CHANGED + 1;
    private static final int SALES_WIDTH = LIVE + 2 * MINUTES;
    private static final String STORE_MARK = "<store>";
    private static final String HOUR_MARK = "<hour>";
    private static final DateTimeFormatter HOUR_TEXT =
            DateTimeFormatter.ofPattern("yyyyMMddHH").withZone(ZoneOffset.UTC);

    /** A Redis command row: {@code connectors.redis_store.REDIS_COMMAND}. */
    public static final TypeInformation<Row> REDIS_COMMAND = Types.ROW_NAMED(
            new String[] {"command", "key", "field", "value"},
            Types.STRING, Types.STRING, Types.STRING, Types.STRING);
    /** The live view's {@code HSET} rows. */
    public static final OutputTag<Row> LIVE_ROWS = new OutputTag<>("live", REDIS_COMMAND);

    /** The input's store id, the operator's key. */
    public static final KeySelector<Row, Integer> STORE = new StoreKey();
    /** Sale records with an order id and a store: what this operator takes. */
    public static final FilterFunction<Row> SALES = new Sales();
    /** The other records, without an order id (POS progress markers): not this operator's. */
    public static final FilterFunction<Row> OTHER_RECORDS = new OtherRecords();

    private static final class StoreKey implements KeySelector<Row, Integer> {
        private static final long serialVersionUID = 1L;

        @Override
        public Integer getKey(Row row) {
            return (Integer) row.getField(1);
        }
    }

    private static final class Sales implements FilterFunction<Row> {
        private static final long serialVersionUID = 1L;

        @Override
        public boolean filter(Row row) {
            return row.getField(0) != null && row.getField(1) != null;
        }
    }

    private static final class OtherRecords implements FilterFunction<Row> {
        private static final long serialVersionUID = 1L;

        @Override
        public boolean filter(Row row) {
            return row.getField(0) == null;
        }
    }

    /** The 64-bit fingerprint of an order id. */
    public interface Fingerprint extends Serializable {
        long of(String orderId);
    }

    /** FNV-1a over the id's chars, then SplitMix64's finalizer to spread the bits. */
    public static final Fingerprint FNV_MIX = id -> {
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i < id.length(); i++) {
            h = (h ^ id.charAt(i)) * 0x100000001b3L;
        }
        h = (h ^ (h >>> 30)) * 0xbf58476d1ce4e5b9L;
        h = (h ^ (h >>> 27)) * 0x94d049bb133111ebL;
        return h ^ (h >>> 31);
    };

    private final String online;
    private final String inStore;
    private final String delivery;
    private final String keyPrefix;
    private final String keyMiddle;
    private final String keySuffix;
    private final boolean storeFirst;
    private final long liveRefreshMillis;
    private final Fingerprint fingerprint;

    private transient InternalMapState<Integer, Long, String, Boolean> orderIds;
    /** The fingerprint tables of the store-hours counted from their start here, by {@link #id}. */
    private transient Map<Long, Fingerprints> tables;
    /** Store-hours with changed minutes not yet emitted, and their stores. */
    private transient List<long[]> liveHours;
    private transient List<Integer> liveStores;

    public StoreSales(long latenessMillis, long lateRefreshMillis, long liveRefreshMillis,
                      String online, String inStore, String delivery, String liveKeyTemplate) {
        this(latenessMillis, lateRefreshMillis, liveRefreshMillis, online, inStore, delivery,
                liveKeyTemplate, FNV_MIX);
    }

    public StoreSales(long latenessMillis, long lateRefreshMillis, long liveRefreshMillis,
                      String online, String inStore, String delivery, String liveKeyTemplate,
                      Fingerprint fingerprint) {
        super(latenessMillis, lateRefreshMillis);
        int store = liveKeyTemplate.indexOf(STORE_MARK);
        int hour = liveKeyTemplate.indexOf(HOUR_MARK);
        if (liveRefreshMillis <= 0 || store < 0 || hour < 0) {
            throw new IllegalArgumentException(
                    "liveRefreshMillis > 0 and a key template with <store> and <hour>");
        }
        this.liveRefreshMillis = liveRefreshMillis;
        this.online = online;
        this.inStore = inStore;
        this.delivery = delivery;
        this.storeFirst = store < hour;
        int first = Math.min(store, hour);
        int second = Math.max(store, hour);
        int firstEnd = first + (storeFirst ? STORE_MARK : HOUR_MARK).length();
        this.keyPrefix = liveKeyTemplate.substring(0, first);
        this.keyMiddle = liveKeyTemplate.substring(firstEnd, second);
        this.keySuffix = liveKeyTemplate.substring(
                second + (storeFirst ? HOUR_MARK : STORE_MARK).length());
        this.fingerprint = fingerprint;
    }

    @Override
    @SuppressWarnings("unchecked")
    public void open() throws Exception {
        super.open();
        orderIds = (InternalMapState<Integer, Long, String, Boolean>) getOrCreateKeyedState(
                LongSerializer.INSTANCE,
                new MapStateDescriptor<>(
                        "order-ids", StringSerializer.INSTANCE, BooleanSerializer.INSTANCE));
        tables = new HashMap<>();
        liveHours = new ArrayList<>();
        liveStores = new ArrayList<>();
        scheduleLive();
    }

    private void scheduleLive() {
        long now = getProcessingTimeService().getCurrentProcessingTime();
        getProcessingTimeService().registerTimer(
                now - Math.floorMod(now, liveRefreshMillis) + liveRefreshMillis,
                time -> {
                    emitLive();
                    scheduleLive();
                });
    }

    @Override
    protected int width() {
        return SALES_WIDTH;
    }

    /** A store-hour's table: the store in the high half, the hour's number in the low. */
    private static long id(int store, long start) {
        return ((long) store << 32) | (start / HOUR_MS & 0xffffffffL);
    }

    @Override
    protected boolean fold(long[] hour, Row sale, long ts) throws Exception {
        String orderId = (String) sale.getField(0);
        int store = (Integer) getCurrentKey();
        orderIds.setCurrentNamespace(hour[START]);
        if (!firstCopy(store, hour, orderId)) {
            return false;
        }
        add(hour, orZero(sale.getField(5)), orZero(sale.getField(6)),
                online.equals(sale.getField(2)), inStore.equals(sale.getField(2)),
                delivery.equals(sale.getField(3)));
        int minute = (int) (Math.floorMod(ts, HOUR_MS) / MINUTE_MS);
        hour[LIVE + 2 * minute] += 1;
        hour[LIVE + 2 * minute + 1] += orZero(sale.getField(6));
        if (hour[LIVE_CHANGED] == 0) {
            liveHours.add(hour);
            liveStores.add(store);
        }
        hour[LIVE_CHANGED] |= 1L << minute;
        return true;
    }

    /** Whether {@code orderId} is new in its store-hour (the namespace set); if so, remembered. */
    private boolean firstCopy(int store, long[] hour, String orderId) throws Exception {
        long key = id(store, hour[START]);
        Fingerprints table = tables.get(key);
        if (table == null) {
            if ((hour[FLAGS] & FROM_STATE) == 0) {
                table = new Fingerprints();
                tables.put(key, table);
            } else if (orderIds.contains(orderId)) {
                return false; // no table for an hour read from state: ask RocksDB
            }
        }
        if (table != null && !table.add(fingerprint.of(orderId)) && orderIds.contains(orderId)) {
            return false;
        }
        orderIds.put(orderId, Boolean.TRUE);
        return true;
    }

    @Override
    protected void forget(long[] hour) throws Exception {
        if (hour[LIVE_CHANGED] != 0) {
            emitLive(hour, (Integer) getCurrentKey());
        }
        tables.remove(id((Integer) getCurrentKey(), hour[START]));
        orderIds.setCurrentNamespace(hour[START]);
        orderIds.clear();
    }

    private void emitLive() {
        for (int i = 0; i < liveHours.size(); i++) {
            emitLive(liveHours.get(i), liveStores.get(i));
        }
        liveHours.clear();
        liveStores.clear();
    }

    /** The changed minutes of one store-hour, as HSET rows. */
    private void emitLive(long[] hour, int store) {
        long minutes = hour[LIVE_CHANGED];
        if (minutes == 0) {
            return; // already emitted (it was cleaned up since)
        }
        hour[LIVE_CHANGED] = 0;
        String hourText = HOUR_TEXT.format(Instant.ofEpochMilli(hour[START]));
        String storeText = Integer.toString(store);
        String key = keyPrefix + (storeFirst ? storeText : hourText) + keyMiddle
                + (storeFirst ? hourText : storeText) + keySuffix;
        while (minutes != 0) {
            int minute = Long.numberOfTrailingZeros(minutes);
            minutes &= minutes - 1;
            String field = minute < 10 ? "0" + minute : Integer.toString(minute);
            String value = hour[LIVE + 2 * minute] + "/" + moneyText(hour[LIVE + 2 * minute + 1]);
            output.collect(LIVE_ROWS, new StreamRecord<>(Row.of("HSET", key, field, value)));
        }
    }

    /** Non-negative cents as the amount's text ({@code 1250} -> {@code 12.50}), as {@code
     * pizzastream.metrics.money_text_sql} prints it in SQL (the live view's earlier home);
     * tests/jobs/test_hourly_metrics_e2e.py reads the values back against {@code
     * pizzastream.catalog.from_cents}. */
    static String moneyText(long cents) {
        long rest = cents % 100;
        return (cents / 100) + (rest < 10 ? ".0" : ".") + rest;
    }

    /** The changed minutes out before the barrier (none is left pending across a restore),
     * then the store-hours to state. */
    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        emitLive();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    /**
     * A set of non-zero 64-bit fingerprints: open addressing, linear probing, at most half
     * full (8 to 16 bytes per fingerprint).
     */
    static final class Fingerprints {
        private long[] slots = new long[64];
        private int size;

        /** Adds {@code fingerprint}; false if it was there. */
        boolean add(long fingerprint) {
            long f = fingerprint == 0 ? 1 : fingerprint;
            if (2 * (size + 1) > slots.length) {
                grow();
            }
            int mask = slots.length - 1;
            int i = (int) (f ^ (f >>> 32)) & mask;
            while (slots[i] != 0) {
                if (slots[i] == f) {
                    return false;
                }
                i = (i + 1) & mask;
            }
            slots[i] = f;
            size++;
            return true;
        }

        private void grow() {
            long[] old = slots;
            slots = new long[old.length * 2];
            int mask = slots.length - 1;
            for (long f : old) {
                if (f != 0) {
                    int i = (int) (f ^ (f >>> 32)) & mask;
                    while (slots[i] != 0) {
                        i = (i + 1) & mask;
                    }
                    slots[i] = f;
                }
            }
        }
    }
}
