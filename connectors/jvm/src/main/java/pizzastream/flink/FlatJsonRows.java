package pizzastream.flink;

import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.types.Row;

/**
 * A JSON object read into a flat row of named {@code STRING}, {@code INT} and {@code BIGINT}
 * fields in one pass of Jackson's streaming parser: no tree of the record, no converter per
 * node. hourly_metrics decodes every sale with it ({@link JsonRows}): Flink's JSON format
 * ({@code JsonRowDeserializationSchema}), which it replaces there, builds a tree of the whole
 * record first, the order's lines included, only to read seven scalar fields from it.
 *
 * <p>The row's fields come by name, in the given order, with their kinds as letters ({@code
 * S} string, {@code I} int, {@code L} long: {@link DelimitedRows}' letters). A field the
 * record lacks, or holds as {@code null}, is null; fields not named are skipped whatever they
 * hold; for a name given twice the last value counts. A string field takes a JSON string (a
 * number or boolean as its text); a number field takes a JSON integer in its range. Anything
 * else (an object or array for a named field, a string or fraction where an integer is
 * wanted, an integer out of range, broken JSON inside the object) is an {@code IOException}
 * naming the problem, which {@link JsonRows} counts and drops. A record that is JSON but no
 * object is {@code null}. What follows the object is not read (as Flink's JSON format).
 */
public final class FlatJsonRows implements DeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory();

    private final String[] names;
    private final String kinds;
    private transient Map<String, Integer> index;

    public FlatJsonRows(String[] names, String kinds) {
        if (names.length != kinds.length() || names.length == 0) {
            throw new IllegalArgumentException("one kind letter per field name, at least one");
        }
        for (char kind : kinds.toCharArray()) {
            if ("SIL".indexOf(kind) < 0) {
                throw new IllegalArgumentException("field kinds are S, I or L: " + kinds);
            }
        }
        this.names = names.clone();
        this.kinds = kinds;
    }

    @Override
    public void open(InitializationContext context) {
        index();
    }

    private Map<String, Integer> index() {
        if (index == null) {
            Map<String, Integer> byName = new HashMap<>();
            for (int i = 0; i < names.length; i++) {
                byName.put(names[i], i);
            }
            index = byName;
        }
        return index;
    }

    @Override
    public Row deserialize(byte[] message) throws IOException {
        Map<String, Integer> fields = index();
        try (JsonParser parser = JSON.createParser(message)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            Row row = new Row(names.length);
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                Integer at = fields.get(parser.currentName());
                JsonToken value = parser.nextToken();
                if (at == null) {
                    parser.skipChildren();
                } else {
                    row.setField(at, value(parser, value, at));
                }
            }
            if (token != JsonToken.END_OBJECT) {
                throw new IOException("the object is cut short");
            }
            return row;
        }
    }

    private Object value(JsonParser parser, JsonToken token, int at) throws IOException {
        if (token == JsonToken.VALUE_NULL) {
            return null;
        }
        char kind = kinds.charAt(at);
        if (kind == 'S') {
            if (token == JsonToken.VALUE_STRING || token.isScalarValue()) {
                return parser.getText();
            }
        } else if (token == JsonToken.VALUE_NUMBER_INT) {
            JsonParser.NumberType size = parser.getNumberType();
            if (kind == 'L' && size != JsonParser.NumberType.BIG_INTEGER) {
                return parser.getLongValue();
            }
            if (kind == 'I' && size == JsonParser.NumberType.INT) {
                return parser.getIntValue();
            }
            throw new IOException("field " + names[at] + ": out of range");
        }
        throw new IOException("field " + names[at] + ": " + token + " is no "
                + (kind == 'S' ? "string" : "integer"));
    }

    @Override
    public boolean isEndOfStream(Row next) {
        return false;
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        TypeInformation<?>[] types = new TypeInformation<?>[names.length];
        for (int i = 0; i < names.length; i++) {
            char kind = kinds.charAt(i);
            types[i] = kind == 'S' ? Types.STRING : kind == 'I' ? Types.INT : Types.LONG;
        }
        return new RowTypeInfo(types, names.clone());
    }
}
