package pizzastream.flink;

import java.io.IOException;
import org.apache.flink.api.common.eventtime.TimestampAssigner;
import org.apache.flink.api.common.eventtime.TimestampAssignerSupplier;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.util.clock.RelativeClock;

/**
 * Event time and watermarks of JSON text records that carry their event time as epoch
 * milliseconds in a top-level field (the {@code "t"} of a sale). Used as the source's strategy,
 * so Flink runs one generator per Kinesis shard and the source's watermark is the oldest of them.
 *
 * <p>A shard's watermark is the newest event time it has delivered minus the out-of-orderness
 * bound: a record up to that much older than the newest is on time (in-store sales arrive in
 * 15-minute POS batches, so the bound is larger than that).
 *
 * <p>A shard that has delivered nothing for {@code idleMillis} follows the wall clock instead
 * (now minus the bound): it has caught up, and whatever it delivers next happened after that.
 * Flink's own idleness would merely stop waiting for such a shard; when every shard is quiet
 * (all stores closed for the night) nothing would advance and the last hour of the day would
 * wait for the next morning's first sale. A shard that has never delivered anything has no
 * event time to go by: it is only marked idle, so it does not hold the others back (so is the
 * reader's main output, which the Kinesis reader leaves unused; were it to follow the wall
 * clock, the source's watermark would jump past a backlog still being read). Quiet time is
 * measured on the input-activity clock, which stands still while the source is
 * back-pressured, so a busy job never looks idle.
 *
 * <p>Records are parsed only up to the field. One without a readable field keeps the time
 * Kinesis received it; the stream is written by the pipeline itself, so that is a bug upstream,
 * and it must not stop the job.
 */
public final class JsonEventTime implements WatermarkStrategy<String> {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory();

    private final String field;
    private final long outOfOrdernessMillis;
    private final long idleMillis;

    public JsonEventTime(String field, long outOfOrdernessMillis, long idleMillis) {
        this.field = field;
        this.outOfOrdernessMillis = outOfOrdernessMillis;
        this.idleMillis = idleMillis;
    }

    @Override
    public TimestampAssigner<String> createTimestampAssigner(TimestampAssignerSupplier.Context context) {
        return this::eventTime;
    }

    @Override
    public WatermarkGenerator<String> createWatermarkGenerator(WatermarkGeneratorSupplier.Context context) {
        return new Generator(context.getInputActivityClock());
    }

    long eventTime(String record, long receivedAt) {
        try (JsonParser parser = JSON.createParser(record)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return receivedAt;
            }
            while (parser.nextToken() == JsonToken.FIELD_NAME) {
                String name = parser.getCurrentName();
                JsonToken value = parser.nextToken();
                if (field.equals(name)) {
                    return value == JsonToken.VALUE_NUMBER_INT ? parser.getLongValue() : receivedAt;
                }
                parser.skipChildren();
            }
        } catch (IOException | RuntimeException unreadable) {
            // falls through: the record keeps its arrival time
        }
        return receivedAt;
    }

    private final class Generator implements WatermarkGenerator<String> {
        private final RelativeClock activity;
        private long newestEventTime = Long.MIN_VALUE;
        private long lastRecordAt;
        private long emitted = Long.MIN_VALUE;

        Generator(RelativeClock activity) {
            this.activity = activity;
            this.lastRecordAt = activity.relativeTimeMillis();
        }

        @Override
        public void onEvent(String record, long eventTime, WatermarkOutput output) {
            newestEventTime = Math.max(newestEventTime, eventTime);
            lastRecordAt = activity.relativeTimeMillis();
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            boolean quiet = activity.relativeTimeMillis() - lastRecordAt >= idleMillis;
            if (newestEventTime == Long.MIN_VALUE) {
                if (quiet) {
                    output.markIdle();
                }
                return;
            }
            long watermark = newestEventTime - outOfOrdernessMillis - 1;
            if (quiet) {
                watermark = Math.max(watermark, System.currentTimeMillis() - outOfOrdernessMillis - 1);
            }
            if (watermark > emitted) {
                emitted = watermark;
                output.emitWatermark(new Watermark(watermark));
            }
        }
    }
}
