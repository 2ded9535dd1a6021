package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class StoreBatcherTest {
    private static final int SHARDS = 4;
    private static final long TTL_MS = 1_000;
    private final StoreShardKey shardKey = new StoreShardKey(SHARDS, 128);
    private final List<KeyedOneInputStreamOperatorTestHarness<Row, Row, Row>> harnesses =
            new ArrayList<>();

    /** A decoded batch: its shard, flags, epoch and records as "kind key data". */
    private static final class Batch {
        final String shard;
        final byte flags;
        final long epoch;
        final List<String> records = new ArrayList<>();

        Batch(Row row) throws IOException {
            shard = (String) row.getField(0);
            DataInputStream in = new DataInputStream(
                    new ByteArrayInputStream((byte[]) row.getField(1)));
            flags = in.readByte();
            epoch = in.readLong();
            while (in.available() > 0) {
                char kind = (char) in.readByte();
                byte[] key = new byte[in.readUnsignedShort()];
                in.readFully(key);
                byte[] data = new byte[in.readInt()];
                in.readFully(data);
                records.add(kind + " " + new String(key, StandardCharsets.UTF_8) + " "
                        + new String(data, StandardCharsets.UTF_8));
            }
        }
    }

    private KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> open(
            int maxRecords, OperatorSubtaskState restored) throws Exception {
        var harness = new KeyedOneInputStreamOperatorTestHarness<>(
                new StoreBatcher(Map.of("o", "order_id", "r", "event_id"), TTL_MS, maxRecords,
                                 60_000),
                shardKey, Types.ROW(Types.STRING));
        harnesses.add(harness);
        if (restored == null) {
            harness.open();
        } else {
            harness.initializeState(restored);
            harness.open();
        }
        return harness;
    }

    @AfterEach
    void close() throws Exception {
        for (var harness : harnesses) {
            harness.close();
        }
    }

    private static void send(KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> harness,
                             String store, String kind, String json, long timestamp)
            throws Exception {
        harness.processElement(Row.of(store, Row.of(kind, json.getBytes(StandardCharsets.UTF_8))),
                timestamp);
    }

    private static String order(String id) {
        return "{\"order_id\":\"" + id + "\"}";
    }

    private static List<Batch> batches(KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h)
            throws IOException {
        List<Batch> batches = new ArrayList<>();
        for (Row row : h.extractOutputValues()) {
            batches.add(new Batch(row));
        }
        return batches;
    }

    /** The repeats so far as "store kind data repeat@timestamp". */
    private static List<String> repeats(KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h) {
        List<String> repeats = new ArrayList<>();
        var side = h.getSideOutput(StoreBatcher.REPEATS);
        if (side != null) {
            for (StreamRecord<Row> record : side) {
                Row r = record.getValue();
                repeats.add(r.getField(0) + " " + r.getField(1) + " "
                        + new String((byte[]) r.getField(2), StandardCharsets.UTF_8) + " "
                        + r.getField(3) + "@" + record.getTimestamp());
            }
        }
        return repeats;
    }

    @Test
    void aShardsBatchClosesAtMaxRecordsWithItsRecordsInOrder() throws Exception {
        var harness = open(2, null);
        send(harness, "1", "o", order("A"), 1);
        send(harness, "2", "o", order("B"), 2);     // another shard: a batch of its own
        send(harness, "5", "r", "{\"event_id\":\"E\"}", 3);   // store 5: shard 1, as store 1
        List<Batch> batches = batches(harness);
        assertEquals(1, batches.size());
        Batch batch = batches.get(0);
        assertEquals(shardKey.name(1), batch.shard);
        assertEquals(0, batch.flags);
        assertEquals(List.of("o 1 " + order("A"), "r 5 {\"event_id\":\"E\"}"), batch.records);
    }

    @Test
    void repeatsGoAsideNumberedFromOne() throws Exception {
        var harness = open(100, null);
        send(harness, "1", "o", order("A"), 10);
        send(harness, "1", "o", "{\"order_id\":\"A\",\"retry\":1}", 11);
        send(harness, "1", "o", order("A"), 12);
        send(harness, "1", "r", "{\"event_id\":\"A\"}", 13);    // another kind: not a repeat
        assertEquals(List.of("1 o {\"order_id\":\"A\",\"retry\":1} 1@11",
                             "1 o " + order("A") + " 2@12"), repeats(harness));
        harness.endInput();
        assertEquals(List.of("o 1 " + order("A"), "r 1 {\"event_id\":\"A\"}"),
                batches(harness).get(0).records);
    }

    @Test
    void anIdIsForgottenTtlAfterItsLastSighting() throws Exception {
        var harness = open(100, null);
        harness.setStateTtlProcessingTime(0);
        send(harness, "1", "o", order("A"), 1);
        harness.setStateTtlProcessingTime(TTL_MS - 1);
        send(harness, "1", "o", order("A"), 2);          // a repeat, and a new sighting
        harness.setStateTtlProcessingTime(2 * TTL_MS - 2);
        send(harness, "1", "o", order("A"), 3);          // still within TTL of the last one
        harness.setStateTtlProcessingTime(3 * TTL_MS);
        send(harness, "1", "o", order("A"), 4);          // forgotten: passes again
        assertEquals(2, repeats(harness).size());
        harness.endInput();
        assertEquals(2, batches(harness).get(0).records.size());
    }

    @Test
    void aBarrierFlushesEveryShardSeenSinceTheLastOneWithPersist() throws Exception {
        var harness = open(2, null);
        send(harness, "1", "o", order("A"), 1);
        send(harness, "1", "o", order("B"), 2);          // shard 1's batch closes (no persist)
        send(harness, "2", "o", order("C"), 3);
        harness.prepareSnapshotPreBarrier(1);
        List<Batch> batches = batches(harness);
        assertEquals(3, batches.size());
        // shard 1 has nothing pending but saw records: an empty batch carries its persist
        Batch shard1 = batches.stream().filter(b -> b.shard.equals(shardKey.name(1)))
                .filter(b -> b.flags == StoreBatcher.PERSIST).findFirst().orElseThrow();
        assertEquals(List.of(), shard1.records);
        Batch shard2 = batches.stream().filter(b -> b.shard.equals(shardKey.name(2)))
                .findFirst().orElseThrow();
        assertEquals(StoreBatcher.PERSIST, shard2.flags);
        assertEquals(List.of("o 2 " + order("C")), shard2.records);
        // nothing seen since: the next barrier sends nothing
        harness.prepareSnapshotPreBarrier(2);
        assertEquals(3, batches(harness).size());
    }

    @Test
    void aRestoreKeepsTheIdsAndTheirCountsAndStartsANewEpoch() throws Exception {
        var first = open(100, null);
        send(first, "3", "o", order("A"), 1);
        send(first, "3", "o", order("A"), 2);
        first.prepareSnapshotPreBarrier(1);
        OperatorSubtaskState snapshot = first.snapshot(1, 100);
        long firstEpoch = batches(first).get(0).epoch;

        var restored = open(100, snapshot);
        send(restored, "3", "o", order("A"), 3);
        send(restored, "3", "o", order("B"), 4);
        assertEquals(List.of("3 o " + order("A") + " 2@3"), repeats(restored));
        restored.endInput();
        Batch batch = batches(restored).get(0);
        assertEquals(List.of("o 3 " + order("B")), batch.records);
        assertNotEquals(firstEpoch, batch.epoch);
    }

    @Test
    void keysLongerThan65535BytesAreCut() throws Exception {
        var harness = open(1, null);
        String store = "k".repeat(70_000);
        send(harness, store, "o", order("A"), 1);
        Batch batch = batches(harness).get(0);
        assertArrayEquals(new String[] {"o " + "k".repeat(0xFFFF) + " " + order("A")},
                batch.records.toArray(new String[0]));
    }

    @Test
    void nonAsciiKeysAreWrittenAsUtf8AndBatchesGrowPastTheirFirstBuffer() throws Exception {
        var harness = open(3, null);
        String big = "{\"order_id\":\"B\",\"pad\":\"" + "x".repeat(40_000) + "\"}";
        send(harness, "1", "o", order("A"), 1);
        send(harness, "1", "o", big, 2);               // past the 32 KB the buffer starts at
        send(harness, "1\u00e9", "o", order("C"), 3);  // a non-ASCII key: shard of its hash
        harness.endInput();
        List<String> records = new ArrayList<>();
        for (Batch batch : batches(harness)) {
            records.addAll(batch.records);
        }
        // in arrival order whether or not the key's shard is store 1's
        assertEquals(List.of("o 1 " + order("A"), "o 1 " + big, "o 1\u00e9 " + order("C")),
                records);
        // the next batch of the shard starts afresh after the big one
        send(harness, "1", "o", order("D"), 4);
        harness.endInput();
        List<Batch> all = batches(harness);
        assertEquals(List.of("o 1 " + order("D")), all.get(all.size() - 1).records);
    }

    @Test
    void limitsMustMakeSense() {
        Map<String, String> ids = Map.of("o", "order_id");
        assertThrows(IllegalArgumentException.class, () -> new StoreBatcher(ids, 1, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> new StoreBatcher(ids, 0, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> new StoreBatcher(ids, 1, 1, -1));
    }
}
