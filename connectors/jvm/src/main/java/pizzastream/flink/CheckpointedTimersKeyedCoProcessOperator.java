package pizzastream.flink;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.functions.python.DataStreamPythonFunctionInfo;
import org.apache.flink.streaming.api.operators.python.process.ExternalPythonKeyedCoProcessOperator;
import org.apache.flink.types.Row;

/**
 * PyFlink's keyed co-process operator (a Python {@code KeyedCoProcessFunction} in a worker
 * process) with the timers the function registered put in every checkpoint.
 *
 * <p>PyFlink 1.20 receives a timer the Python function registers on a gRPC thread and queues
 * it; it hands the queue to Flink's timer service only when a watermark reaches the operator
 * ({@code AbstractPythonFunctionOperator.advanceWatermark}). Before a checkpoint barrier it
 * finishes the bundle, so every element's state is written, but it does not hand over the
 * queue: a timer registered since the last watermark is in no checkpoint. A job restored
 * from one has the function's state and not its timer. {@code HourPublisher} publishes an
 * hour on such a timer, so an hour that closed just before a checkpoint, followed by a
 * failure before the next watermark (S3 down, tests/failures), was never published: its rows
 * sat in state with nothing to fire. Here the queue is handed over after the bundle and
 * before the barrier, as a watermark would. Registering a queued timer is what the watermark
 * path does at any time, so doing it earlier changes nothing else.
 */
public final class CheckpointedTimersKeyedCoProcessOperator<OUT>
        extends ExternalPythonKeyedCoProcessOperator<OUT> {
    private static final long serialVersionUID = 1L;

    public CheckpointedTimersKeyedCoProcessOperator(
            Configuration config,
            DataStreamPythonFunctionInfo pythonFunctionInfo,
            TypeInformation<Row> inputTypeInfo1,
            TypeInformation<Row> inputTypeInfo2,
            TypeInformation<OUT> outputTypeInfo) {
        super(config, pythonFunctionInfo, inputTypeInfo1, inputTypeInfo2, outputTypeInfo);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        invokeFinishBundle(); // every element's results, and the timers they registered
        drainUnregisteredTimers(); // into the timer service, so into this checkpoint
        super.prepareSnapshotPreBarrier(checkpointId);
    }
}
