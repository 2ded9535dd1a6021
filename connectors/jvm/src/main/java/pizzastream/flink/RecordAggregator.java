package pizzastream.flink;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.ChainingStrategy;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Packs keyed records {@code Row(partition_key, payload)} bound for a Kinesis sink into KPL
 * aggregated records, one per partition key (store) and flush ({@link KinesisAggregation}):
 * a shard takes 1,000 records/s, so a store hotter than that fits one shard only with many
 * events per record (docs/resharding.md).
 *
 * <p>A key's records are sent when {@code lingerMs} have passed since the first record of a
 * flush round, when one more would take its aggregate over {@code maxBytes} (partition key
 * included, as Kinesis counts) or {@code maxRecords}, when everything buffered passes
 * {@code maxBufferedBytes}, before every checkpoint barrier and at the end of input: nothing
 * waits outside Flink's state when a checkpoint is taken, so the operator needs no state and
 * the sink's delivery guarantee is what it was. A key's records keep their order (one buffer
 * per key, sent whole). A flush of a single record sends it plain, as KPL does: a quiet store
 * costs no aggregation overhead, and every consumer reads both.
 */
public final class RecordAggregator extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, BoundedOneInput {
    private static final long serialVersionUID = 1L;

    /** {@code Row(partition_key, payload)} with a binary payload, for the Kinesis sink. */
    public static final TypeInformation<Row> AGGREGATED_RECORD =
            Types.ROW_NAMED(new String[] {"partition_key", "payload"},
                    Types.STRING, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO);

    private final long lingerMs;
    private final int maxBytes;
    private final int maxRecords;
    private final long maxBufferedBytes;

    private transient Map<String, Pending> pending;
    private transient long bufferedBytes;
    private transient boolean timerPending;

    /** One key's records waiting, and the size of their aggregate. */
    private static final class Pending {
        final List<byte[]> records = new ArrayList<>();
        final int fixedSize;
        int size;

        Pending(String key) {
            fixedSize = KinesisAggregation.fixedSize(key.getBytes(StandardCharsets.UTF_8));
            size = fixedSize;
        }
    }

    public RecordAggregator(long lingerMs, int maxBytes, int maxRecords, long maxBufferedBytes) {
        if (lingerMs < 0 || maxBytes < 1 || maxRecords < 1 || maxBufferedBytes < maxBytes) {
            throw new IllegalArgumentException(
                    "lingerMs >= 0, maxBytes >= 1, maxRecords >= 1, maxBufferedBytes >= maxBytes");
        }
        this.lingerMs = lingerMs;
        this.maxBytes = maxBytes;
        this.maxRecords = maxRecords;
        this.maxBufferedBytes = maxBufferedBytes;
        setChainingStrategy(ChainingStrategy.ALWAYS);
    }

    @Override
    public void open() throws Exception {
        super.open();
        pending = new LinkedHashMap<>();
    }

    @Override
    public void processElement(StreamRecord<Row> element) {
        Row row = element.getValue();
        String key = String.valueOf(row.getField(0));
        Object payload = row.getField(1);
        byte[] data = payload instanceof byte[]
                ? (byte[]) payload
                : String.valueOf(payload).getBytes(StandardCharsets.UTF_8);
        Pending buffer = pending.get(key);
        if (buffer == null) {
            buffer = new Pending(key);
            pending.put(key, buffer);
        }
        int member = KinesisAggregation.memberSize(data.length);
        if (!buffer.records.isEmpty()
                && (buffer.records.size() >= maxRecords || buffer.size + member > maxBytes)) {
            emit(key, buffer);
        }
        buffer.records.add(data);
        buffer.size += member;
        bufferedBytes += member;
        if (bufferedBytes > maxBufferedBytes) {
            flush();
        } else if (!timerPending) {
            timerPending = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + lingerMs, firing -> {
                timerPending = false;
                flush();
            });
        }
    }

    private void emit(String key, Pending buffer) {
        byte[] record = buffer.records.size() == 1
                ? buffer.records.get(0)
                : KinesisAggregation.encode(key, buffer.records);
        output.collect(new StreamRecord<>(Row.of(key, record)));
        bufferedBytes -= buffer.size - buffer.fixedSize;
        buffer.records.clear();
        buffer.size = buffer.fixedSize;
    }

    private void flush() {
        for (Map.Entry<String, Pending> entry : pending.entrySet()) {
            if (!entry.getValue().records.isEmpty()) {
                emit(entry.getKey(), entry.getValue());
            }
        }
        // Keys come and go (2,000 stores over the day): keep no buffer for a quiet one.
        pending.clear();
        bufferedBytes = 0;
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void endInput() {
        flush();
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }
}
