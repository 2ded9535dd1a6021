package pizzastream.flink;

import java.io.IOException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.types.Row;

/**
 * What makes two tagged records {@code Row(partition_key, Row(kind, data))} the same event:
 * the JSON field named for their kind (the order id of an order, the event id of a restock),
 * or, for a record without it, a hash of its bytes so an identical bad record repeats too.
 * A record is read only as far as its id.
 */
public final class DedupKey implements KeySelector<Row, String> {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory();

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
            String id = topLevelString(data, field);
            if (id != null) {
                return recordKind + ":" + id;
            }
        }
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(data);
        return recordKind + "#" + Base64.getEncoder().encodeToString(digest);
    }

    /** The string value of a top-level field, reading only as far as that field (the ids
     * lead the pipeline's records); null if the record is no JSON object, lacks the field, or
     * it is not a string. */
    static String topLevelString(byte[] data, String field) {
        try (JsonParser parser = JSON.createParser(data)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            while (parser.nextToken() == JsonToken.FIELD_NAME) {
                String name = parser.currentName();
                JsonToken value = parser.nextToken();
                if (field.equals(name)) {
                    return value == JsonToken.VALUE_STRING ? parser.getText() : null;
                }
                parser.skipChildren();
            }
            return null;
        } catch (IOException | RuntimeException notJson) {
            return null;
        }
    }
}
