package pizzastream.flink.bench;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.ChainingStrategy;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Prototype of JVM-side micro-batching in front of a Python operator: one element crosses
 * into Python per batch instead of per event.
 *
 * <p>{@code bytes} mode: {@code byte[]} records in, one {@code byte[]} of newline-separated
 * records out per batch (JSON records hold no raw newline). {@code tagged} mode:
 * {@code Row(partition_key, Row(kind, data))} in, and per batch one
 * {@code Row(partition_key, Row("b", lines))} per partition key (store) present, each line
 * the kind followed by the data, ready to be keyed by store for a keyed Python function.
 *
 * <p>A batch closes at {@code maxRecords} records, {@code maxDelayMs} after its first
 * record, before every checkpoint barrier and at the end of input, so it needs no state
 * and adds at most {@code maxDelayMs} of latency. Batch counts go to the progress files
 * under the name {@code batches} (records per batch = events / batches).
 */
public final class MicroBatcher extends AbstractStreamOperator<Object>
        implements OneInputStreamOperator<Object, Object> {
    private static final long serialVersionUID = 1L;

    private final boolean tagged;
    private final int maxRecords;
    private final long maxDelayMs;
    private final String progressDir;

    private transient Map<String, ByteArrayOutputStream> byKey;
    private transient int records;
    private transient boolean timerPending;
    private transient Progress batches;

    public MicroBatcher(String mode, int maxRecords, long maxDelayMs, String progressDir) {
        if (!"bytes".equals(mode) && !"tagged".equals(mode)) {
            throw new IllegalArgumentException("mode is bytes or tagged");
        }
        this.tagged = "tagged".equals(mode);
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        this.progressDir = progressDir;
        setChainingStrategy(ChainingStrategy.ALWAYS);
    }

    @Override
    public void open() throws Exception {
        super.open();
        byKey = new LinkedHashMap<>();
        if (progressDir != null) {
            batches = new Progress(progressDir, "batches",
                    getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
        }
    }

    @Override
    public void processElement(StreamRecord<Object> element) throws Exception {
        String key;
        byte[] data;
        String kind = null;
        if (tagged) {
            Row row = (Row) element.getValue();
            key = String.valueOf(row.getField(0));
            Row taggedValue = (Row) row.getField(1);
            kind = String.valueOf(taggedValue.getField(0));
            data = (byte[]) taggedValue.getField(1);
        } else {
            key = "";
            data = (byte[]) element.getValue();
        }
        ByteArrayOutputStream buffer = byKey.computeIfAbsent(key, k -> new ByteArrayOutputStream(4096));
        if (buffer.size() > 0) {
            buffer.write('\n');
        }
        if (kind != null) {
            buffer.write(kind.getBytes(StandardCharsets.UTF_8));
        }
        buffer.write(data);
        records++;
        if (records >= maxRecords) {
            emit();
        } else if (!timerPending) {
            timerPending = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + maxDelayMs, t -> {
                timerPending = false;
                emit();
            });
        }
    }

    private void emit() {
        for (Map.Entry<String, ByteArrayOutputStream> entry : byKey.entrySet()) {
            byte[] blob = entry.getValue().toByteArray();
            Object out = tagged ? Row.of(entry.getKey(), Row.of("b", blob)) : blob;
            output.collect(new StreamRecord<>(out));
            if (batches != null) {
                batches.add(1);
            }
        }
        byKey.clear();
        records = 0;
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        emit();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void finish() throws Exception {
        emit();
        super.finish();
    }

    @Override
    public void close() throws Exception {
        if (batches != null) {
            batches.close();
        }
        super.close();
    }
}
