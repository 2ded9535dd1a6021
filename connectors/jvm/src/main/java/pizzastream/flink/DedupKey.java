package pizzastream.flink;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
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
 * A record is read only as far as its id. A record whose id comes among the plain string
 * fields it opens with, as in every order the pipeline writes ({@code {"e":"...","o":"..."}}),
 * has it read straight from its bytes: a JSON parser per record was ~11% of the JVM's time on
 * the store batches' thread in the chained benchmark (JFR).
 */
public final class DedupKey implements KeySelector<Row, String> {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory();

    private final HashMap<String, String> idFieldByKind;
    /** Each kind's id field name as bytes (built on first use: a key selector is
     * serialized with the job). */
    private transient HashMap<String, byte[]> fieldBytesByKind;

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
            if (fieldBytesByKind == null) {
                fieldBytesByKind = new HashMap<>();
                idFieldByKind.forEach((kind, name) -> fieldBytesByKind.put(
                        kind, name.getBytes(StandardCharsets.UTF_8)));
            }
            String id = leadingString(data, fieldBytesByKind.get(recordKind));
            if (id == null) {
                id = topLevelString(data, field);
            }
            if (id != null) {
                return recordKind + ":" + id;
            }
        }
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(data);
        return recordKind + "#" + Base64.getEncoder().encodeToString(digest);
    }

    /**
     * The string value of a top-level field among the string fields a record opens with
     * ({@code {"e":"...","o":"..."}}), each name and value printable ASCII without escapes, so
     * their bytes are their text: what {@link #topLevelString} returns for such a record,
     * without a parser. Null as soon as the record holds anything else before the field (a
     * number, a space, an escape), which {@link #topLevelString} then reads.
     */
    static String leadingString(byte[] data, byte[] field) {
        int i = 0;
        int end = data.length;
        if (end == 0 || data[i++] != '{') {
            return null;
        }
        while (i < end && data[i] == '"') {
            int nameStart = i + 1;
            int nameEnd = plainStringEnd(data, nameStart);
            if (nameEnd < 0 || nameEnd + 2 >= end
                    || data[nameEnd + 1] != ':' || data[nameEnd + 2] != '"') {
                return null;
            }
            int valueStart = nameEnd + 3;
            int valueEnd = plainStringEnd(data, valueStart);
            if (valueEnd < 0) {
                return null;
            }
            if (Arrays.equals(data, nameStart, nameEnd, field, 0, field.length)) {
                return new String(data, valueStart, valueEnd - valueStart,
                                  StandardCharsets.ISO_8859_1);
            }
            i = valueEnd + 1;
            if (i >= end || data[i++] != ',') {
                return null;
            }
        }
        return null;
    }

    /** Where the string whose text starts at {@code from} ends (its closing quote), or -1 if
     * it holds a byte that is not printable ASCII or an escape, or is cut short. */
    private static int plainStringEnd(byte[] data, int from) {
        for (int i = from; i < data.length; i++) {
            byte b = data[i];
            if (b == '"') {
                return i;
            }
            if (b < 0x20 || b > 0x7E || b == '\\') {
                return -1;
            }
        }
        return -1;
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
