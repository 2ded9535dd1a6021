package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class DelimitedRowsTest {
    /** The payload as BatchOutputs hands it over: within a longer line. */
    private static Row parse(String kinds, String payload) {
        byte[] line = ("x7\t" + payload + "\n").getBytes(StandardCharsets.UTF_8);
        return new DelimitedRows(kinds).parse(line, 3, line.length - 1);
    }

    @Test
    void tabSeparatedFieldsBecomeTypedColumns() {
        Row row = parse("ILSS", "42\t1795500000123\tpickup\tnoté 🍕");
        assertEquals(Row.of(42, 1795500000123L, "pickup", "noté 🍕"), row);
        assertEquals(Integer.class, row.getField(0).getClass());
        assertEquals(Long.class, row.getField(1).getClass());
    }

    @Test
    void stringsMayBeEmptyAndNumbersSignedOrAtTheirBounds() {
        assertEquals(Row.of("", -3, ""), parse("SIS", "\t-3\t"));
        assertEquals(Row.of("only"), parse("S", "only"));
        assertEquals(Row.of(""), parse("S", ""));
        assertEquals(Row.of(Integer.MIN_VALUE, Integer.MAX_VALUE, 5),
                parse("III", "-2147483648\t2147483647\t+5"));
        assertEquals(Row.of(Long.MIN_VALUE, Long.MAX_VALUE),
                parse("LL", "-9223372036854775808\t9223372036854775807"));
        // what Integer.parseInt reads beyond ASCII digits, this reads too
        assertEquals(Row.of(12), parse("I", "١٢"));
    }

    @Test
    void aNumberThatIsNoneFailsLoudly() {
        for (String bad : new String[] {"x\t1", "1\t", "-\t1", "+\t1", "1 \t1", "--1\t1"}) {
            assertThrows(NumberFormatException.class, () -> parse("IL", bad), bad);
        }
        for (String big : new String[] {"3000000000", "2147483648", "-2147483649"}) {
            assertThrows(NumberFormatException.class, () -> parse("I", big), big);
        }
        assertThrows(NumberFormatException.class, () -> parse("L", "9223372036854775808"));
        assertThrows(NumberFormatException.class, () -> parse("L", "-9223372036854775809"));
        assertThrows(NumberFormatException.class, () -> parse("L", "99999999999999999999"));
    }

    @Test
    void aPayloadWithTooFewOrTooManyFieldsFailsInsteadOfShiftingColumns() {
        assertThrows(IllegalArgumentException.class, () -> parse("IS", "1"));
        assertThrows(IllegalArgumentException.class, () -> parse("IS", "1\ta\tb"));
        assertEquals(Row.of(1, ""), parse("IS", "1\t"));
    }

    @Test
    void kindsAreILOrS() {
        assertThrows(IllegalArgumentException.class, () -> new DelimitedRows("IX"));
    }
}
