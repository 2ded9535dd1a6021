package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.streaming.util.ProcessFunctionTestHarnesses;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class BatchOutputsTest {
    private OneInputStreamOperatorTestHarness<byte[], Row> harness;

    @BeforeEach
    void open() throws Exception {
        harness = ProcessFunctionTestHarnesses.forProcessFunction(new BatchOutputs("m", "st"));
    }

    @AfterEach
    void close() throws Exception {
        harness.close();
    }

    private static byte[] utf8(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    private List<Row> side(String tag) {
        List<Row> rows = new ArrayList<>();
        var records = harness.getSideOutput(BatchOutputs.tag(tag));
        if (records != null) {
            for (StreamRecord<Row> record : records) {
                rows.add(record.getValue());
            }
        }
        return rows;
    }

    @Test
    void eachLineGoesToTheOutputOfItsTag() throws Exception {
        harness.processElement(utf8("m7\t{\"a\":1}\ns8\tstatus\tpaid\nm9\tx\nt7\t\n"), 5L);
        assertEquals(List.of(Row.of("7", "{\"a\":1}"), Row.of("9", "x")),
                harness.extractOutputValues());
        // the payload keeps its tabs; an empty payload is an empty string
        assertEquals(List.of(Row.of("8", "status\tpaid")), side("s"));
        assertEquals(List.of(Row.of("7", "")), side("t"));
    }

    @Test
    void keysAndPayloadsAreUtf8() throws Exception {
        harness.processElement(utf8("mcafé\tpâte à pizza 🍕\n"), 1L);
        assertEquals(List.of(Row.of("café", "pâte à pizza 🍕")), harness.extractOutputValues());
    }

    @Test
    void anEmptyResultEmitsNothing() throws Exception {
        harness.processElement(new byte[0], 1L);
        assertTrue(harness.extractOutputValues().isEmpty());
    }

    @Test
    void anUnknownTagFailsTheRecord() {
        IllegalStateException unknown = assertThrows(IllegalStateException.class,
                () -> harness.processElement(utf8("m1\tok\nx2\tlost\n"), 1L));
        assertTrue(unknown.getMessage().contains("unknown tag x"), unknown.getMessage());
        // a tag byte outside ASCII is unknown too, not an index out of bounds
        assertThrows(IllegalStateException.class,
                () -> harness.processElement(utf8("é1\tlost\n"), 1L));
    }

    @Test
    void aLineCutShortFailsTheRecord() {
        for (String cut : new String[] {"m1\tno newline", "m1 no tab\n", "m"}) {
            IllegalStateException error = assertThrows(IllegalStateException.class,
                    () -> harness.processElement(utf8(cut), 1L), cut);
            assertTrue(error.getMessage().contains("cut short"), error.getMessage());
        }
    }

    @Test
    void aCopiedLineIsOneRecordForEachOutputItNames() throws Exception {
        harness.close();
        harness = ProcessFunctionTestHarnesses.forProcessFunction(
                new BatchOutputs("m", "st", Map.of("b", "ms", "c", "st"), Map.of(), Map.of()));
        harness.processElement(utf8("b7\t{\"a\":1}\nc8\tx\ty\nt9\tz\n"), 5L);
        assertEquals(List.of(Row.of("7", "{\"a\":1}")), harness.extractOutputValues());
        assertEquals(List.of(Row.of("7", "{\"a\":1}"), Row.of("8", "x\ty")), side("s"));
        assertEquals(List.of(Row.of("8", "x\ty"), Row.of("9", "z")), side("t"));
    }

    @Test
    void aCachedLineCarriesItsCacheEntryAheadOfItsPayload() throws Exception {
        harness.close();
        harness = ProcessFunctionTestHarnesses.forProcessFunction(
                new BatchOutputs("m", "st", Map.of(), Map.of("m", "t", "s", "t"), Map.of()));
        harness.processElement(
                utf8("m7\to-1\taccepted\t{\"a\":\"b\\tc\"}\ns8\to-2\tpaid\tx\ty\nm9\tø\t\t\n"), 5L);
        assertEquals(List.of(Row.of("7", "{\"a\":\"b\\tc\"}"), Row.of("9", "")),
                harness.extractOutputValues());
        // the payload after the cache entry keeps its tabs; id and value may be empty or not ASCII
        assertEquals(List.of(Row.of("8", "x\ty")), side("s"));
        assertEquals(List.of(Row.of("o-1", "accepted"), Row.of("o-2", "paid"), Row.of("ø", "")),
                side("t"));
        for (String cut : new String[] {"m1\to-1\n", "m1\to-1\taccepted\n"}) {
            IllegalStateException error = assertThrows(IllegalStateException.class,
                    () -> harness.processElement(utf8(cut), 1L), cut);
            assertTrue(error.getMessage().contains("cut short"), error.getMessage());
        }
    }

    @Test
    void aTableRowsLineIsItsTypedRow() throws Exception {
        harness.close();
        harness = ProcessFunctionTestHarnesses.forProcessFunction(
                new BatchOutputs("m", "st", Map.of(), Map.of(), Map.of("t", "ILS")));
        harness.processElement(utf8("t7\t42\t-1795500000123\tnoté\ns8\t1\t2\n"), 5L);
        assertEquals(List.of(Row.of(42, -1795500000123L, "noté")), side("t"));
        assertEquals(List.of(Row.of("8", "1\t2")), side("s"));
        assertThrows(NumberFormatException.class,
                () -> harness.processElement(utf8("t7\tx\t1\ta\n"), 1L));
        assertThrows(IllegalArgumentException.class,
                () -> harness.processElement(utf8("t7\t1\t1\n"), 1L));
    }

    @Test
    void routesNameOnlyTheFunctionsOutputs() {
        Map<String, String> none = Map.of();
        // a copied tag is no output itself and names outputs; a cached tag is an output
        // whose cache is another side output
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", Map.of("s", "mt"), none, none));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", Map.of("b", "mx"), none, none));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", Map.of("b", ""), none, none));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", none, Map.of("b", "t"), none));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", none, Map.of("m", "m"), none));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", none, Map.of("s", "s"), none));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", none, Map.of("m", "x"), none));
        // a table row's tag is a side output that no other line rides on
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", none, none, Map.of("m", "I")));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", Map.of("b", "mt"), none, Map.of("t", "I")));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", none, Map.of("m", "t"), Map.of("t", "I")));
        assertThrows(IllegalArgumentException.class,
                () -> new BatchOutputs("m", "st", none, none, Map.of("t", "IX")));
    }

    @Test
    void theMainTagIsOneCharacterNotASideTag() {
        assertThrows(IllegalArgumentException.class, () -> new BatchOutputs("s", "st"));
        assertThrows(IllegalArgumentException.class, () -> new BatchOutputs("mm", "st"));
        assertThrows(IllegalArgumentException.class, () -> new BatchOutputs("", "st"));
    }
}
