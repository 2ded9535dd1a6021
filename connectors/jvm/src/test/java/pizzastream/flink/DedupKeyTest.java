package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class DedupKeyTest {
    private final DedupKey key = new DedupKey(Map.of("o", "order_id", "r", "event_id"));

    private static Row tagged(String kind, String json) {
        return Row.of("7", Row.of(kind, json.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void aRecordIsKeyedByTheIdFieldOfItsKind() throws Exception {
        assertEquals("o:A1", key.getKey(tagged("o", "{\"order_id\":\"A1\",\"items\":[1,2]}")));
        assertEquals("r:E9", key.getKey(tagged("r", "{\"store_id\":7,\"event_id\":\"E9\"}")));
        // the same id whatever else the record says, and kinds never share an id
        assertEquals(key.getKey(tagged("o", "{\"order_id\":\"A1\",\"x\":1}")),
                key.getKey(tagged("o", "{\"order_id\":\"A1\",\"x\":2}")));
        assertNotEquals(key.getKey(tagged("o", "{\"order_id\":\"1\"}")),
                key.getKey(tagged("r", "{\"event_id\":\"1\"}")));
    }

    @Test
    void onlyTheTopLevelFieldCounts() throws Exception {
        String json = "{\"meta\":{\"order_id\":\"inner\"},\"list\":[{\"order_id\":\"x\"}],"
                + "\"order_id\":\"outer\"}";
        assertEquals("o:outer", key.getKey(tagged("o", json)));
    }

    @Test
    void aRecordWithoutItsIdIsKeyedByItsBytes() throws Exception {
        String[] noId = {"{\"order_id\":5}", "{\"other\":\"A1\"}", "not json", "[\"order_id\"]",
                         "{\"order_id\":", ""};
        for (String json : noId) {
            String k = key.getKey(tagged("o", json));
            assertTrue(k.startsWith("o#"), json + " -> " + k);
            assertEquals(k, key.getKey(tagged("o", json)), "an identical bad record repeats");
        }
        assertNotEquals(key.getKey(tagged("o", "not json")), key.getKey(tagged("o", "not json!")));
        // a kind with no id field is keyed by its bytes too
        assertTrue(key.getKey(tagged("x", "{\"order_id\":\"A1\"}")).startsWith("x#"));
    }

    @Test
    void topLevelStringReadsNoFurtherThanItNeeds() {
        byte[] brokenAfterId = "{\"order_id\":\"A1\",\"rest\": [unterminated"
                .getBytes(StandardCharsets.UTF_8);
        assertEquals("A1", DedupKey.topLevelString(brokenAfterId, "order_id"));
        assertNull(DedupKey.topLevelString("{\"order_id\":null}".getBytes(StandardCharsets.UTF_8),
                "order_id"));
    }
}
