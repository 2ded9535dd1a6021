package pizzastream.flink.bench;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;

/**
 * Counts what leaves the measured operator (identity map, progress files under
 * {@code name}). A Python operator takes records in faster than it finishes them while its
 * bundle fills, by up to a whole bundle, so its throughput is read after it, not at the
 * generator.
 */
public final class Count extends RichMapFunction<Object, Object> {
    private static final long serialVersionUID = 1L;

    private final String progressDir;
    private final String name;
    private transient Progress progress;

    public Count(String progressDir, String name) {
        this.progressDir = progressDir;
        this.name = name;
    }

    @Override
    public void open(OpenContext openContext) {
        progress = new Progress(progressDir, name,
                getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
    }

    @Override
    public Object map(Object value) {
        progress.add(1);
        return value;
    }

    @Override
    public void close() {
        if (progress != null) {
            progress.close();
        }
    }
}
