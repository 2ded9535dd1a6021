package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.stream.Collectors;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class StoreSalesTest {
    private static final long HOUR = StoreHourMetrics.HOUR_MS;
    private static final long MINUTE = 60_000;
    // 2024-10-04T00:00Z, an hour's start, epoch ms
    private static final long H0 = 480_000 * HOUR;
    private static final String H0_TEXT = "2024100400";
    private static final long LATENESS = HOUR;
    private static final long REFRESH = 5_000;
    private static final long LIVE_REFRESH = 1_000;
    private static final String TEMPLATE = "live:{<store>}:<hour>";
    private final List<KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row>> harnesses =
            new ArrayList<>();

    private KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row> open(
            StoreSales.Fingerprint fingerprint, OperatorSubtaskState restored) throws Exception {
        var harness = new KeyedOneInputStreamOperatorTestHarness<>(
                new StoreSales(LATENESS, REFRESH, LIVE_REFRESH, "online", "in_store", "delivery",
                        TEMPLATE, fingerprint),
                StoreSales.STORE, Types.INT);
        harnesses.add(harness);
        if (restored != null) {
            harness.initializeState(restored);
        }
        harness.open();
        return harness;
    }

    private KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row> open() throws Exception {
        return open(StoreSales.FNV_MIX, null);
    }

    @AfterEach
    void close() throws Exception {
        for (var harness : harnesses) {
            harness.close();
        }
    }

    /** A sale record: order id, store, channel flags, items, revenue cents, at {@code ts}. */
    private static StreamRecord<Row> sale(String order, int store, boolean online,
                                          boolean delivery, long items, long cents, long ts) {
        return new StreamRecord<>(Row.of(order, store, online ? "online" : "in_store",
                delivery ? "delivery" : "pickup", ts, items, cents), ts);
    }

    /** The metric rows: "kind store start end orders items revenue online in_store delivery avg". */
    private static List<String> rows(KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row> h) {
        return StoreHourMetricsTest.rows(h);
    }

    /** The live rows: "command key field value", sorted. */
    private static List<String> live(KeyedOneInputStreamOperatorTestHarness<Integer, Row, Row> h) {
        ConcurrentLinkedQueue<StreamRecord<Row>> side = h.getSideOutput(StoreSales.LIVE_ROWS);
        List<String> out = new ArrayList<>();
        if (side != null) {
            for (StreamRecord<Row> record : side) {
                Row row = record.getValue();
                out.add(row.getField(0) + " " + row.getField(1) + " " + row.getField(2) + " "
                        + row.getField(3));
            }
            side.clear();
        }
        return out.stream().sorted().collect(Collectors.toList());
    }

    private static String row(String kind, int store, long start, String sums) {
        return kind + " " + store + " " + start / MINUTE + " " + (start + HOUR) / MINUTE + " "
                + sums;
    }

    @Test
    void countsEachOrderOnceWithinACheckpointInterval() throws Exception {
        var h = open();
        h.processElement(sale("a", 7, true, true, 2, 1_000, H0 + 10));
        h.processElement(sale("a", 7, true, true, 2, 1_000, H0 + 10));
        h.processElement(sale("b", 7, false, false, 1, 501, H0 + HOUR - 1));
        h.processElement(sale("b", 7, false, false, 1, 501, H0 + HOUR - 1));
        h.processElement(sale("c", 8, true, false, 3, 999, H0 + 5));
        h.processWatermark(new Watermark(H0 + HOUR - 1));
        // revenue 1,501 over 2 orders: 750.5 rounds half up to 751 (as StoreHourMetrics)
        assertEquals(
                List.of(row("+I", 7, H0, "2 3 1501 1 1 1 751"),
                        row("+I", 8, H0, "1 3 999 1 0 0 999")),
                rows(h).stream().sorted().collect(Collectors.toList()));
    }

    @Test
    void theSameOrderIdInAnotherStoreHourIsAnotherOrder() throws Exception {
        var h = open();
        h.processElement(sale("a", 7, true, false, 1, 100, H0 + 10));
        h.processElement(sale("a", 7, true, false, 1, 100, H0 + HOUR + 10));
        h.processWatermark(new Watermark(H0 + 2 * HOUR - 1));
        assertEquals(
                List.of(row("+I", 7, H0, "1 1 100 1 0 0 100"),
                        row("+I", 7, H0 + HOUR, "1 1 100 1 0 0 100")),
                rows(h));
    }

    @Test
    void afterARestoreRepeatsAreDroppedAndNewOrdersCounted() throws Exception {
        var h = open();
        h.processElement(sale("a", 7, true, true, 2, 1_000, H0 + 10));
        h.processElement(sale("b", 7, true, true, 1, 500, H0 + 20));
        h.prepareSnapshotPreBarrier(1); // as the task does before each checkpoint
        OperatorSubtaskState checkpoint = h.snapshot(1, 1);
        h.processElement(sale("c", 7, false, false, 5, 5_000, H0 + 30)); // after it: replayed

        var restored = open(StoreSales.FNV_MIX, checkpoint);
        restored.processElement(sale("a", 7, true, true, 2, 1_000, H0 + 10)); // a repeat
        restored.processElement(sale("c", 7, false, false, 5, 5_000, H0 + 30)); // replayed: new
        restored.processElement(sale("c", 7, false, false, 5, 5_000, H0 + 30)); // now a repeat
        restored.processElement(sale("b", 7, true, true, 1, 500, H0 + 20)); // a repeat
        restored.processElement(sale("a", 7, true, false, 1, 100, H0 + HOUR + 1)); // next hour
        restored.processElement(sale("a", 7, true, false, 1, 100, H0 + HOUR + 1));
        restored.processWatermark(new Watermark(H0 + 2 * HOUR - 1));
        assertEquals(
                List.of(row("+I", 7, H0, "3 8 6500 2 1 2 2167"),
                        row("+I", 7, H0 + HOUR, "1 1 100 1 0 0 100")),
                rows(restored));
    }

    @Test
    void anotherIdWithTheSameFingerprintStillCounts() throws Exception {
        var h = open(id -> 42L, null); // every id collides
        h.processElement(sale("a", 7, true, false, 1, 100, H0 + 10));
        h.processElement(sale("b", 7, true, false, 1, 200, H0 + 11));
        h.processElement(sale("a", 7, true, false, 1, 100, H0 + 10));
        h.processElement(sale("c", 7, true, false, 1, 300, H0 + 12));
        h.processElement(sale("b", 7, true, false, 1, 200, H0 + 11));
        h.processWatermark(new Watermark(H0 + HOUR - 1));
        assertEquals(List.of(row("+I", 7, H0, "3 3 600 3 0 0 200")), rows(h));
    }

    @Test
    void theLiveViewEmitsEachChangedMinuteAsValues() throws Exception {
        var h = open();
        h.setProcessingTime(0);
        h.processElement(sale("a", 7, true, false, 1, 1_250, H0 + 3 * MINUTE + 5));
        h.processElement(sale("a", 7, true, false, 1, 1_250, H0 + 3 * MINUTE + 5));
        h.processElement(sale("b", 7, true, false, 1, 5, H0 + 3 * MINUTE + 59_999));
        h.processElement(sale("c", 7, true, false, 1, 100, H0 + 15 * MINUTE));
        h.processElement(sale("d", 12, true, false, 1, 700, H0 + HOUR + 59 * MINUTE));
        assertEquals(List.of(), live(h));
        h.setProcessingTime(LIVE_REFRESH);
        assertEquals(
                List.of("HSET live:{12}:2024100401 59 1/7.00",
                        "HSET live:{7}:" + H0_TEXT + " 03 2/12.55",
                        "HSET live:{7}:" + H0_TEXT + " 15 1/1.00"),
                live(h));
        // only the minutes that changed, with their new values; a repeat changes nothing
        h.processElement(sale("e", 7, false, false, 1, 10, H0 + 15 * MINUTE + 1));
        h.processElement(sale("c", 7, true, false, 1, 100, H0 + 15 * MINUTE));
        h.setProcessingTime(2 * LIVE_REFRESH);
        assertEquals(List.of("HSET live:{7}:" + H0_TEXT + " 15 2/1.10"), live(h));
        h.setProcessingTime(3 * LIVE_REFRESH);
        assertEquals(List.of(), live(h));
    }

    @Test
    void changedMinutesAreEmittedBeforeACheckpointAndResumeFromItAfterARestore()
            throws Exception {
        var h = open();
        h.setProcessingTime(0);
        h.processElement(sale("a", 7, true, false, 1, 100, H0 + 10));
        h.prepareSnapshotPreBarrier(1);
        assertEquals(List.of("HSET live:{7}:" + H0_TEXT + " 00 1/1.00"), live(h));
        OperatorSubtaskState checkpoint = h.snapshot(1, 1);
        var restored = open(StoreSales.FNV_MIX, checkpoint);
        restored.setProcessingTime(0);
        restored.processElement(sale("b", 7, true, false, 1, 250, H0 + 20));
        restored.processElement(sale("a", 7, true, false, 1, 100, H0 + 10));
        restored.setProcessingTime(LIVE_REFRESH);
        assertEquals(List.of("HSET live:{7}:" + H0_TEXT + " 00 2/3.50"), live(restored));
    }

    @Test
    void aSaleLaterThanTheLatenessChangesNeitherMetricsNorLiveView() throws Exception {
        var h = open();
        h.setProcessingTime(0);
        h.processElement(sale("a", 7, true, false, 1, 100, H0 + 10));
        h.processWatermark(new Watermark(H0 + HOUR - 1 + LATENESS));
        assertEquals(List.of(row("+I", 7, H0, "1 1 100 1 0 0 100")), rows(h));
        assertEquals(List.of("HSET live:{7}:" + H0_TEXT + " 00 1/1.00"), live(h));
        h.processElement(sale("b", 7, true, false, 1, 100, H0 + 20));
        h.setProcessingTime(LIVE_REFRESH + REFRESH);
        assertEquals(List.of(), rows(h));
        assertEquals(List.of(), live(h));
    }

    @Test
    void aLateSaleWithinTheLatenessUpdatesMetricsAndLiveView() throws Exception {
        var h = open();
        h.setProcessingTime(0);
        h.processElement(sale("a", 7, true, true, 2, 1_000, H0 + 10));
        h.processWatermark(new Watermark(H0 + HOUR + MINUTE));
        assertEquals(List.of(row("+I", 7, H0, "1 2 1000 1 0 1 1000")), rows(h));
        live(h);
        h.processElement(sale("b", 7, false, false, 1, 500, H0 + 20));
        h.processElement(sale("b", 7, false, false, 1, 500, H0 + 20));
        h.setProcessingTime(REFRESH);
        assertEquals(
                List.of(row("-U", 7, H0, "1 2 1000 1 0 1 1000"),
                        row("+U", 7, H0, "2 3 1500 1 1 1 750")),
                rows(h));
        assertEquals(List.of("HSET live:{7}:" + H0_TEXT + " 00 2/15.00"), live(h));
    }

    @Test
    void aCleanedUpStoreHourLeavesNoState() throws Exception {
        var h = open();
        h.processElement(sale("a", 7, true, false, 1, 100, H0 + 10));
        h.processElement(sale("b", 7, true, false, 1, 100, H0 + 10));
        h.prepareSnapshotPreBarrier(1);
        assertTrue(h.numKeyedStateEntries() > 0); // the order ids and the store's hours
        h.processWatermark(new Watermark(H0 + HOUR - 1 + LATENESS));
        h.prepareSnapshotPreBarrier(2);
        assertEquals(0, h.numKeyedStateEntries());
    }

    @Test
    void theFingerprintTableGrowsAndKeepsEveryFingerprint() {
        var table = new StoreSales.Fingerprints();
        for (long f = 0; f < 10_000; f++) {
            assertTrue(table.add(f * 0x9e3779b97f4a7c15L + 1));
        }
        for (long f = 0; f < 10_000; f++) {
            assertFalse(table.add(f * 0x9e3779b97f4a7c15L + 1));
        }
    }

    @Test
    void moneyTextIsTheSqlsText() {
        assertEquals("12.50", StoreSales.moneyText(1_250));
        assertEquals("0.05", StoreSales.moneyText(5));
        assertEquals("0.00", StoreSales.moneyText(0));
        assertEquals("1.00", StoreSales.moneyText(100));
    }

    @Test
    void theSalesFilterKeepsRecordsWithAnOrderAndAStore() throws Exception {
        assertTrue(StoreSales.SALES.filter(Row.of("a", 7, "online", "pickup", 1L, 1L, 1L)));
        assertFalse(StoreSales.SALES.filter(Row.of(null, 7, null, null, 1L, null, null)));
        assertFalse(StoreSales.SALES.filter(Row.of("a", null, "online", "pickup", 1L, 1L, 1L)));
        assertTrue(StoreSales.OTHER_RECORDS.filter(Row.of(null, 7, null, null, 1L, null, null)));
        assertFalse(StoreSales.OTHER_RECORDS.filter(
                Row.of("a", 7, "online", "pickup", 1L, 1L, 1L)));
    }

    @Test
    void rejectsAKeyTemplateWithoutStoreOrHour() {
        assertThrows(IllegalArgumentException.class, () -> new StoreSales(
                0, 0, 1, "online", "in_store", "delivery", "live:<hour>"));
        assertThrows(IllegalArgumentException.class, () -> new StoreSales(
                0, 0, 0, "online", "in_store", "delivery", TEMPLATE));
    }
}
