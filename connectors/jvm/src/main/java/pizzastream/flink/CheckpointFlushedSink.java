package pizzastream.flink;

import java.io.IOException;
import org.apache.flink.api.common.operators.ProcessingTimeService;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;

/**
 * The one shape of the project's own sinks: each writer buffers what it receives and writes
 * the buffer out on every checkpoint, so what a checkpoint covers is in the target
 * (at-least-once; every sink's write is idempotent by key, so the replay after a restart leaves
 * the same data).
 *
 * <p>A sink says how to buffer and write through four hooks of its {@link Buffer}, one per
 * writer: {@code setup} (open what the writer needs, once), {@code write} (one element into
 * the buffer), {@code flush} (write the buffer out) and {@code close} (release). The writer
 * here decides when to flush:
 * <ul>
 *   <li>on every checkpoint: Flink calls {@link SinkWriter#flush} before the barrier;</li>
 *   <li>at the end of a bounded input (the same call, {@code endOfInput} true);</li>
 *   <li>when the buffer holds {@code flushAtCount} elements, if that is positive;</li>
 *   <li>{@code flushAfterMillis} after a write found no flush scheduled, if that is positive
 *       (a processing-time timer, so a quiet stream is written out without a checkpoint).</li>
 * </ul>
 * An empty buffer is never flushed. {@code close} never flushes: Flink flushes a writer whose
 * input ended before closing it, and a writer closed on a failure must not write what the
 * failed checkpoint did not cover (the restart replays it). A flush that throws fails the
 * task; the writer is not used again but to be closed.
 */
public abstract class CheckpointFlushedSink<T> implements Sink<T> {
    private static final long serialVersionUID = 1L;

    private final int flushAtCount;
    private final long flushAfterMillis;

    /** {@code flushAtCount} and {@code flushAfterMillis}: 0 for no such threshold. */
    protected CheckpointFlushedSink(int flushAtCount, long flushAfterMillis) {
        if (flushAtCount < 0 || flushAfterMillis < 0) {
            throw new IllegalArgumentException("flush thresholds are positive, or 0 for none");
        }
        this.flushAtCount = flushAtCount;
        this.flushAfterMillis = flushAfterMillis;
    }

    /** A writer's buffer and the target it writes to: the four hooks the writer drives. */
    protected interface Buffer<T> {
        /** Opens what the writer needs (connections), once, before any other hook. */
        void setup(int subtask) throws IOException;

        /** Takes one element into the buffer; returns how many the buffer now holds. */
        int write(T element) throws IOException;

        /** Writes the buffer out, and empties it; called only when it holds something. */
        void flush() throws IOException;

        /** Releases what {@code setup} and {@code flush} opened, writing nothing. */
        void close() throws Exception;
    }

    /** A new, empty buffer for one writer. */
    protected abstract Buffer<T> newBuffer();

    @Override
    @SuppressWarnings("deprecation")
    public final SinkWriter<T> createWriter(InitContext context) throws IOException {
        Buffer<T> buffer = newBuffer();
        buffer.setup(context.getSubtaskId());
        return new Writer<>(buffer, flushAtCount, flushAfterMillis, context.getProcessingTimeService());
    }

    private static final class Writer<T> implements SinkWriter<T> {
        private final Buffer<T> buffer;
        private final int flushAtCount;
        private final long flushAfterMillis;
        private final ProcessingTimeService time;
        private int buffered;
        private boolean timerPending;
        private boolean closed;

        Writer(Buffer<T> buffer, int flushAtCount, long flushAfterMillis, ProcessingTimeService time) {
            this.buffer = buffer;
            this.flushAtCount = flushAtCount;
            this.flushAfterMillis = flushAfterMillis;
            this.time = time;
        }

        @Override
        public void write(T element, Context context) throws IOException {
            buffered = buffer.write(element);
            if (flushAtCount > 0 && buffered >= flushAtCount) {
                flush(false);
            } else if (flushAfterMillis > 0 && !timerPending) {
                timerPending = true;
                time.registerTimer(time.getCurrentProcessingTime() + flushAfterMillis, now -> {
                    timerPending = false;
                    if (!closed) {
                        flush(false);
                    }
                });
            }
        }

        @Override
        public void flush(boolean endOfInput) throws IOException {
            if (buffered == 0) {
                return;
            }
            buffer.flush();
            buffered = 0;
        }

        @Override
        public void close() throws Exception {
            closed = true;
            buffer.close();
        }
    }
}
