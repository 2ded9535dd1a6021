package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.formats.json.JsonRowDeserializationSchema;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class FlatJsonRowsTest {
    // hourly_metrics' SALE_RECORD
    private static final String[] NAMES = {"o", "s", "c", "f", "t", "n", "r"};
    private static final String KINDS = "SISSLLL";
    private final FlatJsonRows rows = new FlatJsonRows(NAMES, KINDS);

    private Row read(String json) throws IOException {
        return rows.deserialize(json.getBytes(StandardCharsets.UTF_8));
    }

    // a sale as pizzastream.sales.sale_json writes it (the enriched order, then n and r)
    private static final String SALE = "{\"e\":\"ev-1\",\"o\":\"S0042-000123\",\"s\":42,"
            + "\"c\":\"online\",\"f\":\"delivery\",\"t\":1795000000123,"
            + "\"cu\":{\"lat\":40.71,\"lon\":-74.0},\"l\":[[7,2,1299],[9,1,450]],"
            + "\"n\":3,\"r\":3048}";

    @Test
    void readsTheNamedFieldsAndSkipsTheRest() throws IOException {
        assertEquals(
                Row.of("S0042-000123", 42, "online", "delivery", 1795000000123L, 3L, 3048L),
                read(SALE));
    }

    @Test
    void readsWhatFlinksJsonFormatReadsFromTheSalesStream() throws Exception {
        RowTypeInfo type = (RowTypeInfo) rows.getProducedType();
        assertEquals(Types.ROW_NAMED(NAMES, Types.STRING, Types.INT, Types.STRING, Types.STRING,
                                     Types.LONG, Types.LONG, Types.LONG), type);
        JsonRowDeserializationSchema flinks = new JsonRowDeserializationSchema.Builder(type).build();
        flinks.open(null);
        for (String record : new String[] {
                SALE,
                "{\"pos\":3,\"s\":17,\"t\":1795000000000}",        // a POS progress marker
                "{\"o\":\"A\\\"1\",\"s\":1,\"t\":5,\"n\":null}",   // escapes, an explicit null
                "{\"s\":1,\"s\":2}",                                // the last of a name
                "{\"c\":\"in_store\",\"x\":[{\"y\":[1,{}]}],\"t\":0}",
        }) {
            byte[] bytes = record.getBytes(StandardCharsets.UTF_8);
            assertEquals(flinks.deserialize(bytes), rows.deserialize(bytes), record);
        }
    }

    @Test
    void missingAndNullFieldsAreNull() throws IOException {
        assertEquals(Row.of(null, 17, null, null, 1795000000000L, null, null),
                     read("{\"pos\":3,\"s\":17,\"t\":1795000000000,\"o\":null}"));
    }

    @Test
    void aStringFieldTakesAScalarsText() throws IOException {
        assertEquals("12", read("{\"o\":12}").getField(0));
        assertEquals("true", read("{\"o\":true}").getField(0));
    }

    @Test
    void jsonThatIsNoObjectIsNoRow() throws IOException {
        assertNull(read("[1,2]"));
        assertNull(read("\"sale\""));
        assertNull(read("42"));
        assertNull(read(""));
    }

    @Test
    void aFieldOfTheWrongKindIsAnErrorNamingIt() {
        for (String record : new String[] {
                "{\"s\":\"42\"}",                  // a string where an int is wanted
                "{\"s\":4.2}",                     // a fraction
                "{\"s\":3000000000}",              // beyond an int
                "{\"t\":99999999999999999999}",    // beyond a long
                "{\"o\":{\"id\":1}}",              // a container for a string
                "{\"n\":[3]}",
        }) {
            IOException error = assertThrows(IOException.class, () -> read(record), record);
            assertEquals(true, error.getMessage().startsWith("field "), error.getMessage());
        }
    }

    @Test
    void brokenJsonIsAnError() {
        for (String record : new String[] {
                "not json", "{\"o\":\"A\",", "{\"o\":\"A\"", "{\"l\":[1,2}", "{o:1}",
        }) {
            assertThrows(IOException.class, () -> read(record), record);
        }
    }

    @Test
    void anIntegerWithinALongIsALong() throws IOException {
        assertEquals(5L, read("{\"n\":5}").getField(5));
        assertEquals(Long.MIN_VALUE, read("{\"t\":" + Long.MIN_VALUE + "}").getField(4));
    }

    @Test
    void kindsAreCheckedWhereTheJobIsBuilt() {
        assertThrows(IllegalArgumentException.class, () -> new FlatJsonRows(NAMES, "SIS"));
        assertThrows(IllegalArgumentException.class,
                     () -> new FlatJsonRows(new String[] {"a"}, "D"));
    }
}
