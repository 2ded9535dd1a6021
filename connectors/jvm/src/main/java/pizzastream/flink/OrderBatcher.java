package pizzastream.flink;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.ChainingStrategy;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * Groups raw records into batches so that a stateless Python function is crossed into once
 * per batch, not once per record: the crossing, not the rules, is what costs in PyFlink.
 *
 * <p>A batch is the records' bytes, each preceded by its length as a 4-byte big-endian
 * integer ({@code pizzastream.batches.raw_records} reads it). A batch closes at {@code
 * maxRecords} records, {@code maxDelayMs} after the first record of a flush round, before every
 * checkpoint barrier and at the end of input: nothing waits outside Flink's state when a
 * checkpoint is taken, so the operator needs no state of its own.
 */
public final class OrderBatcher extends AbstractStreamOperator<byte[]>
        implements OneInputStreamOperator<byte[], byte[]>, BoundedOneInput {
    private static final long serialVersionUID = 1L;

    private final int maxRecords;
    private final long maxDelayMs;

    private transient ByteArrayOutputStream bytes;
    private transient DataOutputStream batch;
    private transient int records;
    private transient boolean timerPending;

    public OrderBatcher(int maxRecords, long maxDelayMs) {
        if (maxRecords < 1 || maxDelayMs < 0) {
            throw new IllegalArgumentException("maxRecords >= 1 and maxDelayMs >= 0 required");
        }
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        setChainingStrategy(ChainingStrategy.ALWAYS);
    }

    @Override
    public void open() throws Exception {
        super.open();
        bytes = new ByteArrayOutputStream(1 << 16);
        batch = new DataOutputStream(bytes);
    }

    @Override
    public void processElement(StreamRecord<byte[]> element) throws IOException {
        byte[] data = element.getValue();
        batch.writeInt(data.length);
        batch.write(data);
        records++;
        if (records >= maxRecords) {
            emit();
        } else if (!timerPending) {
            timerPending = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + maxDelayMs, firing -> {
                timerPending = false;
                emit();
            });
        }
    }

    private void emit() {
        if (records == 0) {
            return;
        }
        output.collect(new StreamRecord<>(bytes.toByteArray()));
        bytes.reset();
        records = 0;
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        emit();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void endInput() {
        emit();
    }
}
