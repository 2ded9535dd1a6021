package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
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
    void theMainTagIsOneCharacterNotASideTag() {
        assertThrows(IllegalArgumentException.class, () -> new BatchOutputs("s", "st"));
        assertThrows(IllegalArgumentException.class, () -> new BatchOutputs("mm", "st"));
        assertThrows(IllegalArgumentException.class, () -> new BatchOutputs("", "st"));
    }
}
