package pizzastream.flink;

import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.types.Row;

/**
 * A payload of tab-separated fields, read from a result line's bytes, as a typed row: the shape
 * of a table row that Python wrote as text ({@code pizzastream.order_batches.ROW_LAYOUTS}),
 * parsed by {@link BatchOutputs} as it reads the line, without making a string of the payload
 * first. {@code kinds} has one letter per field: {@code I} int, {@code L} long, {@code S} string
 * (UTF-8); numbers are read as {@link Integer#parseInt} and {@link Long#parseLong} read them.
 *
 * <p>The payloads are the jobs' own output ({@code pizzastream.batches}), so a payload with
 * more or fewer fields than {@code kinds} is a bug between the Python writer and this reader:
 * it fails loudly rather than shift or repeat a value into the wrong column of a table.
 */
public final class DelimitedRows implements Serializable {
    private static final long serialVersionUID = 1L;

    private final String kinds;

    public DelimitedRows(String kinds) {
        for (char kind : kinds.toCharArray()) {
            if (kind != 'I' && kind != 'L' && kind != 'S') {
                throw new IllegalArgumentException("field kinds are I, L or S: " + kinds);
            }
        }
        this.kinds = kinds;
    }

    /** The rows' type, by position (the job names the fields: jobs.operators.batch_rows). */
    public TypeInformation<Row> rowType() {
        TypeInformation<?>[] types = new TypeInformation<?>[kinds.length()];
        for (int field = 0; field < types.length; field++) {
            char kind = kinds.charAt(field);
            types[field] = kind == 'I' ? Types.INT : kind == 'L' ? Types.LONG : Types.STRING;
        }
        return Types.ROW(types);
    }

    /** The row of the payload in {@code bytes[from, to)}. */
    public Row parse(byte[] bytes, int from, int to) {
        Row row = new Row(kinds.length());
        int start = from;
        for (int field = 0; field < kinds.length(); field++) {
            if (start < 0) {
                throw new IllegalArgumentException(
                        "payload has " + field + " fields, kinds " + kinds + " wants "
                                + kinds.length() + ": " + text(bytes, from, to));
            }
            int tab = start;
            while (tab < to && bytes[tab] != '\t') {
                tab++;
            }
            switch (kinds.charAt(field)) {
                case 'I':
                    row.setField(field, (int) number(bytes, start, tab, Integer.MAX_VALUE));
                    break;
                case 'L':
                    row.setField(field, number(bytes, start, tab, Long.MAX_VALUE));
                    break;
                default:
                    row.setField(field, text(bytes, start, tab));
            }
            start = tab < to ? tab + 1 : -1;
        }
        if (start >= 0) {
            throw new IllegalArgumentException(
                    "payload has more fields than kinds " + kinds + ": " + text(bytes, from, to));
        }
        return row;
    }

    /**
     * A decimal number in {@code [-max - 1, max]}: optional sign, ASCII digits, read here; any
     * other text is read by {@link Long#parseLong} (what it accepts beyond ASCII digits, it
     * accepts here too; what it refuses fails the same way).
     */
    private static long number(byte[] bytes, int from, int to, long max) {
        int i = from;
        boolean negative = i < to && bytes[i] == '-';
        if (i < to && (negative || bytes[i] == '+')) {
            i++;
        }
        long limit = negative ? -max - 1 : -max;   // accumulated negatively, as the JDK does
        long value = 0;
        if (i == to) {
            return slow(bytes, from, to, max);
        }
        for (; i < to; i++) {
            int digit = bytes[i] - '0';
            if (digit < 0 || digit > 9) {
                return slow(bytes, from, to, max);
            }
            if (value < limit / 10 || value * 10 < limit + digit) {
                throw new NumberFormatException("out of range: " + text(bytes, from, to));
            }
            value = value * 10 - digit;
        }
        return negative ? value : -value;
    }

    private static long slow(byte[] bytes, int from, int to, long max) {
        String text = text(bytes, from, to);
        return max == Integer.MAX_VALUE ? Integer.parseInt(text) : Long.parseLong(text);
    }

    private static String text(byte[] bytes, int from, int to) {
        return new String(bytes, from, to - from, StandardCharsets.UTF_8);
    }
}
