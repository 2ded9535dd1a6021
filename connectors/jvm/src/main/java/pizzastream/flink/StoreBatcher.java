package pizzastream.flink;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.base.StringSerializer;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.ChainingStrategy;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

/**
 * In front of inventory_windowing's Python rules, keyed by store shard ({@link StoreShardKey}):
 * drops repeated events and groups the rest into one batch per shard, so that one crossing into
 * Python carries many events and the shard's state is touched once per batch.
 *
 * <p><b>Repeats.</b> The first record of each id ({@link DedupKey}: the JSON field named for its
 * kind, an order's id or a restock's event id, else a hash of the record) passes; later ones go
 * to {@link #REPEATS} as {@code Row(partition_key, kind, data, repeat)}, {@code repeat} counting
 * the id's repeats from 1: each repeat is a record of its own for the dead-letter table, and a
 * replay after a restore numbers them again the same way, since the count is restored with the
 * ids. Each id is remembered for {@code ttlMillis} from its last sighting in its own keyed state
 * entry, under the shard's key with the id as namespace: it moves with its shard on a rescale,
 * needs no shuffle of its own, and is written alone (one map of all a shard's ids would be copied
 * whole by the heap state backend's snapshots).
 *
 * <p><b>Batches.</b> {@code Row(shard, batch)}, where {@code batch} is one flags byte, this
 * operator instance's epoch (8 bytes, new with every start or restore), then, per
 * record in arrival order, {@code kind (1 byte), key length (2), key (UTF-8), data length (4),
 * data}, big-endian ({@code pizzastream.batches.store_records} reads it). A shard's batch closes
 * at {@code maxRecords}, within {@code maxDelayMs}, before every checkpoint barrier and at the end
 * of input, so no record waits outside state when a snapshot is taken. The last batch of each
 * shard before a barrier carries the {@link #PERSIST} flag (an empty batch if the shard has
 * nothing pending but saw records since the last one): it tells the rules to write the stores
 * they changed to keyed state now, which they may otherwise keep in memory. This needs aligned
 * checkpoints, the only kind the jobs enable.
 */
public final class StoreBatcher extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, BoundedOneInput {
    private static final long serialVersionUID = 1L;

    /** {@code Row(partition_key, kind, data, repeat)} of {@link #REPEATS}. */
    public static final TypeInformation<Row> REPEAT_TYPE =
            Types.ROW_NAMED(
                    new String[] {"partition_key", "kind", "data", "repeat"},
                    Types.STRING,
                    Types.STRING,
                    PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO,
                    Types.INT);

    public static final OutputTag<Row> REPEATS = new OutputTag<>("repeats", REPEAT_TYPE);

    /** Flags byte: write what changed to state, a checkpoint follows. */
    public static final byte PERSIST = 1;

    private final DedupKey eventIds;
    private final long ttlMillis;
    private final int maxRecords;
    private final long maxDelayMs;

    private transient ValueStateDescriptor<Integer> seen;
    private transient Map<String, Pending> pending;     // by shard, kept and reused
    private transient Set<String> sincePersist;
    private transient boolean timerPending;
    private transient long epoch;

    /**
     * A shard's batch being built. Kept for the shard and reset after each emit: a fresh
     * buffer per batch grew by doubling from a few KB each time, and those copies were ~7% of
     * the JVM's time in the chained benchmark (JFR).
     */
    private static final class Pending {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream(1 << 15);
        final DataOutputStream out = new DataOutputStream(bytes);
        final long epoch;
        int records;

        Pending(long epoch) throws IOException {
            this.epoch = epoch;
            reset();
        }

        void reset() throws IOException {
            bytes.reset();
            out.writeByte(0);
            out.writeLong(epoch);
            records = 0;
        }
    }

    public StoreBatcher(Map<String, String> idFieldByKind, long ttlMillis, int maxRecords,
                        long maxDelayMs) {
        if (maxRecords < 1 || maxDelayMs < 0 || ttlMillis < 1) {
            throw new IllegalArgumentException("maxRecords, ttlMillis >= 1, maxDelayMs >= 0");
        }
        this.eventIds = new DedupKey(idFieldByKind);
        this.ttlMillis = ttlMillis;
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        setChainingStrategy(ChainingStrategy.ALWAYS);
    }

