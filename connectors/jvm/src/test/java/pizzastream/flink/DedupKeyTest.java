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

    @Test
    void aRecordOpeningWithItsIdIsKeyedAsTheParserWouldKeyIt() throws Exception {
        byte[] opening = "order_id".getBytes(StandardCharsets.UTF_8);
        // read straight from the bytes: the id among the plain strings the record opens with
        String[] direct = {"{\"order_id\":\"A1\",\"x\":[1]}", "{\"order_id\":\"A 1~\"}",
                           "{\"order_id\":\"A1\",\"order_id\":\"B2\"}",
                           "{\"order_id\":\"A1\",\"rest\": [unterminated",
                           "{\"e\":\"E-1\",\"order\":\"no\",\"order_id\":\"A1\",\"s\":7}",
                           "{\"\":\"\",\"order_id\":\"\"}"};
        for (String json : direct) {
            byte[] data = json.getBytes(StandardCharsets.UTF_8);
            assertEquals(DedupKey.topLevelString(data, "order_id"),
                    DedupKey.leadingString(data, opening), json);
            assertEquals("o:" + DedupKey.topLevelString(data, "order_id"),
                    key.getKey(tagged("o", json)), json);
        }
        // anything else is left to the parser, and keyed as before
        String[] parsed = {"{\"order_id\":\"A\\\"1\"}", "{\"order_id\":\"\u00e9t\u00e9\"}",
                           "{\"order_id\":\"\\u0041\"}", "{ \"order_id\":\"A1\"}",
                           "{\"order_id\": \"A1\"}", "{\"order_id\":\"A1",
                           "{\"order_id\":\"", "{\"order_id\":\"A\t1\"}",
                           "{\"x\":1,\"order_id\":\"A1\"}", "{\"e\":\"E\" ,\"order_id\":\"A1\"}",
                           "{\"e\":\"\\n\",\"order_id\":\"A1\"}", "{\"e\":\"E\"}",
                           "{\"e\":\"E\",\"m\":{\"order_id\":\"in\"},\"order_id\":\"A1\"}",
                           "{\"e\":\"E\",", "{\"e\":\"E\"\"order_id\":\"A1\"}", "{", ""};
        for (String json : parsed) {
            byte[] data = json.getBytes(StandardCharsets.UTF_8);
            assertNull(DedupKey.leadingString(data, opening), json);
            String id = DedupKey.topLevelString(data, "order_id");
            String expected = id != null ? "o:" + id : key.getKey(tagged("o", json));
            assertEquals(expected, key.getKey(tagged("o", json)), json);
        }
        assertEquals("o:A\"1", key.getKey(tagged("o", "{\"order_id\":\"A\\\"1\"}")));
        assertEquals("o:\u00e9t\u00e9", key.getKey(tagged("o", "{\"order_id\":\"\u00e9t\u00e9\"}")));
        assertEquals("o:A", key.getKey(tagged("o", "{\"order_id\":\"\\u0041\"}")));
        assertTrue(key.getKey(tagged("o", "{\"order_id\":\"A\t1\"}")).startsWith("o#"));
    }
}
