package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import org.apache.flink.api.common.ExecutionConfig;
import org.apache.flink.api.common.TaskInfoImpl;
import org.apache.flink.api.common.functions.DefaultOpenContext;
import org.apache.flink.api.common.functions.util.RuntimeUDFContext;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.metrics.Counter;
import org.apache.flink.runtime.metrics.util.InterceptingOperatorMetricGroup;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class JsonRowsTest {
    /** Row(store_id, order_id) of a JSON object; null for other JSON, an error for no JSON
     * (what a Flink JSON format does, reduced to two fields). */
    static final class TwoFields implements DeserializationSchema<Row> {
        private static final ObjectMapper JSON = new ObjectMapper();
        boolean opened;

        @Override
        public void open(InitializationContext context) {
            opened = context.getMetricGroup() != null;
        }

        @Override
        public Row deserialize(byte[] message) throws IOException {
            JsonNode node = JSON.readTree(message);
            if (!node.isObject()) {
                return null;
            }
            return Row.of(node.path("store_id").asInt(), node.path("order_id").asText());
        }

        @Override
        public boolean isEndOfStream(Row next) {
            return false;
        }

        @Override
        public TypeInformation<Row> getProducedType() {
            return Types.ROW(Types.INT, Types.STRING);
        }
    }

    private final TwoFields schema = new TwoFields();
    private final InterceptingOperatorMetricGroup metrics = new InterceptingOperatorMetricGroup();
    private final List<Row> out = new ArrayList<>();
    private final Collector<Row> collector = new Collector<>() {
        @Override
        public void collect(Row record) {
            out.add(record);
        }

        @Override
        public void close() {}
    };
    private JsonRows rows;

    @BeforeEach
    void open() throws Exception {
        rows = new JsonRows(schema, 64);
        rows.setRuntimeContext(new RuntimeUDFContext(
                new TaskInfoImpl("json-decode", 1, 0, 1, 0), getClass().getClassLoader(),
                new ExecutionConfig(), new HashMap<>(), new HashMap<>(), metrics));
        rows.open(DefaultOpenContext.INSTANCE);
    }

    private long undecodable() {
        return ((Counter) metrics.get("undecodableRecords")).getCount();
    }

    @Test
    void decodesTextBytesAndTaggedRecords() {
        String json = "{\"store_id\":7,\"order_id\":\"A1\"}";
        rows.flatMap(json, collector);
        rows.flatMap(json.getBytes(StandardCharsets.UTF_8), collector);
        rows.flatMap(Row.of("7", Row.of("o", json.getBytes(StandardCharsets.UTF_8))), collector);
        assertEquals(List.of(Row.of(7, "A1"), Row.of(7, "A1"), Row.of(7, "A1")), out);
        assertEquals(0, undecodable());
        assertTrue(schema.opened, "the format is opened with the function's context");
    }

    @Test
    void undecodableRecordsAreCountedAndDropped() {
        rows.flatMap("not json at all", collector);
        rows.flatMap("[1, 2]", collector);                  // JSON, but no object
        rows.flatMap("{\"store_id\":7,\"order_id\":\"" + "x".repeat(64) + "\"}", collector);
        assertEquals(List.of(), out);
        assertEquals(3, undecodable());
        rows.flatMap("{\"store_id\":8,\"order_id\":\"B2\"}", collector);
        assertEquals(List.of(Row.of(8, "B2")), out, "the function goes on after them");
        assertEquals(3, undecodable());
    }

    @Test
    void maxBytesCountsBytesNotCharacters() {
        String justFits = "{\"store_id\":1,\"order_id\":\"" + "x".repeat(64 - 28) + "\"}";
        assertEquals(64, justFits.getBytes(StandardCharsets.UTF_8).length);
        rows.flatMap(justFits, collector);
        assertEquals(List.of(Row.of(1, "x".repeat(36))), out);
        out.clear();
        // 64 characters, 65 bytes in UTF-8
        String json = "{\"store_id\":1,\"order_id\":\"é" + "x".repeat(64 - 29) + "\"}";
        assertEquals(64, json.length());
        rows.flatMap(json, collector);
        assertEquals(List.of(), out);
        assertEquals(1, undecodable());
    }
}