    @Override
    public void open() throws Exception {
        super.open();
        seen = new ValueStateDescriptor<>("times-seen", Types.INT);
        seen.enableTimeToLive(
                StateTtlConfig.newBuilder(Duration.ofMillis(ttlMillis))
                        .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                        .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                        // Heap backend: visit one entry per state access, not the default five.
                        // A record reads and writes its id (two accesses) and adds at most one
                        // entry, so expired ids are still dropped faster than new ones arrive;
                        // the default spent ~16% of the JVM's time here (JFR, chained bench).
                        .cleanupIncrementally(1, false)
                        // RocksDB (Managed Flink): expired ids go in compaction, as by default.
                        .cleanupInRocksdbCompactFilter(1000)
                        .build());
        // New with every (re)start of this operator: tells the Python side that what it keeps
        // in memory from before may be ahead of the state just restored (batches.batch_epoch).
        epoch = java.util.concurrent.ThreadLocalRandom.current().nextLong();
        pending = new LinkedHashMap<>();
        sincePersist = new LinkedHashSet<>();
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row record = element.getValue();
        Row tagged = (Row) record.getField(1);
        String kind = (String) tagged.getField(0);
        byte[] data = (byte[]) tagged.getField(1);
        ValueState<Integer> sightings =
                getPartitionedState(eventIds.getKey(record), StringSerializer.INSTANCE, seen);
        Integer before = sightings.value();
        if (before != null) {
            sightings.update(before + 1);
            Row repeat = Row.of(record.getField(0), kind, data, before);
            output.collect(REPEATS, element.hasTimestamp()
                    ? new StreamRecord<>(repeat, element.getTimestamp())
                    : new StreamRecord<>(repeat));
            return;
        }
        sightings.update(1);
        String shard = (String) ((Row) getCurrentKey()).getField(0);
        Pending batch = pending.get(shard);
        if (batch == null) {
            batch = new Pending(epoch);
            pending.put(shard, batch);
        }
        append(batch, kind, String.valueOf(record.getField(0)), data);
        sincePersist.add(shard);
        if (batch.records >= maxRecords) {
            emit(shard, batch, false);
        } else if (!timerPending) {
            timerPending = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + maxDelayMs, firing -> {
                timerPending = false;
                flush(false);
            });
        }
    }

    private static void append(Pending batch, String kind, String key, byte[] data)
            throws IOException {
        byte[] keyBytes = key.getBytes(StandardCharsets.UTF_8);
        batch.out.writeByte(kind.isEmpty() ? '?' : kind.charAt(0));
        batch.out.writeShort(Math.min(keyBytes.length, 0xFFFF));
        batch.out.write(keyBytes, 0, Math.min(keyBytes.length, 0xFFFF));
        batch.out.writeInt(data.length);
        batch.out.write(data);
        batch.records++;
    }

    /** Emits the shard's batch (empty but for its header, for a persist of its own) and
     * resets it for the shard's next records. */
    private void emit(String shard, Pending batch, boolean persist) throws IOException {
        byte[] bytes = batch.bytes.toByteArray();
        bytes[0] = persist ? PERSIST : 0;
        batch.reset();
        output.collect(new StreamRecord<>(Row.of(shard, bytes)));
    }

    private void flush(boolean persist) throws IOException {
        if (persist) {
            // every shard holding records saw them since the last persist
            for (String shard : sincePersist) {
                emit(shard, pending.get(shard), true);
            }
            sincePersist.clear();
            return;
        }
        for (Map.Entry<String, Pending> entry : pending.entrySet()) {
            if (entry.getValue().records > 0) {
                emit(entry.getKey(), entry.getValue(), false);
            }
        }
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush(true);
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void endInput() throws IOException {
        flush(true);
    }
}
