package pizzastream.flink;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.time.Duration;

/**
 * Lets the first record of each dedup key through and sends repeats to a side output.
 *
 * <p>Runs in the JVM on purpose: a Python keyed lookup of a never-seen id misses every cache
 * and costs a synchronous JVM round trip per event. Keys are remembered for {@code ttl}
 * (longer than the oldest event time the rules accept), then expire.
 */
public final class FirstSeenFilter extends KeyedProcessFunction<String, Row, Row> {
    private static final long serialVersionUID = 1L;

    public static final OutputTag<Row> REPEATS =
            new OutputTag<>("repeats", KeyedRawRecordSchema.TYPE);

    private final long ttlMillis;
    private transient ValueState<Boolean> seen;

    public FirstSeenFilter(long ttlMillis) {
        this.ttlMillis = ttlMillis;
    }

    @Override
    public void open(OpenContext openContext) {
        ValueStateDescriptor<Boolean> descriptor = new ValueStateDescriptor<>("seen", Types.BOOLEAN);
        descriptor.enableTimeToLive(
                StateTtlConfig.newBuilder(Duration.ofMillis(ttlMillis))
                        .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                        .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                        .build());
        seen = getRuntimeContext().getState(descriptor);
    }

    @Override
    public void processElement(Row record, Context ctx, Collector<Row> out) throws Exception {
        if (seen.value() != null) {
            ctx.output(REPEATS, record);
            return;
        }
        seen.update(Boolean.TRUE);
        out.collect(record);
    }
}
