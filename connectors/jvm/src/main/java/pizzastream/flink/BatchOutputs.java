package pizzastream.flink;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * Fans one Python result per batch out to the streams it feeds, in the JVM: a Python function
 * that emitted each output itself would cross back into the JVM once per output, ten times
 * per order. The result is UTF-8 lines {@code <tag><key>\t<payload>\n} (tag one character; key
 * without tab or newline; payload without newline), written by {@code pizzastream.batches};
 * lines of {@code mainTag} go to the main output, the others to the side output
 * {@code tag(c)} named {@code "batch-<c>"}; each becomes {@code Row(partition_key, payload)}.
 *
 * <p>A line may stand for more than one output record ({@code pizzastream.batches.LineRoutes},
 * which reads them the same way in Python), so that Python writes, and this function decodes,
 * each payload once: the record of a line whose tag is a key of {@code copies} goes to each
 * output the value names (the one {@code Row} to each: no consumer changes a record it is
 * handed); a line whose tag is a key of {@code cached} carries {@code <id>\t<value>\t} ahead
 * of its payload: {@code Row(id, value)} goes to the side output the value names, {@code
 * Row(key, rest of the line)} to the tag's own output (an order's status and its Redis cache
 * entry are one line).
 *
 * <p>The payload of a side output's line whose tag is a key of {@code rowKinds} is a table row's
 * tab-separated fields, put out as the typed row {@link DelimitedRows} reads with the value's
 * kinds (no {@code Row(key, payload)} and no string of the payload in between).
 */
public final class BatchOutputs extends ProcessFunction<byte[], Row> {
    private static final long serialVersionUID = 1L;

    /** {@code Row(partition_key, payload)}, as connectors.kinesis.KEYED_RECORD. */
    public static final TypeInformation<Row> KEYED_RECORD =
            Types.ROW_NAMED(new String[] {"partition_key", "payload"}, Types.STRING, Types.STRING);

    private static final int TAGS = 128;

    private final char mainTag;
    private final String sideTags;
    /** By line tag: the outputs its record goes to (the tag itself unless copied). */
    private final String[] routes = new String[TAGS];
    /** By line tag: the output of the {@code (id, value)} its payload starts with, or 0. */
    private final char[] cacheOf = new char[TAGS];
    /** By output tag: the reader of its table rows, or null (a {@code Row(key, payload)}). */
    private final DelimitedRows[] rows = new DelimitedRows[TAGS];
    private transient OutputTag<Row>[] sides;

    public BatchOutputs(String mainTag, String sideTags) {
        this(mainTag, sideTags, Map.of(), Map.of(), Map.of());
    }

    public BatchOutputs(String mainTag, String sideTags, Map<String, String> copies,
                        Map<String, String> cached, Map<String, String> rowKinds) {
        if (mainTag.length() != 1 || sideTags.indexOf(mainTag.charAt(0)) >= 0) {
            throw new IllegalArgumentException("one main tag, not among the side tags");
        }
        this.mainTag = mainTag.charAt(0);
        this.sideTags = sideTags;
        String outputs = mainTag + sideTags;
        for (char c : outputs.toCharArray()) {
            routes[ascii(c)] = String.valueOf(c);
        }
        for (Map.Entry<String, String> layout : rowKinds.entrySet()) {
            String tag = layout.getKey();
            if (tag.length() != 1 || sideTags.indexOf(tag.charAt(0)) < 0
                    || String.join("", copies.values()).indexOf(tag.charAt(0)) >= 0
                    || cached.containsKey(tag) || cached.containsValue(tag)) {
                throw new IllegalArgumentException(
                        "a table row's tag is a side output of its own lines: " + tag);
            }
            rows[ascii(tag.charAt(0))] = new DelimitedRows(layout.getValue());
        }
        for (Map.Entry<String, String> copy : copies.entrySet()) {
            String tag = copy.getKey();
            if (tag.length() != 1 || outputs.indexOf(tag.charAt(0)) >= 0
                    || copy.getValue().isEmpty() || !allIn(copy.getValue(), outputs)) {
                throw new IllegalArgumentException(
                        "a copied line's tag is one character of no output, and names outputs: "
                                + tag + " -> " + copy.getValue());
            }
            routes[ascii(tag.charAt(0))] = copy.getValue();
        }
        for (Map.Entry<String, String> cache : cached.entrySet()) {
            String tag = cache.getKey();
            String to = cache.getValue();
            if (tag.length() != 1 || outputs.indexOf(tag.charAt(0)) < 0 || to.length() != 1
                    || sideTags.indexOf(to.charAt(0)) < 0 || to.equals(tag)) {
                throw new IllegalArgumentException(
                        "a cached line's tag is an output, its cache another side output: "
                                + tag + " -> " + to);
            }
            cacheOf[ascii(tag.charAt(0))] = to.charAt(0);
        }
    }

    private static int ascii(char c) {
        if (c >= TAGS) {
            throw new IllegalArgumentException("tags are ASCII: " + c);
        }
        return c;
    }

    private static boolean allIn(String tags, String outputs) {
        for (char c : tags.toCharArray()) {
            if (outputs.indexOf(c) < 0) {
                return false;
            }
        }
        return true;
    }

    /** The side output of lines tagged {@code tag}. */
    public static OutputTag<Row> tag(String tag) {
        return new OutputTag<>("batch-" + tag, KEYED_RECORD);
    }

    @Override
    @SuppressWarnings("unchecked")
    public void open(org.apache.flink.api.common.functions.OpenContext context) {
        sides = new OutputTag[TAGS];
        for (char c : sideTags.toCharArray()) {
            sides[c] = rows[c] == null ? tag(String.valueOf(c))
                                       : new OutputTag<>("batch-" + c, rows[c].rowType());
        }
    }

    @Override
    public void processElement(byte[] result, Context ctx, Collector<Row> out) {
        int i = 0;
        int end = result.length;
        while (i < end) {
            char tag = (char) result[i];
            String to = tag < TAGS ? routes[tag] : null;
            if (to == null) {
                throw new IllegalStateException("result line with unknown tag " + tag);
            }
            int tab = indexOf(result, (byte) '\t', i + 1, end);
            int start = tab + 1;
            char cache = cacheOf[tag];
            if (cache != 0) {
                int idEnd = indexOf(result, (byte) '\t', start, end);
                int valueEnd = indexOf(result, (byte) '\t', idEnd + 1, end);
                emit(cache, Row.of(new String(result, start, idEnd - start, StandardCharsets.UTF_8),
                                   new String(result, idEnd + 1, valueEnd - idEnd - 1,
                                              StandardCharsets.UTF_8)), ctx, out);
                start = valueEnd + 1;
            }
            int newline = indexOf(result, (byte) '\n', start, end);
            DelimitedRows table = rows[tag];
            Row row = table != null
                    ? table.parse(result, start, newline)
                    : Row.of(new String(result, i + 1, tab - i - 1, StandardCharsets.UTF_8),
                             new String(result, start, newline - start, StandardCharsets.UTF_8));
            for (int n = 0; n < to.length(); n++) {
                emit(to.charAt(n), row, ctx, out);
            }
            i = newline + 1;
        }
    }

    private void emit(char output, Row row, Context ctx, Collector<Row> out) {
        if (output == mainTag) {
            out.collect(row);
        } else {
            ctx.output(sides[output], row);
        }
    }

    private static int indexOf(byte[] bytes, byte wanted, int from, int end) {
        for (int i = from; i < end; i++) {
            if (bytes[i] == wanted) {
                return i;
            }
        }
        throw new IllegalStateException("result line cut short at byte " + from);
    }
}
