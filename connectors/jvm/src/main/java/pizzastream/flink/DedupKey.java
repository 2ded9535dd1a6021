package pizzastream.flink;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.types.Row;

/**
 * What makes two tagged records {@code Row(partition_key, Row(kind, data))} the same event:
 * the JSON field named for their kind (the order id of an order, the event id of a restock),
 * or, for a record without it, a hash of its bytes so an identical bad record repeats too.
 */
public final class DedupKey implements KeySelector<Row, String> {
    private static final long serialVersionUID = 1L;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final HashMap<String, String> idFieldByKind;

    /** Records of each kind are keyed by the JSON field mapped to that kind. */
    public DedupKey(Map<String, String> idFieldByKind) {
        this.idFieldByKind = new HashMap<>(idFieldByKind);
    }

    @Override
    public String getKey(Row record) throws NoSuchAlgorithmException {
        Row tagged = (Row) record.getField(1);
        String recordKind = String.valueOf(tagged.getField(0));
        byte[] data = (byte[]) tagged.getField(1);
        String field = idFieldByKind.get(recordKind);
        if (field != null) {
            try {
                JsonNode id = JSON.readTree(data).get(field);
                if (id != null && id.isTextual()) {
                    return recordKind + ":" + id.asText();
                }
            } catch (java.io.IOException | RuntimeException notJson) {
                // falls through to the hash of the bytes
            }
        }
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(data);
        return recordKind + "#" + Base64.getEncoder().encodeToString(digest);
    }
}
