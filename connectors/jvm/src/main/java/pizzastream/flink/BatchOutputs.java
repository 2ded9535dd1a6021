package pizzastream.flink;

import java.nio.charset.StandardCharsets;
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
 */
public final class BatchOutputs extends ProcessFunction<byte[], Row> {
    private static final long serialVersionUID = 1L;

    /** {@code Row(partition_key, payload)}, as connectors.kinesis.KEYED_RECORD. */
    public static final TypeInformation<Row> KEYED_RECORD =
            Types.ROW_NAMED(new String[] {"partition_key", "payload"}, Types.STRING, Types.STRING);

    private final char mainTag;
    private final String sideTags;
    private transient OutputTag<Row>[] sides;

    public BatchOutputs(String mainTag, String sideTags) {
        if (mainTag.length() != 1 || sideTags.indexOf(mainTag.charAt(0)) >= 0) {
            throw new IllegalArgumentException("one main tag, not among the side tags");
        }
        this.mainTag = mainTag.charAt(0);
        this.sideTags = sideTags;
    }

    /** The side output of lines tagged {@code tag}. */
    public static OutputTag<Row> tag(String tag) {
        return new OutputTag<>("batch-" + tag, KEYED_RECORD);
    }

    @Override
    @SuppressWarnings("unchecked")
    public void open(org.apache.flink.api.common.functions.OpenContext context) {
        sides = new OutputTag[128];
        for (char c : sideTags.toCharArray()) {
            sides[c] = tag(String.valueOf(c));
        }
    }

    @Override
    public void processElement(byte[] result, Context ctx, Collector<Row> out) {
        int i = 0;
        int end = result.length;
        while (i < end) {
            char tag = (char) result[i];
            int tab = indexOf(result, (byte) '\t', i + 1, end);
            int newline = indexOf(result, (byte) '\n', tab + 1, end);
            Row row = Row.of(new String(result, i + 1, tab - i - 1, StandardCharsets.UTF_8),
                             new String(result, tab + 1, newline - tab - 1, StandardCharsets.UTF_8));
            if (tag == mainTag) {
                out.collect(row);
            } else if (tag < 128 && sides[tag] != null) {
                ctx.output(sides[tag], row);
            } else {
                throw new IllegalStateException("result line with unknown tag " + tag);
            }
            i = newline + 1;
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
