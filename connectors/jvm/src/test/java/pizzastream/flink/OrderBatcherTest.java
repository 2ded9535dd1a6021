package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class OrderBatcherTest {
    private OneInputStreamOperatorTestHarness<byte[], byte[]> harness;

    private void open(int maxRecords, long maxDelayMs) throws Exception {
        harness = new OneInputStreamOperatorTestHarness<>(new OrderBatcher(maxRecords, maxDelayMs));
        harness.open();
    }

    @AfterEach
    void close() throws Exception {
        if (harness != null) {
            harness.close();
        }
    }

    private void send(String... records) throws Exception {
        for (String record : records) {
            harness.processElement(record.getBytes(StandardCharsets.UTF_8), 0L);
        }
    }

    /** The batches so far, each as its records (the format pizzastream.batches reads). */
    private List<List<String>> batches() throws IOException {
        List<List<String>> batches = new ArrayList<>();
        for (byte[] batch : harness.extractOutputValues()) {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(batch));
            List<String> records = new ArrayList<>();
            while (in.available() > 0) {
                byte[] record = new byte[in.readInt()];
                in.readFully(record);
                records.add(new String(record, StandardCharsets.UTF_8));
            }
            batches.add(records);
        }
        return batches;
    }

    @Test
    void aBatchClosesAtMaxRecords() throws Exception {
        open(3, 1_000);
        send("a", "bb", "");
        assertEquals(List.of(List.of("a", "bb", "")), batches());
        send("d");
        assertEquals(1, batches().size(), "the fourth record waits for the next batch");
    }

    @Test
    void aBatchClosesMaxDelayAfterItsFirstRecord() throws Exception {
        open(100, 50);
        harness.setProcessingTime(10);
        send("a");
        harness.setProcessingTime(40);
        send("b");
        harness.setProcessingTime(59);
        assertEquals(List.of(), batches());
        harness.setProcessingTime(60);
        assertEquals(List.of(List.of("a", "b")), batches());
        // the timer is gone with the batch: nothing more, not even an empty batch
        harness.setProcessingTime(1_000);
        assertEquals(1, batches().size());
        send("c");
        harness.setProcessingTime(1_050);
        assertEquals(List.of(List.of("a", "b"), List.of("c")), batches());
    }

    @Test
    void nothingWaitsOutsideStateAtABarrierOrTheEnd() throws Exception {
        open(100, 60_000);
        send("a", "b");
        harness.prepareSnapshotPreBarrier(1);
        assertEquals(List.of(List.of("a", "b")), batches());
        harness.prepareSnapshotPreBarrier(2);
        assertEquals(1, batches().size(), "no empty batch");
        send("c");
        harness.endInput();
        assertEquals(List.of(List.of("a", "b"), List.of("c")), batches());
    }

    @Test
    void limitsMustMakeSense() {
        assertThrows(IllegalArgumentException.class, () -> new OrderBatcher(0, 10));
        assertThrows(IllegalArgumentException.class, () -> new OrderBatcher(1, -1));
    }
}
