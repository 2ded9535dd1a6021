package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.apache.flink.types.RowKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class StoreHourMetricsTest {
    private static final long HOUR = StoreHourMetrics.HOUR_MS;
    private static final long H0 = 480_000 * HOUR; // an hour's start, epoch ms
    private static final long LATENESS = HOUR;
    private static final long REFRESH = 5_000;
    private final List<KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row>> harnesses =
            new ArrayList<>();

    private KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row> open(
            long lateness, long refresh, OperatorSubtaskState restored) throws Exception {
        var harness = new KeyedOneInputStreamOperatorTestHarness<>(
                new StoreHourMetrics(lateness, refresh), StoreHourMetrics.STORE, Types.INT);
        harnesses.add(harness);
        if (restored != null) {
            harness.initializeState(restored);
        }
        harness.open();
        return harness;
    }

    @AfterEach
    void close() throws Exception {
        for (var harness : harnesses) {
            harness.close();
        }
    }

    /** A sale: store, channel flags, items, revenue cents, at event time {@code ts}. */
    private static StreamRecord<Row> sale(int store, boolean online, boolean delivery,
                                          long items, long cents, long ts) {
        return new StreamRecord<>(Row.of(store, online, !online, delivery, items, cents), ts);
    }

    /** "kind store start end orders items revenue online in_store delivery average". */
    static List<String> rows(KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row> h) {
        List<String> out = new ArrayList<>();
        for (Object element : h.getOutput()) {
            if (element instanceof StreamRecord<?>) {
                Row row = (Row) ((StreamRecord<?>) element).getValue();
                StringBuilder text = new StringBuilder(row.getKind().shortString());
                for (int i = 0; i < row.getArity(); i++) {
                    text.append(' ').append(row.getField(i));
                }
                out.add(text.toString());
            }
        }
        h.getOutput().clear();
        return out;
    }

    private static String minutes(long ms) {
        return String.valueOf(ms / 60_000);
    }

    private static String row(String kind, int store, long start, String sums) {
        return kind + " " + store + " " + minutes(start) + " " + minutes(start + HOUR) + " " + sums;
    }

    @Test
    void insertsEachStoreHourWhenTheWatermarkReachesItsLastMillisecond() throws Exception {
        var h = open(LATENESS, REFRESH, null);
        h.processElement(sale(7, true, true, 2, 1_000, H0 + 10));
        h.processElement(sale(7, false, false, 1, 501, H0 + HOUR - 1));
        h.processElement(sale(8, true, false, 3, 999, H0 + 5));
        h.processElement(sale(7, true, false, 1, 100, H0 + HOUR)); // the next hour
        h.processWatermark(new Watermark(H0 + HOUR - 2));
        assertEquals(List.of(), rows(h));
        h.processWatermark(new Watermark(H0 + HOUR - 1));
        // revenue 1,501 over 2 orders: 750.5 rounds half up to 751
        assertEquals(
                List.of(row("+I", 7, H0, "2 3 1501 1 1 1 751"),
                        row("+I", 8, H0, "1 3 999 1 0 0 999")),
                rows(h).stream().sorted().collect(java.util.stream.Collectors.toList()));
    }

    @Test
    void aLateSaleWithinTheLatenessUpdatesItsRowAfterTheRefresh() throws Exception {
        var h = open(LATENESS, REFRESH, null);
        h.setProcessingTime(1_000);
        h.processElement(sale(7, true, true, 2, 1_000, H0 + 10));
        h.processWatermark(new Watermark(H0 + HOUR + 60_000));
        assertEquals(List.of(row("+I", 7, H0, "1 2 1000 1 0 1 1000")), rows(h));
        h.processElement(sale(7, false, false, 1, 500, H0 + 20));
        h.processElement(sale(7, false, false, 1, 500, H0 + 30));
        assertEquals(List.of(), rows(h));
        h.setProcessingTime(1_000 + REFRESH);
        assertEquals(
                List.of(row("-U", 7, H0, "1 2 1000 1 0 1 1000"),
                        row("+U", 7, H0, "3 4 2000 1 2 1 667")),
                rows(h));
        // later than the lateness: dropped, and the hour is forgotten
        h.processWatermark(new Watermark(H0 + HOUR - 1 + LATENESS));
        h.processElement(sale(7, true, false, 1, 100, H0 + 40));
        h.setProcessingTime(1_000 + 3 * REFRESH);
        assertEquals(List.of(), rows(h));
    }

    @Test
    void withoutLatenessALateSaleIsDropped() throws Exception {
        var h = open(0, REFRESH, null);
        h.processElement(sale(7, true, true, 2, 1_000, H0 + 10));
        h.processWatermark(new Watermark(H0 + HOUR - 1));
        assertEquals(List.of(row("+I", 7, H0, "1 2 1000 1 0 1 1000")), rows(h));
        h.processElement(sale(7, true, true, 2, 1_000, H0 + 10));
        h.setProcessingTime(REFRESH * 3);
        assertEquals(List.of(), rows(h));
    }

    @Test
    void aStoreHourFirstSeenAfterItsEndIsInsertedAtOnce() throws Exception {
        var h = open(LATENESS, 0, null);
        h.processWatermark(new Watermark(H0 + HOUR + 60_000));
        h.processElement(sale(9, false, false, 1, 250, H0 + 10));
        assertEquals(List.of(row("+I", 9, H0, "1 1 250 0 1 0 250")), rows(h));
        h.processElement(sale(9, false, false, 1, 250, H0 + 11)); // refresh 0: at once
        assertEquals(
                List.of(row("-U", 9, H0, "1 1 250 0 1 0 250"),
                        row("+U", 9, H0, "2 2 500 0 2 0 250")),
                rows(h));
    }

    @Test
    void aRestoreResumesFromTheLastCheckpointsSums() throws Exception {
        var h = open(LATENESS, REFRESH, null);
        h.processElement(sale(7, true, true, 2, 1_000, H0 + 10));
        h.prepareSnapshotPreBarrier(1); // as the task does before each checkpoint
        OperatorSubtaskState checkpoint = h.snapshot(1, 1);
        h.processElement(sale(7, true, true, 5, 5_000, H0 + 20)); // after it: replayed
        var restored = open(LATENESS, REFRESH, checkpoint);
        restored.processElement(sale(7, true, true, 5, 5_000, H0 + 20));
        restored.processWatermark(new Watermark(H0 + HOUR - 1));
        assertEquals(List.of(row("+I", 7, H0, "2 7 6000 2 0 2 3000")), rows(restored));

        // an emitted hour stays emitted: a late sale after a restore is an update
        restored.setProcessingTime(0);
        restored.prepareSnapshotPreBarrier(2);
        OperatorSubtaskState second = restored.snapshot(2, 2);
        var again = open(LATENESS, REFRESH, second);
        again.setProcessingTime(0);
        again.processElement(sale(7, false, false, 1, 0, H0 + 30));
        again.setProcessingTime(REFRESH);
        assertEquals(
                List.of(row("-U", 7, H0, "2 7 6000 2 0 2 3000"),
                        row("+U", 7, H0, "3 8 6000 2 1 2 2000")),
                rows(again));
    }

    @Test
    void aSaleLaterThanTheLatenessStaysDroppedBeforeTheFirstWatermarkAfterARestore()
            throws Exception {
        var h = open(LATENESS, REFRESH, null);
        h.processElement(sale(7, true, true, 2, 1_000, H0 + 10));
        h.processWatermark(new Watermark(H0 + HOUR - 1 + LATENESS)); // inserted, then cleaned up
        assertEquals(List.of(row("+I", 7, H0, "1 2 1000 1 0 1 1000")), rows(h));
        h.prepareSnapshotPreBarrier(1);
        OperatorSubtaskState checkpoint = h.snapshot(1, 1);

        var restored = open(LATENESS, REFRESH, checkpoint);
        // no watermark has reached the restored operator yet: the hour is still too late
        restored.processElement(sale(7, true, true, 2, 1_000, H0 + 10));
        restored.processElement(sale(7, false, false, 1, 300, H0 + HOUR + 5)); // next hour
        restored.processWatermark(new Watermark(H0 + 2 * HOUR - 1));
        restored.setProcessingTime(3 * REFRESH);
        assertEquals(List.of(row("+I", 7, H0 + HOUR, "1 1 300 0 1 0 300")), rows(restored));
    }

    @Test
    void rejectsANegativeLateness() {
        assertThrows(IllegalArgumentException.class, () -> new StoreHourMetrics(-1, 0));
    }
}
