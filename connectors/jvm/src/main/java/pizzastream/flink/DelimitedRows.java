package pizzastream.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/**
 * {@code Row(partition_key, payload)} whose payload is tab-separated fields into a typed row:
 * the shape of a table row that {@link BatchOutputs} delivered as text. {@code kinds} has one
 * letter per field: {@code I} int, {@code L} long, {@code S} string.
 *
 * <p>The payloads are the jobs' own output ({@code pizzastream.batches}), so a payload with
 * more or fewer fields than {@code kinds} is a bug between the Python writer and this reader:
 * it fails loudly rather than shift or repeat a value into the wrong column of a table.
 */
public final class DelimitedRows implements MapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    private final String kinds;

    public DelimitedRows(String kinds) {
        this.kinds = kinds;
    }

    @Override
    public Row map(Row record) {
        String payload = (String) record.getField(1);
        Row row = new Row(kinds.length());
        int start = 0;
        for (int field = 0; field < kinds.length(); field++) {
            if (start < 0) {
                throw new IllegalArgumentException(
                        "payload has " + field + " fields, kinds " + kinds + " wants "
                                + kinds.length() + ": " + payload);
            }
            int tab = payload.indexOf('\t', start);
            String text = tab < 0 ? payload.substring(start) : payload.substring(start, tab);
            switch (kinds.charAt(field)) {
                case 'I':
                    row.setField(field, Integer.parseInt(text));
                    break;
                case 'L':
                    row.setField(field, Long.parseLong(text));
                    break;
                default:
                    row.setField(field, text);
            }
            start = tab < 0 ? -1 : tab + 1;
        }
        if (start >= 0) {
            throw new IllegalArgumentException(
                    "payload has more fields than kinds " + kinds + ": " + payload);
        }
        return row;
    }
}
