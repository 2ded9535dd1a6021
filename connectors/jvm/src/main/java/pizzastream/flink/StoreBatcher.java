package pizzastream.flink;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
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
 * <p><b>Repeats.</b> The first record of each id (the JSON field named for its kind: an order's
 * id, a restock's event id; a record without one is identified by a hash of its bytes) passes;
 * later ones go to {@link #REPEATS}. Ids are remembered in keyed state for {@code ttlMillis}.
 *
 * <p><b>Batches.</b> {@code Row(shard, batch)}, where {@code batch} is one flags byte then, per
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

    public static final OutputTag<Row> REPEATS =
            new OutputTag<>("repeats", KeyedRawRecordSchema.TYPE);
    /** Flags byte: write what changed to state, a checkpoint follows. */
    public static final byte PERSIST = 1;

    private static final JsonFactory JSON = new JsonFactory();

    private final int maxRecords;
    private final long maxDelayMs;
    private final long ttlMillis;
    private final HashMap<String, String> idFieldByKind;

    private transient MapState<String, Boolean> seen;
    private transient Map<String, Pending> pending;
    private transient Set<String> sincePersist;
    private transient boolean timerPending;

    private static final class Pending {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream(4096);
        final DataOutputStream out = new DataOutputStream(bytes);
        int records;

        Pending() {
            bytes.write(0);
        }
    }

    public StoreBatcher(Map<String, String> idFieldByKind, long ttlMillis, int maxRecords,
                        long maxDelayMs) {
        if (maxRecords < 1 || maxDelayMs < 0 || ttlMillis < 1) {
            throw new IllegalArgumentException("maxRecords, ttlMillis >= 1, maxDelayMs >= 0");
        }
        this.idFieldByKind = new HashMap<>(idFieldByKind);
        this.ttlMillis = ttlMillis;
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        setChainingStrategy(ChainingStrategy.ALWAYS);
    }

    @Override
    public void open() throws Exception {
        super.open();
        MapStateDescriptor<String, Boolean> descriptor =
                new MapStateDescriptor<>("seen-ids", Types.STRING, Types.BOOLEAN);
        descriptor.enableTimeToLive(
                StateTtlConfig.newBuilder(Duration.ofMillis(ttlMillis))
                        .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                        .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                        .build());
        seen = getRuntimeContext().getMapState(descriptor);
        pending = new LinkedHashMap<>();
        sincePersist = new LinkedHashSet<>();
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row record = element.getValue();
        Row tagged = (Row) record.getField(1);
        String kind = (String) tagged.getField(0);
        byte[] data = (byte[]) tagged.getField(1);
        String id = eventId(kind, data);
        if (seen.contains(id)) {
            output.collect(REPEATS, element);
            return;
        }
        seen.put(id, Boolean.TRUE);
        String shard = (String) ((Row) getCurrentKey()).getField(0);
        Pending batch = pending.computeIfAbsent(shard, s -> new Pending());
        append(batch, kind, String.valueOf(record.getField(0)), data);
        sincePersist.add(shard);
        if (batch.records >= maxRecords) {
            pending.remove(shard);
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

    private void emit(String shard, Pending batch, boolean persist) {
        byte[] bytes = batch.bytes.toByteArray();
        bytes[0] = persist ? PERSIST : 0;
        output.collect(new StreamRecord<>(Row.of(shard, bytes)));
    }

    private void flush(boolean persist) {
        for (Map.Entry<String, Pending> entry : pending.entrySet()) {
            emit(entry.getKey(), entry.getValue(), persist);
        }
        if (persist) {
            for (String shard : sincePersist) {
                if (!pending.containsKey(shard)) {
                    emit(shard, new Pending(), true);
                }
            }
            sincePersist.clear();
        }
        pending.clear();
    }

    /** The event's id: {@code kind:id} from its JSON id field, else {@code kind#hash}. */
    String eventId(String kind, byte[] data) throws NoSuchAlgorithmException {
        String field = idFieldByKind.get(kind);
        if (field != null) {
            String id = topLevelString(data, field);
            if (id != null) {
                return kind + ":" + id;
            }
        }
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(data);
        return kind + "#" + Base64.getEncoder().encodeToString(digest);
    }

    /** The string value of a top-level field, reading only as far as that field; null if the
     * record is no JSON object, lacks the field, or it is not a string. */
    static String topLevelString(byte[] data, String field) {
        try (JsonParser parser = JSON.createParser(data)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            while (parser.nextToken() == JsonToken.FIELD_NAME) {
                String name = parser.currentName();
                JsonToken value = parser.nextToken();
                if (field.equals(name)) {
                    return value == JsonToken.VALUE_STRING ? parser.getText() : null;
                }
                parser.skipChildren();
            }
            return null;
        } catch (IOException | RuntimeException notJson) {
            return null;
        }
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush(true);
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void endInput() {
        flush(true);
    }
}
