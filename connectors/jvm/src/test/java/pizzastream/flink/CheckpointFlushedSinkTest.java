package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.apache.flink.streaming.api.connector.sink2.CommittableMessage;
import org.apache.flink.streaming.runtime.operators.sink.SinkWriterOperatorFactory;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The writer of every project sink, run inside Flink's own sink operator: what the operator
 * does at a checkpoint, at the end of input and on close, and what the thresholds add.
 */
class CheckpointFlushedSinkTest {
    /** Every hook call of every buffer, in order ("setup 0", "write a", "flush [a, b]", "close"). */
    private static final List<String> CALLS = new ArrayList<>();

    /**
     * Keeps distinct elements, so the count the writer sees can be below the writes, as for
     * PostgresCopySink's last-row-per-key batch.
     */
    private static final class RecordingSink extends CheckpointFlushedSink<String> {
        private static final long serialVersionUID = 1L;

        RecordingSink(int flushAtCount, long flushAfterMillis) {
            super(flushAtCount, flushAfterMillis);
        }

        @Override
        protected Buffer<String> newBuffer() {
            return new Buffer<>() {
                private final Set<String> elements = new LinkedHashSet<>();

                @Override
                public void setup(int subtask) {
                    CALLS.add("setup " + subtask);
                }

                @Override
                public int write(String element) throws IOException {
                    if (element.equals("refused")) {
                        throw new IOException("refused");
                    }
                    CALLS.add("write " + element);
                    elements.add(element);
                    return elements.size();
                }

                @Override
                public void flush() {
                    CALLS.add("flush " + elements);
                    elements.clear();
                }

                @Override
                public void close() {
                    CALLS.add("close");
                }
            };
        }
    }

    private OneInputStreamOperatorTestHarness<String, CommittableMessage<Void>> harness;

    @BeforeEach
    void clear() {
        CALLS.clear();
    }

    private void open(int flushAtCount, long flushAfterMillis) throws Exception {
        harness = new OneInputStreamOperatorTestHarness<>(
                new SinkWriterOperatorFactory<String, Void>(new RecordingSink(flushAtCount, flushAfterMillis)));
        harness.open();
    }

    private void send(String... elements) throws Exception {
        for (String element : elements) {
            harness.processElement(element, 0L);
        }
    }

    @Test
    void setsUpOnceBeforeTheFirstElement() throws Exception {
        open(0, 0);
        send("a", "b");
        harness.close();
        assertEquals(List.of("setup 0", "write a", "write b", "close"), CALLS);
    }

    @Test
    void flushesOnEveryCheckpointAndNotAnEmptyBuffer() throws Exception {
        open(0, 0);
        send("a", "b");
        harness.prepareSnapshotPreBarrier(1L);
        harness.prepareSnapshotPreBarrier(2L);
        send("c");
        harness.prepareSnapshotPreBarrier(3L);
        harness.close();
        assertEquals(List.of("setup 0", "write a", "write b", "flush [a, b]", "write c", "flush [c]",
                "close"), CALLS);
    }

    @Test
    void flushesAtTheEndOfInputBeforeClosing() throws Exception {
        open(0, 0);
        send("a");
        harness.endInput();
        harness.close();
        assertEquals(List.of("setup 0", "write a", "flush [a]", "close"), CALLS);
    }

    @Test
    void flushesWhenTheBufferHoldsTheCount() throws Exception {
        open(2, 0);
        send("a", "a", "b", "c");   // the repeat keeps one element buffered
        assertEquals(List.of("setup 0", "write a", "write a", "write b", "flush [a, b]", "write c"), CALLS);
        harness.prepareSnapshotPreBarrier(1L);
        assertEquals("flush [c]", CALLS.get(CALLS.size() - 1));
        harness.close();
    }

    @Test
    void flushesTheTimeAfterAWriteFoundNoFlushScheduled() throws Exception {
        open(0, 100);
        harness.setProcessingTime(1_000);
        send("a");
        harness.setProcessingTime(1_050);
        send("b");                          // the flush at 1_100 is already scheduled
        harness.setProcessingTime(1_099);
        assertEquals(List.of("setup 0", "write a", "write b"), CALLS);
        harness.setProcessingTime(1_100);
        assertEquals(List.of("setup 0", "write a", "write b", "flush [a, b]"), CALLS);
        send("c");                          // schedules the next one
        harness.setProcessingTime(1_199);
        assertEquals("write c", CALLS.get(CALLS.size() - 1));
        harness.setProcessingTime(1_200);
        assertEquals("flush [c]", CALLS.get(CALLS.size() - 1));
        harness.close();
    }

    @Test
    void aScheduledFlushFindingTheBufferWrittenOutDoesNothing() throws Exception {
        open(0, 100);
        harness.setProcessingTime(0);
        send("a");
        harness.prepareSnapshotPreBarrier(1L);
        harness.setProcessingTime(100);
        harness.close();
        assertEquals(List.of("setup 0", "write a", "flush [a]", "close"), CALLS);
    }

    @Test
    void closingWritesNothingOfWhatIsBuffered() throws Exception {
        // A writer closed without its input ending is a failed task: the restart replays
        // what the last checkpoint did not cover, so the buffer is dropped, not written.
        open(10, 100);
        harness.setProcessingTime(0);
        send("a", "b");
        harness.close();
        assertEquals(List.of("setup 0", "write a", "write b", "close"), CALLS);
    }

    @Test
    void aFailedWriteFailsTheTaskAndTheWriterIsStillClosed() throws Exception {
        open(0, 0);
        send("a");
        assertThrows(IOException.class, () -> send("refused"));
        harness.close();
        assertEquals(List.of("setup 0", "write a", "close"), CALLS);
    }

    @Test
    void thresholdsArePositiveOrZeroForNone() {
        assertThrows(IllegalArgumentException.class, () -> new RecordingSink(-1, 0));
        assertThrows(IllegalArgumentException.class, () -> new RecordingSink(0, -1));
    }
}
