package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class DelimitedRowsTest {
    @Test
    void tabSeparatedFieldsBecomeTypedColumns() {
        Row row = new DelimitedRows("ILSS").map(Row.of("7", "42\t1795500000123\tpickup\tnote"));
        assertEquals(Row.of(42, 1795500000123L, "pickup", "note"), row);
        assertEquals(Integer.class, row.getField(0).getClass());
        assertEquals(Long.class, row.getField(1).getClass());
    }

    @Test
    void stringsMayBeEmptyAndNumbersNegative() {
        assertEquals(Row.of("", -3, ""), new DelimitedRows("SIS").map(Row.of("k", "\t-3\t")));
        assertEquals(Row.of("only"), new DelimitedRows("S").map(Row.of("k", "only")));
    }

    @Test
    void aNumberThatIsNoneFailsLoudly() {
        DelimitedRows rows = new DelimitedRows("IL");
        assertThrows(NumberFormatException.class, () -> rows.map(Row.of("k", "x\t1")));
        assertThrows(NumberFormatException.class, () -> rows.map(Row.of("k", "1\t")));
        assertThrows(NumberFormatException.class,
                () -> new DelimitedRows("I").map(Row.of("k", "3000000000")));
    }

    @Test
    void aPayloadWithTooFewOrTooManyFieldsFailsInsteadOfShiftingColumns() {
        DelimitedRows rows = new DelimitedRows("IS");
        assertThrows(IllegalArgumentException.class, () -> rows.map(Row.of("k", "1")));
        assertThrows(IllegalArgumentException.class, () -> rows.map(Row.of("k", "1\ta\tb")));
        assertEquals(Row.of(1, ""), rows.map(Row.of("k", "1\t")));
    }
}
