package pizzastream.flink.bench;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFlatMapFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The other half of the micro-batching prototype: a batched output
 * {@code Row(partition_key, "line\nline...")} from Python becomes one
 * {@code Row(partition_key, line)} per line, what a Kinesis sink or Redis sink takes.
 * Lines of the form {@code key<TAB>payload} carry their own partition key. With a progress
 * directory, the lines are counted (the prototype's output rate).
 */
public final class Unbatch extends RichFlatMapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    private final String progressDir;
    private final String name;
    private transient Progress progress;

    public Unbatch() {
        this(null, null);
    }

    public Unbatch(String progressDir, String name) {
        this.progressDir = progressDir;
        this.name = name;
    }

    @Override
    public void open(OpenContext openContext) {
        if (progressDir != null) {
            progress = new Progress(progressDir, name,
                    getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
        }
    }

    @Override
    public void close() {
        if (progress != null) {
            progress.close();
        }
    }

    @Override
    public void flatMap(Row batch, Collector<Row> out) {
        String key = String.valueOf(batch.getField(0));
        String lines = String.valueOf(batch.getField(1));
        int start = 0;
        int count = 0;
        while (start <= lines.length()) {
            int end = lines.indexOf('\n', start);
            if (end < 0) {
                end = lines.length();
            }
            if (end > start) {
                int tab = lines.indexOf('\t', start);
                if (tab >= 0 && tab < end) {
                    out.collect(Row.of(lines.substring(start, tab), lines.substring(tab + 1, end)));
                } else {
                    out.collect(Row.of(key, lines.substring(start, end)));
                }
                count++;
            }
            start = end + 1;
        }
        if (progress != null) {
            progress.add(count);
        }
    }
}
